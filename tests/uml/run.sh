#!/bin/bash
# Run a test scenario inside User-Mode Linux (UML), as root in a complete
# 6.1 kernel with ESP, AES-GCM, AES-CBC+HMAC and veth, which the host kernel
# lacks.
#
#   tests/uml/run.sh SCENARIO.sh [ARGS...]
#
# The UML root is the host filesystem (hostfs, read-write), so the scenario
# can use the repository and its build directory by absolute path. The
# scenario's stdout, stderr and exit status travel back through files in a
# fresh work directory under /tmp; run.sh prints the output and exits with
# the scenario's status.
#
# Exit status: the scenario's own; 77 when UML is not installed (skip);
# 124 when the scenario did not finish within UML_TIMEOUT; 125 when UML did
# not boot or the lab could not be set up (console log shown).
#
# Environment:
#   UML_TIMEOUT=300     seconds before UML is killed and the run fails
#   UML_MEM=512M        UML memory size
#   UML_KEEP=1          keep the work directory even on success
#   UML_CONSOLE=1       print the whole UML console log at the end
#   UML_MODULES="..."   extra modules to load besides the standard set
#   UML_PASS_ENV="A B"  more variables to pass into UML (see below)
#   UML_HOST_PATHS=a:b  host paths under /tmp the scenario needs (see README)
#   UML_LINUX=path      UML kernel (default /usr/bin/linux.uml)
# Variables passed into UML as they are: TOKEND*, TOKENCTL*, UML_*, CI and
# those named in UML_PASS_ENV.
set -u

HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UML_LINUX=${UML_LINUX:-/usr/bin/linux.uml}
UML_TIMEOUT=${UML_TIMEOUT:-300}
UML_MEM=${UML_MEM:-512M}

say() { echo "uml: $*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

if [ $# -lt 1 ]; then
    echo "usage: $0 SCENARIO.sh [ARGS...]" >&2
    exit 2
fi

if [ ! -x "$UML_LINUX" ]; then
    {
        echo "************************************************************************"
        echo "SKIP: User-Mode Linux (package user-mode-linux) is not installed; the IPsec tests cannot run"
        echo "      ($UML_LINUX not found; install it with: apt-get install user-mode-linux)"
        echo "************************************************************************"
    } >&2
    exit 77
fi
for tool in modprobe ip setsid; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ] && [ ! -x "/sbin/$tool" ]; then
        say "FAIL: '$tool' is missing on the host (packages kmod, iproute2, util-linux)"
        exit 125
    fi
done
if [ "$(id -u)" -ne 0 ]; then
    # hostfs works as the user who runs UML: as non-root the scenario could
    # not write most of what it needs to.
    echo "SKIP: the UML tests need root (hostfs acts as the user running UML)" >&2
    exit 77
fi
case $UML_TIMEOUT in ''|*[!0-9]*) say "UML_TIMEOUT must be whole seconds, not '$UML_TIMEOUT'"; exit 2 ;; esac

SCENARIO=$1
shift
if [ ! -f "$SCENARIO" ]; then
    say "FAIL: no scenario file '$SCENARIO'"
    exit 2
fi
SCENARIO=$(cd "$(dirname "$SCENARIO")" && pwd)/$(basename "$SCENARIO")

# Paths end up on the kernel command line, which splits on spaces.
case "$HARNESS_DIR" in *[[:space:]]*)
    say "FAIL: the harness path '$HARNESS_DIR' has white space; UML's init= cannot take it"
    exit 125 ;;
esac

WORK=$(mktemp -d /tmp/tokend-uml.XXXXXX) || { say "FAIL: mktemp"; exit 125; }
chmod 755 "$WORK"
UMID=tokend-$(basename "$WORK" | sed 's/^tokend-uml\.//')-$$
RESULTS=$WORK/results
mkdir -p "$RESULTS"
CONSOLE=$WORK/console.log

