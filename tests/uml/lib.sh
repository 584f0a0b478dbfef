# Helpers for scenarios that run inside User-Mode Linux through run.sh.
# Source it first thing:
#   . "$(dirname "$0")/lib.sh"
# It refuses to run anywhere but inside the UML lab: the helpers create
# network namespaces and interfaces, which must never happen on the host.
# shellcheck shell=bash

set -u

if [ "${UML_INSIDE:-}" != 1 ] || ! grep -q '^vendor_id.*User Mode Linux' /proc/cpuinfo 2>/dev/null; then
    echo "$(basename "$0"): this scenario runs only inside User-Mode Linux; use tests/uml/run.sh $0" >&2
    exit 2
fi

UML_PASSED=0
UML_FAILED=0
UML_BG_PIDS=()

# Documentation addresses (RFC 5737, RFC 3849) of the two peers.
UML_A4=192.0.2.1
UML_B4=192.0.2.2
UML_A6=2001:db8::1
UML_B6=2001:db8::2

# --- reporting -------------------------------------------------------------

uml_pass() { UML_PASSED=$((UML_PASSED + 1)); echo "ok - $*"; }
uml_fail() { UML_FAILED=$((UML_FAILED + 1)); echo "FAIL - $*"; }
# uml_note TEXT: a comment line in the output.
uml_note() { echo "# $*"; }

# uml_check "what" CMD...: pass if CMD succeeds; on failure its output is shown.
uml_check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        uml_pass "$what"
    else
        uml_fail "$what"
        [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/#   /'
    fi
}

# uml_check_fails "what" CMD...: pass if CMD fails.
uml_check_fails() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then uml_fail "$what"; else uml_pass "$what"; fi
}

# uml_wait SECONDS CMD...: poll until CMD succeeds (0 = it did).
uml_wait() {
    local limit=$1
    shift
    local end=$(( $(date +%s%N) + limit * 1000000000 ))
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        [ "$(date +%s%N)" -lt "$end" ] || return 1
        sleep 0.05
    done
}

# uml_eventually SECONDS "what" CMD...
uml_eventually() {
    local limit=$1 what=$2
    shift 2
    if uml_wait "$limit" "$@"; then uml_pass "$what"; else uml_fail "$what"; fi
}

# uml_done: the summary line; the status for the scenario to exit with.
#   uml_done; exit $?     (or simply end the scenario with uml_done)
uml_done() {
    echo "$UML_PASSED passed, $UML_FAILED failed"
    [ "$UML_FAILED" -eq 0 ] && [ "$UML_PASSED" -gt 0 ]
}

# --- processes ---------------------------------------------------------------

# uml_bg CMD...: start CMD in the background; it is killed when the scenario
# exits. Its pid is in $UML_BG_PID.
uml_bg() {
    "$@" &
    UML_BG_PID=$!
    UML_BG_PIDS+=("$UML_BG_PID")
}

uml_cleanup() {
    local p
    for p in "${UML_BG_PIDS[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${UML_BG_PIDS[@]}"; do
        wait "$p" 2>/dev/null
    done
    UML_BG_PIDS=()
}
trap uml_cleanup EXIT

# --- two peers ------------------------------------------------------------------

# uml_peers [A B]: network namespaces A and B (default "a" and "b") joined by
# a veth pair vA/vB (default va/vb): $UML_A4/24 and $UML_A6/64 on A,
# $UML_B4/24 and $UML_B6/64 on B, lo and the veth up, no IPv6 duplicate
# address detection so the addresses work at once. Returns non-zero (and
# says why) when something fails.
uml_peers() {
    local a=${1:-a} b=${2:-b}
    local va=v$a vb=v$b ns
    for ns in "$a" "$b"; do
        ip netns add "$ns" || { echo "uml_peers: ip netns add $ns failed" >&2; return 1; }
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 \
            net.ipv6.conf.default.accept_dad=0 >/dev/null || return 1
        ip -n "$ns" link set lo up || return 1
    done
    ip -n "$a" link add "$va" type veth peer name "$vb" netns "$b" \
        || { echo "uml_peers: veth pair failed (is veth loaded?)" >&2; return 1; }
    ip -n "$a" addr add "$UML_A4/24" dev "$va" &&
    ip -n "$a" addr add "$UML_A6/64" dev "$va" nodad &&
    ip -n "$b" addr add "$UML_B4/24" dev "$vb" &&
    ip -n "$b" addr add "$UML_B6/64" dev "$vb" nodad &&
    ip -n "$a" link set "$va" up &&
    ip -n "$b" link set "$vb" up || { echo "uml_peers: addresses/links failed" >&2; return 1; }
    # The link is up when both ends say so (veth carrier follows the peer).
    uml_wait 5 uml_link_ready "$a" "$va" && uml_wait 5 uml_link_ready "$b" "$vb" \
        || { echo "uml_peers: $va/$vb did not come up" >&2; return 1; }
}

# uml_link_ready NS DEV: DEV is up with carrier and has no tentative address.
uml_link_ready() {
    ip -n "$1" link show dev "$2" | grep -q 'state UP' &&
    ! ip -n "$1" addr show dev "$2" | grep -q tentative
}

# uml_in NS CMD...: run CMD in namespace NS.
uml_in() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# --- XFRM ---------------------------------------------------------------------

# uml_sa_bytes NS SPI / uml_sa_packets NS SPI: bytes / packets the SA with
# that SPI has carried ("lifetime current" of `ip -s xfrm state`); nothing
# when NS has no such SA.
uml_sa_bytes() { _uml_sa_current "$1" "$2" 1; }
uml_sa_packets() { _uml_sa_current "$1" "$2" 2; }
_uml_sa_current() {
    ip -n "$1" -s xfrm state | awk -v spi="$(printf '0x%08x' "$(( $2 ))")" -v field="$3" '
        /^src / { insa = 0; cur = 0 }
        index($0, "proto esp spi " spi "(") || index($0, "proto esp spi " spi " ") { insa = 1 }
        insa && /lifetime current:/ { cur = 1; next }
        insa && cur { gsub(/\([a-z]+\),?/, ""); print $field; exit }'
}

# uml_xfrm_stat NS NAME: a counter of /proc/net/xfrm_stat in NS
# (e.g. XfrmInStateProtoError).
uml_xfrm_stat() {
    ip netns exec "$1" awk -v n="$2" '$1 == n { print $2; found = 1 } END { if (!found) print 0 }' /proc/net/xfrm_stat
}

# uml_sa_count NS: how many SAs NS has.
uml_sa_count() { ip -n "$1" xfrm state | grep -c '^src '; }

# uml_xfrm_flush NS...: remove every SA and policy of each NS.
uml_xfrm_flush() {
    local ns
    for ns in "$@"; do
        ip -n "$ns" xfrm policy flush
        ip -n "$ns" xfrm state flush
    done
}

# uml_random_hex BYTES: that many random bytes as hex, for keys.
uml_random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
