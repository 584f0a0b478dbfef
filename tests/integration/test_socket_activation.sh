#!/bin/bash
# Socket activation (tokend.socket): tokend serves the listening socket it is
# given (LISTEN_FDS, here from systemd-socket-activate) instead of making its
# own. A client that connects while the daemon cannot answer yet (stopped
# with SIGSTOP right after the socket appeared) waits in the backlog and gets
# its answer; the config's own socket path is never created; on stop the
# socket file is left to its owner (systemd removes it, RemoveOnStop=).
. "$(dirname "$0")/lib.sh"

command -v systemd-socket-activate >/dev/null ||
    { echo "SKIP: needs systemd-socket-activate (package systemd)" >&2; exit 77; }

tk_veth sa sb
tk_conf <<EOF2
[tokend]
log-level = debug
socket = $TK_TMP/own.sock
[tokens]
sa = ::5a
EOF2

ip netns exec "$TK_NS" systemd-socket-activate -l "$TK_SOCK" \
    "$TOKEND" --config "$TK_CONF" --state-dir "$TK_STATE" >> "$TK_LOG" 2>&1 &
TK_PID=$!
for _ in $(seq 400); do [ -S "$TK_SOCK" ] && break; sleep 0.005; done
kill -STOP "$TK_PID"
tk_check "the activator made the socket" [ -S "$TK_SOCK" ]

# First request while the daemon is frozen: it must wait, not fail.
"$TOKENCTL" --socket "$TK_SOCK" --json status > "$TK_TMP/first.json" 2> "$TK_TMP/first.err" &
client=$!
sleep 0.7
tk_check "the first client waits while tokend cannot answer" kill -0 "$client"
kill -CONT "$TK_PID"
wait "$client"
rc=$?
tk_check "the first request is answered (exit $rc)" [ "$rc" -eq 0 ]
tk_check "... with tokend's status" grep -q '"version"' "$TK_TMP/first.json"
tk_eventually 5 "token applied by the activated daemon" tk_token_is sa ::5a
tk_check "tokend names the socket it was given" tk_log_has "listening on $TK_SOCK, the socket systemd passed"
tk_check "tokend's ready line names the passed socket" grep -q "ready: .*, socket $TK_SOCK\$" "$TK_LOG"
tk_check "the config's socket path was not created" [ ! -e "$TK_TMP/own.sock" ]

# Several clients at once on the passed socket.
ok=0
for i in 1 2 3 4 5; do tk_ctl show dev sa >/dev/null 2>&1 && ok=$((ok + 1)); done
tk_check "later requests answered ($ok/5)" [ "$ok" -eq 5 ]

kill -TERM "$TK_PID"
wait "$TK_PID"
rc=$?
TK_PID=
tk_check "clean exit on SIGTERM (status $rc)" [ "$rc" -eq 0 ]
tk_check "the passed socket's file is left to its owner" [ -S "$TK_SOCK" ]
tk_check "token stays in the kernel" tk_token_is sa ::5a

tk_done
