#!/bin/bash
# tokend as the unit runs it: an unprivileged user whose only capability is
# CAP_NET_ADMIN (ambient), here uid/gid 65534 via setpriv(1). It still sets
# tokens and talks XFRM; it makes its socket in its own group (no
# CAP_CHOWN); the admin check still lets root and the admin group change
# state and refuses a reader with a typed error; a master secret handed over
# the way systemd does it (LoadCredential=: root-owned 0400 file plus an ACL
# entry for the service user, in $CREDENTIALS_DIRECTORY) is accepted, while
# one readable by others is refused.
. "$(dirname "$0")/lib.sh"

command -v setpriv >/dev/null || { echo "SKIP: needs setpriv (util-linux)" >&2; exit 77; }
command -v setfacl >/dev/null || { echo "SKIP: needs setfacl (package acl)" >&2; exit 77; }
if [ "$(getent group nogroup | cut -d: -f3)" != 65534 ] || [ "$(getent group users | cut -d: -f3)" != 100 ]; then
    echo "SKIP: needs groups nogroup (65534) and users (100)" >&2
    exit 77
fi

SVC=(--reuid=65534 --regid=65534 --clear-groups --inh-caps=-all,+net_admin
     --ambient-caps=+net_admin --bounding-set=-all,+net_admin)
# Clients are other uids: a reader (socket group only), an admin (socket
# group and admin group), an outsider (neither).
# shellcheck disable=SC2034 # used through the nameref in as()
READER=(--reuid=40001 --regid=65534 --clear-groups)
# shellcheck disable=SC2034
ADMIN=(--reuid=40002 --regid=40002 --groups=65534,100)
# shellcheck disable=SC2034
OUTSIDER=(--reuid=40003 --regid=40003 --clear-groups)
as() { local -n ids=$1; shift; tk_run setpriv "${ids[@]}" "$TOKENCTL" --socket "$SOCK" "$@"; }
as_root() { "$TOKENCTL" --socket "$SOCK" "$@"; }

tk_veth ua ub
ip -n "$TK_NS" addr add 192.0.2.1/24 dev ua
RUN=$TK_TMP/run
SOCK=$RUN/tokend.sock
mkdir -p "$RUN" "$TK_STATE"
chown 65534:65534 "$RUN" "$TK_STATE"
chmod 0755 "$RUN"
chmod 0700 "$TK_STATE"

