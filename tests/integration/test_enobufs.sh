#!/bin/bash
# Many interfaces at once: 300 veth pairs created in one batch all get the
# global token (the monitor path, and the ENOBUFS re-read if the kernel drops
# events; whether it did is printed, not required), and are forgotten when
# deleted in one batch. The periodic reconciliation backstop runs at the
# configured reconcile-interval.
. "$(dirname "$0")/lib.sh"

N=300
tk_veth va pa
tk_conf <<EOF
[tokend]
log-level = debug
reconcile-interval = 2s
# Small, so the forced overrun below really overruns.
netlink-buffer = 262144
[global]
token = ::42
EOF
tk_start || exit 1
tk_eventually 5 "global token on va" tk_token_is va ::42

# --- the periodic backstop, timed from the log ----------------------------------
mark=$(tk_log_lines)
t0=$(date +%s%N); times=(); seen=0
while [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 7000 ]; do
    c=$(tk_log_count "periodic reconcile" "$mark")
    while [ "$seen" -lt "$c" ]; do
        times+=($(( ($(date +%s%N) - t0) / 1000000 ))); seen=$((seen + 1))
    done
    sleep 0.05
done
echo "# periodic reconcile seen at ms: ${times[*]:-none}"
tk_check "periodic reconcile ran 3 or 4 times in 7 s (${#times[@]})" \
    [ "${#times[@]}" -ge 3 -a "${#times[@]}" -le 4 ]
