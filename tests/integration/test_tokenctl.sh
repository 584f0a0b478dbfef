#!/bin/bash
# tokenctl against the real tokend: exit codes (0 ok, 1 daemon error or
# unreachable, 2 usage, checked before anything is sent), the iproute2-style
# aliases, --json, TOKEND_SOCKET, the messages when tokend is not there, help,
# and the show table.
. "$(dirname "$0")/lib.sh"

tk_veth ta tb
tk_veth tc td
tk_conf <<EOF
[tokend]
log-level = debug
[tokens]
tc = ::c0:ffee
EOF
tk_start || exit 1

NOSOCK=$TK_TMP/no/such/tokend.sock

# --- exit status 2: bad usage, refused before anything is sent ------------

# usage_error WHAT ARGS...: tokenctl ARGS exits 2 with a message on stderr and
# nothing on stdout, both against a socket that does not exist (so it cannot
# have tried to talk to tokend: that would be exit 1) and against the real one.
usage_error() {
    local what=$1; shift
    tk_run "$TOKENCTL" --socket "$NOSOCK" "$@"
    tk_check "usage: $what: exit 2 without a socket (got $TK_RC: ${TK_ERR%%$'\n'*})" [ "$TK_RC" -eq 2 ]
    tk_check "usage: $what: a message on stderr" grep -q '^tokenctl: ' <<<"$TK_ERR"
    tk_check "usage: $what: does not talk of connecting" bash -c "! grep -qi 'connect' <<<\"\$1\"" _ "$TK_ERR"
    tk_check "usage: $what: nothing on stdout" [ -z "$TK_OUT" ]
    tk_run "$TOKENCTL" --socket "$TK_SOCK" "$@"
    tk_check "usage: $what: exit 2 with tokend running (got $TK_RC)" [ "$TK_RC" -eq 2 ]
}

usage_error "unknown verb" frobnicate
usage_error "unknown verb that looks like a token" ::1
usage_error "add without a token" add
usage_error "add dev without a token" add dev ta
usage_error "set without a token" set
usage_error "extra argument to add" add ::1 ::2
usage_error "extra argument after dev" add ::1 dev ta extra
usage_error "token given to delete" delete ::1
usage_error "extra argument to show" show ta
usage_error "extra argument to status" status now
usage_error "dev given to status" status dev ta
usage_error "dev without a name" show dev
usage_error "dev given twice" show dev ta dev tb
usage_error "token with upper bits (2001:db8::1)" add 2001:db8::1 dev ta
usage_error "token with upper bits, global" add 1:: 
usage_error "token not an address" add zzz dev ta
usage_error "token with a prefix other than /64" add ::1/48 dev ta
usage_error "IPv4 address as token" add 1.2.3.4 dev ta
usage_error "interface name with /" add ::1 dev a/b
usage_error "interface name of 16 bytes" delete dev abcdefghijklmnop
usage_error "empty interface name" show dev ''
usage_error "unknown option" --frobnicate status
usage_error "--socket without a value" status --socket
usage_error "--timeout 0" --timeout 0 status
usage_error "--timeout not a number" --timeout soon status

if command -v strace >/dev/null; then
    strace -f -qq -o "$TK_TMP/ctl.strace" -e trace=socket,connect \
        "$TOKENCTL" --socket "$TK_SOCK" add 2001:db8::1 dev ta 2>/dev/null
    tk_check "bad token syntax: tokenctl opens no socket at all (strace)" \
        bash -c "! grep -qE 'socket\\(|connect\\(' '$TK_TMP/ctl.strace'"
fi
tk_check "usage errors changed nothing in the kernel" tk_token_is ta ::
tk_check "usage errors changed nothing in tokend" bash -c "! '$TOKENCTL' --socket '$TK_SOCK' show dev ta >/dev/null 2>&1"

# --- exit status 0 and 1, aliases ----------------------------------------------

