#!/bin/bash
# Access to the control socket (docs/protocol.md, "Access"): the socket is
# 0660 and in socket-group from its creation, never chmod-ed; everyone who
# can connect may read; changes need root or admin-group (primary or
# supplementary); refusals are typed and leave the kernel alone; every change
# is logged with the caller's uid and pid. Other users are played with
# setpriv(1): uid 65534 (nobody), groups nogroup (65534) and users (100).
. "$(dirname "$0")/lib.sh"

if [ "$(getent group nogroup | cut -d: -f3)" != 65534 ]; then
    echo "SKIP: needs group nogroup with gid 65534" >&2
    exit 77
fi
command -v setpriv >/dev/null || { echo "SKIP: needs setpriv (util-linux)" >&2; exit 77; }

# shellcheck disable=SC2034 # used through the nameref in as()
NOBODY=(--reuid=65534 --regid=65534 --clear-groups)     # in nogroup (primary)
NOBODY_SUPP=(--reuid=65534 --regid=100 --groups=65534)  # in nogroup (supplementary)
NOBODY_USERS=(--reuid=65534 --regid=65534 --groups=100) # nogroup, users (supplementary)
OUTSIDER=(--reuid=65534 --regid=100 --clear-groups)     # not in nogroup

as() { local who=$1; shift; local -n ids=$who; tk_run setpriv "${ids[@]}" "$TOKENCTL" --socket "$TK_SOCK" "$@"; }
as_root() { tk_run "$TOKENCTL" --socket "$TK_SOCK" "$@"; }

# refused WHAT: the last tk_run was refused with PermissionDenied.
refused() {
    local what=$1
    tk_check "$what: exit 1 (got $TK_RC)" [ "$TK_RC" -eq 1 ]
    tk_check "$what: says permission is missing" grep -qiE 'permission|root or membership' <<<"$TK_ERR"
    tk_check "$what: names the admin group or root" grep -qE "root|$ADMIN" <<<"$TK_ERR"
}

sock_is() { [ "$(stat -c '%A %G' "$TK_SOCK" 2>/dev/null)" = "srw-rw---- nogroup" ]; }

tk_veth va vb
ADMIN=tokend-admin
tk_conf <<EOF
[tokend]
log-level = debug
socket-group = nogroup
EOF

# --- the socket's mode and group, from its creation -------------------------

# Watch the socket path from before tokend starts and record every mode and
# group it is ever seen with.
python3 - "$TK_SOCK" "$TK_TMP/seen" "$TK_TMP/stop-watch" "$TK_TMP/watching" <<'PY' &
import os, sys, time
path, out, stop, ready = sys.argv[1:5]
seen = set()
open(ready, "w").close()
end = time.monotonic() + 60
while time.monotonic() < end and not os.path.exists(stop):
    try:
        st = os.lstat(path)
        seen.add("%o %d" % (st.st_mode, st.st_gid))
    except FileNotFoundError:
        pass
with open(out, "w") as f:
    f.write("\n".join(sorted(seen)) + "\n")
PY
watcher=$!
tk_wait 20 test -e "$TK_TMP/watching" || tk_fail "socket watcher did not start"

STRACE_OK=false
if command -v strace >/dev/null; then
    STRACE_OK=true
    tk_start_under strace -f -qq -yy -o "$TK_TMP/strace.log" \
        -e trace=bind,rename,chmod,fchmod,fchmodat || exit 1
else
    echo "# strace not installed: the no-chmod check is skipped"
    tk_start || exit 1
fi
sleep 0.3
touch "$TK_TMP/stop-watch"
wait "$watcher"

tk_check "socket is srw-rw---- group nogroup" sock_is
tk_check "watcher saw the socket" grep -q . "$TK_TMP/seen"
tk_check "socket never seen with another mode or group (saw: $(tr '\n' ' ' < "$TK_TMP/seen"))" \
    [ "$(grep -v '^$' "$TK_TMP/seen" | sort -u)" = "140660 65534" ]
