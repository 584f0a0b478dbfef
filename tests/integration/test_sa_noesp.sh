#!/bin/bash
# The host kernel has XFRM but no ESP. An association there gets one clear
# error naming the missing kernel support (logged once, retried with
# backoff, not in a loop); its policies are still installed, so the traffic
# meant to be protected is blocked, not sent in the clear, and the error
# says so. Also: --dry-run prints the changes and makes none.
. "$(dirname "$0")/lib.sh"

tk_veth va vb
ip -n "$TK_NS" addr add 192.0.2.1/24 dev va
ip -n "$TK_NS" addr add 192.0.2.2/24 dev vb
(umask 077; head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$TK_TMP/web.key")
tk_conf <<EOF
[tokend]
log-level = debug
[sa web]
number = 7
local = 192.0.2.1
remote = 192.0.2.9
secret = $TK_TMP/web.key
EOF

out=$(ip netns exec "$TK_NS" "$TOKEND" --config "$TK_CONF" --socket "$TK_SOCK" \
    --state-dir "$TK_STATE" --dry-run 2>/dev/null)
tk_check "dry run lists the policies it would add" grep -q "web: add policy dir out 192.0.2.1/32 -> 192.0.2.9/32" <<<"$out"
tk_check "dry run lists the SAs it would add" grep -q "web: add SA esp spi 0x01000700" <<<"$out"
tk_check "dry run never prints key bytes" bash -c "! grep -qi \"\$(cat '$TK_TMP/web.key')\" <<<'$out'"
tk_check "dry run made no change in the kernel" [ -z "$(ip -n "$TK_NS" xfrm policy)" ]
tk_check "dry run wrote no state" [ ! -e "$TK_STATE/state.json" ]

tk_start || exit 1
tk_eventually 5 "policies installed although SAs cannot be" \
    bash -c "[ \$(ip -n '$TK_NS' xfrm policy | grep -c 'dir \(in\|out\)') -eq 2 ]"
reason=$(tk_ctl --json show sa web | python3 -c 'import json,sys; a=json.load(sys.stdin)["associations"][0]; print(a["state"], a["reason"])')
tk_check "state is error" grep -q "^error " <<<"$reason"
tk_check "the reason names the missing ESP support" grep -q "lacks ESP support" <<<"$reason"
tk_check "the reason says traffic is blocked, not sent in the clear" grep -q "blocked, not sent in the clear" <<<"$reason"
tk_check "traffic to the peer is blocked by the policy" \
    bash -c "! ip netns exec '$TK_NS' ping -c 1 -W 1 -I 192.0.2.1 192.0.2.9 >/dev/null 2>&1"
sleep 3
errors=$(grep -c "^<3>web: the kernel cannot install ESP SAs" "$TK_LOG")
tk_check "the error is logged once ($errors), not per SA or per retry" [ "$errors" -eq 1 ]
attempts=$(grep -c "netlink request: web: add SA" "$TK_LOG")
tk_check "retries back off ($attempts SA requests in ~4 s)" [ "$attempts" -le 12 ]
tk_done
