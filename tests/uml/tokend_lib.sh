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
