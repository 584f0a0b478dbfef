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

# --- the rotation scenarios' cases: configs, the clock, what the kernel had --
# Each case starts from scratch with tk_rot_fresh, then describes its
# configs in TK_ROT_TOKEND (lines for [tokend]), TK_ROT_SA (lines for both
# peers' [sa NAME]), TK_ROT_A and TK_ROT_B (lines for one peer only), and
# calls tk_rot_start NAME NUMBER. a (192.0.2.1) sends to b on direction 0,
# b to a on direction 1.
# tk_verdict OUT MESSAGE: print OUT's notes; MESSAGE passes unless OUT has
# "BAD ..." lines, which are then listed under the failure.
tk_verdict() {
    grep -v '^BAD' <<<"$1"
    if grep -q '^BAD' <<<"$1"; then
        uml_fail "$2"
        grep '^BAD' <<<"$1" | sed 's/^BAD /#   /'
    else
        uml_pass "$2"
    fi
}

TK_ROT_TOKEND="" TK_ROT_SA="" TK_ROT_A="" TK_ROT_B=""

# tk_rot_fresh: both daemons stopped, no SA or policy left, no state.
tk_rot_fresh() {
    tk_stop a
    tk_stop b
    uml_xfrm_flush a b
    rm -rf "$TK_DIR/a.state" "$TK_DIR/b.state"
}

# tk_rot_conf PEER NAME NUMBER [SECRET_FILE]: PEER's config.
tk_rot_conf() {
    local p=$1 l r extra
    if [ "$p" = a ]; then l=$UML_A4 r=$UML_B4 extra=$TK_ROT_A; else l=$UML_B4 r=$UML_A4 extra=$TK_ROT_B; fi
    {
        printf '[tokend]\nlog-level = debug\n'
        [ -n "$TK_ROT_TOKEND" ] && printf '%s\n' "$TK_ROT_TOKEND"
        printf '[sa %s]\nnumber = %s\nlocal = %s\nremote = %s\nsecret = %s\n' \
            "$2" "$3" "$l" "$r" "${4:-$TK_DIR/secret.key}"
        [ -n "$TK_ROT_SA" ] && printf '%s\n' "$TK_ROT_SA"
        [ -n "$extra" ] && printf '%s\n' "$extra"
    } > "$TK_DIR/$p.conf"
}

# tk_rot_start NAME NUMBER: both configs written, both daemons started, the
# association up on both (checks counted).
tk_rot_start() {
    tk_rot_conf a "$1" "$2"
    tk_rot_conf b "$1" "$2"
    tk_start a && tk_start b || { uml_fail "both daemons started"; return 1; }
    uml_eventually 15 "a: association $1 up" tk_assoc_up a "$1" &&
    uml_eventually 15 "b: association $1 up" tk_assoc_up b "$1"
}

# tk_rot_clock PEER NAME: "GEN NEXT_MS PERIOD_MS OVERLAP_MS ORIGIN_MS" from
# show: the clock's generation, the wall time of the next boundary, and the
# start of generation 0 (epoch + phase); exact, whatever the call's delay.
tk_rot_clock() {
    tk_fields "$1" "$2" rotation.clock_generation rotation.period rotation.overlap_ms \
        rotation.epoch rotation.phase_ms | tr '\n' ' ' |
        awk '{ o = $4 * 1000 + $5; l = $2 * 1000; printf "%.0f %.0f %.0f %.0f %.0f\n", $1, o + ($1 + 1) * l, l, $3, o }'
}

# tk_rot_settle PEER NAME [MARGIN_MS]: wait until the overlap after the last
# boundary is over by MARGIN_MS (default 300) and the next boundary is at
# least 1.5 s away. TK_ROT_GEN is then the clock's generation.
tk_rot_settle() {
    local g next l ov since margin=${3:-300}
    read -r g next l ov _ <<<"$(tk_rot_clock "$1" "$2")"
    since=$(( $(tk_wall_ms) - (next - l) ))
    if [ "$since" -lt $((ov + margin)) ]; then
        tk_sleep_until $(( next - l + ov + margin ))
    fi
    if [ $(( next - $(tk_wall_ms) )) -lt 1500 ]; then
        tk_sleep_until $(( next + ov + margin ))
        g=$((g + 1))
    fi
    TK_ROT_GEN=$g
}

# tk_rot_same_gen PEER NAME GEN: the clock's generation is still GEN (a
# check that began after tk_rot_settle did not straddle a boundary).
tk_rot_same_gen() { [ "$(tk_fields "$1" "$2" rotation.clock_generation)" = "$3" ]; }

