#!/bin/bash
# Bad association input is refused with a clear error before the kernel is
# touched (case 6 of the association life cycle; the rest runs in UML, see
# tests/uml/scenario_sa_lifecycle.sh):
#   - `tokend --check-config`: unknown algorithm, missing secret file, secret
#     file with mode 0644 (the message names the file and the mode),
#     association number 0 and 70000, one number used twice (both places
#     named), local equal to remote, IPv4 local with IPv6 remote,
#     replay-window 0 and 33, no secret; every message has FILE:LINE;
#   - tokend started on each such config refuses to start and leaves the
#     namespace's XFRM state and policies as they were;
#   - io.tokend.AddAssociation with a loose secret file (and other bad
#     definitions) -> io.tokend.InvalidAssociation naming the file and the
#     mode; nothing installed (`ip xfrm state` and `ip xfrm policy` of the
#     namespace unchanged). A good definition, as a control, does install its
#     policies (the host kernel has XFRM but no ESP, so its SAs fail).
# Everything runs in a network namespace of its own.
. "$(dirname "$0")/lib.sh"

D=$TK_TMP/cfg
mkdir -p "$D"
(umask 077; head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$D/ok.key")
cp "$D/ok.key" "$D/loose.key"
chmod 0644 "$D/loose.key"

# sa_conf FILE [KEY=VALUE...]: a config with one [sa web] section whose
# lines are number, local, remote, secret (lines 4-7) and then the extra
# lines given; KEY=- drops a line. Line 1 [tokend], 2 log-level, 3 [sa web].
sa_conf() {
    local file=$1
    shift
    local number=7 local=192.0.2.1 remote=192.0.2.2 secret=$D/ok.key extra=()
    for kv in "$@"; do
        case $kv in
            number=*) number=${kv#*=} ;;
            local=*) local=${kv#*=} ;;
            remote=*) remote=${kv#*=} ;;
            secret=*) secret=${kv#*=} ;;
            *) extra+=("$kv") ;;
        esac
    done
    {
        printf '[tokend]\nlog-level = debug\n[sa web]\n'
        [ "$number" = - ] || printf 'number = %s\n' "$number"
        printf 'local = %s\nremote = %s\n' "$local" "$remote"
        [ "$secret" = - ] || printf 'secret = %s\n' "$secret"
        for l in "${extra[@]}"; do printf '%s\n' "${l/=/ = }"; done
    } > "$file"
}

xfrm_snapshot() { { ip -n "$TK_NS" xfrm state; ip -n "$TK_NS" xfrm policy; } 2>&1; }
EMPTY=$(xfrm_snapshot)
tk_check "the test namespace starts with no XFRM state or policy" test -z "$EMPTY"

# bad_config LABEL FILE LINE REGEX...: --check-config fails, and its output
# has FILE:LINE: followed by a message matching every REGEX (extended,
# case-insensitive); tokend refuses to start on FILE and the namespace's
# XFRM state is unchanged.
bad_config() {
    local label=$1 file=$2 line=$3
    shift 3
    local out rc first
    out=$(tk_ns "$TOKEND" --check-config --config "$file" 2>&1)
    rc=$?
    tk_check "$label: --check-config fails (exit $rc)" test "$rc" -ne 0
    first=$(grep -E "(^|>)$file:($line): " <<<"$out" | head -n 1)
    if [ -n "$first" ]; then
        tk_pass "$label: the error has FILE:LINE ($file:$line)"
    else
        tk_fail "$label: the error has FILE:LINE ($file:$line)"
    fi
    local re ok=1
    for re in "$@"; do grep -qiE -- "$re" <<<"$first" || ok=0; done
    if [ "$ok" = 1 ]; then
        tk_pass "$label: the message says what is wrong"
    else
        tk_fail "$label: the message says what is wrong (want: $*)"
    fi
    sed 's/^/#   /' <<<"$out"
    # The daemon itself: refuses to start, touches nothing.
    rm -rf "$TK_TMP/bad.state" "$TK_TMP/bad.sock"
    timeout 5 ip netns exec "$TK_NS" "$TOKEND" --config "$file" --socket "$TK_TMP/bad.sock" \
        --state-dir "$TK_TMP/bad.state" > "$TK_TMP/bad.log" 2>&1
    rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then
        tk_pass "$label: tokend refuses to start (exit $rc)"
    else
        tk_fail "$label: tokend refuses to start (exit $rc$([ $rc = 124 ] && echo ': it ran until killed'))"
        grep -E 'netlink request|error|<3>' "$TK_TMP/bad.log" | head -n 8 | sed 's/^/#   /'
    fi
    if [ "$(xfrm_snapshot)" = "$EMPTY" ]; then
        tk_pass "$label: the namespace's XFRM state and policies are untouched"
    else
        tk_fail "$label: the namespace's XFRM state and policies are untouched; now:"
        xfrm_snapshot | sed 's/^/#   /'
        ip -n "$TK_NS" xfrm policy flush
        ip -n "$TK_NS" xfrm state flush
    fi
}