# The credential as systemd writes it.
CREDS=$TK_TMP/creds
mkdir -m 0700 "$CREDS"
(umask 077; head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$CREDS/web.key")
chmod 0400 "$CREDS/web.key"
setfacl -m u:65534:rx "$CREDS"
setfacl -m u:65534:r "$CREDS/web.key"
tk_check "credential: root-owned, ACL mask in the group bits (0440)" \
    [ "$(stat -c '%U %a' "$CREDS/web.key")" = "root 440" ]

cat > "$TK_CONF" <<CONF
[tokend]
log-level = debug
socket-group = nogroup
admin-group = users
[tokens]
ua = ::1:2
[sa web]
number = 7
local = 192.0.2.1
remote = 192.0.2.9
secret = credential:web.key
CONF

svc() { ip netns exec "$TK_NS" setpriv "${SVC[@]}" env CREDENTIALS_DIRECTORY="$CREDS" "$TOKEND" "$@"; }

out=$(svc --config "$TK_CONF" --check-config 2>&1)
tk_check "config with the credential checks out as the service user ($out)" [ $? -eq 0 ]

svc --config "$TK_CONF" --socket "$SOCK" --state-dir "$TK_STATE" >> "$TK_LOG" 2>&1 &
TK_PID=$!
tk_wait 10 as_root status
# ip netns exec, setpriv and env each exec the next: one process.
DPID=$(pgrep -f -- "--state-dir $TK_STATE" | head -n1)
tk_check "tokend is up as uid 65534" grep -qE "^Uid:\s+65534\s+65534\s+65534\s+65534$" "/proc/$DPID/status"
tk_check "its only capability is CAP_NET_ADMIN" grep -q "^CapEff:\s*0000000000001000$" "/proc/$DPID/status"
tk_check "and only that one in its bounding set" grep -q "^CapBnd:\s*0000000000001000$" "/proc/$DPID/status"
tk_eventually 5 "token set by the unprivileged daemon" tk_token_is ua ::1:2
tk_check "socket 0660 in the daemon's group, made without CAP_CHOWN" \
    [ "$(stat -c '%a %G' "$SOCK")" = "660 nogroup" ]
tk_check "state file owned by the service user, 0600" \
    [ "$(stat -c '%u %a' "$TK_STATE/state.json")" = "65534 600" ]

# The association: its secret came from the credential. (This host kernel
# has no ESP, so the SAs themselves fail; the reason says that, not the
# secret.)
reason=$(as_root --json show sa web |
    python3 -c 'import json,sys; a=json.load(sys.stdin)["associations"][0]; print(a["state"], a["reason"])')
tk_check "association's secret loaded from the credential ($reason)" \
    bash -c "! grep -qiE 'secret|credential|permission' <<<'$reason'"
tk_eventually 5 "XFRM reached as the unprivileged user (policies installed)" \
    bash -c "ip -n '$TK_NS' xfrm policy | grep -q 'dir out'"

# A runtime association may name a credential too.
tk_run "$TOKENCTL" --socket "$SOCK" add sa rt number 8 local 192.0.2.1 remote 192.0.2.8 secret credential:web.key
tk_check "add sa with secret credential:NAME is accepted ($TK_ERR)" [ "$TK_RC" -eq 0 ]
tk_check "... and held as the credential's file" \
    bash -c "'$TOKENCTL' --socket '$SOCK' --json show sa rt | grep -q '\"secret_file\": \"$CREDS/web.key\"'"
tk_run "$TOKENCTL" --socket "$SOCK" add sa rt2 number 9 local 192.0.2.1 remote 192.0.2.7 secret credential:nope.key
tk_check "a missing credential is refused, named ($TK_ERR)" \
    bash -c "[ '$TK_RC' -eq 1 ] && grep -q 'nope.key' <<<'$TK_ERR'"
tk_run "$TOKENCTL" --socket "$SOCK" delete sa rt

# Access with the daemon unprivileged.
tk_run "$TOKENCTL" --socket "$SOCK" add ::1:3 dev ub
tk_check "root may change state" [ "$TK_RC" -eq 0 ]
as ADMIN add ::1:4 dev ub
tk_check "the admin group may change state" [ "$TK_RC" -eq 0 ]
tk_eventually 5 "the admin's token is in the kernel" tk_token_is ub ::1:4
as READER show
tk_check "a reader may read" [ "$TK_RC" -eq 0 ]
as READER add ::1:5 dev ub
tk_check "a reader may not change state (exit $TK_RC)" [ "$TK_RC" -eq 1 ]
tk_check "... refused with an error naming the admin group" grep -q "users" <<<"$TK_ERR"
as READER --json add ::1:5 dev ub
tk_check "... PermissionDenied over the protocol" grep -q '"io.tokend.PermissionDenied"' <<<"$TK_OUT"
tk_check "the kernel kept the admin's token" tk_token_is ub ::1:4
as OUTSIDER show
tk_check "an outsider cannot even connect (exit $TK_RC)" [ "$TK_RC" -eq 1 ]
tk_check "... and is told which group gives access" grep -q "nogroup" <<<"$TK_ERR"
tk_stop

# A credential readable by others is not systemd's: refused, named.
chmod 0444 "$CREDS/web.key"
out=$(svc --config "$TK_CONF" --check-config 2>&1)
rc=$?
tk_check "a credential readable by others is refused (exit $rc)" [ $rc -ne 0 ]
tk_check "... the error names the file and the problem" grep -q "web.key: permissions 0444 are too open" <<<"$out"
# Without the ACL the service user cannot read it at all.
chmod 0400 "$CREDS/web.key"
setfacl -b "$CREDS/web.key"
out=$(svc --config "$TK_CONF" --check-config 2>&1)
tk_check "a credential the service user cannot read: a clear error" \
    grep -q "web.key: Permission denied" <<<"$out"

tk_done
