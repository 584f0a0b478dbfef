#!/bin/bash
# Two tokends where there should be one, as when someone starts one by hand
# next to the service:
# - on the same state directory: the second refuses to start, naming the
#   directory and the first one's pid (one state file, one writer);
# - in one network namespace with the same reqid range: each sees the
#   other's objects as orphans of its own. They must not fight in a loop:
#   after a few removals the one that holds no such association leaves the
#   objects alone and says why (a second tokend, give it its own
#   reqid-base), and the other's policies stay in place.
. "$(dirname "$0")/lib.sh"

tk_veth ta tb
ip -n "$TK_NS" addr add 192.0.2.1/24 dev ta
(umask 077; head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$TK_TMP/web.key")
tk_conf <<CONF
[tokend]
log-level = debug
CONF
tk_start || { tk_done; exit 1; }

# Same state directory: refused.
out=$(ip netns exec "$TK_NS" "$TOKEND" --config "$TK_CONF" --socket "$TK_TMP/b.sock" \
    --state-dir "$TK_STATE" 2>&1)
rc=$?
tk_check "a second tokend on the same state directory refuses to start (exit $rc)" [ "$rc" -ne 0 ]
tk_check "... naming the directory and the first one's pid" \
    grep -q "another tokend (pid $TK_PID) uses the state directory $TK_STATE" <<<"$out"
tk_check "... without touching the first one's socket" tk_ctl_quiet status

# Same namespace, same reqid range: B holds [sa web], A holds nothing.
B_CONF=$TK_TMP/b.conf
B_LOG=$TK_TMP/b.log
cat > "$B_CONF" <<CONF
[tokend]
log-level = debug
[sa web]
number = 7
local = 192.0.2.1
remote = 192.0.2.9
secret = $TK_TMP/web.key
CONF
mark=$(tk_log_lines)
ip netns exec "$TK_NS" "$TOKEND" --config "$B_CONF" --socket "$TK_TMP/b.sock" \
    --state-dir "$TK_TMP/b-state" >> "$B_LOG" 2>&1 &
B_PID=$!
tk_eventually 10 "A says the objects are someone else's and leaves them alone" \
    tk_log_has "perhaps a second tokend in this network namespace" "$mark"
tk_check "... and how to fix it" tk_log_has "Give each tokend its own reqid-base" "$mark"
sleep 1
n1=$(grep -c "policy went away" "$B_LOG")
sleep 2
n2=$(grep -c "policy went away" "$B_LOG")
echo "# B saw its policies removed $n1 times, then $((n2 - n1)) more in 2 s"
tk_check "the fight stopped (B's policies removed $((n2 - n1)) times in 2 s after settling)" [ "$n2" -eq "$n1" ]
tk_check "it stopped after a few rounds ($n1 removals)" [ "$n1" -le 12 ]
tk_check "B's policies are in place" bash -c "ip -n '$TK_NS' xfrm policy | grep -q 'dir out'"
tk_check "A still answers" tk_ctl_quiet status
kill -TERM "$B_PID"; wait "$B_PID"

tk_done
