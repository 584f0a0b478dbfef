#!/bin/bash
# Every test tokend has: installs what is missing, builds with gcc and clang
# (warnings are errors), runs the unit tests plainly, under ASan+UBSan and
# under valgrind, the libFuzzer harnesses briefly, then the integration tests
# on the real kernel in private network namespaces (and once more with the
# daemon under ASan+UBSan) and the IPsec tests in User-Mode Linux, then the
# benchmarks in their short form. Run as root on Debian 12.
set -eu
cd "$(dirname "$0")/.."
SRC=$(pwd)
JOBS=$(nproc)

bash scripts/deps.sh

step() { printf '\n=== %s ===\n' "$*"; }

step "build (gcc, -Werror)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTOKEND_WERROR=ON >/dev/null
cmake --build build -j "$JOBS"

step "build (clang, -Werror)"
CC=clang cmake -S . -B build-clang -DCMAKE_BUILD_TYPE=Debug -DTOKEND_WERROR=ON >/dev/null
cmake --build build-clang -j "$JOBS"

step "build (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTOKEND_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$JOBS"

step "unit tests under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan -L unit --output-on-failure

step "unit tests under valgrind"
for t in build/tests/test_*; do
    [ -x "$t" ] || continue
    CK_FORK=no valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
        "$t" >/dev/null || { echo "valgrind: $t failed"; exit 1; }
    echo "valgrind clean: $(basename "$t")"
done

step "fuzzing: seeds and regressions, then 20 s per harness (scripts/fuzz.sh)"
bash scripts/fuzz.sh 20

step "unit and integration tests"
ctest --test-dir build --output-on-failure

# The host-side integration suite once more, with the daemon and client
# built with ASan + UBSan (not the UML tests: UML's address space is too
# small for ASan's shadow; not valgrind/strace-based tests, which cannot run
# an ASan binary). Any sanitizer report in a daemon's log fails its test.
step "integration tests with the daemon under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan -L integration -E 'valgrind|sandbox|install' --output-on-failure

# The performance suite in its short form: small counts, figures printed,
# never a pass/fail on speed; it fails only when something broke (tokend
# not coming up, the kernel left wrong). `bash bench/run.sh` is the full
# suite (docs/performance.md).
step "benchmarks, short form (bench/run.sh --quick)"
bash bench/run.sh --quick
