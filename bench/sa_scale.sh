#!/bin/bash
# tokend holding many IPsec associations, inside User-Mode Linux (the host
# kernel has no ESP). Run as root:
#
#   bash bench/sa_scale.sh
#
# Runs bench/uml_sa_scale_scenario.sh in UML through tests/uml/run.sh and
# prints a summary:
#   - tokend's resident memory with 0 associations and with each size, and
#     the difference per 1,000 associations;
#   - `tokenctl show sa --json` (every association) against
#     `ip -json xfrm state` (the same SAs), whole processes, medians, ratio;
#   - netlink requests per sendto/sendmsg: tokend's (strace of one start)
#     next to `ip -batch`'s with the same SAs and policies.
# Figures only; nothing passes or fails on speed.
#
# Exit status: 0; 77 when UML is missing or not root (a loud SKIP); 1 when
# something broke (a run failing, tokend not coming up, wrong counts).
#
# Environment (all optional):
#   BENCH_BUILD_DIR     build directory (default: build-bench in the source tree)
#   SCALE_SIZES         association counts, 0 first (default "0 2000 10000")
#   SCALE_RUNS          timed runs per show figure (default 5, after 1 warm-up)
#   SCALE_TRACE         associations for the strace run (default 2000)
#   SCALE_SKIP_BUILD=1  use the binaries already in BENCH_BUILD_DIR (run.sh does)
#   UML_MEM             UML memory (default here 2G: 10,000 associations are
#                       30,000 SAs, each with its own AEAD transform)
#   SCALE_TIMEOUT       UML_TIMEOUT (default 1500)
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$SRC/build-bench}
SIZES=${SCALE_SIZES:-0 2000 10000}
RUNS=${SCALE_RUNS:-5}
TRACE_N=${SCALE_TRACE:-2000}
TIMEOUT=${SCALE_TIMEOUT:-1500}
UML_LINUX=${UML_LINUX:-/usr/bin/linux.uml}

skip() {
    echo "************************************************************************" >&2
    echo "SKIP: $* -- the scale benchmark (bench/sa_scale.sh) did not run" >&2
    echo "************************************************************************" >&2
    exit 77
}
[ -x "$UML_LINUX" ] || skip "User-Mode Linux (package user-mode-linux) is not installed"
[ "$(id -u)" -eq 0 ] || skip "needs root"
case " $SIZES " in " 0 "*) ;; *) echo "sa_scale.sh: SCALE_SIZES must start with 0" >&2; exit 1 ;; esac
for s in $SIZES $TRACE_N; do
    { [ "$s" -ge 0 ] && [ "$s" -le 65535 ]; } 2>/dev/null ||
        { echo "sa_scale.sh: sizes must be 0..65535" >&2; exit 1; }
done
[ "$RUNS" -ge 1 ] 2>/dev/null || { echo "sa_scale.sh: SCALE_RUNS must be at least 1" >&2; exit 1; }
if [ "${SCALE_SKIP_BUILD:-0}" != 1 ]; then
    cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
        make -C "$BUILD" -j"$(nproc)" tokend tokenctl spawn_time >/dev/null ||
        { echo "sa_scale.sh: build failed" >&2; exit 1; }
fi
OUT=$(mktemp /tmp/tokend-scale.XXXXXX)
trap 'rm -f "$OUT"' EXIT
echo "== sizes: $SIZES associations; $RUNS timed runs per show figure; strace run with $TRACE_N"
echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
UML_TIMEOUT=$TIMEOUT UML_MEM=${UML_MEM:-2G} "$SRC/tests/uml/run.sh" \
    "$SRC/bench/uml_sa_scale_scenario.sh" "$BUILD/daemon/tokend" "$BUILD/client/tokenctl" \
    "$BUILD/bench/spawn_time" "$SIZES" "$RUNS" "$TRACE_N" | tee "$OUT"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 77 ] && skip "tests/uml/run.sh skipped"

# --- summary ------------------------------------------------------------------
# val LINE KEY: KEY= in LINE.
val() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<< "$1"; }
row() { printf '%-58s %s\n' "$1" "$2"; }
calc() { awk "BEGIN { $1 }" 2>/dev/null; }
echo
echo "== scale summary (inside UML, ${UML_MEM:-2G} of memory)"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
zero=$(grep '^scale n=0 ' "$OUT" | tail -n 1)
rss0=$(val "$zero" rss_kb)
row "tokend VmRSS with 0 associations (READY, idle)" "${rss0:-n/a} kB"
for s in $SIZES; do
    [ "$s" -gt 0 ] || continue
    l=$(grep "^scale n=$s " "$OUT" | tail -n 1)
    [ -n "$l" ] || { row "$s associations" "n/a (did not run)"; continue; }
    r=$(val "$l" rss_kb)
    row "tokend VmRSS with $s associations (all up) / VmHWM" "$r kB / $(val "$l" hwm_kb) kB"
    row "  per 1,000 associations ((RSS - RSS at 0) / $s * 1000)" \
        "$(calc "printf \"%.0f kB\", ($r - $rss0) / $s * 1000")"
    st=$(val "$l" show_median_us) it=$(val "$l" ip_median_us)
    if [ -n "$st" ]; then
        row "  tokenctl show sa --json, $s associations, median" \
            "$(calc "printf \"%.1f ms\", $st / 1000") ($(val "$l" show_bytes) bytes)"
        row "  ip -json xfrm state, $((3 * s)) SAs, median" \
            "$(calc "printf \"%.1f ms\", $it / 1000") ($(val "$l" ip_bytes) bytes)"
        row "  ratio ip -json xfrm state / tokenctl show (medians)" "$(calc "printf \"%.2f\", $it / $st")"
    else
        row "  tokenctl show sa --json, $s associations" \
            "FAILS: exit $(val "$l" show_rc), $(val "$l" show_error | tr '_' ' ')"
        row "  ip -json xfrm state, $((3 * s)) SAs" "$(val "$l" ip_sas) SAs printed ($(val "$l" ip_bytes) bytes)"
    fi
done
t=$(grep '^trace tokend ' "$OUT" | tail -n 1)
b=$(grep '^trace ip_batch ' "$OUT" | tail -n 1)
if [ -n "$t" ]; then
    row "tokend, $TRACE_N associations: install sendto calls / requests" \
        "$(val "$t" install_calls) / $(val "$t" install_msgs) (at most $(val "$t" max_per_call) in one)"
    row "  requests per sendto (tokend)" \
        "$(calc "printf \"%.1f\", $(val "$t" install_msgs) / $(val "$t" install_calls)")"
fi
if [ -n "$b" ]; then
    ipcalls=$(( $(val "$b" sendmsg) + 0$(val "$b" sendto) ))
    row "ip -batch, $(val "$b" lines) lines: sendmsg+sendto calls" "$ipcalls"
    row "  requests per sendmsg (ip -batch)" \
        "$(calc "printf \"%.2f\", $(val "$b" lines) / $ipcalls")"
fi
if grep -q '^LIMIT: ' "$OUT"; then
    echo "limits found:"
    grep '^LIMIT: ' "$OUT" | sed 's/^/  /'
fi
case $rc in
    0) ;;
    *) echo "sa_scale.sh: something broke (tests/uml/run.sh exit status $rc)" >&2; exit 1 ;;
esac
exit 0
