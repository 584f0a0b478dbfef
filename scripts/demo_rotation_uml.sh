#!/bin/bash
# The rotation part of the demo, run inside User-Mode Linux by
# scripts/demo.sh (tests/uml/run.sh boots it): two tokend peers in two
# namespaces with mirror-image configs and a 4-second key lifetime, a ping
# through ESP at 20 packets a second while keys rotate, each rotation as
# the daemons log it, and the count of packets sent and received.
HERE=$(cd "$(dirname "$0")" && pwd)
export TOKEND_SRCDIR=${TOKEND_SRCDIR:-$(cd "$HERE/.." && pwd)}
. "$HERE/../tests/uml/lib.sh"
. "$HERE/../tests/uml/tokend_lib.sh"
trap 'tk_cleanup_all; uml_cleanup' EXIT

say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
SECONDS_RUN=${DEMO_SECONDS:-20}

uml_peers || exit 1
tk_secret
tk_mirror_configs demo 7 4 "lifetime = 4s" "overlap = 1s"
say "two peers: a ($UML_A4) and b ($UML_B4), each with its own tokend; a's config:"
sed 's/^/    /' "$TK_DIR/a.conf"
tk_start a && tk_start b || exit 1
uml_eventually 15 "a: association up" tk_assoc_up a demo >/dev/null || exit 1
uml_eventually 15 "b: association up" tk_assoc_up b demo >/dev/null || exit 1
say "tokenctl show sa on a"
tk_ctl a show sa
say "ping a -> b through ESP for $SECONDS_RUN s while the keys rotate every 4 s"
tk_ping_start a "$UML_B4" "$SECONDS_RUN"
while tk_ping_running; do
    sleep 1
done
tk_ping_finish
say "rotations, as a and b logged them"
for p in a b; do
    grep "rotation [0-9]*: sending moves" "$TK_DIR/$p.log" | sed "s/^<[0-9]>/    $p: /"
done
say "tokenctl show sa on b"
tk_ctl b show sa
say "ping: $TK_PING_TX sent, $TK_PING_RX received, $TK_PING_LOST lost (over $SECONDS_RUN s of keys rotating)"
echo "    (a generation is the number of lifetimes since the epoch, here 1970: both peers"
echo "     compute it from the clock, so the numbers are large and always the same on a and b)"
n=$(grep -c "rotation [0-9]*: sending moves" "$TK_DIR/a.log")
if [ "$TK_PING_LOST" -eq 0 ] && [ "$n" -ge 3 ]; then
    say "rotation demo OK: $n rotations on a, no packet lost"
else
    say "rotation demo FAILED: $n rotations on a, $TK_PING_LOST packets lost"
    exit 1
fi
