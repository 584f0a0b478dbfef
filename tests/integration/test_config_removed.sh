#!/bin/bash
# What tokend removes and what it leaves alone across a restart:
# - an entry removed from the config while tokend was down is cleared from
#   the kernel at start (tokend put that token there);
# - ...unless someone else changed that token meanwhile: then it is not
#   tokend's to clear;
# - a token someone else set on an interface tokend never managed is left
#   untouched at start and throughout;
# - a runtime entry deleted over the socket is cleared;
# - started on a kernel that already holds the right tokens, tokend writes
#   nothing (adoption): no RTM_SETLINK in its debug log.
. "$(dirname "$0")/lib.sh"

tk_veth va pa
tk_veth vb pb
tk_veth vc pc
tk_veth vd pd
tk_veth g1 g1p
# Someone else's token on vc, set before tokend ever runs.
ip -n "$TK_NS" token set ::c0 dev vc

write_conf() {   # write_conf "[tokens] lines"
    cat > "$TK_CONF" <<EOF
[tokend]
log-level = debug
retry-min = 500ms
retry-max = 2s
[global]
token = ::42
match = g*
[tokens]
$1
EOF
}
write_conf "va = ::a
vd = ::d"
tk_start || exit 1

tk_eventually 5 "config token ::a on va" tk_token_is va ::a
tk_eventually 5 "config token ::d on vd" tk_token_is vd ::d
tk_eventually 5 "global token ::42 on g1 (match g*)" tk_token_is g1 ::42
tk_check "add runtime ::b dev vb" tk_ctl add ::b dev vb
tk_eventually 5 "runtime token ::b on vb" tk_token_is vb ::b
tk_check "vc keeps someone else's ::c0" tk_token_is vc ::c0
tk_check "show has no vc entry" bash -c "! '$TOKENCTL' --socket '$TK_SOCK' show dev vc >/dev/null 2>&1"

# --- adoption: restart with everything already right --------------------------
tk_stop
mark=$(tk_log_lines)
tk_start || exit 1
sleep 2
tk_check "after restart va still ::a" tk_token_is va ::a
tk_check "after restart vb still ::b" tk_token_is vb ::b
tk_check "after restart g1 still ::42" tk_token_is g1 ::42
tk_eventually 3 "va applied after restart" tk_state_is va applied
tk_eventually 3 "vb applied after restart" tk_state_is vb applied
tk_check "debug log is on after restart (netlink lines are logged)" tk_log_has "netlink: RTM_NEWLINK" "$mark"
n=$(tk_log_count "RTM_SETLINK" "$mark")
tk_check "adoption: no token write after restart (RTM_SETLINK lines: $n)" [ "$n" -eq 0 ]
[ "$n" -eq 0 ] || tk_log_since "$mark" | grep -F RTM_SETLINK | sed 's/^/#   /'
tk_check "vc still ::c0" tk_token_is vc ::c0

# --- entries removed from the config while tokend is down ----------------------
tk_stop
write_conf ""                          # va and vd are gone from the config
ip -n "$TK_NS" token set ::dd dev vd   # ...and someone else took over vd meanwhile
mark=$(tk_log_lines)
tk_start || exit 1
tk_eventually 5 "va (removed from the config while down) cleared at start" tk_token_is va ::
tk_check "show has no va entry" tk_wait 3 bash -c "! '$TOKENCTL' --socket '$TK_SOCK' show dev va >/dev/null 2>&1"
sleep 1
tk_check "vd: someone else's ::dd left alone" tk_token_is vd ::dd
tk_check "no write to vd at start" [ "$(tk_log_count "RTM_SETLINK ifindex $(tk_ifindex vd) " "$mark")" -eq 0 ]
tk_check "vb (runtime) still ::b" tk_token_is vb ::b
tk_check "g1 still ::42" tk_token_is g1 ::42
tk_check "vc untouched at start (::c0)" tk_token_is vc ::c0
tk_check "no write to vc at start" [ "$(tk_log_count "RTM_SETLINK ifindex $(tk_ifindex vc) " "$mark")" -eq 0 ]

# --- runtime deletion over the socket ------------------------------------------
tk_check "delete dev vb" tk_ctl delete dev vb
tk_eventually 5 "vb cleared after delete" tk_token_is vb ::
tk_check "vc still untouched (::c0)" tk_token_is vc ::c0

# --- va is free now: tokend does not fight someone else on it ------------------
ip -n "$TK_NS" token set ::a1 dev va
sleep 1
tk_check "va: a token set after the entry was gone is left alone" tk_token_is va ::a1

# --- a restart after all that leaves the others' tokens alone -----------------
tk_kill9
mark=$(tk_log_lines)
tk_start || exit 1
sleep 2
tk_check "after kill -9 + start: vc ::c0" tk_token_is vc ::c0
tk_check "after kill -9 + start: vd ::dd" tk_token_is vd ::dd
tk_check "after kill -9 + start: va ::a1" tk_token_is va ::a1
tk_check "after kill -9 + start: vb ::" tk_token_is vb ::
n=$(tk_log_count "RTM_SETLINK" "$mark")
tk_check "nothing written after the last start (RTM_SETLINK lines: $n)" [ "$n" -eq 0 ]

tk_done
