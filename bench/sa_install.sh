#!/bin/bash
# Installing IPsec associations: tokend against `ip -batch`, inside
# User-Mode Linux (the host kernel has no ESP). Run as root:
#
#   bash bench/sa_install.sh
#
# Builds tokend and spawn_time, then runs bench/uml_sa_install_scenario.sh
# in UML through tests/uml/run.sh and prints a summary table:
#   (a) tokend from exec to READY=1 with the kernel empty, and (a2) until the
#       kernel holds every SA and policy;
#   (b) `ip -batch FILE` with the same SAs and policies;
#   (c) tokend restarting with the kernel already right (adoption).
# Everything XFRM happens inside UML, in a network namespace of its own;
# nothing touches the host's interfaces or XFRM state.
#
# Exit status: 0; 77 when UML is missing or not root (a loud SKIP);
# 3 when the figures were taken but tokend left the kernel wrong (missing
# objects, keys that are not the derivation, writes on a restart that should
# write nothing); 1 when something else broke (build, UML, a run failing).
#
# Environment (all optional):
#   BENCH_BUILD_DIR   build directory (default: build-bench in the source tree)
#   SA_BENCH_ASSOCS   associations (default 2000: 10,000 SAs and policies)
#   SA_BENCH_RUNS     timed runs per figure (default 3)
#   SA_BENCH_WARMUP   untimed runs before them (default 1)
#   SA_BENCH_TIMEOUT  UML_TIMEOUT, seconds for the whole UML run (default 900)
#   SA_BENCH_SKIP_BUILD=1  use the binaries already in BENCH_BUILD_DIR (run.sh does)
#   UML_KEEP=1        keep the UML work directory (logs, records; see tests/uml/README.md)

set -u

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$SRC/build-bench}
ASSOCS=${SA_BENCH_ASSOCS:-2000}
RUNS=${SA_BENCH_RUNS:-3}
WARMUP=${SA_BENCH_WARMUP:-1}
TIMEOUT=${SA_BENCH_TIMEOUT:-900}
UML_LINUX=${UML_LINUX:-/usr/bin/linux.uml}

skip() {
    {
        echo "************************************************************************"
        echo "SKIP: $*"
        echo "      the SA install benchmark (bench/sa_install.sh) did not run"
        echo "************************************************************************"
    } >&2
    exit 77
}

if [ ! -x "$UML_LINUX" ]; then
    skip "User-Mode Linux (package user-mode-linux) is not installed ($UML_LINUX not found)"
fi
[ "$(id -u)" -eq 0 ] || skip "needs root (UML's hostfs acts as the user running it)"
if ! [ "$ASSOCS" -ge 1 ] 2>/dev/null || [ "$ASSOCS" -gt 65535 ]; then
    echo "sa_install.sh: SA_BENCH_ASSOCS must be 1..65535" >&2
    exit 1
fi
[ "$RUNS" -ge 1 ] 2>/dev/null || { echo "sa_install.sh: SA_BENCH_RUNS must be at least 1" >&2; exit 1; }
[ "$WARMUP" -ge 0 ] 2>/dev/null || { echo "sa_install.sh: SA_BENCH_WARMUP must be 0 or more" >&2; exit 1; }

TMP=$(mktemp -d /tmp/tokend-sa-bench.XXXXXX) || exit 1
trap 'rm -rf "$TMP"' EXIT

if [ "${SA_BENCH_SKIP_BUILD:-0}" = 1 ]; then
    echo "== build: skipped (SA_BENCH_SKIP_BUILD=1), using $BUILD"
else
    echo "== build ($BUILD)"
    if ! cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$TMP/build.log" 2>&1 ||
       ! make -C "$BUILD" -j"$(nproc)" tokend spawn_time >> "$TMP/build.log" 2>&1; then
        tail -n 30 "$TMP/build.log" >&2
        echo "sa_install.sh: build failed" >&2
        exit 1
    fi
fi
TOKEND=$BUILD/daemon/tokend
SPAWN=$BUILD/bench/spawn_time
for f in "$TOKEND" "$SPAWN"; do
    [ -x "$f" ] || { echo "sa_install.sh: $f is missing" >&2; exit 1; }
done

CPU=$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -n 1)
UMLV=$(dpkg-query -W -f '${Version}' user-mode-linux 2>/dev/null)
IPV=$(ip -V | sed -n 's/.*\(iproute2-[^ ,]*\).*/\1/p')
MACHINE="host $(nproc) CPUs, ${CPU:-unknown CPU}, Linux $(uname -r); UML ${UMLV:-?} (1 CPU, ${UML_MEM:-512M}), ${IPV:-iproute2 ?}"
echo "== machine: $MACHINE"
echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== $ASSOCS associations, $WARMUP warm-up + $RUNS timed runs per figure, UML_TIMEOUT=$TIMEOUT"

