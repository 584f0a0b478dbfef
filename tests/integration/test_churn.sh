#!/bin/bash
# Churn under a global token.
# - 1,000 veth interfaces (500 pairs) created and deleted as fast as the
#   kernel allows, three rounds, ending with half of them present; the
#   monitor socket has a small buffer, so ENOBUFS happens and is handled by
#   a full re-read. End state: exactly the interfaces that exist get the
#   global token, tokend lists exactly them, nothing else.
# - One interface flapped down/up 1,000 times: correct end state, and the
#   log stays short (state changes logged once, repeats rate limited); the
#   CPU tokend used is printed (a figure, not a pass/fail limit).
. "$(dirname "$0")/lib.sh"

N=500
tk_veth ca cb
tk_conf <<CONF
[tokend]
log-level = info
reconcile-interval = 1h
netlink-buffer = 131072
[global]
token = ::42
match = c* d* e*
CONF
tk_start || { tk_done; exit 1; }
tk_eventually 5 "global token on ca" tk_token_is ca ::42
DPID=$TK_PID
cpu() { awk '{print $14 + $15}' "/proc/$DPID/stat"; }

for i in $(seq $N); do echo "link add d$i type veth peer name e$i"; done > "$TK_TMP/add.batch"
for i in $(seq $N); do echo "link del d$i"; done > "$TK_TMP/del.batch"
for i in $(seq 1 2 $N); do echo "link del d$i"; done > "$TK_TMP/del-half.batch"
mark=$(tk_log_lines)
c0=$(cpu)
for round in 1 2 3; do
    ip -n "$TK_NS" -batch "$TK_TMP/add.batch" || tk_fail "round $round: add batch"
    ip -n "$TK_NS" -batch "$TK_TMP/del.batch" || tk_fail "round $round: del batch"
done
ip -n "$TK_NS" -batch "$TK_TMP/add.batch"
ip -n "$TK_NS" -batch "$TK_TMP/del-half.batch"
for i in $(seq 2 2 $N); do echo "link set d$i up"; echo "link set e$i up"; done > "$TK_TMP/up.batch"
ip -n "$TK_NS" -batch "$TK_TMP/up.batch"

# The interfaces that exist now, and what the kernel and tokend say.
want=$(ip -n "$TK_NS" -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^[cde]' | sort)
nwant=$(wc -l <<<"$want")
settled() {
    local k
    k=$(ip -n "$TK_NS" token list | awk '$2 == "::42" || $2 == "::0.0.0.66" {print $4}' | sort)
    [ "$k" = "$want" ]
}
tk_eventually 60 "every one of the $nwant interfaces has the global token" settled
held=$(tk_ctl --json show | python3 -c '
import json, sys
print("\n".join(sorted(e["interface"] for e in json.load(sys.stdin)["entries"])))')
tk_check "tokend lists exactly the interfaces that exist ($(wc -l <<<"$held") vs $nwant)" [ "$held" = "$want" ]
overruns=$(tk_log_count "ENOBUFS" "$mark")
echo "# 3 rounds of $((2 * N)) interfaces: $overruns netlink overruns, each answered by a re-read; tokend CPU $(( ($(cpu) - c0) * 10 )) ms"
tk_check "the overruns (if any) were answered by a re-read" \
    bash -c "[ $overruns -eq 0 ] || [ \$(grep -c 're-reading all links' '$TK_LOG') -ge 1 ]"

# Flapping.
mark=$(tk_log_lines)
c0=$(cpu)
for i in $(seq 1000); do echo "link set ca down"; echo "link set ca up"; done > "$TK_TMP/flap.batch"
ip -n "$TK_NS" -batch "$TK_TMP/flap.batch"
tk_eventually 10 "after 1,000 flaps ca has the global token" tk_token_is ca ::42
sleep 1
lines=$(( $(tk_log_lines) - mark ))
echo "# 1,000 down/up flaps: $lines log lines, tokend CPU $(( ($(cpu) - c0) * 10 )) ms"
tk_check "the log stays short under flapping ($lines lines)" [ "$lines" -le 50 ]
tk_check "tokend still answers" tk_ctl_quiet status

tk_done
