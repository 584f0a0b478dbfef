#!/bin/bash
# The bash completion of tokenctl (client/completion/tokenctl), driven the way
# bash drives it (COMP_WORDS, COMP_CWORD, COMP_LINE, COMP_POINT, then the
# function; COMPREPLY read back) in a bash that runs inside the test's network
# namespace, against a real tokend there:
#   - the verbs and aliases at position 1, the options, the words after each
#     verb ("sa" only where tokenctl takes it), nothing after a complete one;
#   - `dev`/`device` IFACE: exactly the namespace's interfaces (an odd name
#     quoted, not expanded), never the host's or another namespace's, also in
#     a shell that entered the namespace without remounting /sys (nsenter);
#   - association names from the running tokend, with --socket PATH (also
#     --socket=PATH, after the verb, or $TOKEND_SOCKET), a name added and
#     deleted at runtime coming and going, a name-like text inside a string
#     of the reply never taken for one;
#   - the keywords after `add sa NAME` (each one tokenctl takes, all that its
#     help lists, none twice) and their values where there is a fixed list
#     (each one tokenctl takes);
#   - nothing on stderr anywhere, in particular with no tokend (no socket, a
#     file that is no socket, no tokenctl at all), and no long wait for a
#     tokend that does not answer.
# Every case runs with bash-completion's bash_completion sourced (when
# installed; $BASH_COMPLETION_SCRIPT to use another copy) and without it (then
# under `set -u`). $TOKENCTL_COMPLETION: the script to test.
. "$(dirname "$0")/lib.sh"

COMPLETION=${TOKENCTL_COMPLETION:-$TK_SRC/client/completion/tokenctl}
BC_SCRIPT=${BASH_COMPLETION_SCRIPT:-/usr/share/bash-completion/bash_completion}
NOSOCK=$TK_TMP/no/such/tokend.sock
DRIVER=$TK_TMP/drive.sh
BASH_BIN=$(command -v bash)
CTLDIR=$(cd "$(dirname "$TOKENCTL")" && pwd)

tk_pass() { TK_PASSED=$((TK_PASSED + 1)); echo "ok - $*"; }
tk_fail() { TK_FAILED=$((TK_FAILED + 1)); echo "not ok - $*"; }
tk_skip() { echo "ok - $* # SKIP"; }

for f in "$COMPLETION" "$TOKENCTL" "$TOKEND"; do
    [ -e "$f" ] || { tk_fail "$f is missing (build first, or set TOKENCTL, TOKEND, TOKENCTL_COMPLETION)"; exit 1; }
done

MODES=(plain)
if [ -f "$BC_SCRIPT" ]; then
    MODES+=(bc)
else
    tk_skip "no $BC_SCRIPT: only without bash-completion"
fi

# The driver: drive.sh MODE COMPLETION BC_SCRIPT LINE. LINE is split as bash
# splits a command line for completion with the default COMP_WORDBREAKS
# (blanks, then runs of '=' or ':': "--opt=value" is "--opt" "=" "value",
# "::1a" is "::" "1a"; quotes are not looked at), the cursor at its end.
# Prints COMPREPLY, one word a line; exits 3 when the set-up failed.
cat > "$DRIVER" <<'EOF'
mode=$1 completion=$2 bc_script=$3 line=$4
if [[ $mode == bc ]]; then
    . "$bc_script" >/dev/null || exit 3
    declare -F _init_completion >/dev/null || { echo "no _init_completion" >&2; exit 3; }
else
    set -u
fi
. "$completion" || exit 3
if [[ $mode == plain ]] && declare -F _init_completion >/dev/null; then
    echo "_init_completion defined without bash-completion" >&2
    exit 3
fi
complete -p tokenctl >/dev/null || { echo "no completion registered for tokenctl" >&2; exit 3; }
read -ra split <<<"$line"
[[ $line == *' ' || -z $line ]] && split+=("")
COMP_WORDS=()
for w in "${split[@]}"; do
    [[ $w ]] || { COMP_WORDS+=(""); continue; }
    # Runs of '=' or ':' are words of their own ("::1a" -> "::" "1a").
    while [[ $w =~ ^([^=:]*)([=:]+)(.*)$ ]]; do
        [[ ${BASH_REMATCH[1]} ]] && COMP_WORDS+=("${BASH_REMATCH[1]}")
        COMP_WORDS+=("${BASH_REMATCH[2]}")
        w=${BASH_REMATCH[3]}
    done
    [[ $w ]] && COMP_WORDS+=("$w")
