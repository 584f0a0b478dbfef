#!/bin/bash
# tokenctl's association verbs (show/add/delete/flush/rotate/release sa) and
# the combined `show`, against fake_tokend.py: the method and parameters each
# verb sends (the fake records every call), the output, the exit codes (0 ok,
# 1 error from tokend, 2 bad usage, refused before connecting), and the
# fallback for a tokend that does not know associations.
#
# Standalone (lib.sh needs root and network namespaces; this needs neither):
# python3 and a built tokenctl ($TOKENCTL, default build/client/tokenctl).
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${TOKEND_SRCDIR:-$(cd "$HERE/../.." && pwd)}
TOKENCTL=${TOKENCTL:-$SRC/build/client/tokenctl}
FAKE=$HERE/fake_tokend.py
TMP=$(mktemp -d /tmp/tokenctl-sa.XXXXXX)
SOCK=$TMP/tokend.sock
REC=$TMP/calls.jsonl
NOSOCK=$TMP/no/such/tokend.sock
FAKE_PID=
PASSED=0
FAILED=0
MARK=0

cleanup() {
    [ -n "$FAKE_PID" ] && { kill "$FAKE_PID"; wait "$FAKE_PID"; } 2>/dev/null
    if [ "$FAILED" -eq 0 ]; then rm -rf "$TMP"; else echo "# kept $TMP"; fi
}
trap cleanup EXIT

pass() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $*"; }
# check "what" CMD...: pass if CMD succeeds.
check() {
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
# has REGEX TEXT / hasnt REGEX TEXT (extended regexps, one line at a time).
has() { grep -qE -- "$1" <<<"$2"; }
hasnt() { ! grep -qE -- "$1" <<<"$2"; }

if [ ! -x "$TOKENCTL" ]; then
    echo "no tokenctl at $TOKENCTL (set TOKENCTL)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

# start_fake: (re)start the fake tokend with the scenario on stdin.
start_fake() {
    stop_fake
    cat > "$TMP/scenario.json"
    rm -f "$REC"
    python3 "$FAKE" --socket "$SOCK" --scenario "$TMP/scenario.json" --record "$REC" \
        2>>"$TMP/fake.log" &
    FAKE_PID=$!
    for _ in $(seq 100); do
        [ -S "$SOCK" ] && return 0
        sleep 0.05
    done
    fail "the fake tokend did not come up"
    return 1
}

stop_fake() {
    [ -n "$FAKE_PID" ] || return 0
    kill "$FAKE_PID" 2>/dev/null
    wait "$FAKE_PID" 2>/dev/null
    FAKE_PID=
}

# run CMD...: sets RC, OUT and ERR.
run() {
    "$@" >"$TMP/out" 2>"$TMP/err"
    RC=$?
    OUT=$(cat "$TMP/out")
    ERR=$(cat "$TMP/err")
}
# ctl ARGS...: tokenctl against the fake; the calls it makes are those after
# the mark (see sent).
ctl() {
    MARK=$(calls)
    run "$TOKENCTL" --socket "$SOCK" "$@"
}

calls() { if [ -f "$REC" ]; then wc -l < "$REC"; else echo 0; fi; }

# sent [METHOD PARAMS-JSON]...: the calls since the mark were exactly these,
# parameters compared as JSON values (7 is not "7").
sent() {
    python3 - "$REC" "$MARK" "$@" <<'PY'
import json, sys
rec, mark, want = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
try:
    lines = open(rec).read().splitlines()[mark:]
except FileNotFoundError:
    lines = []
got = [(c["method"], c.get("parameters", {})) for c in map(json.loads, lines)]
exp = [(want[i], json.loads(want[i + 1])) for i in range(0, len(want), 2)]
def typed(v):
    return json.dumps(v, sort_keys=True)
if [(m, typed(p)) for m, p in got] != [(m, typed(p)) for m, p in exp]:
    print(f"#   sent     {got}\n#   expected {exp}")
    sys.exit(1)
PY
}

# json EXPR: a Python expression over the JSON document in $OUT (bound to d).
json() { python3 -c 'import json,sys; d=json.loads(sys.argv[2]); print(eval(sys.argv[1]))' "$1" "$OUT"; }

# usage_error WHAT REGEX ARGS...: tokenctl ARGS exits 2 with a message matching
# REGEX on stderr and nothing on stdout, against a socket path that does not
# exist (had it tried to connect, that would be exit 1), and sends nothing to
# a tokend that is there.
usage_error() {
    local what=$1 regex=$2; shift 2
    run "$TOKENCTL" --socket "$NOSOCK" "$@"
    check "usage: $what: exit 2 without connecting (got $RC: ${ERR%%$'\n'*})" [ "$RC" -eq 2 ]
    check "usage: $what: says /$regex/ on stderr, nothing on stdout" \
        bash -c '[ -z "$1" ] && grep -qE -- "^tokenctl: .*$2" <<<"$3"' _ "$OUT" "$regex" "$ERR"
    ctl "$@"
    check "usage: $what: exit 2 and nothing sent with tokend there" \
        bash -c '[ "$1" -eq 2 ] && [ "$(wc -l < "$2" 2>/dev/null || echo 0)" -eq "$3" ]' _ "$RC" "$REC" "$MARK"
}

# --- scenarios ---------------------------------------------------------------

TOKENS='"global": {"token": "::42", "source": "config", "file": "/etc/tokend/tokend.conf:3", "match": ["eth*"]},
 "entries": [{"interface": "eth0", "ifindex": 2, "token": "::1a", "origin": "interface", "source": "runtime",
              "file": null, "state": "applied", "reason": null, "kernel_token": "::1a", "addresses": []}]'
# Two associations as tokend's assoc_json() spells them, one from the config
# and one added at runtime that cannot read its secret. "key" stands for a
# tokend gone wrong: tokenctl must not print it even then.
WEB='{"name": "web", "number": 5, "local": "192.0.2.1", "remote": "192.0.2.2", "mode": "transport",
  "algorithm": "aes-gcm-128", "local_selector": "192.0.2.1/32", "remote_selector": "192.0.2.2/32",
  "protocol": null, "local_port": null, "remote_port": null, "dev": null, "source": "config",
  "file": "/etc/tokend/tokend.conf:12", "secret_file": "/etc/tokend/keys/web.key", "state": "up",
  "reason": null, "lookahead": 2, "reqid": 1953169413, "moves": 3,
  "key": "00112233445566778899aabbccddeeff",
  "outbound": {"generation": 3, "spi": 16778499, "installed": true, "bytes": 1229, "packets": 14, "replay_window": 32},
  "inbound": [{"generation": 3, "spi": 16778627, "installed": true, "bytes": 0, "packets": 0, "replay_window": 32},
              {"generation": 4, "spi": 16778628, "installed": true, "bytes": 0, "packets": 0, "replay_window": 32},
              {"generation": 5, "spi": 16778629, "installed": true, "bytes": 0, "packets": 0, "replay_window": 32}],
  "policies": {"out": true, "in": true}}'