sa_conf "$D/good.conf"
out=$(tk_ns "$TOKEND" --check-config --config "$D/good.conf" 2>&1)
tk_check "control: a good config passes --check-config ($out)" test $? -eq 0

sa_conf "$D/alg.conf" algorithm=rot13
bad_config "unknown algorithm" "$D/alg.conf" 8 'unknown algorithm' 'rot13'

sa_conf "$D/missing.conf" secret="$D/missing.key"
bad_config "missing secret file" "$D/missing.conf" "3|7" "$D/missing.key" 'no such file'

sa_conf "$D/loose.conf" secret="$D/loose.key"
bad_config "secret file mode 0644" "$D/loose.conf" "3|7" "$D/loose.key" '0644'

sa_conf "$D/n0.conf" number=0
bad_config "number 0" "$D/n0.conf" 4 'number' '1 to 65535'

sa_conf "$D/n70000.conf" number=70000
bad_config "number 70000" "$D/n70000.conf" 4 'number' '70000' '1 to 65535'

sa_conf "$D/same.conf" remote=192.0.2.1
bad_config "local equals remote" "$D/same.conf" 3 'same address'

sa_conf "$D/mixed.conf" remote=2001:db8::2
bad_config "IPv4 local, IPv6 remote" "$D/mixed.conf" 3 'famil|IPv4.*IPv6'

sa_conf "$D/rw0.conf" replay-window=0
bad_config "replay-window 0" "$D/rw0.conf" 8 'replay-window' '1 to 32'

sa_conf "$D/rw33.conf" replay-window=33
bad_config "replay-window 33" "$D/rw33.conf" 8 'replay-window' '33' '1 to 32'

sa_conf "$D/nosecret.conf" secret=-
bad_config "no secret" "$D/nosecret.conf" 3 'secret'

# The same number twice: lines 3 ([sa web]) and 9 ([sa other]).
sa_conf "$D/dup.conf"
printf '\n[sa other]\nnumber = 7\nlocal = 192.0.2.1\nremote = 192.0.2.3\nsecret = %s\n' "$D/ok.key" >> "$D/dup.conf"
bad_config "number used twice" "$D/dup.conf" 9 "$D/dup.conf:3" 'number 7' 'web' 'other'

# --- the runtime path ----------------------------------------------------------
printf '[tokend]\nlog-level = debug\n' > "$TK_CONF"
tk_start || exit 1

# call METHOD JSON: one Varlink call; prints the reply.
call() {
    python3 - "$TK_SOCK" "$1" "$2" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(json.dumps({"method": sys.argv[2], "parameters": json.loads(sys.argv[3])}).encode() + b"\0")
buf = b""
while not buf.endswith(b"\0"):
    d = s.recv(65536)
    if not d:
        break
    buf += d
print(buf[:-1].decode())
PY
}

def() {
    python3 -c '
import json, sys
d = {"name": "rt", "number": 9, "local": "192.0.2.1", "remote": "192.0.2.2", "secret_file": sys.argv[1]}
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    d[k] = int(v) if v.lstrip("-").isdigit() else v
print(json.dumps(d))' "$@"
}

# bad_add LABEL JSON REGEX...: AddAssociation fails with InvalidAssociation
# whose message matches every REGEX; the namespace's XFRM is unchanged and the
# association is not listed.
bad_add() {
    local label=$1 json=$2 reply err msg before
    shift 2
    before=$(xfrm_snapshot)
    reply=$(call io.tokend.AddAssociation "$json")
    err=$(tk_json 'd.get("error")' <<<"$reply" 2>/dev/null)
    msg=$(tk_json 'd.get("parameters", {}).get("message")' <<<"$reply" 2>/dev/null)
    tk_check "runtime, $label: io.tokend.InvalidAssociation (got $err: $msg)" \
        test "$err" = io.tokend.InvalidAssociation
    local re ok=1
    for re in "$@"; do grep -qiE -- "$re" <<<"$msg" || ok=0; done
    if [ "$ok" = 1 ]; then
        tk_pass "runtime, $label: the message says what is wrong"
    else
        tk_fail "runtime, $label: the message says what is wrong (want: $*)"
    fi
    tk_check "runtime, $label: nothing installed (ip xfrm state/policy unchanged)" \
        test "$(xfrm_snapshot)" = "$before"
    local name
    name=$(tk_json 'd.get("name")' <<<"$json")
    tk_check "runtime, $label: $name is not listed" \
        test "$(call io.tokend.ListAssociations "{\"name\": \"$name\"}" | tk_json 'd.get("error")')" = io.tokend.NoSuchAssociation
}

