#!/bin/bash
# tokend benchmarks against iproute2. Run as root:
#
#   bash bench/run.sh
#
# Builds what it needs, then runs, each in a network namespace of its own:
#   1. drift repair: a token deleted behind tokend's back, until it is back;
#      next to it, one `ip token set` as a whole process;
#   2. start: tokend from exec to READY=1 with 500 tokens to apply, against
#      `ip -n NS -batch` with the same 500 lines; and a restart with the
#      kernel already right;
#   2b. tokens at scale, in the same namespace: tokend's resident memory with
#      10,000 tokens declared (500 on the veths, the rest on interfaces that
#      do not exist) against none, per 1,000; and its exec -> READY=1 with them;
#   3. IPsec: bench/sa_install.sh (2000 associations, inside User-Mode Linux;
#      skipped with a loud SKIP when UML is not installed);
#   4. rotation: bench/rotation.sh (1000 associations rotating in one period,
#      inside User-Mode Linux);
#   5. associations at scale: bench/sa_scale.sh (inside User-Mode Linux):
#      memory per 1,000 associations, `tokenctl show sa --json` against
#      `ip -json xfrm state` for 10,000 associations, netlink requests per
#      sendmsg, tokend's and ip -batch's.
# Ends with one summary table of every figure and ratio.
# Prints figures, never pass/fail; exits 0 unless something broke.
#
#   bash bench/run.sh --quick    (or BENCH_QUICK=1): the short form, small
#   counts, every section, about 3-4 minutes on 2 cores: for CI. It fails
#   only when something broke, never on a timing.
#
# Environment (all optional):
#   BENCH_BUILD_DIR  build directory (default: build-bench in the source tree)
#   BENCH_EVENTS     drift-repair events (default 1000, at least 500)
#   BENCH_RUNS       timed runs per start figure (default 5)
#   BENCH_PAIRS      veth pairs for the start benchmark (default 250: 500 interfaces)
#   BENCH_TOKENS     tokens declared for the memory figure (default 10000)
#   BENCH_QUICK      1: the short form (as --quick)
# and those of bench/sa_install.sh, bench/rotation.sh and bench/sa_scale.sh.
#   BENCH_KEEP       1: keep the temporary directory (logs, configs) at the end

set -u

QUICK=${BENCH_QUICK:-0}
for arg in "$@"; do
    case $arg in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument '$arg' (only --quick)" >&2; exit 2 ;;
    esac
done
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$SRC/build-bench}
# The short form: every section with small counts (explicit settings win).
if [ "$QUICK" = 1 ]; then
    EVENTS=${BENCH_EVENTS:-500}
    RUNS=${BENCH_RUNS:-3}
    PAIRS=${BENCH_PAIRS:-50}
    TOKENS_N=${BENCH_TOKENS:-2000}
    export SA_BENCH_ASSOCS=${SA_BENCH_ASSOCS:-200} SA_BENCH_RUNS=${SA_BENCH_RUNS:-1}
    export SA_BENCH_WARMUP=${SA_BENCH_WARMUP:-1} SA_BENCH_TIMEOUT=${SA_BENCH_TIMEOUT:-300}
    export ROT_BENCH_ASSOCS=${ROT_BENCH_ASSOCS:-100} ROT_BENCH_LIFETIME=${ROT_BENCH_LIFETIME:-4}
    export ROT_BENCH_PERIODS=${ROT_BENCH_PERIODS:-1}
    export SCALE_SIZES=${SCALE_SIZES:-0 200} SCALE_RUNS=${SCALE_RUNS:-3}
    export SCALE_TRACE=${SCALE_TRACE:-200} SCALE_TIMEOUT=${SCALE_TIMEOUT:-300}
else
    EVENTS=${BENCH_EVENTS:-1000}
    RUNS=${BENCH_RUNS:-5}
    PAIRS=${BENCH_PAIRS:-250}
    TOKENS_N=${BENCH_TOKENS:-10000}
fi
KEEP=${BENCH_KEEP:-0}

TOKEND=$BUILD/daemon/tokend
TOKENCTL=$BUILD/client/tokenctl
PROBE=$BUILD/bench/repair_latency
SPAWN=$BUILD/bench/spawn_time
WATCH=$BUILD/bench/ifinfo_watch

NS_LAT=tkbench-lat-$$
NS_START=tkbench-start-$$
TMP=
BROKEN=0
TOKEND_PID=
WATCH_PID=
WATCH_COUNT=