tk_run "$TOKENCTL" --socket "$TK_SOCK" add ::1a:2b:3c:4d dev ta
tk_check "add: exit 0 ($TK_ERR)" [ "$TK_RC" -eq 0 ]
tk_eventually 5 "add reaches the kernel" tk_token_is ta ::1a:2b:3c:4d
tk_run "$TOKENCTL" --socket "$TK_SOCK" set ::2 dev ta
tk_check "set (alias of add): exit 0" [ "$TK_RC" -eq 0 ]
tk_eventually 5 "set reaches the kernel" tk_token_is ta ::2
tk_run "$TOKENCTL" --socket "$TK_SOCK" set ::3 device ta
tk_check "'device' for 'dev': exit 0" [ "$TK_RC" -eq 0 ]
tk_eventually 5 "set device reaches the kernel" tk_token_is ta ::3
tk_run "$TOKENCTL" --socket "$TK_SOCK" set dev ta ::4
tk_check "arguments in any order (set dev ta ::4): exit 0 ($TK_ERR)" [ "$TK_RC" -eq 0 ]
tk_eventually 5 "set dev ta ::4 reaches the kernel" tk_token_is ta ::4
for v in get list ls show; do
    tk_run "$TOKENCTL" --socket "$TK_SOCK" $v dev ta
    tk_check "$v dev ta: exit 0" [ "$TK_RC" -eq 0 ]
    tk_check "$v dev ta: shows ta ::4" grep -q '^ta  *::4 ' <<<"$TK_OUT"
    tk_run "$TOKENCTL" --socket "$TK_SOCK" $v
    tk_check "$v: exit 0" [ "$TK_RC" -eq 0 ]
    tk_check "$v: lists ta and tc" bash -c "grep -q '^ta ' <<<\"\$1\" && grep -q '^tc ' <<<\"\$1\"" _ "$TK_OUT"
done
tk_run "$TOKENCTL" --socket "$TK_SOCK"
tk_check "no verb means show: exit 0" [ "$TK_RC" -eq 0 ]
tk_check "no verb means show: lists ta" grep -q '^ta ' <<<"$TK_OUT"
tk_run "$TOKENCTL" --socket "$TK_SOCK" del dev ta
tk_check "del (alias of delete): exit 0 ($TK_ERR)" [ "$TK_RC" -eq 0 ]
tk_eventually 5 "del clears the kernel" tk_token_is ta ::

tk_run "$TOKENCTL" --socket "$TK_SOCK" delete dev ta
tk_check "delete of nothing: exit 1" [ "$TK_RC" -eq 1 ]
tk_check "delete of nothing: says no token is held for ta" grep -qi 'no .*token.*ta' <<<"$TK_ERR"
tk_run "$TOKENCTL" --socket "$TK_SOCK" show dev ta
tk_check "show of nothing: exit 1" [ "$TK_RC" -eq 1 ]
tk_check "show of nothing: says so" grep -qi 'no token is held for ta' <<<"$TK_ERR"
tk_run "$TOKENCTL" --socket "$TK_SOCK" delete dev tc
tk_check "delete of a config entry: exit 1" [ "$TK_RC" -eq 1 ]
tk_check "delete of a config entry: names the file" grep -qF "$TK_CONF:4" <<<"$TK_ERR"
tk_run "$TOKENCTL" --socket "$TK_SOCK" add ::9 dev tc
tk_check "add over a config entry: exit 1" [ "$TK_RC" -eq 1 ]
tk_check "the config token stays" tk_token_is tc ::c0:ffee
tk_run "$TOKENCTL" --socket "$TK_SOCK" add ::: dev ta
tk_check "':::' is a usage error" [ "$TK_RC" -eq 2 ]
tk_run "$TOKENCTL" --socket "$TK_SOCK" resume
tk_check "resume: exit 0" [ "$TK_RC" -eq 0 ]
tk_run "$TOKENCTL" --socket "$TK_SOCK" flush
tk_check "flush: exit 0" [ "$TK_RC" -eq 0 ]
tk_check "flush: says the config entry was kept" grep -q 'kept tc' <<<"$TK_OUT"

# --- the show table -----------------------------------------------------------------