mark=$(tk_log_lines)
bad_add "secret file mode 0644" "$(def "$D/loose.key")" "$D/loose.key" '0644'
tk_check "runtime: no netlink request for the refused definition" \
    bash -c "! tail -n +$((mark + 1)) '$TK_LOG' | grep -q 'netlink request:'"
out=$(tk_ctl add sa rt number 9 local 192.0.2.1 remote 192.0.2.2 secret "$D/loose.key" 2>&1)
rc=$?
tk_check "runtime: tokenctl add sa with the loose file fails, naming the file and mode (exit $rc: $out)" \
    bash -c "[ $rc -ne 0 ] && grep -q -- '$D/loose.key' <<<\"\$1\" && grep -q 0644 <<<\"\$1\"" _ "$out"
bad_add "missing secret file" "$(def "$D/missing.key")" "$D/missing.key" 'no such file'
bad_add "number 0" "$(def "$D/ok.key" number=0)" 'number'
bad_add "number 70000" "$(def "$D/ok.key" number=70000)" 'number'
bad_add "local equals remote" "$(def "$D/ok.key" remote=192.0.2.1)" 'same'
bad_add "IPv4 local, IPv6 remote" "$(def "$D/ok.key" remote=2001:db8::2)" 'IPv4.*IPv6|famil'
bad_add "replay_window 0" "$(def "$D/ok.key" replay_window=0)" 'replay'
bad_add "replay_window 33" "$(def "$D/ok.key" replay_window=33)" 'replay'
bad_add "unknown algorithm" "$(def "$D/ok.key" algorithm=rot13)" 'algorithm|aes-gcm'
bad_add "no secret" '{"name": "rt", "number": 9, "local": "192.0.2.1", "remote": "192.0.2.2"}' 'secret'
bad_add "a schedule line's secret missing" \
    "{\"name\": \"rt\", \"number\": 9, \"local\": \"192.0.2.1\", \"remote\": \"192.0.2.2\", \"secret_file\": \"$D/ok.key\", \"lifetime\": 60, \"schedule\": [{\"from\": 281474976710000, \"secret_file\": \"$D/missing2.key\"}]}" \
    'schedule: the line from generation 281474976710000' "$D/missing2.key"
bad_add "lifetime 1" "$(def "$D/ok.key" lifetime=1)" 'lifetime'
bad_add "overlap without a lifetime" "$(def "$D/ok.key" overlap_ms=500)" 'overlap'
bad_add "schedule out of order" \
    "{\"name\": \"rt\", \"number\": 9, \"local\": \"192.0.2.1\", \"remote\": \"192.0.2.2\", \"secret_file\": \"$D/ok.key\", \"lifetime\": 60, \"schedule\": [{\"from\": 9, \"lifetime\": 30}, {\"from\": 8, \"lifetime\": 30}]}" \
    'ascending'

# Control: a good definition does reach the kernel (policies; the SAs fail
# on a host kernel without ESP), so "unchanged" above means something.
reply=$(call io.tokend.AddAssociation "$(def "$D/ok.key")")
tk_check "runtime control: a good definition is accepted ($(tk_json 'd.get("error")' <<<"$reply"))" \
    test "$(tk_json 'd.get("error")' <<<"$reply")" = None
tk_eventually 5 "runtime control: its policies are in the kernel" \
    bash -c "ip -n '$TK_NS' xfrm policy | grep -q 'dir out'"
bad_add "number used twice" "$(def "$D/ok.key" name=rt2 remote=192.0.2.3)" 'number 9' 'rt'
tk_check "runtime control: delete it" tk_ctl delete sa rt
tk_eventually 5 "runtime control: its policies are gone" \
    bash -c "[ -z \"\$(ip -n '$TK_NS' xfrm policy)\" ]"

tk_stop
tk_done