DB='{"name": "db-v6", "number": 7, "local": "2001:db8::1", "remote": "2001:db8::2", "mode": "tunnel",
  "algorithm": "aes-gcm-256", "local_selector": "2001:db8:1::/64", "remote_selector": "2001:db8:2::/64",
  "protocol": "tcp", "local_port": null, "remote_port": 5432, "dev": null, "source": "runtime",
  "file": null, "secret_file": "/etc/tokend/keys/db.key", "state": "error",
  "reason": "cannot read /etc/tokend/keys/db.key: Permission denied", "lookahead": 2,
  "reqid": 1953169415, "moves": 0,
  "rotation": {"lifetime": 3600, "period": 3600, "epoch": 0, "phase_ms": 1, "overlap_ms": 900000,
               "clock_generation": 5, "next_rotation": "2026-12-04T23:00:00Z", "next_rotation_in_ms": 1000,
               "secret_file": null, "rotations": 0, "last": null, "peer_in_step": true},
  "outbound": {"generation": 1, "spi": 16779009, "installed": false, "bytes": 0, "packets": 0},
  "inbound": [], "policies": {"out": true, "in": true, "fwd": true}}'

start_fake <<EOF || exit 1
{$TOKENS, "associations": [$WEB, $DB],
 "refuse_rotation": {"db-v6": "the peer has not used generation 1 yet"},
 "status": {"associations": 2}}
EOF

# --- show sa --------------------------------------------------------------------

ctl show sa
echo "$OUT" | sed 's/^/# /'
check "show sa: exit 0 ($ERR)" [ "$RC" -eq 0 ]
check "show sa: sends ListAssociations {}" sent io.tokend.ListAssociations '{}'
check "show sa: the header" has '^NAME +NUMBER +PEERS +MODE +ALGORITHM +STATE +OUT +IN$' "$OUT"
check "show sa: web's row" \
    has '^web +5 +192\.0\.2\.1 -> 192\.0\.2\.2 +transport +aes-gcm-128 +up +gen 3 spi 0x01000503 1\.2 KiB 14 pkts +gen 3-5$' "$OUT"
check "show sa: db-v6's row, outbound not installed, no window" \
    has '^db-v6 +7 +2001:db8::1 -> 2001:db8::2 +tunnel +aes-gcm-256 +error +gen 1 spi 0x01000701 not installed +-$' "$OUT"
