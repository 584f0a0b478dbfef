#!/bin/bash
# Build the libFuzzer harnesses (tests/fuzz) with clang, ASan and UBSan in
# build-fuzz/ and run each in turn: first its regression inputs, then
# fuzzing from its seed corpus for SECONDS (default 30). Fails when any
# harness crashes, leaks, times out or trips a sanitizer; prints executions
# and coverage per harness.
#
#   scripts/fuzz.sh [SECONDS] [HARNESS...]    e.g. scripts/fuzz.sh 20 (CI)
#   scripts/fuzz.sh --long [SECONDS] [HARNESS...]
#       hours of fuzzing: SECONDS per harness (default 3600), comparison
#       value profiling on, and at the end each harness's corpus merged
#       (minimised) into build-fuzz/corpus-min/ to pick new seeds from.
#
# HARNESS: varlink, methods, config, addr, netlink (default: all). Inputs
# the fuzzers find are kept in build-fuzz/corpus/ (the seeds in tests/fuzz
# are only read); crashes go to build-fuzz/artifacts/<harness>/, logs to
# build-fuzz/logs/. Runs the fuzzers one at a time. As root, installs what
# is missing with apt-get (Debian 12).
set -eu
cd "$(dirname "$0")/.."
SRC=$(pwd)
BUILD=$SRC/build-fuzz
ALL=(varlink methods config addr netlink)

long=0
if [ "${1:-}" = "--long" ]; then
    long=1
    shift
fi
seconds=$([ "$long" = 1 ] && echo 3600 || echo 30)
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
fi
if [ $# -gt 0 ]; then
    harnesses=("$@")
else
    harnesses=("${ALL[@]}")
fi
for h in "${harnesses[@]}"; do
    [ -f "tests/fuzz/fuzz_$h.c" ] || { echo "fuzz: no harness \"$h\" (${ALL[*]})" >&2; exit 2; }
done

# --- what the build needs --------------------------------------------------
# The build packages, then clang's libFuzzer and sanitizer runtimes (not
# pulled in by clang with --no-install-recommends) and llvm-symbolizer for
# readable stack traces.
bash scripts/deps.sh
clang_major=$(clang -dumpversion 2>/dev/null | cut -d. -f1 || true)
[ -n "$clang_major" ] || { echo "fuzz: clang is not installed" >&2; exit 1; }
packages=(clang "libclang-rt-$clang_major-dev" "llvm-$clang_major")
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "fuzz: missing packages: ${missing[*]}; run as root to install them" >&2
        exit 1
    fi
    echo "fuzz: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
fuzzer_lib=$(clang -print-file-name="libclang_rt.fuzzer-$(uname -m).a")
if [ ! -f "$fuzzer_lib" ]; then
    echo "fuzz: clang $clang_major has no libFuzzer ($fuzzer_lib)" >&2
    exit 1
fi
if ! grep -q 'TOKEND_FUZZ' CMakeLists.txt || ! grep -q 'tests/fuzz' CMakeLists.txt; then
    cat >&2 <<'EOF'
fuzz: CMakeLists.txt does not build the fuzzers; it needs, after the other options:
  option(TOKEND_FUZZ "Build the libFuzzer harnesses in tests/fuzz (clang only)" OFF)
  if(TOKEND_FUZZ)
    include(tests/fuzz/flags.cmake)
  endif()
before add_subdirectory(common), and after add_subdirectory(tests):
  if(TOKEND_FUZZ)
    add_subdirectory(tests/fuzz)
  endif()
EOF
    exit 1
fi

# --- build ----------------------------------------------------------------
echo "=== build (clang $clang_major, libFuzzer, ASan + UBSan) in build-fuzz ==="
CC=clang cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTOKEND_FUZZ=ON \
    -DTOKEND_WERROR=ON >/dev/null
cmake --build "$BUILD" --target fuzzers -j "$(nproc)" >/dev/null

symbolizer=$(command -v "llvm-symbolizer-$clang_major" || command -v llvm-symbolizer || true)
export ASAN_OPTIONS=detect_leaks=1:symbolize=1:allocator_may_return_null=0${symbolizer:+:external_symbolizer_path=$symbolizer}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:symbolize=1${symbolizer:+:external_symbolizer_path=$symbolizer}

# Inputs past these sizes only slow the fuzzers down.
max_len() {
    case $1 in
    addr) echo 512 ;;
    varlink | methods) echo 16384 ;;
    *) echo 8192 ;;
    esac
}