done
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE=$line
COMP_POINT=${#line}
COMP_TYPE=9
COMP_KEY=9
COMPREPLY=()
_tokenctl "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
rc=$?
for w in "${COMPREPLY[@]}"; do
    printf '%s\n' "$w"
done
exit $rc
EOF

# Run the completion as the test namespace's shell does. CENV: extra
# environment (NAME=VALUE...); RUNNER: how to enter the namespace. Any
# lookup not given a socket goes to $NOSOCK, never to a default socket.
CENV=()
RUNNER=(ip netns exec "$TK_NS")

# comp MODE LINE: sets GOT (the completions, sorted, one line each), CERR
# (stderr), CRC and CMS (milliseconds taken).
comp() {
    local t0 t1
    t0=$(date +%s%N)
    "${RUNNER[@]}" env TOKEND_SOCKET="$NOSOCK" "${CENV[@]}" \
        "$BASH_BIN" "$DRIVER" "$1" "$COMPLETION" "$BC_SCRIPT" "$2" >"$TK_TMP/comp.out" 2>"$TK_TMP/comp.err"
    CRC=$?
    t1=$(date +%s%N)
    CMS=$(((t1 - t0) / 1000000))
    GOT=$(LC_ALL=C sort "$TK_TMP/comp.out")
    CERR=$(cat "$TK_TMP/comp.err")
}

lacks() { ! grep -qF -- "$1" <<<"$2"; }
sorted() { printf '%s\n' "$@" | LC_ALL=C sort; }
oneline() { tr '\n' ' ' <<<"$1" | sed 's/ $//'; }

# quiet MODE WHAT: the last comp ran cleanly and printed nothing on stderr.
quiet() {
    if [ "$CRC" -eq 0 ] && [ -z "$CERR" ]; then
        return 0
    fi
    tk_fail "[$1] $2: exit $CRC, stderr: ${CERR:0:300}"
    return 1
}

# want_exact WHAT LINE WORD...: in every mode, LINE completes to exactly the
# WORDs (none: nothing), with nothing on stderr.
want_exact() {
    local what=$1 line=$2 m exp
    shift 2
    exp=$( (($#)) && sorted "$@")
    for m in "${MODES[@]}"; do
        comp "$m" "$line"
        quiet "$m" "$what" || continue
        if [ "$GOT" = "$exp" ]; then
            tk_pass "[$m] $what"
        else
            tk_fail "[$m] $what: got {$(oneline "$GOT")}, want {$(oneline "$exp")}"
        fi
    done
}

# want_has WHAT LINE WORD...: in every mode, the completions of LINE include
# every WORD.
want_has() {
    local what=$1 line=$2 m w missing
    shift 2
    for m in "${MODES[@]}"; do
        comp "$m" "$line"
        quiet "$m" "$what" || continue
        missing=
        for w in "$@"; do
            grep -qxF -- "$w" <<<"$GOT" || missing+=" $w"
        done
        if [ -z "$missing" ]; then
            tk_pass "[$m] $what"
        else
            tk_fail "[$m] $what: lacks$missing (got {$(oneline "$GOT")})"
        fi
    done
}

# --- the namespace and tokend ----------------------------------------------

tk_veth cmpa cmpb
# An interface whose name the shell would expand if it were not quoted.
# shellcheck disable=SC2016 # not to be expanded
ODD='cm$(id)`'
ip -n "$TK_NS" link add "$ODD" type veth peer name "cm'q" || tk_fail "cannot make an interface named $ODD"
ip -n "$TK_NS" addr add 192.0.2.1/24 dev cmpa
ip -n "$TK_NS" addr add 192.0.2.2/24 dev cmpb
# Another namespace, whose interfaces must never be offered.
OTHER_NS="${TK_NS:0:34}-other"
TK_EXTRA_NS+=("$OTHER_NS")
ip netns add "$OTHER_NS" && ip -n "$OTHER_NS" link add cmxa type veth peer name cmxb

NS_IFACES=()
while IFS= read -r n; do NS_IFACES+=("$n"); done < <(
    ip -n "$TK_NS" -j link show | python3 -c 'import json,sys; [print(l["ifname"]) for l in json.load(sys.stdin)]')
NS_QUOTED=()
for n in "${NS_IFACES[@]}"; do printf -v q '%q' "$n"; NS_QUOTED+=("$q"); done
# The host's interfaces, by name only (read, never touched).
HOST_ONLY=()
while IFS= read -r n; do
    for m in "${NS_IFACES[@]}"; do [ "$n" = "$m" ] && continue 2; done
    HOST_ONLY+=("$n")
done < <(awk -F: 'NR > 2 { gsub(/ /, "", $1); print $1 }' /proc/net/dev)
HOST_ONLY+=(cmxa cmxb)
echo "# namespace: ${NS_IFACES[*]}; elsewhere: ${HOST_ONLY[*]}"

mkdir -p "$TK_TMP/files"
: > "$TK_TMP/files/sock-here"
: > "$TK_TMP/files/secret-here.key"
(umask 077; head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$TK_TMP/web.key")
# A secret file whose path, echoed in the reply, holds name-like text.
TRICKY_KEY="$TK_TMP/k{\"name\": \"evil\"},\"name\":\"evil2\".key"
(umask 077; cp "$TK_TMP/web.key" "$TRICKY_KEY")
tk_conf <<EOF
[tokend]
log-level = debug
[sa web]
number = 7
local = 192.0.2.1
remote = 192.0.2.9
secret = $TK_TMP/web.key
EOF
# shellcheck disable=SC2119 # tk_start takes tokend's extra arguments
tk_start || exit 1
tk_run "$TOKENCTL" --socket "$TK_SOCK" add sa db_v6.x-1 number 8 local 192.0.2.1 remote 192.0.2.8 secret "$TK_TMP/web.key"
tk_check "tokenctl add sa db_v6.x-1 (exit $TK_RC: $TK_ERR)" [ "$TK_RC" -eq 0 ]
tk_run "$TOKENCTL" --socket "$TK_SOCK" add sa tricky number 9 local 192.0.2.1 remote 192.0.2.7 secret "$TRICKY_KEY"
tk_check "tokenctl add sa tricky (exit $TK_RC: $TK_ERR)" [ "$TK_RC" -eq 0 ]
names=$(tk_ctl --json show sa | tk_json '" ".join(sorted(a["name"] for a in d["associations"]))')
tk_check "tokend holds web, db_v6.x-1 and tricky ($names)" [ "$names" = "db_v6.x-1 tricky web" ]
# shellcheck disable=SC2016 # expanded by that bash
tk_check "the reply does hold the name-like text" bash -c '"$1" --socket "$2" --json show sa | grep -qF "\\\"name\\\": \\\"evil\\\""' _ "$TOKENCTL" "$TK_SOCK"

C=$TOKENCTL # the command being completed
S="--socket $TK_SOCK"
NAMES=(db_v6.x-1 tricky web)
VERBS=(show get list ls add set delete del flush resume status rotate release monitor help)
OPTS=(--socket --timeout -j --json -h --help --version)
SA_KEYS=(number local remote secret mode algorithm local-selector remote-selector protocol
    local-port remote-port dev replay-window lookahead lifetime lifetime-bytes lifetime-packets
    epoch overlap-ms)
ALGS=(aes-gcm-128 aes-gcm-256 aes-cbc-hmac-sha256)

# --- verbs and options -------------------------------------------------------

want_exact "verbs at position 1" "$C " "${VERBS[@]}"
want_exact "verbs after options" "$C -j --timeout 3 $S " "${VERBS[@]}"
want_exact "verbs after --" "$C -- " "${VERBS[@]}"
want_exact "verbs starting with s" "$C s" set show status
want_exact "verbs starting with de (aliases too)" "$C de" del delete
want_exact "verbs starting with l" "$C l" list ls
want_exact "monitor" "$C mo" monitor
want_exact "options" "$C -" "${OPTS[@]}"
want_exact "long options" "$C --" --socket --timeout --json --help --version
want_exact "options after a verb" "$C show -" "${OPTS[@]}"
want_exact "no options after -- past the verb" "$C show -- -"
want_exact "--socket PATH: files" "$C --socket $TK_TMP/files/so" "$TK_TMP/files/sock-here"
want_exact "--socket=PATH: files" "$C --socket=$TK_TMP/files/so" "$TK_TMP/files/sock-here"
want_exact "--timeout takes a number: nothing" "$C --timeout "
want_exact "nothing after --help" "$C --help "

# Each verb offered is one tokenctl knows.
comp plain "$C "
for v in $GOT; do
    tk_run "$TOKENCTL" --socket "$NOSOCK" "$v"
    tk_check "tokenctl knows the verb $v (${TK_ERR%%$'\n'*})" lacks "unknown command" "$TK_ERR"
done

# --- the words after each verb ----------------------------------------------

for v in show get list ls delete del flush; do
    want_exact "$v: dev, device or sa" "$C $v " dev device sa
done
want_exact "add: dev, device or sa" "$C add " dev device sa
want_exact "add TOKEN: dev or device" "$C add ::1a " dev device
want_exact "add TOKEN dev IFACE: nothing more" "$C add ::1a dev cmpa "
want_exact "set: dev or device (no set sa)" "$C set " dev device
want_exact "resume: dev or device" "$C resume " dev device
want_exact "release: only sa" "$C $S release " sa
want_exact "status: nothing" "$C status "
want_exact "monitor: nothing" "$C monitor "
want_exact "help: nothing" "$C help "
want_exact "show dev IFACE: nothing more (dev once)" "$C show dev cmpa "
want_exact "flush sa: nothing more" "$C $S flush sa "
want_exact "an unknown verb: nothing" "$C frob "

# --- interfaces -----------------------------------------------------------------

want_exact "show dev: exactly the namespace's interfaces" "$C show dev " "${NS_QUOTED[@]}"
want_exact "show device: the same" "$C show device " "${NS_QUOTED[@]}"
want_exact "delete dev cmp: cmpa cmpb" "$C delete dev cmp" cmpa cmpb
want_exact "add TOKEN dev: interfaces" "$C add ::1a dev " "${NS_QUOTED[@]}"
want_exact "resume -j dev: interfaces" "$C resume -j dev " "${NS_QUOTED[@]}"
printf -v q '%q' "$ODD"
want_exact "an interface named $ODD is offered quoted ($q), not expanded" "$C show dev cm\$" "$q"
want_exact "... also when typed quoted" "$C show dev cm\\\$" "$q"
want_exact "show dev cm: quoted where needed" "$C show dev cm" cmpa cmpb "$q" "cm\\'q"
for m in "${MODES[@]}"; do
    comp "$m" "$C show dev "
    leaked=
    for h in "${HOST_ONLY[@]}"; do grep -qxF -- "$h" <<<"$GOT" && leaked+=" $h"; done
    if [ -z "$leaked" ]; then
        tk_pass "[$m] no interface of the host or of another namespace"
    else
        tk_fail "[$m] interfaces from outside the namespace offered:$leaked"
    fi
done
# A shell that entered the namespace without remounting /sys: /sys/class/net
# still shows the host there.
if command -v nsenter >/dev/null; then
    RUNNER=(nsenter "--net=/run/netns/$TK_NS")
    want_exact "nsenter --net (host's /sys): exactly the namespace's interfaces" "$C show dev " "${NS_QUOTED[@]}"
    RUNNER=(ip netns exec "$TK_NS")
else
    tk_skip "no nsenter"
fi

# --- association names from tokend -------------------------------------------------

for v in show get list ls delete del release rotate; do
    want_exact "$v sa: the names tokend holds" "$C $S $v sa " "${NAMES[@]}"
done
want_exact "rotate: sa or a name" "$C $S rotate " sa "${NAMES[@]}"
want_exact "show sa w: web" "$C $S show sa w" web
want_exact "show sa NAME: nothing more" "$C $S show sa web "
want_exact "rotate NAME: nothing more" "$C $S rotate web "
want_exact "--socket=PATH" "$C --socket=$TK_SOCK delete sa " "${NAMES[@]}"
want_exact "--socket after the verb" "$C show $S sa " "${NAMES[@]}"
want_exact "--socket '...' quoted" "$C --socket '$TK_SOCK' release sa " "${NAMES[@]}"
CENV=(TOKEND_SOCKET="$TK_SOCK")
want_exact "\$TOKEND_SOCKET" "$C rotate sa " "${NAMES[@]}"
CENV=(PATH="$CTLDIR:/usr/sbin:/usr/bin:/sbin:/bin")
want_exact "tokenctl found in PATH" "tokenctl $S show sa " "${NAMES[@]}"
CENV=()
want_exact "the last --socket counts" "$C --socket $NOSOCK $S show sa " "${NAMES[@]}"

tk_ctl delete sa db_v6.x-1 >/dev/null
want_exact "a deleted association is gone" "$C $S delete sa " tricky web
tk_ctl add sa late number 10 local 192.0.2.1 remote 192.0.2.6 secret "$TK_TMP/web.key" >/dev/null
want_exact "a new association is there" "$C $S delete sa " late tricky web

# --- add sa NAME --------------------------------------------------------------------

want_exact "add sa: a new name, nothing offered" "$C $S add sa "
want_exact "add sa NAME: every keyword" "$C add sa new " "${SA_KEYS[@]}"
want_exact "add sa NAME: keywords starting with l" "$C add sa new l" local local-selector \
    local-port lifetime lifetime-bytes lifetime-packets lookahead
want_exact "add sa NAME: no keyword twice" "$C add sa new number 9 local 192.0.2.1 -j remote 192.0.2.2 lo" \
    local-selector local-port lookahead
want_exact "algorithm values" "$C add sa new algorithm " "${ALGS[@]}"
want_exact "algorithm aes-gcm-" "$C add sa new number 9 algorithm aes-gcm-" aes-gcm-128 aes-gcm-256
want_exact "mode values" "$C add sa new mode " transport tunnel
want_exact "protocol values" "$C add sa new protocol " tcp udp sctp icmp ipv6-icmp icmpv6
want_exact "dev: interfaces" "$C add sa new dev " "${NS_QUOTED[@]}"
want_exact "secret: files" "$C add sa new secret $TK_TMP/files/se" "$TK_TMP/files/secret-here.key"
want_exact "number: nothing" "$C add sa new number "
want_exact "a keyword's value is taken as it is (-j)" "$C add sa new lifetime -"
want_exact "add sa NAME dev: only dev (tokenctl takes no device there)" "$C add sa new dev" dev

# Each keyword offered is one tokenctl takes, and every one its help lists is
# offered.
comp plain "$C add sa new "
for k in $GOT; do
    tk_run "$TOKENCTL" --socket "$NOSOCK" add sa new "$k"
    tk_check "tokenctl takes the keyword $k (${TK_ERR%%$'\n'*})" grep -q "\"$k\" needs a value" <<<"$TK_ERR"
done
help_keys=$("$TOKENCTL" help | sed -n '/^add sa keywords/,/^$/p' | sed -nE 's/^  ([a-z][a-z-]*) .*/\1/p' | LC_ALL=C sort)
tk_check "the keywords are those of tokenctl help ($(oneline "$help_keys"))" [ "$GOT" = "$help_keys" ]
for kv in "${ALGS[@]/#/algorithm=}" mode=transport mode=tunnel protocol=tcp protocol=udp \
    protocol=sctp protocol=icmp protocol=ipv6-icmp protocol=icmpv6; do
    tk_run "$TOKENCTL" --socket "$NOSOCK" add sa new number 9 local 192.0.2.1 remote 192.0.2.2 \
        secret /nonexistent.key "${kv%%=*}" "${kv#*=}"
    tk_check "tokenctl takes ${kv%%=*} ${kv#*=} (exit $TK_RC, not 2)" [ "$TK_RC" -eq 1 ]
done

# --- no tokend -------------------------------------------------------------------------

want_exact "no socket: no names, nothing on stderr" "$C --socket $NOSOCK show sa "
want_exact "no socket: rotate offers only sa" "$C --socket $NOSOCK rotate " sa
want_exact "a file that is no socket: quiet" "$C --socket $TK_CONF delete sa "
want_exact "no tokenctl at all: quiet" "/nonexistent/tokenctl $S show sa "
CENV=(PATH=/nonexistent)
want_exact "no tokenctl in PATH: quiet" "tokenctl $S release sa "
CENV=()
# A tokend that never answers: the connection is accepted (backlog), the
# reply never comes.
python3 - "$TK_TMP/mute.sock" <<'PY' &
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
time.sleep(60)
PY
MUTE_PID=$!
tk_wait 5 test -S "$TK_TMP/mute.sock"
for m in "${MODES[@]}"; do
    comp "$m" "$C --socket $TK_TMP/mute.sock show sa "
    quiet "$m" "a mute tokend" || continue
    if [ -z "$GOT" ] && [ "$CMS" -lt 3000 ]; then
        tk_pass "[$m] a mute tokend: no names, given up on in $CMS ms (< 3000)"
    else
        tk_fail "[$m] a mute tokend: got {$(oneline "$GOT")} in $CMS ms (want nothing, < 3000)"
    fi
done
kill "$MUTE_PID" 2>/dev/null
wait "$MUTE_PID" 2>/dev/null

tk_stop
want_exact "tokend stopped: quiet" "$C $S show sa "
want_exact "tokend stopped: verbs still" "$C $S r" resume rotate release

tk_done