if $STRACE_OK; then
    tk_check "strace saw the socket bound (the trace works)" \
        grep -qE 'bind\(.*'"$(basename "$TK_SOCK")" "$TK_TMP/strace.log"
    sed 's/^/# strace: /' "$TK_TMP/strace.log" | grep -v 'exited\|killed' | head -n 20
    chmods=$(grep -E 'chmod' "$TK_TMP/strace.log" | grep -F -e "$TK_SOCK" -e 'UNIX' || true)
    tk_check "no chmod/fchmod/fchmodat of the socket: ${chmods:-none}" [ -z "$chmods" ]
    tk_stop_under
    tk_start || exit 1
fi

# --- root may change; others may read -----------------------------------------

as_root add ::aa dev vb
tk_check "root add: exit 0" [ "$TK_RC" -eq 0 ]
tk_eventually 5 "root's token reaches the kernel" tk_token_is vb ::aa
tk_check "root's change logged with uid 0 and its pid $TK_CPID" \
    bash -c "grep -F '(uid 0, pid $TK_CPID)' '$TK_LOG' | grep -q 'vb'"

as NOBODY show
tk_check "uid 65534 in nogroup: show exit 0 (got $TK_RC: $TK_ERR)" [ "$TK_RC" -eq 0 ]
tk_check "uid 65534: show lists vb" grep -q '^vb .*::aa' <<<"$TK_OUT"
as NOBODY status
tk_check "uid 65534: status exit 0 (got $TK_RC: $TK_ERR)" [ "$TK_RC" -eq 0 ]
tk_check "uid 65534: status has the pid" grep -qE '^pid: +[0-9]+' <<<"$TK_OUT"
as NOBODY show dev vb
tk_check "uid 65534: show dev vb exit 0" [ "$TK_RC" -eq 0 ]

mark=$(tk_log_lines)
as NOBODY add ::5 dev va
refused "uid 65534: add dev va"
as NOBODY --json add ::5 dev va
tk_check "uid 65534: --json add prints io.tokend.PermissionDenied with uid 65534 and required" \
    [ "$(tk_json 'd["error"], d["parameters"]["uid"], d["parameters"]["required"]' <<<"$TK_OUT")" \
      = "('io.tokend.PermissionDenied', 65534, '$ADMIN')" ]
as NOBODY add ::77
refused "uid 65534: add global"
as NOBODY delete dev vb
refused "uid 65534: delete dev vb"
as NOBODY delete
refused "uid 65534: delete global"
as NOBODY flush
refused "uid 65534: flush"
as NOBODY flush dev vb
refused "uid 65534: flush dev vb"
as NOBODY resume
refused "uid 65534: resume"
as NOBODY_SUPP add ::5 dev va
refused "uid 65534, nogroup supplementary only: add"
sleep 0.3
tk_check "refused changes left va alone" tk_token_is va ::
tk_check "refused changes left vb alone" tk_token_is vb ::aa
tk_check "tokend still holds vb ::aa" [ "$(tk_entry_field vb token)" = ::aa ]
tk_check "tokend holds nothing for va" bash -c "! '$TOKENCTL' --socket '$TK_SOCK' show dev va >/dev/null 2>&1"
tk_check "no change logged for uid 65534" [ "$(tk_log_since "$mark" | grep -E 'token .*set|deleted|flushed|resumed' | grep -c 'uid 65534')" -eq 0 ]

# --- no access to the socket at all -----------------------------------------------