# Figures for the summary; "n/a" until measured.
declare -A FIG

die() { echo "run.sh: $*" >&2; exit 1; }
broke() { BROKEN=1; echo "run.sh: BROKEN: $*" >&2; }

# shellcheck disable=SC2317  # called from the traps
cleanup() {
    local ns
    trap - EXIT INT TERM
    [ -n "$TOKEND_PID" ] && kill -9 "$TOKEND_PID" 2>/dev/null
    [ -n "$WATCH_PID" ] && kill -9 "$WATCH_PID" 2>/dev/null
    # Only our own namespaces, and only the processes inside them.
    for ns in "$NS_LAT" "$NS_START"; do
        if ip netns list 2>/dev/null | grep -qw -- "$ns"; then
            ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
            ip netns del "$ns" 2>/dev/null
        fi
    done
    if [ -n "$TMP" ]; then
        if [ "$KEEP" = 1 ] || [ "$BROKEN" = 1 ]; then
            echo "run.sh: logs and configs kept in $TMP" >&2
        else
            rm -rf "$TMP"
        fi
    fi
}
trap cleanup EXIT
# Interrupted: not broken, so the temporary directory goes too (BENCH_KEEP=1 keeps it).
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
[ "$EVENTS" -ge 500 ] 2>/dev/null || die "BENCH_EVENTS must be at least 500"
[ "$RUNS" -ge 1 ] 2>/dev/null || die "BENCH_RUNS must be at least 1"
if ! [ "$PAIRS" -ge 1 ] 2>/dev/null || [ "$PAIRS" -gt 9999 ]; then
    die "BENCH_PAIRS must be 1..9999"
fi
command -v ip >/dev/null || die "iproute2 (ip) is missing"

TMP=$(mktemp -d /tmp/tokend-bench.XXXXXX) || die "cannot create a temporary directory"
chmod 755 "$TMP"

# --- build ------------------------------------------------------------------

echo "== build ($BUILD)"
if ! cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$TMP/build.log" 2>&1 ||
   ! make -C "$BUILD" -j"$(nproc)" tokend tokenctl repair_latency spawn_time ifinfo_watch \
       >> "$TMP/build.log" 2>&1; then
    tail -n 30 "$TMP/build.log" >&2
    BROKEN=1
    die "build failed (log: $TMP/build.log)"
fi

# --- helpers ----------------------------------------------------------------

# summary_field FILE KEY: the value of KEY= on the "summary" line of FILE.
summary_field() {
    sed -n 's/^summary .*\b'"$2"'=\([^ ]*\).*/\1/p' "$1" | tail -n 1
}

# figs NAME FILE: FIG[NAME_min], FIG[NAME_median], FIG[NAME_max], FIG[NAME_cpu_median],
# FIG[NAME_sys_median] from spawn_time's summary.
figs() {
    local k
    for k in min median max cpu_median sys_median; do
        FIG[$1_$k]=$(summary_field "$2" "${k}_us")
    done
}

# ms MICROSECONDS: milliseconds with two decimals.
ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }

# ns_new NAME: a namespace with loopback up.
ns_new() {
    ip netns add "$1" || return 1
    ip -n "$1" link set lo up
}