failed=()
summary=()
for h in "${harnesses[@]}"; do
    bin=$BUILD/tests/fuzz/fuzz_$h
    seeds=$SRC/tests/fuzz/corpus/fuzz_$h
    regressions=$SRC/tests/fuzz/regressions/fuzz_$h
    work=$BUILD/corpus/fuzz_$h
    artifacts=$BUILD/artifacts/fuzz_$h
    log=$BUILD/logs/fuzz_$h.log
    mkdir -p "$work" "$artifacts" "$BUILD/logs"
    echo
    echo "=== fuzz_$h: ${seconds}s ==="

    # Every input that once failed must pass.
    if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
        if ! "$bin" -runs=0 -timeout=10 -artifact_prefix="$artifacts/" "$regressions" \
            >"$BUILD/logs/fuzz_$h.regressions.log" 2>&1; then
            echo "fuzz_$h: a regression input fails again:"
            grep -E 'ERROR|FUZZ_CHECK|SUMMARY|^    #[0-9]' "$BUILD/logs/fuzz_$h.regressions.log" | head -40
            failed+=("fuzz_$h (regressions)")
            summary+=("$(printf '%-14s %s' "fuzz_$h" "REGRESSION")")
            continue
        fi
        echo "regressions: $(ls "$regressions" | wc -l) inputs pass"
    fi

    opts=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$h")"
          -print_final_stats=1 -artifact_prefix="$artifacts/")
    [ "$long" = 1 ] && opts+=(-use_value_profile=1)
    rc=0
    "$bin" "${opts[@]}" "$work" "$seeds" >"$log" 2>&1 || rc=$?

    # "#N DONE cov: C ft: F corp: K/S ..." and the final stats.
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
    [ -n "$done_line" ] || done_line=$(grep -E '^#[0-9]+[[:space:]]+(pulse|NEW|REDUCE|INITED)' "$log" | tail -1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$done_line")
    if [ "$rc" -ne 0 ]; then
        echo "fuzz_$h FAILED (exit $rc); log: $log"
        grep -E 'ERROR|FUZZ_CHECK|SUMMARY|^    #[0-9]|Test unit written|^Base64' "$log" | head -60
        echo "reproduce: $bin <artifact>; minimise: $bin -minimize_crash=1 -max_total_time=60 <artifact>"
        echo "then keep it as tests/fuzz/regressions/fuzz_$h/<name>"
        failed+=("fuzz_$h")
        result=FAILED
    else
        result=ok
    fi
    echo "fuzz_$h: ${execs:-?} executions (${rate:-?}/s), coverage ${cov:-?} edges, ${ft:-?} features, corpus ${corp:-?}: $result"
    summary+=("$(printf '%-14s %12s %8s %7s %8s %14s  %s' "fuzz_$h" "${execs:-?}" "${rate:-?}" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result")")

    if [ "$long" = 1 ] && [ "$rc" -eq 0 ]; then
        min=$BUILD/corpus-min/fuzz_$h
        rm -rf "$min"
        mkdir -p "$min"
        "$bin" -merge=1 -timeout=10 -max_len="$(max_len "$h")" "$min" "$seeds" "$work" \
            >"$BUILD/logs/fuzz_$h.merge.log" 2>&1 || true
        echo "minimised corpus: $(ls "$min" | wc -l) inputs in $min"
    fi
done

echo
echo "=== summary (${seconds}s each) ==="
printf '%-14s %12s %8s %7s %8s %14s  %s\n' harness executions exec/s edges features corpus result
for line in "${summary[@]}"; do
    echo "$line"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