as OUTSIDER status
tk_check "uid 65534 outside nogroup: status exit 1 (got $TK_RC)" [ "$TK_RC" -eq 1 ]
tk_check "uid 65534 outside nogroup: error mentions permission ($TK_ERR)" grep -qi 'permission' <<<"$TK_ERR"
tk_check "uid 65534 outside nogroup: error names the socket" grep -qF "$TK_SOCK" <<<"$TK_ERR"
tk_check "uid 65534 outside nogroup: error names the group" grep -q 'nogroup' <<<"$TK_ERR"
as OUTSIDER show
tk_check "uid 65534 outside nogroup: show exit 1" [ "$TK_RC" -eq 1 ]
as OUTSIDER add ::5 dev va
tk_check "uid 65534 outside nogroup: add exit 1" [ "$TK_RC" -eq 1 ]
tk_check "outsider changed nothing" tk_token_is va ::

# --- admin-group = nogroup: primary and supplementary membership count ---------

tk_stop
tk_conf <<EOF
[tokend]
log-level = debug
socket-group = nogroup
admin-group = nogroup
EOF
ADMIN=nogroup
tk_start || exit 1
tk_check "socket re-created srw-rw---- nogroup" sock_is

as NOBODY add ::5 dev va
tk_check "admin by primary group: add exit 0 ($TK_ERR)" [ "$TK_RC" -eq 0 ]
tk_eventually 5 "admin's token reaches the kernel" tk_token_is va ::5
tk_check "change logged with uid 65534 and pid $TK_CPID" \
    bash -c "grep -F 'token ::5 set (uid 65534, pid $TK_CPID)' '$TK_LOG' | grep -q va"
as NOBODY delete dev va
tk_check "admin by primary group: delete exit 0 ($TK_ERR)" [ "$TK_RC" -eq 0 ]
tk_eventually 5 "delete cleared va" tk_token_is va ::
tk_check "delete logged with uid 65534 and pid $TK_CPID" \
    bash -c "grep -F 'token deleted (uid 65534, pid $TK_CPID)' '$TK_LOG' | grep -q va"

as NOBODY_SUPP add ::6 dev va
tk_check "admin by supplementary group: add exit 0 ($TK_ERR)" [ "$TK_RC" -eq 0 ]
tk_eventually 5 "supplementary admin's token reaches the kernel" tk_token_is va ::6
tk_check "supplementary admin's change logged with uid 65534 and pid $TK_CPID" \
    tk_log_has "token ::6 set (uid 65534, pid $TK_CPID)"
as NOBODY_SUPP add ::66
tk_check "admin by supplementary group: add global exit 0 ($TK_ERR)" [ "$TK_RC" -eq 0 ]
as NOBODY_SUPP resume
tk_check "admin by supplementary group: resume exit 0 ($TK_ERR)" [ "$TK_RC" -eq 0 ]
as NOBODY_SUPP flush
tk_check "admin by supplementary group: flush exit 0 ($TK_ERR)" [ "$TK_RC" -eq 0 ]
tk_check "flush logged with uid 65534 and pid $TK_CPID" \
    bash -c "grep -F 'flushed (uid 65534, pid $TK_CPID)' '$TK_LOG' | grep -q ."
tk_eventually 5 "flush cleared va" tk_token_is va ::
tk_eventually 5 "flush cleared vb (root's runtime token)" tk_token_is vb ::
as OUTSIDER status
tk_check "still no access outside the socket group" [ "$TK_RC" -eq 1 ]

# --- admin-group = users, socket group nogroup: supplementary admin only ---------

tk_stop
tk_conf <<EOF
[tokend]
log-level = debug
socket-group = nogroup
admin-group = users
EOF
ADMIN=users
tk_start || exit 1
as NOBODY add ::7 dev va
refused "in nogroup, not in users: add"
as NOBODY_USERS add ::7 dev va
tk_check "in nogroup, users as supplementary group: add exit 0 ($TK_ERR)" [ "$TK_RC" -eq 0 ]
tk_eventually 5 "its token reaches the kernel" tk_token_is va ::7
tk_check "its change logged with uid 65534 and pid $TK_CPID" \
    tk_log_has "token ::7 set (uid 65534, pid $TK_CPID)"

tk_done