# tokend_wait SOCKET: until tokend answers on its socket (10 s).
tokend_wait() {
    local i
    for i in $(seq 200); do
        "$TOKENCTL" --socket "$1" status >/dev/null 2>&1 && return 0
        kill -0 "$TOKEND_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# tokend_stop: SIGTERM the tokend we started in the background, and reap it.
tokend_stop() {
    [ -n "$TOKEND_PID" ] || return 0
    kill -TERM "$TOKEND_PID" 2>/dev/null
    wait "$TOKEND_PID" 2>/dev/null
    TOKEND_PID=
}

# watch_start NS FILE: count the kernel's IPv6 ifinfo notifications in NS (one per
# token write it accepts) into FILE, from now until watch_stop. It runs during
# every start series, tokend's and iproute2's alike, so that each pays for one
# more notification listener.
watch_start() {
    local i
    ip netns exec "$1" "$WATCH" > "$2" 2>&1 &
    WATCH_PID=$!
    for i in $(seq 100); do
        grep -q '^ready' "$2" 2>/dev/null && return 0
        sleep 0.02
    done
    return 1
}

# watch_stop FILE: stop the counter and set WATCH_COUNT ("" if it failed).
# Not to be called in a subshell: only this shell can wait for the counter.
watch_stop() {
    local st
    WATCH_COUNT=
    [ -n "$WATCH_PID" ] || return 0
    kill -TERM "$WATCH_PID" 2>/dev/null
    wait "$WATCH_PID" 2>/dev/null
    st=$?
    WATCH_PID=
    WATCH_COUNT=$(summary_field "$1" ifinfo_events)
    if [ -z "$WATCH_COUNT" ]; then
        echo "run.sh: ifinfo_watch gave no count (exit status $st): $(tr '\n' ' ' < "$1")" >&2
    fi
}

# writes_line COUNT EXPECTED WHAT: report the kernel's count of token writes.
writes_line() {
    echo "token writes the kernel reported: ${1:-n/a} (expected $2: $3)"
    [ "${1:-x}" = "$2" ] || broke "unexpected number of token writes: ${1:-n/a}, expected $2"
}

# stats NAME VALUE...: FIG[NAME_min], FIG[NAME_median], FIG[NAME_max] (the
# lower median for an even count, as spawn_time does).
stats() {
    local name=$1 sorted
    shift
    [ $# -gt 0 ] || return 0
    sorted=$(printf '%s\n' "$@" | sort -g)
    FIG[${name}_min]=$(head -n 1 <<< "$sorted")
    FIG[${name}_max]=$(tail -n 1 <<< "$sorted")
    FIG[${name}_median]=$(sed -n "$(( ($# + 1) / 2 ))p" <<< "$sorted")
}

# --- 1. drift-repair latency ------------------------------------------------

bench_repair() {
    local dir=$TMP/repair conf window="" w token=::1a:2b:3c:4d out writes deletes k
    mkdir -p "$dir"
    conf=$dir/tokend.conf

    ns_new "$NS_LAT" || { broke "cannot create namespace $NS_LAT"; return; }
    if ! ip -n "$NS_LAT" link add lat0 type veth peer name lat1 ||
       ! ip -n "$NS_LAT" link set lat0 up || ! ip -n "$NS_LAT" link set lat1 up; then
        broke "cannot create the veth pair in $NS_LAT"
        return
    fi

    # Contest protection counts repairs within contest-window; with a window
    # shorter than the pause between events no two repairs ever share one, so
    # the entry never becomes contested. Take the smallest window the parser
    # accepts.
    for w in 1ms 2ms 5ms 10ms 100ms 1s; do
        printf '[tokend]\ncontest-window = %s\nlog-level = info\n[tokens]\nlat0 = %s\n' \
            "$w" "$token" > "$conf"
        if "$TOKEND" --check-config --config "$conf" > "$dir/check.log" 2>&1; then
            window=$w
            break
        fi
    done
    if [ -z "$window" ]; then
        cat "$dir/check.log" >&2
        broke "tokend refuses every contest-window"
        return
    fi
    FIG[window]=$window
    echo "contest-window = $window (the smallest of 1ms 2ms 5ms 10ms 100ms 1s the parser accepts)"

    ip netns exec "$NS_LAT" "$TOKEND" --config "$conf" --socket "$dir/tokend.sock" \
        --state-dir "$dir/state" > "$dir/tokend.log" 2>&1 &
    TOKEND_PID=$!
    if ! tokend_wait "$dir/tokend.sock"; then
        broke "tokend did not come up (log: $dir/tokend.log)"
        return
    fi

    out=$dir/probe.out
    # The kernel's count of token writes: one more notification listener,
    # a microsecond or two per event at most.
    watch_start "$NS_LAT" "$dir/watch.out" || broke "ifinfo_watch did not start"
    ip netns exec "$NS_LAT" "$PROBE" -i lat0 -t "$token" -n "$EVENTS" -W 10 -p 2000 -w 2000 \
        > "$out" 2> "$dir/probe.err"
    local rc=$?
    watch_stop "$dir/watch.out"
    writes=$WATCH_COUNT
    cat "$out" "$dir/probe.err"
    [ $rc -eq 0 ] || broke "repair_latency failed (exit $rc)"
    for k in events misses overruns min_us median_us p90_us p99_us max_us; do
        FIG[rep_$k]=$(summary_field "$out" "$k")
    done
    deletes=$(( ${FIG[rep_events]:-0} + ${FIG[rep_misses]:-0} + ${FIG[rep_overruns]:-0} + 10 ))
    # Two witnesses of what tokend did: the kernel's count of token writes
    # (each delete and each restore is one), and tokend's log (each drift
    # it noticed is one "restoring" line).
    FIG[rep_writes]=${writes:-n/a}
    FIG[rep_deletes]=$deletes
    FIG[rep_noticed]=$(grep -c "restoring" "$dir/tokend.log")
    echo "$deletes deletes (warm-up included); token writes the kernel reported:" \
         "${writes:-n/a} (expected $((2 * deletes)): each delete and its repair);" \
         "drifts tokend logged: ${FIG[rep_noticed]}"
    [ -n "$writes" ] || broke "no count of token writes during the repair benchmark"
    if grep -q "contested" "$dir/tokend.log"; then
        broke "the entry became contested during the run (log: $dir/tokend.log)"
    fi
    if ! kill -0 "$TOKEND_PID" 2>/dev/null; then
        broke "tokend died during the repair benchmark (log: $dir/tokend.log)"
        TOKEND_PID=
    fi

    # One iproute2 command for comparison: fork/exec of ip, its netlink
    # request and ack, on the other end of the pair (tokend does not hold it).
    echo
    echo "ip token set (whole process, inside the namespace), 100 runs:"
    ip netns exec "$NS_LAT" "$SPAWN" -n 100 -W 5 -- ip token set ::5:0:0:1 dev lat1 \
        > "$dir/ipset.out" 2>&1 || broke "timing ip token set failed"
    tail -n 1 "$dir/ipset.out"
    figs ipset "$dir/ipset.out"
    tokend_stop
}

# --- 2. applying tokens at start --------------------------------------------

bench_start() {
    local dir=$TMP/start n=$((PAIRS * 2)) i conf sock state log writes
    mkdir -p "$dir"
    conf=$dir/tokend.conf sock=$dir/tokend.sock state=$dir/state log=$dir/tokend.log

    ns_new "$NS_START" || { broke "cannot create namespace $NS_START"; return; }

    # The interfaces, the config and the three ip -batch files, from one list.
    : > "$dir/links.batch"
    printf '[tokend]\nlog-level = info\n[tokens]\n' > "$conf"
    : > "$dir/set.batch"
    : > "$dir/clear.batch"
    : > "$dir/expected"
    for i in $(seq 0 $((PAIRS - 1))); do
        echo "link add tb${i}a type veth peer name tb${i}b" >> "$dir/links.batch"
        for end in a:1 b:2; do
            local ifn=tb${i}${end%%:*} tok=::cafe:${i}:0:${end##*:}
            echo "link set $ifn up" >> "$dir/links.batch"
            echo "$ifn = $tok" >> "$conf"
            echo "token set $tok dev $ifn" >> "$dir/set.batch"
            echo "token del dev $ifn" >> "$dir/clear.batch"
            # What `ip token list` prints (the decimal digits read as hex
            # groups, which inet_ntop prints back the same way).
            echo "token $tok dev $ifn" >> "$dir/expected"
        done
    done
    sed 's/^token \S* /token :: /' "$dir/expected" > "$dir/expected-clear"

    echo "creating $n veth interfaces in $NS_START"
    ip -n "$NS_START" -batch "$dir/links.batch" ||
        { broke "cannot create the veth interfaces"; return; }
    # Let duplicate address detection of the link-local addresses finish so
    # that every run meets the same kernel state (a token set on a link with
    # a usable link-local address also sends a router solicitation).
    for i in $(seq 100); do
        # (A dump racing with address changes complains; harmless here.)
        [ -z "$(ip -n "$NS_START" -6 addr show tentative 2>/dev/null)" ] && break
        sleep 0.1
    done
    "$TOKEND" --check-config --config "$conf" > "$dir/check.log" 2>&1 ||
        { cat "$dir/check.log" >&2; broke "tokend refuses the generated config"; return; }

    # Hooks for spawn_time: untimed, and a failure stops the figure.
    cat > "$dir/clear.sh" <<EOF
#!/bin/bash
# Clear every token with one ip -batch, then check the kernel has none.
ip -n $NS_START -batch $dir/clear.batch || exit 1
exec $dir/verify.sh $dir/expected-clear
EOF
    cat > "$dir/verify.sh" <<EOF
#!/bin/bash
# verify.sh EXPECTED: every line of EXPECTED is in \`ip token list\`.
got=\$(ip -n $NS_START token list | grep -cFx -f "\$1")
[ "\$got" -eq $n ] && exit 0
echo "verify: \$got of $n expected tokens in the kernel (\$1)" >&2
exit 1
EOF
    chmod +x "$dir/clear.sh" "$dir/verify.sh"

    local daemon=("$TOKEND" --config "$conf" --socket "$sock" --state-dir "$state")
    local -a cold_t=() cold_c=() batch_t=() batch_c=()
    local r who order out t c line

    echo
    echo "start with the kernel cleared: tokend (exec to READY=1) against"
    echo "ip -n $NS_START -batch ($n token set lines, whole process), alternating,"
    echo "1 warm-up round + $RUNS rounds; before each run one ip -batch clears every token,"
    echo "after it all $n tokens must be in the kernel"
    watch_start "$NS_START" "$dir/watch-cold.out" || broke "ifinfo_watch did not start"
    for r in $(seq 0 "$RUNS"); do
        # Alternate who goes first: the machine's load drifts, and neither
        # should always run in the other's wake.
        if [ $((r % 2)) -eq 0 ]; then order="tokend batch"; else order="batch tokend"; fi
        line=$([ "$r" -eq 0 ] && echo "warm-up:" || echo "round $r:")
        for who in $order; do
            out=$dir/$who-$r.out
            if [ "$who" = tokend ]; then
                # spawn_time inside the namespace: the figure is tokend's
                # own, without the cost of `ip netns exec`.
                ip netns exec "$NS_START" "$SPAWN" -r -t 120 -o "$log" -b "$dir/clear.sh" \
                    -a "$dir/verify.sh $dir/expected" -- "${daemon[@]}" > "$out" 2>&1
            else
                "$SPAWN" -b "$dir/clear.sh" -a "$dir/verify.sh $dir/expected" \
                    -- ip -n "$NS_START" -batch "$dir/set.batch" > "$out" 2>&1
            fi || { cat "$out"; broke "$who, round $r failed (tokend log: $log)"; break 2; }
            t=$(summary_field "$out" median_us)
            c=$(summary_field "$out" cpu_median_us)
            line+=" $([ "$who" = tokend ] && echo tokend || echo "ip -batch")"
            line+=" $(ms "$t") ms (cpu $(ms "$c") ms);"
            if [ "$r" -gt 0 ]; then
                if [ "$who" = tokend ]; then
                    cold_t+=("$t") cold_c+=("$c")
                else
                    batch_t+=("$t") batch_c+=("$c")
                fi
            fi
        done
        echo "${line%;}"
        if [ "$r" -eq 0 ]; then
            sed -n 's/^ *daemon status: /  tokend status after READY=1: /p' "$dir/tokend-0.out"
        fi
    done
    watch_stop "$dir/watch-cold.out"
    writes=$WATCH_COUNT
    stats cold "${cold_t[@]}"
    stats cold_cpu "${cold_c[@]}"
    stats batch "${batch_t[@]}"
    stats batch_cpu "${batch_c[@]}"
    # Per round and tool: n clears by the hook, n sets by the tool.
    writes_line "$writes" $(( (RUNS + 1) * 4 * n )) \
        "per round: $n cleared by the hook + $n set, twice"
    if grep -h "daemon status" "$dir"/tokend-*.out | grep -qv " $n applied,"; then
        broke "tokend reported READY=1 without all $n tokens applied (see $dir/tokend-*.out)"
    fi

    echo
    echo "tokend restart, kernel already right ($RUNS runs + 1 warm-up):"
    local mark logged
    mark=$(wc -l < "$log")
    watch_start "$NS_START" "$dir/watch-warm.out" || broke "ifinfo_watch did not start"
    ip netns exec "$NS_START" "$SPAWN" -r -t 120 -n "$RUNS" -W 1 -o "$log" \
        -b "$dir/verify.sh $dir/expected" -a "$dir/verify.sh $dir/expected" \
        -- "${daemon[@]}" > "$dir/warm.out" 2>&1 ||
        broke "tokend restart benchmark failed (log: $log)"
    watch_stop "$dir/watch-warm.out"
    writes=$WATCH_COUNT
    cat "$dir/warm.out"
    figs warm "$dir/warm.out"
    # A restart should adopt, not write. Two witnesses: the kernel's
    # notifications, and tokend's log (a write logs "applied" or "cleared",
    # a refused one "kernel refused").
    logged=$(tail -n "+$((mark + 1))" "$log" | grep -cE " (applied|cleared)$|kernel refused")
    FIG[warm_writes]=${writes:-n/a}
    echo "token writes during the restarts: ${writes:-n/a} reported by the kernel," \
         "$logged logged by tokend"
    [ -n "$writes" ] || broke "no count of token writes during the restarts"
    if [ "${writes:-0}" != 0 ] || [ "$logged" != 0 ]; then
        echo "NOTE: tokend wrote tokens on a restart where the kernel was already right"
    fi
}

# --- 2b. memory per 1,000 tokens, start with many declared --------------------
# In the start namespace, after bench_start: its 2*PAIRS veth interfaces stay,
# holding their tokens. Config: those 2*PAIRS tokens on real interfaces plus
# TOKENS_N - 2*PAIRS on interfaces that do not exist (tokend holds them,
# "absent", until such an interface appears). VmRSS of tokend once every
# token is applied or absent, against the same with no token at all.

# status_counts SOCK: "applied absent" from tokenctl status --json ("" if none).
status_counts() {
    "$TOKENCTL" --socket "$1" --json status 2>/dev/null | python3 -c '
import json, sys
c = json.load(sys.stdin)["counts"]
print(c["applied"], c["absent"])' 2>/dev/null
}

# rss_of CONF APPLIED ABSENT: tokend on CONF in NS_START until its counts say
# APPLIED applied and ABSENT absent; sets RSS_KB (VmRSS) and HWM_KB (VmHWM).
rss_of() {
    local dir=$TMP/rss i c=""
    RSS_KB='' HWM_KB=''
    ip netns exec "$NS_START" "$TOKEND" --config "$1" --socket "$dir/tokend.sock" \
        --state-dir "$dir/state" > "$dir/tokend.log" 2>&1 &
    TOKEND_PID=$!
    for i in $(seq 600); do
        c=$(status_counts "$dir/tokend.sock")
        [ "$c" = "$2 $3" ] && break
        kill -0 "$TOKEND_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ "$c" = "$2 $3" ]; then
        sleep 0.5
        RSS_KB=$(sed -n 's/^VmRSS:\s*\([0-9]*\) kB/\1/p' "/proc/$TOKEND_PID/status")
        HWM_KB=$(sed -n 's/^VmHWM:\s*\([0-9]*\) kB/\1/p' "/proc/$TOKEND_PID/status")
    else
        broke "tokend on $1 did not reach $2 applied + $3 absent (last: ${c:-no answer}; log $dir/tokend.log)"
    fi
    tokend_stop
}

bench_tokens_scale() {
    local dir=$TMP/rss sdir=$TMP/start nreal=$((PAIRS * 2)) nabs i conf0 confn
    mkdir -p "$dir"
    nabs=$((TOKENS_N - nreal))
    [ "$nabs" -ge 0 ] || nabs=0
    conf0=$dir/zero.conf confn=$dir/many.conf
    printf '[tokend]\nlog-level = info\n' > "$conf0"
    # The real interfaces' lines from bench_start's config, then the absent ones.
    { printf '[tokend]\nlog-level = info\n[tokens]\n'
      grep '^tb' "$sdir/tokend.conf"
      for i in $(seq 1 "$nabs"); do
          printf 'tkabs%d = ::beef:%x:0:1\n' "$i" "$i"
      done; } > "$confn"
    "$TOKEND" --check-config --config "$confn" > "$dir/check.log" 2>&1 ||
        { cat "$dir/check.log" >&2; broke "tokend refuses the config with $TOKENS_N tokens"; return; }
    rm -rf "$dir/state"
    rss_of "$conf0" 0 0
    FIG[rss_tok0]=$RSS_KB
    rm -rf "$dir/state"
    rss_of "$confn" "$nreal" "$nabs"
    FIG[rss_tokn]=$RSS_KB FIG[hwm_tokn]=$HWM_KB
    echo "tokend VmRSS: ${FIG[rss_tok0]:-n/a} kB with no token, ${FIG[rss_tokn]:-n/a} kB" \
         "(VmHWM ${FIG[hwm_tokn]:-n/a} kB) with $TOKENS_N ($nreal applied on veths, $nabs absent)"
    if [ -n "${FIG[rss_tok0]}" ] && [ -n "${FIG[rss_tokn]}" ]; then
        FIG[rss_tok_per1k]=$(awk -v a="${FIG[rss_tok0]}" -v b="${FIG[rss_tokn]}" -v n="$TOKENS_N" \
            'BEGIN { printf "%.0f", (b - a) / n * 1000 }')
    fi

    # exec -> READY=1 with all of them declared: the real ones cleared before
    # each run (so written), the absent ones only held.
    echo
    echo "tokend exec -> READY=1 with $TOKENS_N tokens declared ($nreal to write, $nabs absent)," \
         "1 warm-up + $RUNS runs:"
    rm -rf "$dir/state"
    ip netns exec "$NS_START" "$SPAWN" -r -t 120 -n "$RUNS" -W 1 -o "$dir/many.log" \
        -b "$sdir/clear.sh" -a "$sdir/verify.sh $sdir/expected" -- "$TOKEND" --config "$confn" \
        --socket "$dir/tokend.sock" --state-dir "$dir/state" > "$dir/many.out" 2>&1 ||
        { cat "$dir/many.out"; broke "tokend start with $TOKENS_N tokens failed (log $dir/many.log)"; return; }
    tail -n 1 "$dir/many.out"
    figs many "$dir/many.out"
}

# --- run --------------------------------------------------------------------

CPU=$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -n 1)
IPV=$(ip -V | sed -n 's/.*\(iproute2-[^ ,]*\).*/\1/p')
MACHINE="$(nproc) CPUs, ${CPU:-unknown CPU}, Linux $(uname -r), ${IPV:-iproute2 (version unknown)}"
echo "== machine: $MACHINE"
echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "== 1. drift-repair latency ($EVENTS events)"
bench_repair
tokend_stop

echo
echo "== 2. applying $((PAIRS * 2)) tokens at start"
bench_start

echo
echo "== 2b. memory per 1,000 tokens; start with $TOKENS_N tokens declared"
bench_tokens_scale

fig() { local v=${FIG[$1]:-}; [ -n "$v" ] && echo "$v" || echo "n/a"; }

# fig_ms NAME: "median ms (min-max), cpu ms" of a spawn_time figure.
fig_ms() {
    local m=${FIG[$1_median]:-}
    [ -n "$m" ] || { echo "n/a"; return; }
    echo "$(ms "$m") ms ($(ms "${FIG[$1_min]}")-$(ms "${FIG[$1_max]}"))," \
         "cpu $(ms "${FIG[$1_cpu_median]}") ms"
}

ratio=n/a
if [ -n "${FIG[batch_median]:-}" ] && [ -n "${FIG[cold_median]:-}" ]; then
    ratio=$(awk -v a="${FIG[batch_median]}" -v b="${FIG[cold_median]}" \
        'BEGIN { printf "%.2f", a / b }')
fi

row() { printf '%-60s %s\n' "$1" "$2"; }
n=$((PAIRS * 2))
token_summary() {
    row "drift repair, delete -> token back: events / misses" \
        "$(fig rep_events) / $(fig rep_misses) (contest-window $(fig window))"
    lat="$(fig rep_min_us) / $(fig rep_median_us) / $(fig rep_p90_us) / $(fig rep_p99_us)"
    row "  latency min / median / p90 / p99 / max" "$lat / $(fig rep_max_us) us"
    row "  deletes sent / kernel token writes / drifts tokend logged" \
        "$(fig rep_deletes) / $(fig rep_writes) / $(fig rep_noticed) (expected N / 2N / N)"
    row "ip token set, one whole process, median of 100 (min-max)" \
        "$(fig ipset_median) us ($(fig ipset_min)-$(fig ipset_max))"
    row "start, $n tokens to write: tokend exec -> READY=1" "$(fig_ms cold)"
    row "ip -n NS -batch, $n token set lines, whole process" "$(fig_ms batch)"
    row "ratio ip -batch / tokend (medians)" "$ratio"
    row "restart, $n tokens already right: tokend exec -> READY=1" \
        "$(fig_ms warm), $(fig warm_writes) token writes (kernel)"
    row "start, $TOKENS_N tokens declared ($n to write): exec -> READY=1" "$(fig_ms many)"
    row "tokend VmRSS: no token / $TOKENS_N tokens declared" \
        "$(fig rss_tok0) kB / $(fig rss_tokn) kB (VmHWM $(fig hwm_tokn) kB)"
    row "  per 1,000 tokens ((RSS - RSS with none) / $TOKENS_N * 1000)" "$(fig rss_tok_per1k) kB"
}

# --- 3. installing IPsec associations, inside User-Mode Linux -----------------
# The host kernel has no ESP: bench/sa_install.sh runs its scenario in UML
# (tests/uml/run.sh) and prints its own summary. Without UML it is skipped,
# loudly; the token benchmarks above stand on their own.
echo
echo "== 3. installing IPsec associations (bench/sa_install.sh, inside User-Mode Linux)"
if [ ! -x "${UML_LINUX:-/usr/bin/linux.uml}" ]; then
    echo "************************************************************************"
    echo "SKIP: User-Mode Linux (package user-mode-linux) is not installed: the IPsec"
    echo "      SA install benchmark (bench/sa_install.sh) did not run"
    echo "************************************************************************"
else
    BENCH_BUILD_DIR=$BUILD SA_BENCH_SKIP_BUILD=1 bash "$SRC/bench/sa_install.sh" 2>&1 |
        tee "$TMP/sa_install.out"
    case ${PIPESTATUS[0]} in
        0) ;;
        77) echo "SKIP: the IPsec SA install benchmark skipped itself (see above)" ;;
        3) broke "SA install benchmark: tokend left the kernel wrong (see its WRONG lines)" ;;
        *) broke "SA install benchmark failed (bench/sa_install.sh)" ;;
    esac