tk_run "$TOKENCTL" --socket "$TK_SOCK" show
tk_check "show with only the config entry: no global line" bash -c "! grep -q '^global' <<<\"\$1\"" _ "$TK_OUT"
tk_ctl add ::1a:2b:3c:4d dev ta >/dev/null
tk_ctl add ::42 >/dev/null
tk_eventually 5 "global token reaches tb" tk_token_is tb ::42
tk_wait 5 tk_state_is ta applied
tk_run "$TOKENCTL" --socket "$TK_SOCK" show
echo "$TK_OUT" | sed 's/^/# /'
tk_check "show: exit 0" [ "$TK_RC" -eq 0 ]
tk_check "show: the global line comes first" grep -qE '^global token ::42 \(runtime\)' <<<"$(head -n 1 <<<"$TK_OUT")"
tk_check "show: the header has the columns" grep -qE '^INTERFACE +TOKEN +STATE +SOURCE +DETAIL$' <<<"$TK_OUT"
tk_check "show: ta row" grep -qE '^ta +::1a:2b:3c:4d +applied +runtime +-$' <<<"$TK_OUT"
tk_check "show: tb row from the global token" grep -qE '^tb +::42 +applied +global \(runtime\) +-$' <<<"$TK_OUT"
tk_check "show: tc row from the config" grep -qE "^tc +::c0:ffee +applied +config $TK_CONF:4 +-\$" <<<"$TK_OUT"
tk_check "show: rows sorted by name" bash -c "[ \"\$(grep -E '^t[a-d] ' <<<\"\$1\" | awk '{print \$1}' | tr '\n' ' ')\" = 'ta tb tc td ' ]" _ "$TK_OUT"
tk_check "show: columns aligned (TOKEN column starts at the same place)" \
    bash -c "[ \"\$(grep -vE '^global' <<<\"\$1\" | awk '{print index(\$0, \$2)}' | sort -u | wc -l)\" = 1 ]" _ "$TK_OUT"
tk_check "show: no trailing blanks" bash -c "! grep -q ' \$' <<<\"\$1\"" _ "$TK_OUT"
tk_run "$TOKENCTL" --socket "$TK_SOCK" status
tk_check "status: exit 0" [ "$TK_RC" -eq 0 ]
tk_check "status: pid line" grep -qE "^pid: +$(tk_daemon_pid)\$" <<<"$TK_OUT"
tk_check "status: version line" grep -qE '^version: +[0-9]' <<<"$TK_OUT"

# --- --json -------------------------------------------------------------------------

json_ok() {
    local what=$1; shift
    tk_run "$TOKENCTL" --socket "$TK_SOCK" "$@"
    tk_check "$what: exit 0 ($TK_ERR)" [ "$TK_RC" -eq 0 ]
    tk_check "$what: stdout is JSON" tk_is_json <<<"$TK_OUT"
}
json_ok "--json show" --json show
tk_check "--json show: entries and global" [ "$(tk_json 'sorted(e["interface"] for e in d["entries"])[:2], d["global"]["token"]' <<<"$TK_OUT")" = "(['ta', 'tb'], '::42')" ]
json_ok "-j show dev ta" -j show dev ta
tk_check "-j show dev ta: the entry" [ "$(tk_json 'd["entries"][0]["token"]' <<<"$TK_OUT")" = ::1a:2b:3c:4d ]
json_ok "show --json (option after the verb)" show --json
json_ok "--json status" --json status
tk_check "--json status: pid" [ "$(tk_json 'd["pid"]' <<<"$TK_OUT")" = "$(tk_daemon_pid)" ]
json_ok "--json add" --json add ::5 dev ta
tk_check "--json add: changed true" [ "$(tk_json 'd["changed"], d["entry"]["token"]' <<<"$TK_OUT")" = "(True, '::5')" ]
json_ok "--json add again" --json add ::5 dev ta
tk_check "--json add again: changed false" [ "$(tk_json 'd["changed"]' <<<"$TK_OUT")" = False ]
json_ok "--json delete" --json delete dev ta
tk_check "--json delete: {}" [ "$(tk_json 'd' <<<"$TK_OUT")" = "{}" ]
json_ok "--json resume" --json resume
json_ok "--json flush" --json flush
tk_check "--json flush: removed the global token" [ "$(tk_json 'd["removed"], d["kept"][0]["interface"]' <<<"$TK_OUT")" = "([None], 'tc')" ]
tk_run "$TOKENCTL" --socket "$TK_SOCK" --json delete dev ta
tk_check "--json error: exit 1" [ "$TK_RC" -eq 1 ]
tk_check "--json error: stdout is JSON with the error" \
    [ "$(tk_json 'd["error"], d["parameters"]["interface"]' <<<"$TK_OUT")" = "('io.tokend.NoSuchEntry', 'ta')" ]

