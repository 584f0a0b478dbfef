# Helpers for scenarios that run tokend on two peers inside UML. Source after
# lib.sh. Each peer (a, b) gets its own config, socket, state directory and
# log under $TK_DIR; the secret is shared, as it would be between two hosts.
# shellcheck shell=bash

TK_SRC=${TOKEND_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
TOKEND=${TOKEND:-$TK_SRC/build/daemon/tokend}
TOKENCTL=${TOKENCTL:-$TK_SRC/build/client/tokenctl}
TK_DIR=/run/tokend-uml
mkdir -p "$TK_DIR"
declare -A TK_PIDS=()

# tk_secret: a fresh master secret, mode 0600.
tk_secret() {
    (umask 077; uml_random_hex 32 > "$TK_DIR/secret.key")
}

# tk_config PEER <<EOF ...: the peer's config.
tk_config() {
    cat > "$TK_DIR/$1.conf"
}

tk_start() {
    local peer=$1
    shift
    ip netns exec "$peer" "$TOKEND" --config "$TK_DIR/$peer.conf" --socket "$TK_DIR/$peer.sock" \
        --state-dir "$TK_DIR/$peer.state" "$@" >> "$TK_DIR/$peer.log" 2>&1 &
    TK_PIDS[$peer]=$!
    uml_wait 20 test -S "$TK_DIR/$peer.sock"
}

tk_stop() {
    local pid=${TK_PIDS[$1]:-}
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    TK_PIDS[$1]=
}

tk_kill9() {
    local pid=${TK_PIDS[$1]:-}
    [ -n "$pid" ] || return 0
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    TK_PIDS[$1]=
}

tk_ctl() {
    local peer=$1
    shift
    "$TOKENCTL" --socket "$TK_DIR/$peer.sock" "$@"
}

# tk_assoc_field PEER NAME FIELD: one field of `show sa NAME --json`
# (dotted paths like outbound.generation work).
tk_assoc_field() {
    python3 - "$TK_DIR/$1.sock" "$2" "$3" <<'PY'
import json, socket, sys
path, name, field = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
s.sendall(json.dumps({"method": "io.tokend.ListAssociations",
                      "parameters": {"name": name}}).encode() + b"\0")
buf = b""
while not buf.endswith(b"\0"):
    d = s.recv(65536)
    if not d:
        break
    buf += d
a = json.loads(buf[:-1])["parameters"]["associations"][0]
for k in field.split("."):
    a = a[int(k)] if isinstance(a, list) else a.get(k)
print("null" if a is None else a)
PY
}

tk_assoc_up() { [ "$(tk_assoc_field "$1" "$2" state)" = up ]; }

# tk_cleanup_all: stop both daemons, print their logs on failure.
tk_cleanup_all() {
    for p in "${!TK_PIDS[@]}"; do tk_stop "$p"; done
    if [ "$UML_FAILED" -ne 0 ]; then
        for f in "$TK_DIR"/*.log; do
            echo "# --- $f ---"
            tail -n 40 "$f" | sed 's/^/#   /'
        done
    fi
}

# tk_mirror_configs NAME NUMBER FAMILY [extra sa lines...]: mirror-image
# configs for a and b.
tk_mirror_configs() {
    local name=$1 number=$2 family=$3
    shift 3
    local la lb
    if [ "$family" = 6 ]; then la=$UML_A6; lb=$UML_B6; else la=$UML_A4; lb=$UML_B4; fi
    for peer in a b; do
        local l r
        if [ "$peer" = a ]; then l=$la; r=$lb; else l=$lb; r=$la; fi
        {
            printf '[tokend]\nlog-level = debug\ncounter-interval = 500ms\ndwell = 1s\n'
            printf '[sa %s]\nnumber = %s\nlocal = %s\nremote = %s\nsecret = %s\n' \
                "$name" "$number" "$l" "$r" "$TK_DIR/secret.key"
            for line in "$@"; do printf '%s\n' "$line"; done
        } > "$TK_DIR/$peer.conf"
    done
}

# ping_all NS DST COUNT [INTERVAL]: every echo request answered.
tk_ping_all() {
    local out
    out=$(ip netns exec "$1" ping -n -c "$3" -i "${4:-0.2}" -w $(($3 + 5)) "$2" 2>&1)
    grep -q " $3 received" <<<"$out" && return 0
    printf '%s\n' "$out" | tail -n 3
    return 1
}

# --- helpers for the lifecycle scenario (rotation, restarts, hygiene) --------

# tk_call PEER METHOD JSON [METHOD JSON]...: Varlink calls on PEER's socket,
# one connection, back to back (so two calls land within milliseconds of
# each other); prints each reply as one line of JSON ({"parameters": ...} or
# {"error": ..., "parameters": ...}). METHOD without a dot means io.tokend.M.
tk_call() {
    local peer=$1
    shift
    python3 - "$TK_DIR/$peer.sock" "$@" <<'PY'
import json, socket, sys
path, args = sys.argv[1], sys.argv[2:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
buf = b""
for i in range(0, len(args), 2):
    method = args[i] if "." in args[i] else "io.tokend." + args[i]
    params = json.loads(args[i + 1]) if i + 1 < len(args) and args[i + 1] else {}
    s.sendall(json.dumps({"method": method, "parameters": params}).encode() + b"\0")
    while b"\0" not in buf:
        d = s.recv(65536)
        if not d:
            sys.exit("tk_call: connection closed")
        buf += d
    msg, buf = buf.split(b"\0", 1)
    print(json.dumps(json.loads(msg), sort_keys=True))
PY
}

# tk_spi_hex N: an SPI as ip xfrm prints it (0x%08x).
tk_spi_hex() { printf '0x%08x' "$(( $1 ))"; }

# tk_spis NS: the SPIs of every SA in NS, sorted, one line.
tk_spis() { ip -n "$1" xfrm state | sed -n 's/.*proto esp spi \(0x[0-9a-f]*\) .*/\1/p' | sort | tr '\n' ' '; }

# tk_has_sa NS SPI: NS has an ESP SA with that SPI.
tk_has_sa() { ip -n "$1" xfrm state | grep -q "proto esp spi $(tk_spi_hex "$2") "; }

# tk_log_mark PEER: the number of lines PEER's log has now.
tk_log_mark() { local n; n=$(wc -l < "$TK_DIR/$1.log" 2>/dev/null); echo "${n:-0}"; }

# tk_log_after PEER MARK: PEER's log lines after MARK.
tk_log_after() { tail -n "+$(( $2 + 1 ))" "$TK_DIR/$1.log"; }

# tk_state_gen PEER NAME FIELD: out_generation or in_generation of NAME in
# PEER's state file.
tk_state_gen() {
    python3 - "$TK_DIR/$1.state/state.json" "$2" "$3" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
for a in st.get("associations", []):
    if a.get("name") == sys.argv[2]:
        print(a.get(sys.argv[3]))
        break
else:
    print("none")
PY
}

# Continuous ping at 20/s, with exact accounting of lost replies.
#   tk_ping_start NS DST SECONDS: ping -c SECONDS*20 -i 0.05 in the background
#     (-D timestamps, -O reports); output in $TK_PING_OUT, pid $TK_PING_PID.
#   tk_ping_running: it is still sending.
#   tk_ping_finish: waits for it; sets TK_PING_TX (requests sent, send
#     errors included, as ping counts them), TK_PING_RX (distinct replies),
#     TK_PING_LOST (TX - RX) and TK_PING_MISSING (the missing sequence
#     numbers, space-separated).
#   tk_ping_lost_between T0 T1: succeeds when every missing request was sent
#     after T0 and before T1 (epoch seconds; judged by the timestamps of the
#     replies on either side of each gap).
TK_PING_N=0
tk_ping_start() {
    TK_PING_N=$((TK_PING_N + 1))
    TK_PING_OUT=/tmp/tk-ping.$TK_PING_N.out
    TK_PING_COUNT=$(( $3 * 20 ))
    ip netns exec "$1" ping -n -D -O -i 0.05 -W 2 -c "$TK_PING_COUNT" "$2" > "$TK_PING_OUT" 2>&1 &
    TK_PING_PID=$!
}
tk_ping_running() { kill -0 "$TK_PING_PID" 2>/dev/null; }
tk_ping_finish() {
    wait "$TK_PING_PID" 2>/dev/null
    local r
    r=$(python3 - "$TK_PING_OUT" "$TK_PING_COUNT" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
count = int(sys.argv[2])
got = {int(m.group(1)) for m in re.finditer(r"bytes from .*icmp_seq=(\d+) ", text)}
m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
tx, rx = (int(m.group(1)), int(m.group(2))) if m else (count, len(got))
missing = [s for s in range(1, tx + 1) if s not in got]
print(tx, rx, tx - rx, " ".join(map(str, missing)))
PY
)
    read -r TK_PING_TX TK_PING_RX TK_PING_LOST TK_PING_MISSING <<<"$r"
}
tk_ping_lost_between() {
    python3 - "$TK_PING_OUT" "$1" "$2" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
t0, t1 = float(sys.argv[2]), float(sys.argv[3])
ts = {int(m.group(2)): float(m.group(1)) for m in
      re.finditer(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+) ", text, re.M)}
m = re.search(r"(\d+) packets transmitted", text)
tx = int(m.group(1)) if m else max(ts, default=0)
bad = []
for s in range(1, tx + 1):
    if s in ts:
        continue
    before = max((k for k in ts if k < s), default=None)
    after = min((k for k in ts if k > s), default=None)
    # The request went out after the previous reply arrived and before the
    # next one did.
    if before is None or ts[before] < t0 - 0.1 or after is None or ts[after] > t1 + 0.1:
        bad.append("%d (between replies at %s and %s)" % (
            s, "%.3f" % ts[before] if before else "-", "%.3f" % ts[after] if after else "-"))
if bad:
    print("lost outside [%.3f, %.3f]: %s" % (t0, t1, ", ".join(bad[:20])))
    sys.exit(1)
PY
}

# tk_now: epoch seconds with fractions (the clock ping -D uses).
tk_now() { date +%s.%N; }

# tk_record_keys NS...: append every key the kernel shows for NS's SAs (hex,
# no 0x) to $TK_KEYS (a tmpfs file inside UML: keys never reach the output).
TK_KEYS=/tmp/tk-installed-keys
tk_record_keys() {
    local ns
    for ns in "$@"; do
        ip -n "$ns" xfrm state | sed -n 's/.*\(aead\|enc\|auth-trunc\|auth\) [^ ]* 0x\([0-9a-f]*\).*/\2/p' \
            >> "$TK_KEYS"
    done
    sort -u -o "$TK_KEYS" "$TK_KEYS"
}

# --- helpers for the drift scenario (repairs, foreign and orphaned objects) --

# tk_xfrm_blocks NS state|policy PATTERN: the entries of `ip -n NS xfrm
# state|policy` (no -s: no counters but the anti-replay line) whose text
# holds PATTERN (a fixed string, e.g. "reqid 42 "), each entry whole, in a
# stable order (sorted), so two calls compare byte for byte even when the
# kernel lists entries in another order.
tk_xfrm_blocks() {
    ip -n "$1" xfrm "$2" | awk -v pat="$3" '
        function flush() { if (blk != "" && index(blk, pat)) print blk; blk = "" }
        /^src / { flush() }
        { blk = blk (blk == "" ? "" : "\001") $0 }
        END { flush() }' | LC_ALL=C sort | tr '\001' '\n'
}

# tk_sa_lft NS SRC DST SPI: the "lifetime config" lines of one ESP SA
# (`ip -s xfrm state get`); nothing when there is no such SA.
tk_sa_lft() {
    ip -n "$1" -s xfrm state get src "$2" dst "$3" proto esp spi "$4" 2>/dev/null |
        sed -n '/lifetime config:/,/lifetime current:/p' | sed '$d'
}

# tk_sa_key NS SRC DST SPI: the key (0x...) of one ESP SA, as ip shows it.
tk_sa_key() {
    ip -n "$1" xfrm state get src "$2" dst "$3" proto esp spi "$4" 2>/dev/null |
        sed -n 's/.*\(aead\|enc\) [^ ]* \(0x[0-9a-f]*\).*/\2/p'
}

# --- helpers for the rotation scenarios (clock, limits, schedules) -----------

# tk_fields PEER NAME PATH...: several fields of one association in one call,
# one value per line, in the order asked (dotted paths as in
# tk_assoc_field; lists by index; "null" for a missing one; true/false for
# booleans, JSON for objects and lists).
tk_fields() {
    python3 - "$TK_DIR/$1.sock" "$2" "${@:3}" <<'PY'
import json, socket, sys
path, name, fields = sys.argv[1], sys.argv[2], sys.argv[3:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
s.sendall(json.dumps({"method": "io.tokend.ListAssociations",
                      "parameters": {"name": name}}).encode() + b"\0")
buf = b""
while not buf.endswith(b"\0"):
    d = s.recv(65536)
    if not d:
        break
    buf += d
a = json.loads(buf[:-1])["parameters"]["associations"][0]
for f in fields:
    v = a
    for k in f.split("."):
        if isinstance(v, list):
            v = v[int(k)] if -len(v) <= int(k) < len(v) else None
        else:
            v = v.get(k) if isinstance(v, dict) else None
    print("null" if v is None else v if isinstance(v, str) else json.dumps(v))
PY
}

# tk_show_json PEER NAME: the association as ListAssociations gives it (one
# line of JSON; keys never appear there).
tk_show_json() { tk_call "$1" ListAssociations "{\"name\": \"$2\"}"; }

# tk_wall_ms: the wall clock in milliseconds.
tk_wall_ms() { date +%s%3N; }

# tk_sleep_until T_MS: sleep until the wall clock reaches T_MS (no-op when
# past).
tk_sleep_until() {
    local d=$(( $1 - $(date +%s%3N) ))
    [ "$d" -gt 0 ] && sleep "$(awk -v d="$d" 'BEGIN { printf "%.3f", d / 1000 }')"
    return 0
}

# tk_secret_at FILE: a fresh master secret in FILE, mode 0600, owned by
# root (the daemons' uid).
tk_secret_at() {
    (umask 077; uml_random_hex 32 > "$1")
}

# tk_key_is NS SRC DST SPI SECRET_FILE NAME NUMBER FAMILY GEN ALG: the key of
# that SA in NS's kernel is the documented derivation from that secret for
# that generation (scripts/kdf_vectors.py --derive). Prints nothing of any
# key; fails (saying "no such SA" or "differs") otherwise.
tk_key_is() {
    local have want
    have=$(tk_sa_key "$1" "$2" "$3" "$(tk_spi_hex "$4")")
    [ -n "$have" ] || { echo "no SA $(tk_spi_hex "$4") in $1"; return 1; }
    want=$(python3 "$TK_SRC/scripts/kdf_vectors.py" --derive "$(cat "$5")" "$6" "$7" "$8" \
        "$2" "$3" "$9" "${10}" 2>/dev/null)
    [ -n "$want" ] || { echo "kdf_vectors.py --derive failed"; return 1; }
    [ "$have" = "0x$want" ] && return 0
    echo "the key of SA $(tk_spi_hex "$4") in $1 differs from that derivation"
    return 1
}

# tk_gen_spi NUMBER DIR GEN: the SPI of generation GEN of a direction
# (DIR 0: the lower address sends, 1: the higher), as 0x%08x.
tk_gen_spi() { tk_spi_hex $(( 0x01000000 | $1 << 8 | $2 << 7 | $3 % 128 )); }

# The SAs of NS as lines "SPI SRC DST PACKETS BYTES" (counters from
# `ip -s xfrm state`).
tk_sa_table() {
    ip -n "$1" -s xfrm state | awk '
        /^src / { src = $2; dst = $4; spi = ""; cur = 0 }
        /proto esp spi/ { for (i = 1; i <= NF; i++) if ($i == "spi") spi = $(i + 1); sub(/\(.*/, "", spi) }
        /lifetime current:/ { cur = 1; next }
        cur == 1 { gsub(/\([a-z]+\),?/, ""); print spi, src, dst, $2, $1; cur = 2 }'
}

# Background sampler of the kernel's SAs: every INTERVAL seconds, one line
# per SA of each NS, "WALL_MS NS SPI SRC DST PACKETS BYTES", and a line
# "WALL_MS NS -" after each namespace (so an empty one shows too).
#   tk_sampler_start FILE INTERVAL NS...   tk_sampler_stop
tk_sampler_start() {
    local file=$1 interval=$2
    shift 2
    : > "$file"
    (
        while :; do
            for ns in "$@"; do
                t=$(date +%s%3N)
                tk_sa_table "$ns" | sed "s/^/$t $ns /"
                echo "$t $ns -"
            done
            sleep "$interval"
        done >> "$file"
    ) &
    TK_SAMPLER_PID=$!
    UML_BG_PIDS+=("$TK_SAMPLER_PID")
}
tk_sampler_stop() {
    [ -n "${TK_SAMPLER_PID:-}" ] || return 0
    kill "$TK_SAMPLER_PID" 2>/dev/null
    wait "$TK_SAMPLER_PID" 2>/dev/null
    TK_SAMPLER_PID=
}