ok=1
for ((i = 1; i < ${#times[@]}; i++)); do
    gap=$(( times[i] - times[i-1] ))
    [ "$gap" -ge 1500 ] && [ "$gap" -le 2600 ] || { ok=0; echo "# gap $gap ms"; }
done
tk_check "...at the configured 2 s interval" [ "$ok" = 1 -a "${#times[@]}" -ge 2 ]
st() { tk_ctl --json status | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
r1=$(st resyncs); sleep 4.5; r2=$(st resyncs)
tk_check "status resyncs grows with the periodic re-read ($r1 -> $r2 in 4.5 s)" \
    [ $((r2 - r1)) -ge 2 -a $((r2 - r1)) -le 3 ]
tk_check "the backstop writes nothing when all is right" \
    [ "$(tk_log_count "RTM_SETLINK" "$mark")" -eq 0 ]

# --- 300 pairs in one batch --------------------------------------------------------
# Backstop off (1 h) so that only the monitor path, or its ENOBUFS re-read, can
# hand out the tokens.
sed -i 's/^reconcile-interval = .*/reconcile-interval = 1h/' "$TK_CONF"
tk_check "reload with reconcile-interval = 1h" tk_reload
mark0=$(tk_log_lines)
for i in $(seq $N); do echo "link add e$i type veth peer name f$i"; done > "$TK_TMP/add.batch"
for i in $(seq $N); do echo "link del e$i"; done > "$TK_TMP/del.batch"
mark=$(tk_log_lines)
t0=$(date +%s%N)
tk_check "created $N veth pairs in a batch" ip -n "$TK_NS" -batch "$TK_TMP/add.batch"

count_with() {   # interfaces e*/f* whose kernel token is $1
    ip -n "$TK_NS" token | awk -v t="$1" '$2 == t && $4 ~ /^[ef][0-9]+$/' | wc -l
}
all_have_global() { [ "$(count_with ::42)" -eq $((2 * N)) ]; }
if tk_wait 30 all_have_global; then
    tk_pass "all $((2 * N)) new interfaces have the global token ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
else
    tk_fail "all $((2 * N)) new interfaces have the global token: only $(count_with ::42)"
    ip -n "$TK_NS" token | awk '$2 != "::42"' | head -5 | sed 's/^/#   without: /'
fi
if tk_log_has "ENOBUFS" "$mark"; then
    echo "# ENOBUFS happened: $(tk_log_count ENOBUFS "$mark") time(s); tokend re-read the links"
else
    echo "# no ENOBUFS: every event was read"
fi
tk_eventually 5 "show lists all $((2 * N)) of them" bash -c "[ \"\$('$TOKENCTL' --socket '$TK_SOCK' show | grep -cE '^[ef][0-9]+ ')\" -eq $((2 * N)) ]"
tk_eventually 5 "status counts them applied" bash -c "'$TOKENCTL' --socket '$TK_SOCK' --json status | python3 -c 'import json,sys; c=json.load(sys.stdin)[\"counts\"]; sys.exit(not (c[\"applied\"] >= $((2 * N)) and c[\"pending\"] == 0))'"
writes=$(tk_log_count "RTM_SETLINK" "$mark")
echo "# token writes: $writes"
tk_check "about one write per interface ($writes <= $((2 * N + 20)))" [ "$writes" -le $((2 * N + 20)) ]
tk_check "va untouched" tk_token_is va ::42

# --- and gone in one batch -----------------------------------------------------------
tk_check "deleted $N veth pairs in a batch" ip -n "$TK_NS" -batch "$TK_TMP/del.batch"
tk_eventually 10 "show lists none of them" bash -c "[ \"\$('$TOKENCTL' --socket '$TK_SOCK' show | grep -cE '^[ef][0-9]+ ')\" -eq 0 ]"
tk_check "tokend still serves" tk_ctl_quiet status
tk_check "va still has the global token" tk_token_is va ::42
# --- a forced overrun: tokend cannot read while the events pour in ---------------
# SIGSTOP tokend, create 300 pairs and flap them up/down/up: far more than its
# monitor socket buffer holds, so the kernel drops events (checked in
# /proc/net/netlink). On SIGCONT tokend must notice (ENOBUFS), re-read and
# give every interface the global token.
for i in $(seq $N); do echo "link add g$i type veth peer name h$i"; done > "$TK_TMP/add2.batch"
for i in $(seq $N); do echo "link set g$i up"; echo "link set h$i up"; done > "$TK_TMP/up2.batch"
for i in $(seq $N); do echo "link set g$i down"; echo "link set h$i down"; done > "$TK_TMP/down2.batch"
tk_drops() {   # kernel-side drops on tokend's netlink sockets
    local inodes
    inodes=$(ls -l "/proc/$TK_PID/fd" 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\]/\1/p' | tr '\n' ' ')
    ip netns exec "$TK_NS" cat /proc/net/netlink | awk -v ino=" $inodes " \
        'NR > 1 && index(ino, " " $10 " ") { d += $9 } END { print d + 0 }'
}
mark=$(tk_log_lines)
kill -STOP "$TK_PID"
ip -n "$TK_NS" -batch "$TK_TMP/add2.batch"
ip -n "$TK_NS" -batch "$TK_TMP/up2.batch"
ip -n "$TK_NS" -batch "$TK_TMP/down2.batch"
ip -n "$TK_NS" -batch "$TK_TMP/up2.batch"
drops=$(tk_drops)
echo "# kernel dropped $drops monitor messages while tokend was stopped"
t0=$(date +%s%N)
kill -CONT "$TK_PID"
count_gh() { ip -n "$TK_NS" token | awk '$2 == "::42" && $4 ~ /^[gh][0-9]+$/' | wc -l; }
all_gh() { [ "$(count_gh)" -eq $((2 * N)) ]; }
if tk_wait 30 all_gh; then
    tk_pass "after the overrun all $((2 * N)) interfaces have the global token ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
else
    tk_fail "after the overrun all $((2 * N)) interfaces have the global token: only $(count_gh)"
fi
if [ "$drops" -gt 0 ]; then
    tk_check "tokend noticed the overrun (ENOBUFS in its log)" tk_log_has "ENOBUFS" "$mark"
else
    echo "# the kernel dropped nothing this time: ENOBUFS not required"
fi
tk_eventually 5 "show lists all $((2 * N)) g/h interfaces" bash -c "[ \"\$('$TOKENCTL' --socket '$TK_SOCK' show | grep -cE '^[gh][0-9]+ ')\" -eq $((2 * N)) ]"
tk_check "va still has the global token" tk_token_is va ::42
for i in $(seq $N); do echo "link del g$i"; done > "$TK_TMP/del2.batch"
ip -n "$TK_NS" -batch "$TK_TMP/del2.batch"
tk_eventually 10 "show lists none of them after deletion" bash -c "[ \"\$('$TOKENCTL' --socket '$TK_SOCK' show | grep -cE '^[gh][0-9]+ ')\" -eq 0 ]"

tk_check "no periodic reconcile ran during the batches" [ "$(tk_log_count "periodic reconcile" "$mark0")" -eq 0 ]

# A periodic re-read after the storm finds nothing to do.
sed -i 's/^reconcile-interval = .*/reconcile-interval = 2s/' "$TK_CONF"
mark=$(tk_log_lines)
tk_check "reload with reconcile-interval = 2s" tk_reload
tk_wait 5 tk_log_has "periodic reconcile" "$mark"
sleep 0.5
tk_check "the next periodic reconcile writes nothing" [ "$(tk_log_count "RTM_SETLINK" "$mark")" -eq 0 ]

tk_done
