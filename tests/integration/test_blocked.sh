#!/bin/bash
# Tokens the kernel refuses (T1/T2): an entry on an interface that does not
# accept router advertisements, that has forwarding on with accept_ra=1, that
# sends no router solicitations, or that does no neighbour discovery is
# `blocked` with a reason, and is applied by itself once the cause goes away
# (sysctl changes send no netlink event: tokend's retry timer must find it).
# Loopback is `unsupported` and never retried; a global token skips it
# quietly. A removal the kernel refuses is `removing` until it can be done.
# Every check is made against the kernel (ip token).
. "$(dirname "$0")/lib.sh"

tk_veth va pa
tk_veth vb pb
tk_veth vc pc
tk_veth vd pd
tk_veth ve pe
tk_veth vg pg

tk_veth vh ph
# T1, the cause is already there when tokend starts.
tk_sysctl net.ipv6.conf.vg.accept_ra=0
tk_sysctl net.ipv6.conf.vh.forwarding=1 net.ipv6.conf.vh.accept_ra=1

tk_conf <<EOF
[tokend]
log-level = debug
retry-min = 500ms
retry-max = 2s
EOF
tk_start || exit 1

# --- accept_ra = 0, set before tokend started -------------------------------
tk_check "add on vg (accept_ra=0 before start)" tk_ctl add ::9 dev vg
tk_eventually 5 "vg is blocked" tk_state_is vg blocked
tk_check "vg reason names router advertisements / accept_ra" \
    tk_reason_has vg 'accept_ra|router advertisement'
tk_check "kernel has no token on vg" tk_token_is vg ::
tk_sysctl net.ipv6.conf.vg.accept_ra=1
tk_eventually 5 "vg token applied by itself after accept_ra=1" tk_token_is vg ::9
tk_eventually 2 "vg state applied" tk_state_is vg applied

# --- forwarding = 1, accept_ra = 1, set before tokend started ---------------
tk_check "add on vh (forwarding=1, accept_ra=1 before start)" tk_ctl add ::8 dev vh
tk_eventually 5 "vh is blocked" tk_state_is vh blocked
echo "# vh reason: $(tk_entry_field vh reason)"
tk_check "vh reason mentions forwarding" tk_reason_has vh 'forwarding'
tk_check "kernel has no token on vh" tk_token_is vh ::
tk_sysctl net.ipv6.conf.vh.accept_ra=2
tk_eventually 5 "vh token applied by itself after accept_ra=2" tk_token_is vh ::8

# --- accept_ra = 0, set while tokend runs (T2) ------------------------------
tk_sysctl net.ipv6.conf.va.accept_ra=0
tk_check "add on va (accept_ra=0)" tk_ctl add ::a dev va
tk_eventually 5 "va is blocked" tk_state_is va blocked
echo "# va reason: $(tk_entry_field va reason)"
tk_check "va reason names router advertisements / accept_ra" \
    tk_reason_has va 'accept_ra|router advertisement'
tk_check "kernel has no token on va" tk_token_is va ::
# Let the backoff climb to its ceiling, then lift the cause.
sleep 3
tk_check "va still has no token after 3 s" tk_token_is va ::
tk_check "va still blocked after 3 s" tk_state_is va blocked
tk_sysctl net.ipv6.conf.va.accept_ra=1
tk_eventually 5 "va token applied by itself after accept_ra=1" tk_token_is va ::a
tk_eventually 2 "va state applied" tk_state_is va applied
tk_check "va reason cleared" [ "$(tk_entry_field va reason)" = null ]

# --- forwarding = 1 with accept_ra = 1 --------------------------------------
tk_sysctl net.ipv6.conf.vb.forwarding=1 net.ipv6.conf.vb.accept_ra=1
tk_check "add on vb (forwarding=1, accept_ra=1)" tk_ctl add ::b dev vb
tk_eventually 5 "vb is blocked" tk_state_is vb blocked
echo "# vb reason: $(tk_entry_field vb reason)"
tk_check "vb reason mentions forwarding" tk_reason_has vb 'forwarding'
tk_check "kernel has no token on vb" tk_token_is vb ::
tk_sysctl net.ipv6.conf.vb.accept_ra=2
tk_eventually 5 "vb token applied by itself after accept_ra=2" tk_token_is vb ::b
tk_eventually 2 "vb state applied" tk_state_is vb applied

# --- router_solicitations = 0 -----------------------------------------------
tk_sysctl net.ipv6.conf.vc.router_solicitations=0
tk_check "add on vc (router_solicitations=0)" tk_ctl add ::c dev vc
tk_eventually 5 "vc is blocked" tk_state_is vc blocked
echo "# vc reason: $(tk_entry_field vc reason)"
tk_check "vc reason mentions router solicitations" tk_reason_has vc 'solicit'
tk_check "kernel has no token on vc" tk_token_is vc ::
tk_sysctl net.ipv6.conf.vc.router_solicitations=-1
tk_eventually 5 "vc token applied by itself after router_solicitations=-1" tk_token_is vc ::c
tk_eventually 2 "vc state applied" tk_state_is vc applied