check "show sa: the reason on the line under its row" \
    [ "$(grep -A1 '^db-v6 ' <<<"$OUT" | tail -n 1)" = "  reason: cannot read /etc/tokend/keys/db.key: Permission denied" ]
check "show sa: the rotation line after the reason line, both kept" \
    bash -c 'grep -A2 "^db-v6 " <<<"$1" | tail -n 1 | grep -q "^  rotation: "' _ "$OUT"
check "show sa: no reason line for web (reason null)" \
    bash -c '! grep -A1 "^web " <<<"$1" | tail -n 1 | grep -q reason' _ "$OUT"
check "show sa: no key material, no secret path" hasnt '0011223344|secret|web\.key' "$OUT"
check "show sa: no trailing blanks" hasnt ' $' "$OUT"
col() { local h; h=$(head -n 1 <<<"$OUT"); h=${h%%"$1"*}; echo ${#h}; }
check "show sa: STATE and OUT columns start at the header's offsets" \
    bash -c 'while IFS= read -r l; do [ "${l:$2:1}" != " " ] && [ "${l:$(($2 - 1)):1}" = " " ] &&
                                      [ "${l:$3:3}" = "gen" ] || exit 1
             done < <(sed -n "2,\$p" <<<"$1" | grep -v "^  ")' _ "$OUT" "$(col STATE)" "$(col OUT)"

for v in get list ls; do
    ctl $v sa
    check "$v sa: exit 0, same table" bash -c '[ "$1" -eq 0 ] && grep -q "^web " <<<"$2"' _ "$RC" "$OUT"
    check "$v sa: sends ListAssociations {}" sent io.tokend.ListAssociations '{}'
done
ctl show sa web
check "show sa web: exit 0" [ "$RC" -eq 0 ]
check "show sa web: sends {\"name\": \"web\"}" sent io.tokend.ListAssociations '{"name": "web"}'
check "show sa web: header and web only" [ "$(wc -l <<<"$OUT")" -eq 2 ]
ctl show sa nosuch
check "show sa nosuch: exit 1" [ "$RC" -eq 1 ]
check "show sa nosuch: the daemon's message" has '^tokenctl: no association named nosuch$' "$ERR"
check "show sa nosuch: nothing on stdout" [ -z "$OUT" ]
ctl --json show sa nosuch
check "--json show sa nosuch: exit 1, the error as JSON" \
    [ "$RC" -eq 1 -a "$(json 'd["error"], d["parameters"]["name"]')" = "('io.tokend.NoSuchAssociation', 'nosuch')" ]
ctl -j show sa
check "-j show sa: the reply as it is" \
    [ "$RC" -eq 0 -a "$(json '[a["name"] for a in d["associations"]]')" = "['web', 'db-v6']" ]

# --- show: tokens, then associations -------------------------------------------

ctl show
echo "$OUT" | sed 's/^/# /'
check "show: exit 0 ($ERR)" [ "$RC" -eq 0 ]
check "show: ListTokens, then ListAssociations, on one run" \
    sent io.tokend.ListTokens '{}' io.tokend.ListAssociations '{}'
check "show: the tokens first, as before" \
    [ "$(sed -n 1,3p <<<"$OUT")" = "global token ::42 (config /etc/tokend/tokend.conf:3), match eth*
INTERFACE  TOKEN  STATE    SOURCE   DETAIL
eth0       ::1a   applied  runtime  -" ]
check "show: a blank line, then the association table" \
    bash -c '[ -z "$(sed -n 4p <<<"$1")" ] && sed -n 5p <<<"$1" | grep -qE "^NAME +NUMBER"' _ "$OUT"
check "show: the association rows and the reason" \
    bash -c 'grep -q "^web " <<<"$1" && grep -q "^  reason: cannot read" <<<"$1"' _ "$OUT"
ctl
check "no verb is show: both tables" sent io.tokend.ListTokens '{}' io.tokend.ListAssociations '{}'
for v in get list ls; do
    ctl $v
    check "$v: both tables" bash -c '[ "$1" -eq 0 ] && grep -q "^eth0 " <<<"$2" && grep -q "^web " <<<"$2"' _ "$RC" "$OUT"
done
ctl show dev eth0
check "show dev eth0: tokens only" sent io.tokend.ListTokens '{"interface": "eth0"}'
check "show dev eth0: no association table" hasnt '^NAME' "$OUT"
ctl --json show
check "--json show: exit 0" [ "$RC" -eq 0 ]
check "--json show: the ListTokens reply plus \"associations\"" \
    [ "$(json 'sorted(d), d["global"]["token"], d["entries"][0]["interface"], [a["name"] for a in d["associations"]]')" = "(['associations', 'entries', 'global'], '::42', 'eth0', ['web', 'db-v6'])" ]
ctl show --json dev eth0
check "--json show dev eth0: the ListTokens reply as it is" \
    [ "$(json 'sorted(d)')" = "['entries', 'global']" ]

# --- status ---------------------------------------------------------------------

ctl status
check "status: the associations count" has '^associations: +2$' "$OUT"

# --- rotate ----------------------------------------------------------------------

ctl rotate web
check "rotate web: exit 0, prints nothing ($ERR)" [ "$RC" -eq 0 -a -z "$OUT" -a -z "$ERR" ]
check "rotate web: sends RotateAssociation {\"name\": \"web\"}" sent io.tokend.RotateAssociation '{"name": "web"}'
ctl rotate sa web
check "rotate sa web: exit 0, prints nothing" [ "$RC" -eq 0 -a -z "$OUT" ]
check "rotate sa web: sends RotateAssociation {\"name\": \"web\"}" sent io.tokend.RotateAssociation '{"name": "web"}'
ctl --json rotate web
check "--json rotate web: the reply, generation moved" \
    [ "$RC" -eq 0 -a "$(json 'd["associations"][0]["outbound"]["generation"]')" = 6 ]
ctl rotate db-v6
check "rotate refused: exit 1" [ "$RC" -eq 1 ]
check "rotate refused: the daemon's message" has '^tokenctl: db-v6 cannot move to its next generation now: the peer has not used' "$ERR"
ctl rotate nosuch
check "rotate nosuch: exit 1, says so" [ "$RC" -eq 1 ] 
check "rotate nosuch: message" has 'no association named nosuch' "$ERR"

# --- add sa ------------------------------------------------------------------------

mkdir -p "$TMP/keys/sub"
printf 'TOPSECRET-MASTER-KEY-0123456789abcdef\n' > "$TMP/keys/db2.key"
ABSKEY=$(realpath "$TMP/keys/db2.key")
ctl add sa db2 number 9 local 2001:db8::1 remote 2001:db8::9 secret "$ABSKEY" mode tunnel \
    algorithm aes-cbc-hmac-sha256 local-selector 2001:db8:1::/64 remote-selector 2001:db8:9::/64 \
    protocol tcp local-port 5432 remote-port 1024 dev eth0 replay-window 16 lookahead 4 \
    lifetime-bytes 1000000000 lifetime-packets 4000000000
check "add sa, every keyword: exit 0, prints nothing ($ERR)" [ "$RC" -eq 0 -a -z "$OUT" ]
check "add sa, every keyword: AddAssociation with numbers as numbers" sent io.tokend.AddAssociation \
    "{\"name\": \"db2\", \"number\": 9, \"local\": \"2001:db8::1\", \"remote\": \"2001:db8::9\",
      \"secret_file\": \"$ABSKEY\", \"mode\": \"tunnel\", \"algorithm\": \"aes-cbc-hmac-sha256\",
      \"local_selector\": \"2001:db8:1::/64\", \"remote_selector\": \"2001:db8:9::/64\",
      \"protocol\": \"tcp\", \"local_port\": 5432, \"remote_port\": 1024, \"dev\": \"eth0\",
      \"replay_window\": 16, \"lookahead\": 4, \"lifetime_bytes\": 1000000000,
      \"lifetime_packets\": 4000000000}"
check "add sa: the secret itself is never sent" bash -c '! grep -q TOPSECRET "$1"' _ "$REC"
ctl add sa rot number 14 local 10.0.0.1 remote 10.0.0.4 secret /etc/k lifetime 3600 epoch 1767225600 overlap-ms 60000
check "add sa, rotation keywords: exit 0 ($ERR)" [ "$RC" -eq 0 ]
check "add sa, rotation keywords: lifetime, epoch and overlap_ms as numbers" sent io.tokend.AddAssociation \
    '{"name": "rot", "number": 14, "local": "10.0.0.1", "remote": "10.0.0.4", "secret_file": "/etc/k", "lifetime": 3600, "epoch": 1767225600, "overlap_ms": 60000}'
ctl add sa min number 10 local 198.51.100.1 remote 198.51.100.2 secret /etc/tokend/keys/min.key
check "add sa, required keywords only: exit 0" [ "$RC" -eq 0 ]
check "add sa, required keywords only: only those are sent" sent io.tokend.AddAssociation \
    '{"name": "min", "number": 10, "local": "198.51.100.1", "remote": "198.51.100.2", "secret_file": "/etc/tokend/keys/min.key"}'
ctl add sa dv number 15 local 10.0.0.1 remote 10.0.0.5 secret /etc/k device eth1
check "add sa: device is dev, as for tokens" sent io.tokend.AddAssociation \
    '{"name": "dv", "number": 15, "local": "10.0.0.1", "remote": "10.0.0.5", "secret_file": "/etc/k", "dev": "eth1"}'
ctl add sa kw secret /etc/k remote 198.51.100.2 number 11 local 198.51.100.1
check "add sa: keywords in any order" sent io.tokend.AddAssociation \
    '{"name": "kw", "number": 11, "local": "198.51.100.1", "remote": "198.51.100.2", "secret_file": "/etc/k"}'
(cd "$TMP/keys/sub" && run "$TOKENCTL" --socket "$SOCK" add sa rel number 12 local 10.0.0.1 remote 10.0.0.2 secret ../db2.key &&
 echo "$RC" > "$TMP/rel.rc")
MARK=$(( $(calls) - 1 ))
check "add sa, relative secret: exit 0" [ "$(cat "$TMP/rel.rc")" -eq 0 ]
check "add sa, relative secret: sent as its absolute path (realpath)" sent io.tokend.AddAssociation \
    "{\"name\": \"rel\", \"number\": 12, \"local\": \"10.0.0.1\", \"remote\": \"10.0.0.2\", \"secret_file\": \"$ABSKEY\"}"
ln -sf "$TMP/keys/db2.key" "$TMP/keys/sub/link.key"
(cd "$TMP/keys/sub" && "$TOKENCTL" --socket "$SOCK" add sa lnk number 13 local 10.0.0.1 remote 10.0.0.3 secret link.key)
MARK=$(( $(calls) - 1 ))
check "add sa, relative symlink: sent resolved" sent io.tokend.AddAssociation \
    "{\"name\": \"lnk\", \"number\": 13, \"local\": \"10.0.0.1\", \"remote\": \"10.0.0.3\", \"secret_file\": \"$ABSKEY\"}"
ctl show sa db2
check "show sa db2: the added association" \
    has '^db2 +9 +2001:db8::1 -> 2001:db8::9 +tunnel +aes-cbc-hmac-sha256 +pending +gen 1 spi 0x01000901 not installed +gen 1-5$' "$OUT"

ctl add sa other number 9 local 10.0.0.1 remote 10.0.0.2 secret /etc/k
check "add sa, number taken: exit 1" [ "$RC" -eq 1 ]
check "add sa, number taken: the daemon's message" has '^tokenctl: invalid association other: number: number 9 is already used by association db2$' "$ERR"
ctl --json add sa db2 number 99 local 10.0.0.1 remote 10.0.0.2 secret /etc/k
check "--json add sa, name taken: AssociationExists as JSON, exit 1" \
    [ "$RC" -eq 1 -a "$(json 'd["error"], d["parameters"]["name"]')" = "('io.tokend.AssociationExists', 'db2')" ]
ctl add sa web number 98 local 10.0.0.1 remote 10.0.0.2 secret /etc/k
check "add sa over a config association: exit 1" [ "$RC" -eq 1 ]
check "add sa over a config association: names the file" has '^tokenctl: association web is declared in /etc/tokend/tokend.conf:12; change it there$' "$ERR"
ctl add sa same number 97 local 10.0.0.1 remote 10.0.0.1 secret /etc/k
check "add sa refused by tokend (InvalidAssociation): exit 1" [ "$RC" -eq 1 ]
check "add sa refused by tokend: the daemon's message" has '^tokenctl: invalid association same: local and remote are the same address$' "$ERR"

# --- delete sa ---------------------------------------------------------------------

ctl delete sa min
check "delete sa min: exit 0, prints nothing" [ "$RC" -eq 0 -a -z "$OUT" ]
check "delete sa min: sends DeleteAssociation" sent io.tokend.DeleteAssociation '{"name": "min"}'
ctl del sa kw
check "del sa kw: exit 0" [ "$RC" -eq 0 ]
check "del sa kw: sends DeleteAssociation" sent io.tokend.DeleteAssociation '{"name": "kw"}'
ctl delete sa min
check "delete sa of nothing: exit 1, says so" \
    bash -c '[ "$1" -eq 1 ] && grep -q "no association named min" <<<"$2"' _ "$RC" "$ERR"
ctl delete sa web
check "delete sa of a config association: exit 1, names the file" \
    bash -c '[ "$1" -eq 1 ] && grep -qF "/etc/tokend/tokend.conf:12" <<<"$2"' _ "$RC" "$ERR"

# --- release sa ----------------------------------------------------------------------

ctl release sa web
check "release sa web: exit 0" [ "$RC" -eq 0 ]
check "release sa web: sends ReleaseAssociation" sent io.tokend.ReleaseAssociation '{"name": "web"}'
check "release sa web: says the kernel keeps its SAs" \
    [ "$OUT" = "released web: its SAs and policies stay in the kernel" ]
ctl release sa web
check "release sa web again: exit 0, already released" \
    [ "$RC" -eq 0 -a "$OUT" = "web was already released: its SAs and policies stay in the kernel" ]
ctl --json release sa db-v6
check "--json release sa: the reply" [ "$(json 'd["released"]["name"], d["released"]["number"]')" = "('db-v6', 7)" ]
ctl release sa nosuch
check "release sa nosuch: exit 1" [ "$RC" -eq 1 ]

# --- flush sa, and flush ---------------------------------------------------------------

ctl flush sa
echo "$OUT" | sed 's/^/# /'
check "flush sa: exit 0" [ "$RC" -eq 0 ]
check "flush sa: sends FlushAssociations {}" sent io.tokend.FlushAssociations '{}'
check "flush sa: removed lines" bash -c 'grep -qx "removed db2" <<<"$1" && grep -qx "removed db-v6" <<<"$1"' _ "$OUT"
check "flush sa: kept the config one, with its place" has '^kept web \(declared in /etc/tokend/tokend.conf:12\)$' "$OUT"
ctl flush sa
check "flush sa, nothing left: says so" \
    [ "$OUT" = "kept web (declared in /etc/tokend/tokend.conf:12)" ]
ctl flush
check "flush with no object: FlushTokens {} only" sent io.tokend.FlushTokens '{}'
check "flush with no object: exit 0" [ "$RC" -eq 0 ]
ctl --json flush sa
check "--json flush sa: the reply" [ "$(json 'd["removed"], d["kept"][0]["name"]')" = "([], 'web')" ]

# --- token verbs unchanged ----------------------------------------------------------

ctl add ::1:2 dev eth1
check "add TOKEN dev: SetToken as before" sent io.tokend.SetToken '{"token": "::1:2", "interface": "eth1"}'
ctl delete dev eth1
check "delete dev: DeleteToken as before" sent io.tokend.DeleteToken '{"interface": "eth1"}'
ctl resume
check "resume: ResumeToken {}" sent io.tokend.ResumeToken '{}'

# --- permission ------------------------------------------------------------------------

start_fake <<EOF || exit 1
{$TOKENS, "associations": [$DB], "admin": false}
EOF
for args in "add sa x number 20 local 10.0.0.1 remote 10.0.0.2 secret /etc/k" "delete sa db-v6" \
            "flush sa" "rotate db-v6" "release sa db-v6"; do
    ctl $args
    check "not admin: $args: exit 1 with the daemon's message" \
        bash -c '[ "$1" -eq 1 ] && grep -q "^tokenctl: .*needs membership" <<<"$2"' _ "$RC" "$ERR"
done
ctl show sa
check "not admin: show sa still works" [ "$RC" -eq 0 ]

# --- no associations, an older tokend, a failing ListAssociations ----------------------

start_fake <<EOF || exit 1
{$TOKENS}
EOF
ctl show sa
check "show sa, none: exit 0, \"no associations\"" [ "$RC" -eq 0 -a "$OUT" = "no associations" ]
ctl show
NONE_OUT=$OUT
check "show, no associations: the tokens only" bash -c '[ "$1" -eq 0 ] && ! grep -q "^NAME" <<<"$2" && [ "$(wc -l <<<"$2")" -eq 3 ]' _ "$RC" "$OUT"
ctl --json show
check "--json show, no associations: ListTokens plus an empty list" [ "$(json 'sorted(d), d["associations"]')" = "(['associations', 'entries', 'global'], [])" ]
ctl flush sa
check "flush sa, nothing: says so" [ "$OUT" = "no runtime associations to flush" ]

start_fake <<EOF || exit 1
{$TOKENS, "associations": [$WEB], "legacy": true}
EOF
ctl show
check "older tokend (MethodNotFound): show exits 0" [ "$RC" -eq 0 ]
check "older tokend: show asked for both" sent io.tokend.ListTokens '{}' io.tokend.ListAssociations '{}'
check "older tokend: show prints the tokens, as with no associations" [ "$OUT" = "$NONE_OUT" ]
check "older tokend: nothing on stderr" [ -z "$ERR" ]
ctl --json show
check "older tokend: --json show is ListTokens plus an empty list" [ "$RC" -eq 0 -a "$(json 'sorted(d), d["associations"]')" = "(['associations', 'entries', 'global'], [])" ]
ctl show sa
check "older tokend: show sa is an error (exit 1)" [ "$RC" -eq 1 ]
check "older tokend: show sa says the method is unknown" has 'unknown method io.tokend.ListAssociations' "$ERR"

start_fake <<EOF || exit 1
{$TOKENS, "replies": {"io.tokend.ListAssociations": {"error": "io.tokend.InternalError", "parameters": {"message": "out of cheese"}}}}
EOF
ctl show
check "ListAssociations failing: show exits 1" [ "$RC" -eq 1 ]
check "ListAssociations failing: the tokens are still shown" has '^eth0 +::1a ' "$OUT"
check "ListAssociations failing: the error on stderr" has '^tokenctl: out of cheese$' "$ERR"
ctl --json show
check "ListAssociations failing: --json prints the error" \
    [ "$RC" -eq 1 -a "$(json 'd["error"]')" = io.tokend.InternalError ]

start_fake <<EOF || exit 1
{$TOKENS, "replies": {"io.tokend.ListAssociations": {"reply": {"associations": "many"}}}}
EOF
ctl show sa
check "malformed ListAssociations reply: exit 1, says so" \
    bash -c '[ "$1" -eq 1 ] && grep -q "malformed reply" <<<"$2"' _ "$RC" "$ERR"

# --- usage errors: exit 2, nothing sent ----------------------------------------------

GOOD=(number 7 local 192.0.2.1 remote 192.0.2.2 secret /etc/k)
usage_error "add sa without a name" 'needs an association NAME' add sa
usage_error "add sa without keywords" 'lacks number, local, remote, secret' add sa x
usage_error "add sa without secret" 'lacks secret' add sa x number 7 local 192.0.2.1 remote 192.0.2.2
usage_error "name of 65 characters" 'invalid association name' add sa "$(printf 'a%.0s' {1..65})" "${GOOD[@]}"
usage_error "name with /" 'invalid association name "a/b"' add sa a/b "${GOOD[@]}"
usage_error "name with a blank" 'invalid association name' delete sa "a b"
usage_error "empty name" 'invalid association name ""' show sa ''
usage_error "name with a non-ASCII byte" 'invalid association name' rotate "caf$(printf '\xc3\xa9')"
usage_error "number 0" 'invalid number "0": expected an integer from 1 to 65535' add sa x number 0 local 192.0.2.1 remote 192.0.2.2 secret /etc/k
usage_error "number 65536" 'invalid number "65536"' add sa x number 65536 local 192.0.2.1 remote 192.0.2.2 secret /etc/k
usage_error "number -1" 'invalid number "-1"' add sa x number -1 local 192.0.2.1 remote 192.0.2.2 secret /etc/k
usage_error "number 7x" 'invalid number "7x"' add sa x number 7x local 192.0.2.1 remote 192.0.2.2 secret /etc/k
usage_error "local-port 0" 'invalid local-port "0"' add sa x "${GOOD[@]}" protocol tcp local-port 0
usage_error "remote-port 65536" 'invalid remote-port "65536"' add sa x "${GOOD[@]}" protocol tcp remote-port 65536
usage_error "replay-window 0" 'invalid replay-window "0": expected an integer from 1 to 32' add sa x "${GOOD[@]}" replay-window 0
usage_error "replay-window 33" 'invalid replay-window "33"' add sa x "${GOOD[@]}" replay-window 33
usage_error "lookahead 0" 'invalid lookahead "0": expected an integer from 1 to 16' add sa x "${GOOD[@]}" lookahead 0
usage_error "lookahead 17" 'invalid lookahead "17"' add sa x "${GOOD[@]}" lookahead 17
usage_error "lifetime-packets 0" 'invalid lifetime-packets "0"' add sa x "${GOOD[@]}" lifetime-packets 0
usage_error "overlap-ms below 100" 'invalid overlap-ms' add sa x "${GOOD[@]}" overlap-ms 99
usage_error "lifetime beyond ten years" 'invalid lifetime' add sa x "${GOOD[@]}" lifetime 315360001
usage_error "lifetime-bytes beyond 2^63" 'invalid lifetime-bytes' add sa x "${GOOD[@]}" lifetime-bytes 9223372036854775808
usage_error "local not an address" 'invalid local address "192.0.2"' add sa x number 7 local 192.0.2 remote 192.0.2.2 secret /etc/k
usage_error "remote a host name" 'invalid remote address "peer.example"' add sa x number 7 local 192.0.2.1 remote peer.example secret /etc/k
usage_error "mixed families" 'not of the same address family' add sa x number 7 local 192.0.2.1 remote 2001:db8::2 secret /etc/k
usage_error "selector of the other family" 'local-selector 2001:db8::/64 is not of the family' add sa x "${GOOD[@]}" local-selector 2001:db8::/64
usage_error "selector prefix too long" 'invalid remote-selector "192.0.2.0/33"' add sa x "${GOOD[@]}" remote-selector 192.0.2.0/33
usage_error "mode misspelt" 'invalid mode "tunel": expected transport or tunnel' add sa x "${GOOD[@]}" mode tunel
usage_error "algorithm misspelt" 'invalid algorithm "aes-gcm-192"' add sa x "${GOOD[@]}" algorithm aes-gcm-192
usage_error "protocol unknown" 'invalid protocol "esp"' add sa x "${GOOD[@]}" protocol esp
usage_error "protocol 256" 'invalid protocol "256"' add sa x "${GOOD[@]}" protocol 256
usage_error "dev with /" 'invalid dev "a/b"' add sa x "${GOOD[@]}" dev a/b
usage_error "relative secret that does not exist" 'cannot find secret file "no-such.key"' add sa x number 7 local 192.0.2.1 remote 192.0.2.2 secret no-such.key
usage_error "keyword without a value" '"lookahead" needs a value' add sa x "${GOOD[@]}" lookahead
usage_error "keyword twice" '"number" given twice' add sa x "${GOOD[@]}" number 8
usage_error "unknown keyword" 'unknown keyword "spi" for add sa' add sa x "${GOOD[@]}" spi 5
usage_error "add sa with an unknown keyword" 'unknown keyword "token"' add sa x "${GOOD[@]}" token ::1
usage_error "rotate without a name" 'rotate needs an association NAME' rotate
usage_error "rotate sa without a name" 'rotate sa needs an association NAME' rotate sa
usage_error "rotate with two names" 'unexpected argument "b" for rotate' rotate a b
usage_error "release without sa" 'release works on associations only' release web
usage_error "release alone" 'release works on associations only' release
usage_error "release sa without a name" 'release sa needs an association NAME' release sa
usage_error "delete sa without a name" 'delete sa needs an association NAME' delete sa
usage_error "delete sa with dev" 'delete sa takes no "dev"' delete sa web dev eth0
usage_error "flush sa with a name" 'unexpected argument "web" for flush sa' flush sa web
usage_error "show sa with two names" 'unexpected argument "b" for show sa' show sa a b
usage_error "sa after dev" 'unexpected argument "sa" for show' show dev eth0 sa
usage_error "resume sa" 'resume takes no "sa"' resume sa
usage_error "status sa" 'status takes no "sa"' status sa
usage_error "set sa" 'set takes no "sa"' set sa x

# --- a long reply: --timeout is for silence, not for the whole reply ------------------

# ListAssociations answered in 10 pieces 0.3 s apart (3 s in all) with
# --timeout 1: every piece comes within the timeout, so it is waited for.
BIG=$(python3 -c 'import json; print(json.dumps({"associations": [{"name": "a%d" % i} for i in range(2000)]}))')
start_fake <<EOF || exit 1
{"replies": {"io.tokend.ListAssociations": {"trickle": $BIG, "pieces": 10, "every": 0.3}}}
EOF
start=$(date +%s%N)
run "$TOKENCTL" --socket "$SOCK" --timeout 1 --json show sa
took=$(( ($(date +%s%N) - start) / 1000000 ))
check "slow long reply, --timeout 1: exit 0 after ${took} ms ($ERR)" [ "$RC" -eq 0 ]
count=$(python3 -c 'import json, sys; print(len(json.load(sys.stdin)["associations"]))' <<<"$OUT" 2>/dev/null)
check "slow long reply: all 2000 associations printed ($count)" [ "$count" = 2000 ]
# The same reply stopping after 3 pieces: given up a timeout after the last.
start_fake <<EOF || exit 1
{"replies": {"io.tokend.ListAssociations": {"trickle": $BIG, "pieces": 10, "every": 0.3, "stop_after": 3}}}
EOF
start=$(date +%s%N)
run "$TOKENCTL" --socket "$SOCK" --timeout 1 show sa
took=$(( ($(date +%s%N) - start) / 1000000 ))
check "reply stopping halfway: exit 1 ($RC)" [ "$RC" -eq 1 ]
check "reply stopping halfway: given up about 1 s after the last piece (${took} ms)" \
    [ "$took" -ge 1500 -a "$took" -lt 6000 ]
check "reply stopping halfway: says no reply came ($ERR)" has 'no reply' "$ERR"

# --- help ----------------------------------------------------------------------------

run "$TOKENCTL" --socket "$NOSOCK" help
check "help: exit 0" [ "$RC" -eq 0 ]
check "help: lists the association verbs" bash -c 'for v in "show sa" "add sa" "delete sa" "flush sa" "rotate \[sa\]" "release sa"; do
        grep -qE "^  $v" <<<"$1" || { echo "# missing $v"; exit 1; }; done' _ "$OUT"
check "help: lists the add sa keywords" bash -c 'for k in number local remote secret mode algorithm local-selector remote-selector protocol local-port remote-port dev replay-window lookahead lifetime epoch overlap-ms lifetime-bytes lifetime-packets; do
        grep -qE "^  $k " <<<"$1" || { echo "# missing $k"; exit 1; }; done' _ "$OUT"
check "help: says relative secret paths are made absolute" has 'realpath' "$OUT"
check "help: still lists the token verbs" bash -c 'for v in show add delete flush resume status; do grep -q "^  $v" <<<"$1" || exit 1; done' _ "$OUT"

stop_fake
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