# --- TOKEND_SOCKET ------------------------------------------------------------------

tk_run env TOKEND_SOCKET="$TK_SOCK" "$TOKENCTL" status
tk_check "TOKEND_SOCKET: status exit 0 ($TK_ERR)" [ "$TK_RC" -eq 0 ]
tk_run env TOKEND_SOCKET="$TK_SOCK" "$TOKENCTL" add ::6 dev ta
tk_check "TOKEND_SOCKET: add exit 0" [ "$TK_RC" -eq 0 ]
tk_eventually 5 "TOKEND_SOCKET: add reached the kernel" tk_token_is ta ::6
tk_run env TOKEND_SOCKET="$NOSOCK" "$TOKENCTL" --socket "$TK_SOCK" status
tk_check "--socket wins over TOKEND_SOCKET" [ "$TK_RC" -eq 0 ]
tk_run env TOKEND_SOCKET="$NOSOCK" "$TOKENCTL" status
tk_check "TOKEND_SOCKET is used (nonexistent: exit 1)" [ "$TK_RC" -eq 1 ]
tk_check "TOKEND_SOCKET is used (its path in the message)" grep -qF "$NOSOCK" <<<"$TK_ERR"

# --- help ------------------------------------------------------------------------------

for h in help --help -h; do
    tk_run "$TOKENCTL" --socket "$NOSOCK" $h
    tk_check "$h: exit 0" [ "$TK_RC" -eq 0 ]
    tk_check "$h: usage on stdout" grep -q '^Usage: tokenctl' <<<"$TK_OUT"
    tk_check "$h: lists the verbs" bash -c "for v in show add delete flush resume status; do grep -q \"^  \$v\" <<<\"\$1\" || exit 1; done" _ "$TK_OUT"
done
tk_run "$TOKENCTL" --version
tk_check "--version: exit 0" [ "$TK_RC" -eq 0 ]

# --- tokend not there -------------------------------------------------------------

tk_run "$TOKENCTL" --socket "$NOSOCK" status
tk_check "no socket file: exit 1" [ "$TK_RC" -eq 1 ]
tk_check "no socket file: message names the path" grep -qF "$NOSOCK" <<<"$TK_ERR"

# A socket file nobody listens on (left behind by a crash).
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' "$TK_TMP/stale.sock"
tk_run "$TOKENCTL" --socket "$TK_TMP/stale.sock" status
tk_check "stale socket file: exit 1" [ "$TK_RC" -eq 1 ]
tk_check "stale socket file: message names the path" grep -qF "$TK_TMP/stale.sock" <<<"$TK_ERR"
tk_check "stale socket file: asks whether tokend runs" grep -qi 'running' <<<"$TK_ERR"

# A listener that never answers: --timeout applies.
python3 - "$TK_TMP/mute.sock" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(5)
c, _ = s.accept()
time.sleep(10)
PY
mute=$!
tk_wait 5 test -S "$TK_TMP/mute.sock"
start=$(date +%s%N)
tk_run "$TOKENCTL" --socket "$TK_TMP/mute.sock" --timeout 1 status
took=$(( ($(date +%s%N) - start) / 1000000 ))
tk_check "mute tokend: exit 1 (got $TK_RC)" [ "$TK_RC" -eq 1 ]
tk_check "mute tokend: gives up after --timeout 1 (took ${took} ms)" [ "$took" -ge 900 -a "$took" -lt 5000 ]
tk_check "mute tokend: says there was no reply ($TK_ERR)" grep -qi 'no reply\|timed out\|timeout' <<<"$TK_ERR"
kill "$mute" 2>/dev/null; wait "$mute" 2>/dev/null

tk_stop
tk_run "$TOKENCTL" --socket "$TK_SOCK" status
tk_check "tokend stopped: exit 1" [ "$TK_RC" -eq 1 ]
tk_check "tokend stopped: message names the socket path ($TK_ERR)" grep -qF "$TK_SOCK" <<<"$TK_ERR"
tk_run "$TOKENCTL" --socket "$TK_SOCK" add ::7 dev ta
tk_check "tokend stopped: add exit 1" [ "$TK_RC" -eq 1 ]

tk_done
