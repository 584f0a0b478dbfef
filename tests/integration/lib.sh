# Shared helpers for integration tests: each test gets its own network
# namespace, veth pairs, config, socket and state directory, and cleans up
# after itself. Tests never touch the host's own interfaces.
# shellcheck shell=bash

set -u
TK_NAME=$(basename "$0" .sh)
TK_SRC=${TOKEND_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
TOKEND=${TOKEND:-$TK_SRC/build/daemon/tokend}
TOKENCTL=${TOKENCTL:-$TK_SRC/build/client/tokenctl}
TK_TMP=$(mktemp -d "/tmp/tokend-$TK_NAME.XXXXXX")
chmod 755 "$TK_TMP"
TK_NS="tk-${TK_NAME#test_}-$$"
TK_NS=${TK_NS:0:40}
TK_SOCK=$TK_TMP/tokend.sock
TK_STATE=$TK_TMP/state
TK_CONF=$TK_TMP/tokend.conf
TK_LOG=$TK_TMP/tokend.log
TK_PID=
TK_PASSED=0
TK_FAILED=0
TK_EXTRA_NS=()

tk_cleanup() {
    local rc=$?
    [ -n "$TK_PID" ] && { kill -9 "$TK_PID"; wait "$TK_PID"; } 2>/dev/null
    for ns in "${TK_EXTRA_NS[@]}"; do ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null; ip netns del "$ns" 2>/dev/null; done
    ip netns pids "$TK_NS" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$TK_NS" 2>/dev/null
    if [ "$TK_FAILED" -ne 0 ] || [ $rc -ne 0 ]; then
        echo "--- tokend log ($TK_LOG) ---"
        tail -n 60 "$TK_LOG" 2>/dev/null
        echo "--- kept $TK_TMP ---"
    else
        rm -rf "$TK_TMP"
    fi
}
trap tk_cleanup EXIT

if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: $TK_NAME needs root for network namespaces" >&2
    exit 77
fi
ip netns add "$TK_NS" || { echo "cannot create netns $TK_NS" >&2; exit 1; }
ip -n "$TK_NS" link set lo up

# Run a command inside the test namespace.
tk_ns() { ip netns exec "$TK_NS" "$@"; }

# tk_veth A B: a veth pair, both ends up.
tk_veth() {
    ip -n "$TK_NS" link add "$1" type veth peer name "$2" && \
    ip -n "$TK_NS" link set "$1" up && ip -n "$TK_NS" link set "$2" up
}

# Write the config from stdin. Debug logs so failures can be read.
tk_conf() {
    cat > "$TK_CONF"
}

tk_start() {
    [ -f "$TK_CONF" ] || printf '[tokend]\nlog-level = debug\n' > "$TK_CONF"
    ip netns exec "$TK_NS" "$TOKEND" --config "$TK_CONF" --socket "$TK_SOCK" \
        --state-dir "$TK_STATE" "$@" >> "$TK_LOG" 2>&1 &
    TK_PID=$!
    tk_wait 10 tk_ctl_quiet status || { tk_fail "tokend did not come up"; return 1; }
}

tk_stop() {
    [ -n "$TK_PID" ] || return 0
    kill -TERM "$TK_PID" 2>/dev/null
    wait "$TK_PID" 2>/dev/null
    TK_PID=
}

tk_kill9() {
    [ -n "$TK_PID" ] || return 0
    kill -9 "$TK_PID" 2>/dev/null
    wait "$TK_PID" 2>/dev/null
    TK_PID=
}

tk_ctl() { "$TOKENCTL" --socket "$TK_SOCK" "$@"; }
tk_ctl_quiet() { "$TOKENCTL" --socket "$TK_SOCK" "$@" >/dev/null 2>&1; }

# Canonical form of whatever `ip token get` prints (it may use dotted quads).
tk_canon() { python3 -c 'import ipaddress,sys; print(ipaddress.IPv6Address(sys.argv[1]).compressed)' "$1"; }

# The kernel's truth: the token of IFACE, canonical, "::" for none.
tk_kernel_token() {
    local t
    t=$(ip -n "$TK_NS" token get dev "$1" 2>/dev/null | awk '{print $2}')
    [ -n "$t" ] || { echo "(no-interface)"; return; }
    tk_canon "$t"
}

# tk_wait SECONDS CMD...: poll until CMD succeeds.
tk_wait() {
    local limit=$1; shift
    local end=$(( $(date +%s%N) + limit * 1000000000 ))
    while [ "$(date +%s%N)" -lt "$end" ]; do
        "$@" && return 0
        sleep 0.05
    done
    return 1
}

tk_token_is() { [ "$(tk_kernel_token "$1")" = "$2" ]; }

# Field of one entry from `tokenctl show --json`.
tk_entry_field() {
    tk_ctl --json show dev "$1" 2>/dev/null | python3 -c '
import json,sys
d=json.load(sys.stdin); e=d["entries"][0]; v=e.get(sys.argv[1])
print("null" if v is None else v)' "$2"
}

tk_state_is() { [ "$(tk_entry_field "$1" state)" = "$2" ]; }

tk_pass() { TK_PASSED=$((TK_PASSED + 1)); echo "ok - $*"; }
tk_fail() { TK_FAILED=$((TK_FAILED + 1)); echo "FAIL - $*"; }

# tk_check "what" CMD...: pass if CMD succeeds.
tk_check() {
    local what=$1; shift
    if "$@"; then tk_pass "$what"; else tk_fail "$what"; fi
}

# tk_eventually SECONDS "what" CMD...
tk_eventually() {
    local limit=$1 what=$2; shift 2
    if tk_wait "$limit" "$@"; then tk_pass "$what"; else tk_fail "$what"; fi
}

tk_done() {
    # A daemon built with sanitizers (CI runs this suite so once) reports
    # into its log; any report fails the test.
    if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$TK_TMP"/*.log 2>/dev/null; then
        tk_fail "sanitizer report in the daemon's log"
        grep -hE -A12 "ERROR: (Address|Leak)Sanitizer|runtime error:" "$TK_TMP"/*.log | head -n 40
    fi
    echo "$TK_PASSED passed, $TK_FAILED failed"
    [ "$TK_FAILED" -eq 0 ]
}

# --- helpers for the kernel-condition tests (blocked, recreate, contested,
# reload, radvd, enobufs) ---

# tk_sysctl KEY=VALUE...: set sysctls inside the test namespace only.
tk_sysctl() { ip netns exec "$TK_NS" sysctl -qw "$@" >/dev/null; }

# tk_log_lines: how many lines the tokend log has now (a mark for tk_log_since).
tk_log_lines() { local n; n=$(wc -l < "$TK_LOG" 2>/dev/null); echo "${n:-0}"; }

# tk_log_since MARK: the log lines written after MARK (from tk_log_lines).
tk_log_since() { tail -n "+$(( $1 + 1 ))" "$TK_LOG" 2>/dev/null; }

# tk_log_count FIXED-STRING [MARK]: log lines containing the string (after MARK).
tk_log_count() {
    local n
    n=$(tk_log_since "${2:-0}" | grep -cF -- "$1")
    echo "${n:-0}"
}

# tk_log_has FIXED-STRING [MARK]: the log has such a line (after MARK).
tk_log_has() { [ "$(tk_log_count "$1" "${2:-0}")" -gt 0 ]; }

# tk_reason_has IFACE REGEX: the entry's reason matches (case-insensitive ERE).
tk_reason_has() { tk_entry_field "$1" reason | grep -qiE -- "$2"; }

# tk_ifindex IFACE: the kernel's ifindex of IFACE in the test namespace.
tk_ifindex() { ip -n "$TK_NS" -o link show dev "$1" 2>/dev/null | awk -F: '{print $1; exit}'; }

# tk_reload: SIGHUP tokend and wait until it has logged the outcome.
tk_reload() {
    local mark; mark=$(tk_log_lines)
    kill -HUP "$TK_PID"
    tk_wait 5 bash -c "tail -n +$((mark + 1)) '$TK_LOG' | grep -qE 'config reloaded|config reload failed'"
}

# tk_kernel_token_nl IFACE: like tk_kernel_token, read straight from rtnetlink
# (IFLA_INET6_TOKEN), because `ip token` hides loopback and NOARP devices.
tk_kernel_token_nl() {
    ip netns exec "$TK_NS" python3 - "$1" <<'PY'
import ipaddress, socket, struct, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0))
hdr = struct.pack("BBHiII", socket.AF_INET6, 0, 0, 0, 0, 0)
s.send(struct.pack("IHHII", 16 + len(hdr), 18, 0x301, 1, 0) + hdr)   # RTM_GETLINK dump
def attrs(b):
    while len(b) >= 4:
        ln, ty = struct.unpack_from("HH", b)
        if ln < 4: break
        yield ty & 0x3fff, b[4:ln]
        b = b[(ln + 3) & ~3:]
found = None
done = False
while not done:
    data = s.recv(1 << 20)
    while len(data) >= 16:
        ln, ty, fl, seq, pid = struct.unpack_from("IHHII", data)
        msg, data = data[16:ln], data[(ln + 3) & ~3:]
        if ty == 3 or ty == 2:      # NLMSG_DONE, NLMSG_ERROR
            done = True; break
        name = tok = None
        for t, v in attrs(msg[16:]):
            if t == 3: name = v.rstrip(b"\0").decode()
            elif t == 12:
                for t2, v2 in attrs(v):
                    if t2 == 7: tok = ipaddress.IPv6Address(v2[:16]).compressed
        if name == sys.argv[1]:
            found = tok or "::"
print(found or "(no-interface)")
PY
}
tk_token_is_nl() { [ "$(tk_kernel_token_nl "$1")" = "$2" ]; }

# --- helpers for the control-socket tests (access, tokenctl) ---

# tk_daemon_pid: tokend's own pid, as GetStatus reports it.
tk_daemon_pid() {
    tk_ctl --json status 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])' 2>/dev/null
}

# tk_start_under CMD...: like tk_start, with tokend run under CMD (strace ...).
# TK_PID is then CMD's pid; stop with tk_stop_under.
tk_start_under() {
    [ -f "$TK_CONF" ] || printf '[tokend]\nlog-level = debug\n' > "$TK_CONF"
    "$@" ip netns exec "$TK_NS" "$TOKEND" --config "$TK_CONF" --socket "$TK_SOCK" \
        --state-dir "$TK_STATE" >> "$TK_LOG" 2>&1 &
    TK_PID=$!
    tk_wait 20 tk_ctl_quiet status || { tk_fail "tokend did not come up under $1"; return 1; }
}

# tk_stop_under: SIGTERM tokend itself (not the wrapper) and wait for the wrapper.
tk_stop_under() {
    local pid
    [ -n "$TK_PID" ] || return 0
    pid=$(tk_daemon_pid)
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
    wait "$TK_PID" 2>/dev/null
    TK_PID=
}

# tk_run CMD...: run CMD (a program, not a shell function) as a child of its
# own; sets TK_RC, TK_OUT, TK_ERR and TK_CPID, the pid CMD ran as (setpriv
# and tokenctl exec, so it is also tokenctl's pid when CMD is one of them).
tk_run() {
    "$@" >"$TK_TMP/tk_run.out" 2>"$TK_TMP/tk_run.err" &
    TK_CPID=$!
    wait "$TK_CPID"
    TK_RC=$?
    TK_OUT=$(cat "$TK_TMP/tk_run.out")
    TK_ERR=$(cat "$TK_TMP/tk_run.err")
}

# tk_json EXPR: evaluate a Python expression over the JSON document on stdin
# (bound to d); prints the result, fails when stdin is not JSON or EXPR raises.
tk_json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

# tk_is_json: stdin is one JSON document.
tk_is_json() { python3 -c 'import json,sys; json.load(sys.stdin)' 2>/dev/null; }
