#!/bin/bash
# Another program fighting tokend over a token: after contest-repairs repairs
# within contest-window tokend stops repairing (`contested`, the reason says
# what it saw) instead of fighting forever; `tokenctl resume`, setting the
# token again, or a config reload that changes a config entry make it repair
# again. The kernel (ip token) and tokend's own write log decide the checks.
. "$(dirname "$0")/lib.sh"

FIGHTER=
stop_fighter() {
    [ -n "$FIGHTER" ] || return 0
    kill "$FIGHTER" 2>/dev/null
    wait "$FIGHTER" 2>/dev/null
    FIGHTER=
}
# start_fighter IFACE TOKEN: another "manager" setting IFACE's token every 50 ms.
start_fighter() {
    ( while true; do ip -n "$TK_NS" token set "$2" dev "$1" 2>/dev/null; sleep 0.05; done ) &
    FIGHTER=$!
}
on_exit() { local rc=$?; stop_fighter; (exit "$rc"); tk_cleanup; }
trap on_exit EXIT

tk_veth va pa
tk_veth vc pc
tk_conf <<EOF
[tokend]
log-level = debug
contest-repairs = 5
contest-window = 30s
[tokens]
vc = ::c
EOF
tk_start || exit 1
tk_eventually 5 "config token on vc applied" tk_token_is vc ::c

tk_check "add ::a dev va" tk_ctl add ::a dev va
tk_eventually 5 "kernel holds ::a on va" tk_token_is va ::a
va_idx=$(tk_ifindex va)
vc_idx=$(tk_ifindex vc)

# contested_run IFACE IFINDEX TOKEN: fight over IFACE's token with ::5 and
# check that tokend gives up within a bounded number of repairs.
contested_run() {
    local ifc=$1 idx=$2 tok=$3 mark r1 w1 r2 w2 n
    mark=$(tk_log_lines)
    start_fighter "$ifc" ::5
    tk_eventually 8 "$ifc becomes contested while another program keeps setting ::5" \
        tk_state_is "$ifc" contested
    echo "# $ifc reason: $(tk_entry_field "$ifc" reason)"
    tk_check "$ifc reason says what it saw (::5)" tk_reason_has "$ifc" '::5([^0-9a-f:]|$)'
    r1=$(tk_log_count "$ifc: token changed behind tokend's back" "$mark")
    w1=$(tk_log_count "RTM_SETLINK ifindex $idx token $tok" "$mark")
    sleep 3    # the fight goes on
    r2=$(tk_log_count "$ifc: token changed behind tokend's back" "$mark")
    w2=$(tk_log_count "RTM_SETLINK ifindex $idx token $tok" "$mark")
    n=$(tk_log_count "restoring" "$mark")
    echo "# $ifc: 'restoring' lines: $n; repairs logged: $r1 then $r2 after 3 s more; writes of $tok: $w1 then $w2"
    tk_check "$ifc: repairs bounded (restoring lines $n <= 6)" [ "$n" -le 6 ]
    tk_check "$ifc: writes of $tok bounded ($w2 <= 6)" [ "$w2" -le 6 ]
    tk_check "$ifc: no repair while contested ($w1 -> $w2 writes in 3 s)" [ "$w2" -eq "$w1" ]
    tk_check "$ifc still contested after 3 s more" tk_state_is "$ifc" contested
    tk_check "kernel holds the other program's ::5 on $ifc" tk_token_is "$ifc" ::5
    stop_fighter
}

# --- runtime entry, resumed with tokenctl resume -------------------------------
contested_run va "$va_idx" ::a
tk_check "status counts one contested" bash -c "'$TOKENCTL' --socket '$TK_SOCK' --json status | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)[\"counts\"][\"contested\"] != 1)'"
sleep 1
tk_check "no repair after the fight stopped either" tk_token_is va ::5
out=$(tk_ctl resume dev va 2>&1)
tk_check "tokenctl resume dev va ($out)" [ $? -eq 0 ]
tk_eventually 5 "token ::a restored after resume" tk_token_is va ::a
tk_eventually 3 "va applied after resume" tk_state_is va applied
tk_check "va reason cleared" [ "$(tk_entry_field va reason)" = null ]
ip -n "$TK_NS" token set ::77 dev va
tk_eventually 5 "va repaired again after resume (one drift)" tk_token_is va ::a

# --- setting the same token again also resumes --------------------------------
contested_run va "$va_idx" ::a
tk_check "tokenctl add ::a dev va again" tk_ctl add ::a dev va
tk_eventually 5 "token ::a restored after setting it again" tk_token_is va ::a
tk_eventually 3 "va applied" tk_state_is va applied

# --- config entry, resumed by a reload that changes it -------------------------
contested_run vc "$vc_idx" ::c
tk_reload
sleep 1
tk_check "an unchanged reload does not resume vc" tk_state_is vc contested
tk_check "vc still ::5 after an unchanged reload" tk_token_is vc ::5
sed -i 's/^vc = ::c$/vc = ::cc/' "$TK_CONF"
grep -q '^vc = ::cc$' "$TK_CONF" || tk_fail "could not edit the config"
tk_check "SIGHUP with a changed token for vc" tk_reload
tk_eventually 5 "vc gets the new token ::cc from the reload" tk_token_is vc ::cc
tk_eventually 3 "vc applied after the reload" tk_state_is vc applied
tk_check "va untouched by the reload" tk_token_is va ::a

tk_done
