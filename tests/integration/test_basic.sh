#!/bin/bash
# Add, show, delete and flush, per interface and global; drift repair; the
# held set survives a restart and a kill -9. The kernel's word (ip token)
# decides every check.
. "$(dirname "$0")/lib.sh"

tk_veth va vb
tk_veth vc vd
tk_conf <<EOF
[tokend]
log-level = debug
[tokens]
vc = ::c0:ffee
EOF
tk_start || exit 1

tk_eventually 5 "config token applied at start" tk_token_is vc ::c0:ffee

tk_check "add per-interface token" tk_ctl add ::1a:2b:3c:4d dev va
tk_eventually 5 "kernel holds the added token" tk_token_is va ::1a:2b:3c:4d
tk_check "show dev va says applied" tk_state_is va applied
tk_check "show lists va" bash -c "'$TOKENCTL' --socket '$TK_SOCK' show | grep -q '^va .*::1a:2b:3c:4d'"

out=$(tk_ctl add ::1a:2b:3c:4d/64 dev va 2>&1)
tk_check "same token again is a no-op" [ $? -eq 0 ]
tk_check "no-op says so" grep -q "already" <<<"$out"

ip -n "$TK_NS" token del dev va
tk_eventually 5 "token deleted behind tokend's back is restored" tk_token_is va ::1a:2b:3c:4d
ip -n "$TK_NS" token set ::99 dev va
tk_eventually 5 "token changed behind tokend's back is restored" tk_token_is va ::1a:2b:3c:4d

tk_check "add global token" tk_ctl add ::42
tk_eventually 5 "global token reaches vb" tk_token_is vb ::42
tk_eventually 5 "global token reaches vd" tk_token_is vd ::42
tk_check "per-interface token wins over global" tk_token_is va ::1a:2b:3c:4d

tk_check "delete per-interface token" tk_ctl delete dev va
tk_eventually 5 "global token applies after delete" tk_token_is va ::42

tk_check "refuse delete of a config entry" bash -c "! '$TOKENCTL' --socket '$TK_SOCK' delete dev vc 2>/dev/null"
err=$(tk_ctl delete dev vc 2>&1)
tk_check "config entry error names the file" grep -q "$TK_CONF:4" <<<"$err"

tk_check "add runtime token on vb" tk_ctl add ::b dev vb
tk_eventually 5 "vb has its own token" tk_token_is vb ::b
out=$(tk_ctl flush 2>&1)
tk_check "flush succeeds" [ $? -eq 0 ]
tk_check "flush says config entry remains" grep -q "vc" <<<"$out"
tk_eventually 5 "flush cleared vb" tk_token_is vb ::
tk_eventually 5 "flush cleared global on va" tk_token_is va ::
tk_check "flush kept config entry" tk_token_is vc ::c0:ffee
tk_check "show after flush has no vb" bash -c "! '$TOKENCTL' --socket '$TK_SOCK' show dev vb >/dev/null 2>&1"

# Persistence: restart and kill -9.
tk_check "add before restart" tk_ctl add ::aa dev va
tk_stop
tk_check "token stays in the kernel after stop" tk_token_is va ::aa
ip -n "$TK_NS" token del dev va
tk_start || exit 1
tk_eventually 5 "runtime token restored after restart" tk_token_is va ::aa
tk_check "add before kill -9" tk_ctl add ::bb dev vb
tk_kill9
ip -n "$TK_NS" token del dev vb
tk_start || exit 1
tk_eventually 5 "runtime token restored after kill -9" tk_token_is vb ::bb
tk_check "state file is 0600" [ "$(stat -c %a "$TK_STATE/state.json")" = 600 ]

tk_done