fi

# --- 4. key rotation at scale, inside User-Mode Linux ---------------------------
echo
echo "== 4. 1,000 associations rotating in one period (bench/rotation.sh, inside User-Mode Linux)"
BENCH_BUILD_DIR=$BUILD ROT_BENCH_SKIP_BUILD=1 bash "$SRC/bench/rotation.sh" 2>&1 | tee "$TMP/rotation.out"
case ${PIPESTATUS[0]} in
    0) ;;
    77) echo "SKIP: the rotation benchmark skipped itself (see above)" ;;
    *) broke "rotation benchmark failed (bench/rotation.sh)" ;;
esac

# --- 5. associations at scale, inside User-Mode Linux ----------------------------
echo
echo "== 5. associations at scale: memory, show --json, batching (bench/sa_scale.sh, inside UML)"
BENCH_BUILD_DIR=$BUILD SCALE_SKIP_BUILD=1 bash "$SRC/bench/sa_scale.sh" 2>&1 | tee "$TMP/sa_scale.out"
case ${PIPESTATUS[0]} in
    0) ;;
    77) echo "SKIP: the scale benchmark skipped itself (see above)" ;;
    *) broke "scale benchmark failed (bench/sa_scale.sh)" ;;
esac

# --- one summary ---------------------------------------------------------------
# pick FILE FROM TO: the summary rows of a sub-benchmark, from the line
# matching FROM up to (not including) the line matching TO.
pick() {
    [ -f "$1" ] || { echo "  (did not run)"; return; }
    awk -v a="$2" -v b="$3" '$0 ~ a { on = 1; next } on && b != "" && $0 ~ b { on = 0 } on' "$1" |
        grep -v '^load average' | sed 's/^/  /'
}
echo
echo "================================================================================"
echo "== summary$([ "$QUICK" = 1 ] && echo " (short form: small counts, figures not comparable with the full run)")"
echo "machine: $MACHINE"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
row "benchmark" "figure"
token_summary
echo "(token start figures: median of $RUNS runs after 1 warm-up run, min-max in brackets, then"
echo " the median CPU time, user + system, of the process; for tokend over its whole life)"
echo "IPsec install, inside UML (bench/sa_install.sh):"
pick "$TMP/sa_install.out" '^benchmark +figure' '^what tokend left'
echo "key rotation, inside UML (bench/rotation.sh):"
pick "$TMP/rotation.out" '^== rotation benchmark' ''
echo "associations at scale, inside UML (bench/sa_scale.sh):"
pick "$TMP/sa_scale.out" '^load average at end' ''
echo "run.sh: $([ "$BROKEN" -eq 0 ] && echo "nothing broke" || echo "SOMETHING BROKE (see above)")"

[ "$BROKEN" -eq 0 ] || { echo "run.sh: something broke (see above)" >&2; exit 1; }
exit 0