# --- NOARP -------------------------------------------------------------------
ip -n "$TK_NS" link set vd arp off
tk_check "add on vd (arp off)" tk_ctl add ::d dev vd
tk_eventually 5 "vd is blocked" tk_state_is vd blocked
echo "# vd reason: $(tk_entry_field vd reason)"
tk_check "vd reason mentions neighbour discovery" tk_reason_has vd 'neighbou?r discovery|NOARP'
tk_check "kernel has no token on vd (rtnetlink)" tk_token_is_nl vd ::
# Wait for the backoff to reach its 2 s ceiling, then lift the cause right
# after a timed retry: the next timed one is ~2 s away, so a prompt fix can
# only come from the link event "arp on" sends.
vd_idx=$(tk_ifindex vd)
sleep 3
mark=$(tk_log_lines)
tk_wait 4 tk_log_has "RTM_SETLINK ifindex $vd_idx " "$mark"
sleep 0.1
t0=$(date +%s%N)
ip -n "$TK_NS" link set vd arp on
if tk_wait 5 tk_token_is vd ::d; then
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    tk_pass "vd token applied after arp on (${ms} ms)"
    tk_check "arp on retried at once on the link event (${ms} ms < 500 ms)" [ "$ms" -lt 500 ]
else
    tk_fail "vd token applied after arp on"
fi
tk_eventually 2 "vd state applied" tk_state_is vd applied

# --- loopback ----------------------------------------------------------------
out=$(tk_ctl add ::1 dev lo 2>&1)
tk_check "add ::1 dev lo is accepted by tokend ($out)" [ $? -eq 0 ]
tk_eventually 3 "lo is unsupported" tk_state_is lo unsupported
echo "# lo reason: $(tk_entry_field lo reason)"
tk_check "kernel has no token on lo (rtnetlink)" tk_token_is_nl lo ::
lo_idx=$(tk_ifindex lo)
n1=$(tk_log_count "RTM_SETLINK ifindex $lo_idx ")
sleep 3.5
n2=$(tk_log_count "RTM_SETLINK ifindex $lo_idx ")
tk_check "lo never retried: RTM_SETLINK for ifindex $lo_idx before=$n1 after 3.5s=$n2" \
    [ "$n1" -le 1 -a "$n2" -eq "$n1" ]
tk_check "lo still unsupported" tk_state_is lo unsupported
tk_check "delete lo entry" tk_ctl delete dev lo
tk_check "lo entry gone" bash -c "! '$TOKENCTL' --socket '$TK_SOCK' show dev lo >/dev/null 2>&1"

# --- a global token skips lo quietly ----------------------------------------
mark=$(tk_log_lines)
tk_check "add global ::42" tk_ctl add ::42
tk_eventually 5 "global token reaches pa" tk_token_is pa ::42
tk_eventually 5 "global token reaches pe" tk_token_is pe ::42
sleep 1
tk_check "show has no lo entry" bash -c "! '$TOKENCTL' --socket '$TK_SOCK' show | grep -q '^lo '"
tk_check "show --json has no lo entry" bash -c "'$TOKENCTL' --socket '$TK_SOCK' --json show | python3 -c '
import json,sys; d=json.load(sys.stdin); sys.exit(any(e[\"interface\"]==\"lo\" for e in d[\"entries\"]))'"
tk_check "kernel has no token on lo (rtnetlink)" tk_token_is_nl lo ::
tk_check "no write to lo for the global token" [ "$(tk_log_count "RTM_SETLINK ifindex $lo_idx " "$mark")" -eq 0 ]
tk_check "no warning about lo" bash -c "! tail -n +$((mark + 1)) '$TK_LOG' | grep -E '(^|[^a-z])lo: ' | grep -qiE 'warn|refus|unsupported'"
tk_check "delete global" tk_ctl delete
tk_eventually 5 "global token cleared from pa" tk_token_is pa ::

# --- a removal the kernel refuses -------------------------------------------
tk_check "add runtime token on ve" tk_ctl add ::e dev ve
tk_eventually 5 "kernel holds ::e on ve" tk_token_is ve ::e
tk_sysctl net.ipv6.conf.ve.accept_ra=0
tk_check "delete dev ve" tk_ctl delete dev ve
tk_eventually 5 "ve is removing" tk_state_is ve removing
echo "# ve reason: $(tk_entry_field ve reason)"
tk_check "ve removing reason names router advertisements / accept_ra" \
    tk_reason_has ve 'accept_ra|router advertisement'
tk_check "kernel still holds ::e on ve" tk_token_is ve ::e
sleep 2
tk_check "kernel still holds ::e on ve after 2 s" tk_token_is ve ::e
tk_sysctl net.ipv6.conf.ve.accept_ra=1
tk_eventually 5 "ve token cleared by itself after accept_ra=1" tk_token_is ve ::
tk_eventually 3 "ve entry gone from show" \
    bash -c "! '$TOKENCTL' --socket '$TK_SOCK' show dev ve >/dev/null 2>&1"

# Nothing else was touched.
tk_check "va still ::a" tk_token_is va ::a
tk_check "vb still ::b" tk_token_is vb ::b

tk_done
