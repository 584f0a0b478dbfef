#!/bin/bash
# Case T3: another manager owns the link. systemd-networkd turns accept_ra off
# on links it manages and NetworkManager has its own token setting: tokend
# says so and points at the right setting instead of fighting. Their runtime
# state is faked under a private prefix (--run-prefix), never in the host's
# /run. Also: a second tokend on the same socket refuses to start.
. "$(dirname "$0")/lib.sh"

tk_veth nd0 nd1
tk_veth nm0 nm1
tk_ns sysctl -qw net.ipv6.conf.nd0.accept_ra=0
tk_ns sysctl -qw net.ipv6.conf.nm0.accept_ra=0
RUN=$TK_TMP/prefix
mkdir -p "$RUN/run/systemd/netif/links" "$RUN/run/NetworkManager/devices"
nd_index=$(ip -n "$TK_NS" -o link show nd0 | cut -d: -f1)
nm_index=$(ip -n "$TK_NS" -o link show nm0 | cut -d: -f1)
printf 'ADMIN_STATE=configured\nNETWORK_FILE=/etc/systemd/network/10-nd0.network\n' \
    > "$RUN/run/systemd/netif/links/$nd_index"
: > "$RUN/run/NetworkManager/devices/$nm_index"

tk_conf <<EOF
[tokend]
log-level = debug
retry-max = 60s
[tokens]
nd0 = ::d
nm0 = ::e
EOF
tk_start --run-prefix "$RUN" || exit 1

tk_eventually 5 "networkd link is blocked" tk_state_is nd0 blocked
reason=$(tk_entry_field nd0 reason)
tk_check "reason names systemd-networkd" grep -q "systemd-networkd" <<<"$reason"
tk_check "reason points at Token= in .network" grep -q "Token=" <<<"$reason"
tk_check "reason keeps the kernel's words" grep -qi "router advertisement" <<<"$reason"

tk_eventually 5 "NetworkManager link is blocked" tk_state_is nm0 blocked
reason=$(tk_entry_field nm0 reason)
tk_check "reason names NetworkManager and ipv6.token" grep -q "NetworkManager.*ipv6.token" <<<"$reason"
tk_check "kernel untouched on nd0" tk_token_is nd0 ::

# Not fighting: with a long backoff, only a few attempts in a few seconds.
sleep 3
attempts=$(grep -c "RTM_SETLINK ifindex $nd_index " "$TK_LOG")
tk_check "no retry storm against the other manager ($attempts attempts)" [ "$attempts" -le 4 ]

out=$(ip netns exec "$TK_NS" "$TOKEND" --config "$TK_CONF" --socket "$TK_SOCK" \
    --state-dir "$TK_TMP/state2" 2>&1)
rc=$?
tk_check "second tokend on the same socket refuses to start" [ $rc -ne 0 ]
tk_check "and says why" grep -q "already listening" <<<"$out"
tk_check "first tokend still serves" tk_ctl_quiet status

tk_done
