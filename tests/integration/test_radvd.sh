#!/bin/bash
# The token at work (T4): a router namespace runs radvd advertising
# 2001:db8:1::/64 with autoconf over a veth into the test namespace; tokend
# holds ::1a:2b:3c:4d for the receiving end, so the kernel forms
# 2001:db8:1::1a:2b:3c:4d by SLAAC (ip -6 addr) and `tokenctl show` lists it
# in `addresses`. A changed token forms the new address. All traffic stays
# between the two private namespaces.
. "$(dirname "$0")/lib.sh"

if ! command -v radvd >/dev/null 2>&1; then
    apt-get install -y radvd >/dev/null 2>&1 || { echo "SKIP: radvd not available" >&2; exit 77; }
fi
RADVD=$(command -v radvd)

RNS="tk-rtr-$$"
TK_EXTRA_NS+=("$RNS")
ip netns add "$RNS" || { tk_fail "cannot create router namespace"; exit 1; }
ip -n "$RNS" link set lo up
ip netns exec "$RNS" sysctl -qw net.ipv6.conf.all.forwarding=1 >/dev/null

# host0 (test namespace, receives RAs) <-> rtr0 (router namespace, radvd)
ip -n "$TK_NS" link add host0 type veth peer name rtr0 netns "$RNS"
ip -n "$RNS" addr add 2001:db8:1::1/64 dev rtr0
ip -n "$RNS" link set rtr0 up

tk_conf <<EOF
[tokend]
log-level = debug
[tokens]
host0 = ::1a:2b:3c:4d
EOF
tk_start || exit 1
tk_eventually 5 "token set on host0 (still down)" tk_token_is host0 ::1a:2b:3c:4d
tk_check "host0 accepts RAs (accept_ra=1, forwarding=0)" \
    [ "$(tk_ns sysctl -n net.ipv6.conf.host0.accept_ra)$(tk_ns sysctl -n net.ipv6.conf.host0.forwarding)" = 10 ]
ip -n "$TK_NS" link set host0 up

cat > "$TK_TMP/radvd.conf" <<EOF
interface rtr0 {
    AdvSendAdvert on;
    MinRtrAdvInterval 3;
    MaxRtrAdvInterval 4;
    prefix 2001:db8:1::/64 {
        AdvOnLink on;
        AdvAutonomous on;
    };
};
EOF
ip netns exec "$RNS" "$RADVD" -C "$TK_TMP/radvd.conf" -p "$TK_TMP/radvd.pid" -n -m stderr \
    > "$TK_TMP/radvd.log" 2>&1 &
RADVD_PID=$!
sleep 0.5
if ! kill -0 "$RADVD_PID" 2>/dev/null; then
    tk_fail "radvd runs"; sed 's/^/#   /' "$TK_TMP/radvd.log"; tk_done; exit 1
fi
tk_pass "radvd runs in $RNS"

# has_addr IFACE ADDR: the kernel holds ADDR on IFACE, DAD done (not tentative).
has_addr() {
    ip -n "$TK_NS" -6 addr show dev "$1" scope global | grep -F "inet6 $2/64" | grep -qv tentative
}
addr_in_show() {   # addr_in_show IFACE ADDR
    tk_ctl --json show dev "$1" 2>/dev/null | python3 -c '
import json,sys; e=json.load(sys.stdin)["entries"][0]; sys.exit(sys.argv[1] not in e["addresses"])' "$2"
}

# RFC 5952 spelling, as both ip and tokend print it: 2001:db8:1:0:1a:2b:3c:4d
A1=$(tk_canon 2001:db8:1::1a:2b:3c:4d)
A2=$(tk_canon 2001:db8:1::99)
tk_eventually 20 "kernel formed $A1 by SLAAC (DAD done)" has_addr host0 "$A1"
ip -n "$TK_NS" -6 addr show dev host0 | sed 's/^/#   /'
tk_check "no EUI-64 global address besides it" \
    [ "$(ip -n "$TK_NS" -6 addr show dev host0 scope global | grep -c 'inet6 2001:db8:1:')" -eq 1 ]
tk_eventually 5 "tokenctl show lists $A1 in addresses" addr_in_show host0 "$A1"
tk_check "entry applied" tk_state_is host0 applied
tk_check "kernel_token in show" [ "$(tk_entry_field host0 kernel_token)" = ::1a:2b:3c:4d ]

# After a restart tokend finds the address in its first read of the kernel.
tk_stop
tk_start || exit 1
tk_eventually 5 "after a restart show still lists $A1" addr_in_show host0 "$A1"

# --- a new token forms a new address --------------------------------------------
sed -i 's/^host0 = .*/host0 = ::99/' "$TK_CONF"
tk_check "SIGHUP with host0 = ::99" tk_reload
tk_eventually 5 "kernel token now ::99" tk_token_is host0 ::99
tk_eventually 20 "kernel formed $A2 (DAD done)" has_addr host0 "$A2"
tk_eventually 5 "tokenctl show lists $A2" addr_in_show host0 "$A2"
ip -n "$TK_NS" -6 addr show dev host0 scope global | sed 's/^/#   /'
tk_eventually 5 "the kernel dropped the old tokenized address" \
    bash -c "! ip -n '$TK_NS' -6 addr show dev host0 | grep -qF '$A1/'"
tk_eventually 5 "the old tokenized address is gone from show" \
    bash -c "! '$TOKENCTL' --socket '$TK_SOCK' --json show dev host0 | grep -q '$A1'"

kill "$RADVD_PID" 2>/dev/null; wait "$RADVD_PID" 2>/dev/null
tk_done
