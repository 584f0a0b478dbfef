#!/bin/bash
# The daemon itself under valgrind (the unit tests run there too): start,
# tokens, a repair, runtime changes, a monitor, a refused change before and
# after a reload (the reload frees the old config: nothing may still point
# into it), an association on the host's XFRM, status, and a clean stop.
# Any invalid read or write, or a definite leak, fails the test.
. "$(dirname "$0")/lib.sh"

command -v valgrind >/dev/null || { echo "SKIP: needs valgrind" >&2; exit 77; }
command -v setpriv >/dev/null || { echo "SKIP: needs setpriv" >&2; exit 77; }

tk_veth va vb
ip -n "$TK_NS" addr add 192.0.2.1/24 dev va
(umask 077; head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$TK_TMP/web.key")
write_conf() {
    cat > "$TK_CONF" <<CONF
[tokend]
log-level = debug
socket-group = nogroup
admin-group = $1
[tokens]
va = ::a
[sa web]
number = 7
local = 192.0.2.1
remote = 192.0.2.9
secret = $TK_TMP/web.key
lifetime = 3600
CONF
}
write_conf tokend-admin-before
VG=$TK_TMP/valgrind.log
ip netns exec "$TK_NS" valgrind -q --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite --log-file="$VG" \
    "$TOKEND" --config "$TK_CONF" --socket "$TK_SOCK" --state-dir "$TK_STATE" >> "$TK_LOG" 2>&1 &
TK_PID=$!
tk_wait 60 tk_ctl_quiet status
tk_eventually 20 "token applied" tk_token_is va ::a
"$TOKENCTL" --socket "$TK_SOCK" --json monitor > "$TK_TMP/mon.json" 2>/dev/null &
MON=$!
ip -n "$TK_NS" token set ::bad dev va
tk_eventually 20 "repaired" tk_token_is va ::a
tk_ctl add ::b dev vb >/dev/null
tk_eventually 20 "runtime token" tk_token_is vb ::b
refuse() { setpriv --reuid=40001 --regid=65534 --clear-groups "$TOKENCTL" --socket "$TK_SOCK" --json add ::c dev vb 2>/dev/null; }
out=$(refuse)
tk_check "refused before reload, naming the admin group" grep -q "\"required\": \"tokend-admin-before\"" <<<"$out"
write_conf tokend-admin-after-a-longer-name
mark=$(tk_log_lines)
DPID=$(pgrep -f -- "--state-dir $TK_STATE" | head -n1)
kill -HUP "$DPID"
tk_eventually 20 "reloaded" tk_log_has "config reloaded" "$mark"
out=$(refuse)
tk_check "the reload says admin-group takes effect at restart" tk_log_has "admin-group changed in the config: it takes effect when tokend restarts"
tk_check "refused after reload, the group as tokend started with (start-only setting)" \
    grep -q "\"required\": \"tokend-admin-before\"" <<<"$out"
tk_ctl status >/dev/null
tk_ctl show sa >/dev/null
tk_ctl flush >/dev/null
kill "$MON" 2>/dev/null; wait "$MON" 2>/dev/null
kill -TERM "$DPID"
wait "$TK_PID"
rc=$?
TK_PID=
tk_check "valgrind found nothing (exit $rc)" [ "$rc" -eq 0 ]
[ "$rc" -eq 0 ] || head -n 40 "$VG"

tk_done
