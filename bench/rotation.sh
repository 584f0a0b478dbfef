#!/bin/bash
# Key rotation at scale: 1,000 associations rotating by the clock in the
# same period, inside User-Mode Linux (the host kernel has no ESP). Run as
# root:
#
#   bash bench/rotation.sh
#
# Builds tokend, runs bench/uml_rotation_scenario.sh in UML and prints:
# the daemon's CPU time per rotation (its CPU over two periods with the
# short lifetime, minus the same span with a lifetime of a day, divided by
# the rotations made), how the rotations spread over the period (lateness
# after each association's own boundary; how many fall in one millisecond
# and in each tenth of the period), and next to it the CPU time iproute2
# takes for the same kernel requests (`ip -batch`, and one process per
# request as a shell loop would). Figures only; nothing passes or fails.
#
# Exit status: 0; 77 when UML is missing or not root (a loud SKIP); 1 when
# something broke.
#
# Environment: BENCH_BUILD_DIR (default build-bench), ROT_BENCH_ASSOCS
# (1000), ROT_BENCH_LIFETIME (20 s), ROT_BENCH_PERIODS (2),
# ROT_BENCH_SKIP_BUILD=1 (use the binaries in BENCH_BUILD_DIR).
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$SRC/build-bench}
N=${ROT_BENCH_ASSOCS:-1000}
L=${ROT_BENCH_LIFETIME:-20}
P=${ROT_BENCH_PERIODS:-2}
UML_LINUX=${UML_LINUX:-/usr/bin/linux.uml}

skip() {
    echo "************************************************************************" >&2
    echo "SKIP: $* -- the rotation benchmark (bench/rotation.sh) did not run" >&2
    echo "************************************************************************" >&2
    exit 77
}
[ -x "$UML_LINUX" ] || skip "User-Mode Linux (package user-mode-linux) is not installed"
[ "$(id -u)" -eq 0 ] || skip "needs root"
if [ "${ROT_BENCH_SKIP_BUILD:-0}" != 1 ]; then
    cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
        cmake --build "$BUILD" -j "$(nproc)" --target tokend >/dev/null ||
        { echo "rotation.sh: build failed" >&2; exit 1; }
fi
OUT=$(mktemp /tmp/tokend-rotbench.XXXXXX)
trap 'rm -f "$OUT"' EXIT
timeout=$(( 300 + 4 * (P + 1) * L + N / 5 ))
UML_TIMEOUT=$timeout UML_MEM=${UML_MEM:-1G} "$SRC/tests/uml/run.sh" \
    "$SRC/bench/uml_rotation_scenario.sh" "$BUILD/daemon/tokend" "$N" "$L" "$P" | tee "$OUT"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || { echo "rotation.sh: the scenario failed ($rc)" >&2; exit 1; }
fig() { sed -n "s/^figure $1=//p" "$OUT" | tail -n 1; }
rot=$(fig short_rotations); cs=$(fig short_cpu_ms); cl=$(fig long_cpu_ms)
ipb=$(fig ip_batch_cpu_us); ipp=$(fig ip_proc100_cpu_us)
awk -v n="$N" -v L="$L" -v p="$P" -v rot="$rot" -v cs="$cs" -v cl="$cl" -v ipb="$ipb" \
    -v ipp="$ipp" -v lm="$(fig late_median_ms)" -v l99="$(fig late_p99_ms)" \
    -v lx="$(fig late_max_ms)" -v dm="$(fig distinct_ms)" -v mx="$(fig max_same_ms)" \
    -v te="$(fig tenths)" -v sn="$(fig spread_n)" 'BEGIN {
    per = rot ? (cs - cl) * 1000 / rot : 0
    bper = ipb / n; pper = ipp / 100
    printf "\n== rotation benchmark: %d associations, lifetime %d s, %d periods measured\n", n, L, p
    printf "%-46s %s\n", "rotations made (short lifetime)", rot
    printf "%-46s %s ms / %s ms\n", "tokend CPU, short lifetime / a day", cs, cl
    printf "%-46s %.0f us\n", "tokend CPU per rotation", per
    printf "%-46s %.0f us  (ratio ip/tokend %.2f)\n", "ip -batch CPU per rotation (4 requests)", bper, per ? bper / per : 0
    printf "%-46s %.0f us  (ratio ip/tokend %.2f)\n", "ip, a process per request, per rotation", pper, per ? pper / per : 0
    printf "%-46s median %s, p99 %s, max %s ms (%s rotations)\n", "lateness after the boundary", lm, l99, lx, sn
    printf "%-46s %s distinct, at most %s in one ms\n", "milliseconds of the period used", dm, mx
    printf "%-46s %s\n", "rotations per tenth of the period", te
}'