UML_TIMEOUT=$TIMEOUT "$SRC/tests/uml/run.sh" "$SRC/bench/uml_sa_install_scenario.sh" \
    "$TOKEND" "$SPAWN" "$ASSOCS" "$RUNS" "$WARMUP" 2>&1 | tee "$TMP/out"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 77 ] && skip "tests/uml/run.sh skipped (see above)"

# --- summary ------------------------------------------------------------------
OUT=$TMP/out
# field NAME KEY: KEY= of the "figure NAME summary ..." line.
field() { sed -n "s/^figure $1 summary .*\b$2=\([^ ]*\).*/\1/p" "$OUT" | tail -n 1; }
fact() { sed -n "s/^fact $1=//p" "$OUT" | tail -n 1; }
ms() { [ -n "$1" ] && awk -v u="$1" 'BEGIN { printf "%.0f", u / 1000 }' || echo "n/a"; }
per() { [ -n "$1" ] && awk -v u="$1" -v n="$2" 'BEGIN { printf "%.1f", u / n }' || echo "n/a"; }
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }' || echo "n/a"; }
row() { printf '%-58s %s\n' "$1" "$2"; }
fig() {  # fig NAME: "median ms (min-max), cpu ms"
    local m
    m=$(field "$1" median_us)
    [ -n "$m" ] || { echo "n/a"; return; }
    echo "$(ms "$m") ms ($(ms "$(field "$1" min_us)")-$(ms "$(field "$1" max_us)")), cpu $(ms "$(field "$1" cpu_median_us)") ms"
}

OBJ=$(fact objects)
OBJ=${OBJ:-$((5 * ASSOCS))}
b=$(field batch median_us)
a=$(field cold median_us)
a2=$(field drive complete_median_us)
echo
echo "== summary"
echo "machine: $MACHINE"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$(fact associations) associations ($(fact ipv4) IPv4, $(fact ipv6) IPv6), lookahead 1:" \
     "$((3 * ASSOCS)) SAs + $((2 * ASSOCS)) policies = $OBJ objects"
row "benchmark" "figure"
row "(a) tokend exec -> READY=1, kernel empty" "$(fig cold)"
row "(a2) tokend exec -> all $OBJ objects in the kernel" \
    "$(ms "$a2") ms ($(ms "$(field drive complete_min_us)")-$(ms "$(field drive complete_max_us)")), READY=1 at $(ms "$(field drive ready_median_us)") ms in these runs"
row "(b) ip -batch, $OBJ lines, whole process" "$(fig batch)"
row "ratio ip -batch / tokend READY=1 (medians)" "$(ratio "$b" "$a")"
row "ratio ip -batch / tokend all installed (medians)" "$(ratio "$b" "$a2")"
row "per object: tokend READY / all installed / ip -batch" \
    "$(per "$a" "$OBJ") / $(per "$a2" "$OBJ") / $(per "$b" "$OBJ") us"
row "(c) restart, kernel already right: tokend exec -> READY=1" \
    "$(fig warm), $(fact warm_events) kernel notifications, $(fact warm_logged_writes) writes logged"
row "(c0) one restart over tokend's own install: exec -> READY=1" \
    "$(ms "$(sed -n 's/.*\bmedian_us=\([^ ]*\).*/\1/p' <<< "$(fact c0_figure)")") ms, $(fact c0_events) kernel notifications, $(fact c0_logged_writes) writes logged"
echo "what tokend left in the kernel after each start of (a) and (a2), warm-up included:"
fact cold_records | tr ';' '\n' | sed '/^$/d; s/^/  /'
echo "installs logged before READY=1 + after it, SAs/policies, per run (a): $(fact cold_phases)"
echo "XFRM monitor overruns logged by tokend in (a2): $(fact drive_overruns)"
echo "phases, seconds since exec (one untimed run each, log lines stamped as they come):"
sed -n 's/^phases /  /p' "$OUT"
echo "(medians of $RUNS runs after $WARMUP warm-up, min-max in brackets; cpu: the process's"
echo " user + system time, which in UML includes the kernel's work on its netlink requests)"

case $rc in
    0) ;;
    3) echo "sa_install.sh: WRONG: tokend left the kernel wrong (see WRONG lines above)" >&2 ;;
    *) echo "sa_install.sh: something broke (tests/uml/run.sh exit status $rc)" >&2; rc=1 ;;
esac
exit "$rc"