# What init.sh inside UML runs: everything shell-quoted in one file, so
# arguments and paths with any characters survive.
{
    printf 'UML_SCENARIO=%q\n' "$SCENARIO"
    printf 'UML_ARGS=('
    for a in "$@"; do printf ' %q' "$a"; done
    printf ' )\n'
    printf 'UML_CWD=%q\n' "$PWD"
    printf 'UML_MODULES_EXTRA=%q\n' "${UML_MODULES:-}"
    printf 'UML_TIMEOUT_S=%q\n' "$UML_TIMEOUT"
    # Host paths under /tmp that must stay visible once /tmp is a tmpfs
    # inside UML: the harness, the scenario, the cwd, the work directory,
    # any passed variable holding such a path, and UML_HOST_PATHS.
    printf 'UML_HOST_TMP_PATHS=('
    {
        printf '%s\n' "$HARNESS_DIR" "$SCENARIO" "$PWD" "$WORK"
        tr ':' '\n' <<<"${UML_HOST_PATHS:-}"
    } | grep '^/tmp/' | while IFS= read -r p; do printf ' %q' "$p"; done
    printf ' )\n'
    passed=()
    while IFS= read -r name; do
        case $name in
            TOKEND*|TOKENCTL*|UML_*|CI) passed+=("$name") ;;
        esac
    done < <(compgen -e)
    for name in ${UML_PASS_ENV:-}; do passed+=("$name"); done
    for name in "${passed[@]}"; do
        case $name in UML_TIMEOUT|UML_LINUX|UML_MEM|UML_PASS_ENV|UML_HOST_PATHS|UML_KEEP|UML_CONSOLE|UML_MODULES) continue ;; esac
        [ -n "${!name+x}" ] || continue
        printf 'export %s=%q\n' "$name" "${!name}"
        case ${!name} in /tmp/*) printf 'UML_HOST_TMP_PATHS+=(%q)\n' "${!name}" ;; esac
    done
} > "$WORK/job.sh"

UML_PID=
cleanup_uml() {
    # Stop UML and every host process of this instance. UML's helpers stay
    # in the process group setsid gave it (the group id is UML's pid), and
    # outlive a SIGKILLed kernel, so the whole group is swept, by pid.
    [ -n "$UML_PID" ] || return 0
    if kill -0 "$UML_PID" 2>/dev/null; then
        kill -TERM "$UML_PID" 2>/dev/null   # UML shuts down cleanly on TERM
        for _ in $(seq 50); do kill -0 "$UML_PID" 2>/dev/null || break; sleep 0.1; done
    fi
    local left
    left=$(pgrep -g "$UML_PID" 2>/dev/null | tr '\n' ' ')
    if [ -n "$left" ]; then
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null
        sleep 0.2
        left=$(pgrep -g "$UML_PID" 2>/dev/null | tr '\n' ' ')
        [ -z "$left" ] || say "WARNING: UML processes still alive after SIGKILL: $left"
    fi
    wait "$UML_PID" 2>/dev/null
    UML_PID=
}
on_signal() {
    say "interrupted: stopping UML (work directory kept: $WORK)"
    cleanup_uml
    exit 130
}
trap cleanup_uml EXIT
trap on_signal INT TERM HUP

T0=$(now)
# umid + uml_dir keep UML's own per-instance files (pid, mconsole socket) in
# this run's work directory, so parallel runs never collide in ~/.uml.
# UML's memory file goes to /dev/shm when TMPDIR is unset.
env -u TMPDIR -u TMP -u TEMP setsid "$UML_LINUX" \
    mem="$UML_MEM" rootfstype=hostfs rootflags=/ rw \
    init="$HARNESS_DIR/init.sh" \
    con=null con0=fd:0,fd:1 \
    umid="$UMID" uml_dir="$WORK" \
    UML_WORK="$WORK" \
    </dev/null >"$CONSOLE" 2>&1 &
UML_PID=$!

timed_out=0
deadline=$(( $(date +%s) + UML_TIMEOUT ))
while kill -0 "$UML_PID" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        timed_out=1
        break
    fi
    sleep 0.2
done
if [ $timed_out -eq 1 ]; then
    cleanup_uml
else
    wait "$UML_PID"
    uml_rc=$?
    UML_PID_DONE=$UML_PID
    UML_PID=
    # The kernel is gone; make sure none of its helpers is.
    left=$(pgrep -g "$UML_PID_DONE" 2>/dev/null | tr '\n' ' ')
    if [ -n "$left" ]; then
        say "WARNING: UML left processes behind ($left); killing them"
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null
    fi
fi
T1=$(now)

show_console() {
    local n=${1:-}
    if [ -n "$n" ]; then
        echo "--- UML console log (last $n lines of $CONSOLE) ---" >&2
        tail -n "$n" "$CONSOLE" >&2
    else
        echo "--- UML console log ($CONSOLE) ---" >&2
        cat "$CONSOLE" >&2
    fi
    echo "--- end of console log ---" >&2
}

# The scenario's output, whatever happened.
[ -f "$RESULTS/stdout" ] && cat "$RESULTS/stdout"
[ -f "$RESULTS/stderr" ] && cat "$RESULTS/stderr" >&2

timing=""
if [ -f "$RESULTS/timing" ]; then
    # shellcheck disable=SC1091
    . "$RESULTS/timing"   # boot=, setup=, scenario= (seconds of UML uptime)
    timing="boot ${boot:-?} s, setup ${setup:-?} s, scenario ${scenario:-?} s, "
fi
timing="${timing}total $(elapsed "$T0" "$T1") s"

if grep -qE '^(Kernel panic|BUG:|WARNING:|Oops|general protection)' "$CONSOLE"; then
    say "WARNING: the UML kernel logged a panic/BUG/WARNING:"
    grep -E -A5 '^(Kernel panic|BUG:|WARNING:|Oops|general protection)' "$CONSOLE" | head -40 >&2
fi

rc=
if [ -f "$RESULTS/timeout" ]; then
    say "FAIL: timeout: the scenario did not finish within UML_TIMEOUT=${UML_TIMEOUT} s (it had $(cat "$RESULTS/timeout") s after boot); it was killed"
    if [ -f "$RESULTS/ps.txt" ]; then
        echo "--- processes inside UML at the timeout ---" >&2
        cat "$RESULTS/ps.txt" >&2
    fi
    rc=124
elif [ $timed_out -eq 1 ]; then
    say "FAIL: timeout: UML did not finish within UML_TIMEOUT=${UML_TIMEOUT} s and was killed (the scenario's output above may be incomplete: it was not synced)"
    show_console 40
    rc=124
elif [ -f "$RESULTS/setup-error" ]; then
    say "FAIL: the lab could not be set up inside UML: $(cat "$RESULTS/setup-error")"
    [ -f "$RESULTS/setup.log" ] && { echo "--- setup log ---" >&2; cat "$RESULTS/setup.log" >&2; }
    show_console
    rc=125
elif [ ! -f "$RESULTS/status" ]; then
    if [ -f "$RESULTS/started" ]; then
        say "FAIL: UML stopped (exit status $uml_rc) while the scenario was running; no status was reported"
        show_console 60
    else
        say "FAIL: UML did not boot to the scenario (exit status $uml_rc)"
        show_console
    fi
    rc=125
else
    rc=$(cat "$RESULTS/status")
    case $rc in
        ''|*[!0-9]*) say "FAIL: unreadable status '$rc'"; show_console 40; rc=125 ;;
    esac
fi

[ "${UML_CONSOLE:-0}" = 1 ] && show_console
say "$(basename "$SCENARIO"): exit status $rc ($timing)"
if { [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ]; } && [ "${UML_KEEP:-0}" != 1 ]; then
    rm -rf "$WORK"
else
    say "work directory kept: $WORK"
fi
exit "$rc"