tk_rot_ping_report() {
    uml_note "$1: ping sent $TK_PING_TX, got $TK_PING_RX replies, lost $TK_PING_LOST${TK_PING_MISSING:+ (icmp_seq $(cut -d' ' -f1-30 <<<"$TK_PING_MISSING")$([ "$(wc -w <<<"$TK_PING_MISSING")" -gt 30 ] && echo ' ...'))}"
}

# tk_rot_gen_traffic NUMBER GFROM GTO SAMPLES: every generation GFROM..GTO
# carried packets both ways on both peers, as the sampler saw the kernel's
# counters (max per SA): a's outbound and b's inbound on direction 0, b's
# outbound and a's inbound on direction 1.
tk_rot_gen_traffic() {
    local out
    out=$(python3 - "$@" "$UML_A4" "$UML_B4" <<'PY'
import sys
number, g0, g1, path, a4, b4 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
mx = {}
for line in open(path):
    f = line.split()
    if len(f) < 7:
        continue
    key = (f[1], int(f[2], 16), f[3])
    mx[key] = max(mx.get(key, 0), int(f[5]))
def spi(d, g):
    return 0x01000000 | number << 8 | d << 7 | g % 128
bad = []
for g in range(g0, g1 + 1):
    row = []
    for ns, d, src, what in (("a", 0, a4, "a out"), ("b", 0, a4, "b in"),
                             ("b", 1, b4, "b out"), ("a", 1, b4, "a in")):
        p = mx.get((ns, spi(d, g), src), 0)
        row.append("%s %d" % (what, p))
        if p == 0:
            bad.append("generation %d: %s carried nothing" % (g, what))
    print("#   generation %d (SPIs 0x%08x / 0x%08x), most packets seen: %s" % (
        g, spi(0, g), spi(1, g), ", ".join(row)))
for b in bad:
    print("BAD " + b)
PY
)
    tk_verdict "$out" "every generation $2..$3 carried packets both ways, counted on both peers"
}

# tk_rot_window_check NUMBER SAMPLES LOOKAHEAD PERIOD_MS OVERLAP_MS ORIGIN_MS:
# in every sample each peer had one outbound SA (two only in the second
# after a boundary), of the clock's generation, and inbound SAs of the
# window only: the clock's generation to + LOOKAHEAD, the one before only
# within the overlap (+ 1.5 s: the kernel's timers tick in seconds).
tk_rot_window_check() {
    local out
    out=$(python3 - "$@" "$UML_A4" "$UML_B4" <<'PY'
import sys
number, path, W, L, OV, origin, a4, b4 = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
    int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], sys.argv[8])
addr = {"a": a4, "b": b4}
samples = {}
for line in open(path):
    f = line.split()
    if len(f) < 3:
        continue
    key = (int(f[0]), f[1])
    samples.setdefault(key, [])
    if f[2] != "-":
        samples[key].append((int(f[2], 16), f[3]))
bad, nout2, maxin, n = [], 0, 0, 0
for (t, ns), sas in sorted(samples.items()):
    n += 1
    gc = (t - origin) // L
    since = t - (origin + gc * L)
    until = origin + (gc + 1) * L - t
    outs = [s for s, src in sas if src == addr[ns]]
    ins = [s for s, src in sas if src != addr[ns]]
    maxin = max(maxin, len(ins))
    if len(outs) > 1:
        nout2 += 1
        if since > 1000:
            bad.append("t=%d %s: %d outbound SAs %.1f s after the boundary" % (t, ns, len(outs), since / 1000))
    for s in outs:
        d = ((s & 0x7f) - gc) % 128
        d = d - 128 if d >= 64 else d
        if not (d == 0 or (d == -1 and since < 1000) or (d == 1 and until < 500)):
            bad.append("t=%d %s: outbound SA 0x%08x is generation clock%+d" % (t, ns, s, d))
    for s in ins:
        d = ((s & 0x7f) - gc) % 128
        d = d - 128 if d >= 64 else d
        if not (0 <= d <= W or (d == -1 and since < OV + 1500) or (d == W + 1 and until < 500)):
            bad.append("t=%d %s: inbound SA 0x%08x is generation clock%+d (%.1f s after the boundary)" % (t, ns, s, d, since / 1000))
print("#   %d samples; at most %d inbound SAs at once; %d samples with two outbound SAs (just after a boundary)" % (n, maxin, nout2))
for b in bad[:20]:
    print("BAD " + b)
if n < 10:
    print("BAD only %d samples" % n)
PY
)
    tk_verdict "$out" "the kernel held only the window's SAs in every sample (outbound: the clock's generation; inbound: it to +$3, the one before within the overlap)"
}

