#!/bin/bash
# The tokend demo: builds tokend, then inside a private network namespace
# (nothing on the host is touched) starts it on the default config from
# conf/, applies a token, deletes it behind tokend's back with
# `ip token del`, and shows tokend putting it back. Then, in User-Mode Linux,
# two tokend peers whose IPsec keys rotate every 4 s under a ping that loses
# nothing. Run as root.
set -eu
cd "$(dirname "$0")/.."
SRC=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
    echo "demo: run as root (it creates a network namespace)" >&2
    exit 1
fi
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null

NS=tokend-demo-$$
TMP=$(mktemp -d /tmp/tokend-demo.XXXXXX)
SOCK=$TMP/tokend.sock
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
run() {
    local shown=("$@")
    [ "$1" = ctl ] && shown[0]=build/client/tokenctl
    printf '$ %s\n' "${shown[*]}"
    "$@"
}
# The client, with the demo's socket (an installed tokend needs no --socket).
export TOKEND_SOCKET=$SOCK
ctl() { "$SRC/build/client/tokenctl" "$@"; }

say "a private network namespace $NS with a veth pair"
ip netns add "$NS"
ip -n "$NS" link add demo0 type veth peer name demo1
ip -n "$NS" link set demo0 up
ip -n "$NS" link set demo1 up
run ip -n "$NS" token list

say "tokend on conf/tokend.conf (socket and state in $TMP)"
ip netns exec "$NS" "$SRC/build/daemon/tokend" --config "$SRC/conf/tokend.conf" \
    --socket "$SOCK" --state-dir "$TMP/state" 2> "$TMP/tokend.log" &
PID=$!
for _ in $(seq 100); do ctl status >/dev/null 2>&1 && break; sleep 0.05; done

say "apply a token"
run ctl add ::1a:2b:3c:4d dev demo0
run ctl show
run ip -n "$NS" token get dev demo0

say "delete it behind tokend's back (tokend is paused so the gap shows; running, it repairs within a millisecond)"
kill -STOP "$PID"
run ip -n "$NS" token del dev demo0
run ip -n "$NS" token get dev demo0
kill -CONT "$PID"
sleep 0.3

say "tokend read the kernel's notification and put it back"
run ip -n "$NS" token get dev demo0
run ctl show

say "what tokend logged"
echo "    (the warnings about groups: this demo runs without the tokend and tokend-admin"
echo "     groups that systemd-sysusers creates on an installed system, so only root may"
echo "     use the socket here)"
sed 's/^<[0-9]>//' "$TMP/tokend.log"

if ip -n "$NS" token get dev demo0 | grep -q '::1a:2b:3c:4d'; then
    say "token demo OK: the token was restored"
else
    say "token demo FAILED: the token was not restored"
    exit 1
fi

# Part two: IPsec keys that rotate by themselves. The host kernel may lack
# ESP, so this part runs in User-Mode Linux (a real kernel as a process; its
# network is its own, nothing leaves it).
say "part two: key rotation between two peers, inside User-Mode Linux"
UML_TIMEOUT=180 tests/uml/run.sh "$SRC/scripts/demo_rotation_uml.sh"