# tk_rot_removed_check NAME NUMBER GFROM GTO MARK_A MARK_B: for every
# generation GFROM..GTO the logs say its SAs were removed having carried
# packets: the sender's outbound and the receiver's inbound, both ways.
tk_rot_removed_check() {
    local name=$1 number=$2 gfrom=$3 gto=$4 g bad="" notes="" la lb
    la=$(tk_log_after a "$5")
    lb=$(tk_log_after b "$6")
    for ((g = gfrom; g <= gto; g++)); do
        local row="" k
        for k in "a outbound 0" "b inbound 0" "b outbound 1" "a inbound 1"; do
            set -- $k
            local log spi p
            [ "$1" = a ] && log=$la || log=$lb
            spi=$(tk_gen_spi "$number" "$3" "$g")
            p=$(sed -n "s/.*$name: SA $spi removed ($2, generation $g, carried \([0-9]*\) packets.*/\1/p" <<<"$log" | head -n 1)
            row+=" $1 $2 ${p:-none}"
            [ -n "$p" ] && [ "$p" -gt 0 ] || bad+=" $g:$1-$2:${p:-no-line}"
        done
        notes+="#   generation $g, removed carrying (packets):$row"$'\n'
    done
    printf '%s' "$notes"
    uml_check "the logs say each generation's SAs were removed having carried packets, both ways, on both peers${bad:+ (missing or empty:$bad)}" \
        test -z "$bad"
}

# tk_rot_kernel_exact NUMBER LOOKAHEAD GEN [SPIS_A SPIS_B]: each peer's
# kernel holds exactly its outbound SA of GEN and its inbound SAs of
# GEN..GEN+LOOKAHEAD (SPIS_A/SPIS_B: what tk_spis said, taken before; by
# default tk_spis now).
tk_rot_kernel_exact() {
    local number=$1 w=$2 g=$3 p d_out d_in want have i
    for p in a b; do
        if [ "$p" = a ]; then d_out=0 d_in=1 have=${4:-$(tk_spis a)}
        else d_out=1 d_in=0 have=${5:-$(tk_spis b)}; fi
        want=$(for ((i = 0; i <= w; i++)); do tk_gen_spi "$number" "$d_in" $((g + i)); echo; done
               tk_gen_spi "$number" "$d_out" "$g"; echo)
        want=$(sort <<<"$want" | tr '\n' ' ')
        uml_check "$p: the kernel holds exactly outbound $g and inbound $g..$((g + w)) ($have)" test "$have" = "$want"
    done
}

# tk_rot_keys_from SECRET_FILE NAME NUMBER GEN ALG NS...: every ESP SA in
# each NS has the key the documented derivation gives from that secret for
# its generation (the one nearest GEN with the SPI's low 7 bits). One
# process for all: prints "NS:SPI(gen G)" for each SA that does not match,
# nothing when all do, and never a key.
tk_rot_keys_from() {
    local secret=$1 name=$2 number=$3 gen=$4 alg=$5 ns dump=/tmp/tk-rot-states
    shift 5
    for ns in "$@"; do
        echo "== $ns"
        ip -n "$ns" xfrm state
    done > "$dump"
    python3 - "$TK_SRC/scripts" "$secret" "$name" "$number" "$gen" "$alg" "$dump" <<'PY'
import re, sys
sys.path.insert(0, sys.argv[1])
from kdf_vectors import derive
secret = bytes.fromhex(open(sys.argv[2]).read().strip())
name, number, gen, alg = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
ns = src = dst = spi = None
bad, n = [], 0
for line in open(sys.argv[7]):
    if line.startswith("== "):
        ns = line[3:].strip()
        continue
    m = re.match(r"src (\S+) dst (\S+)", line)
    if m:
        src, dst = m.groups()
        continue
    m = re.search(r"proto esp spi (0x[0-9a-f]+)", line)
    if m:
        spi = int(m.group(1), 16)
        continue
    m = re.search(r"(?:aead|enc) \S+ 0x([0-9a-f]+)", line)
    if m and spi is not None:
        g = gen + ((spi & 0x7f) - gen % 128 + 192) % 128 - 64
        want = derive(secret, {"name": name, "number": number, "src": src, "dst": dst,
                               "generation": g, "algorithm": alg}).hex()
        n += 1
        if m.group(1) != want:
            bad.append("%s:0x%08x(gen %d)" % (ns, spi, g))
        spi = None
print(" ".join(bad) if n else "no SA at all")
PY
    rm -f "$dump"
}

# tk_rot_expiry_check GEN PERIOD_MS OVERLAP_MS ORIGIN_MS: the time limits of
# every ESP SA in a and b follow the clock: an outbound SA soft-expires when
# its generation ends and hard-expires an overlap later; an inbound SA
# hard-expires an overlap after its generation ends (add time + the "expire
# add" seconds, within 1.5 s: the kernel counts whole seconds). The
# generation of an SA is the one nearest GEN with its SPI's low 7 bits.
tk_rot_expiry_check() {
    local dump=/tmp/tk-rot-lft out ns
    for ns in a b; do
        echo "== $ns"
        ip -n "$ns" -s xfrm state | grep -v '^\s*\(aead\|enc\|auth\)'
    done > "$dump"
    out=$(python3 - "$dump" "$@" "$UML_A4" "$UML_B4" <<'PY'
import re, sys, time
path, G, L, OV, origin, a4, b4 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
addr = {"a": a4, "b": b4}
sas, cur = [], None
for line in open(path):
    if line.startswith("== "):
        ns = line[3:].strip(); continue
    m = re.match(r"src (\S+) dst (\S+)", line)
    if m:
        cur = {"ns": ns, "src": m.group(1)}; sas.append(cur); continue
    m = re.search(r"proto esp spi (0x[0-9a-f]+)", line)
    if m: cur["spi"] = int(m.group(1), 16)
    m = re.search(r"expire add: soft (\d+)\(sec\), hard (\d+)\(sec\)", line)
    if m: cur["soft"], cur["hard"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"^\s*add (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", line)
    if m: cur["add"] = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
bad = []
for s in sas:
    if "spi" not in s or "add" not in s:
        continue
    g = G + ((s["spi"] & 0x7f) - G % 128 + 192) % 128 - 64
    end = (origin + (g + 1) * L) / 1000.0
    out = s["src"] == addr[s["ns"]]
    want = [("soft", end), ("hard", end + OV / 1000.0)] if out else [("soft", None), ("hard", end + OV / 1000.0)]
    for k, w in want:
        have = s[k]
        if w is None:
            if have != 0:
                bad.append("%s %s 0x%08x (gen %d): %s add %d s, expected none" % (s["ns"], "out" if out else "in", s["spi"], g, k, have))
            continue
        t = s["add"] + have
        if have == 0 or abs(t - w) > 1.5:
            bad.append("%s %s 0x%08x (gen %d): %s expiry at add+%d s = %+.1f s from the expected time" % (
                s["ns"], "out" if out else "in", s["spi"], g, k, have, t - w))
print("#   time limits of %d SAs compared with the clock" % len(sas))
for b in bad:
    print("BAD " + b)
PY
)
    rm -f "$dump"
    tk_verdict "$out" "every SA's time limits follow the clock (outbound: soft at its generation's end, hard an overlap later; inbound: hard an overlap after the end)"
}

# tk_rot_snap FILE NS...: `ip xfrm state` of each NS into FILE (a tmpfs
# file inside UML; it holds keys: remove it when done), taken at once so
# later checks do not race the boundaries.
tk_rot_snap() {
    local file=$1 ns
    shift
    (umask 077; for ns in "$@"; do echo "== $ns"; ip -n "$ns" xfrm state; done > "$file")
}

# tk_rot_key_in FILE NS SPI SECRET_FILE NAME NUMBER GEN ALG: in the snapshot
# FILE, NS's SA with that SPI has the key the documented derivation gives
# from that secret for GEN. Prints nothing of any key.
tk_rot_key_in() {
    python3 - "$TK_SRC/scripts" "$@" <<'PY'
import re, sys
sys.path.insert(0, sys.argv[1])
from kdf_vectors import derive
path, want_ns, want_spi, secret_file, name, number, gen, alg = sys.argv[2:10]
want_spi = int(want_spi, 16)
secret = bytes.fromhex(open(secret_file).read().strip())
ns = src = dst = spi = None
for line in open(path):
    if line.startswith("== "):
        ns = line[3:].strip(); continue
    m = re.match(r"src (\S+) dst (\S+)", line)
    if m:
        src, dst = m.groups(); continue
    m = re.search(r"proto esp spi (0x[0-9a-f]+)", line)
    if m:
        spi = int(m.group(1), 16); continue
    m = re.search(r"(?:aead|enc) \S+ 0x([0-9a-f]+)", line)
    if m and ns == want_ns and spi == want_spi:
        k = derive(secret, {"name": name, "number": int(number), "src": src, "dst": dst,
                            "generation": int(gen), "algorithm": alg}).hex()
        if m.group(1) == k:
            sys.exit(0)
        print("the key of SA 0x%08x in %s differs from that derivation" % (spi, ns))
        sys.exit(1)
print("no SA 0x%08x in %s's snapshot" % (want_spi, want_ns))
sys.exit(1)
PY
}
