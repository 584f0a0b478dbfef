#!/bin/bash
# Config reload (SIGHUP) and the command line: a new config adds, changes and
# removes tokens in the kernel; a broken one keeps the old set (the kernel
# unchanged), is logged as FILE:LINE, and tokend keeps serving; a config entry
# replaces a runtime entry for the same interface. --check-config reports
# every error as FILE:LINE; --version and --help exit 0.
. "$(dirname "$0")/lib.sh"

tk_veth va pa
tk_veth vb pb
tk_veth vc pc
tk_veth ve pe
tk_veth g1 h1

tk_conf <<EOF
[tokend]
log-level = debug
[tokens]
va = ::a
vb = ::b
EOF
tk_start || exit 1
tk_eventually 5 "start: va ::a" tk_token_is va ::a
tk_eventually 5 "start: vb ::b" tk_token_is vb ::b
tk_check "start: vc has none" tk_token_is vc ::
tk_check "start: g1 has none" tk_token_is g1 ::

# --- a good reload: change va, remove vb, add vc, add a global token -----------
tk_conf <<EOF
[tokend]
log-level = debug
[global]
token = ::42
match = g*
[tokens]
va = ::a2
vc = ::c
EOF
tk_check "SIGHUP with a new config is logged as reloaded" tk_reload
tk_check "the reload is not logged as failed" bash -c "! grep -q 'config reload failed' '$TK_LOG'"
tk_eventually 5 "reload changed va to ::a2" tk_token_is va ::a2
tk_eventually 5 "reload removed vb's token" tk_token_is vb ::
tk_eventually 5 "reload added vc ::c" tk_token_is vc ::c
tk_eventually 5 "reload added the global token to g1" tk_token_is g1 ::42
tk_check "global does not reach pa (not matching g*)" tk_token_is pa ::
tk_check "vc entry names the config file and line" \
    [ "$(tk_entry_field vc file)" = "$TK_CONF:$(grep -n '^vc = ' "$TK_CONF" | cut -d: -f1)" ]
tk_check "show has no vb entry any more" tk_wait 3 bash -c "! '$TOKENCTL' --socket '$TK_SOCK' show dev vb >/dev/null 2>&1"

# A runtime entry for ve, before the config claims ve.
tk_check "add runtime ::e dev ve" tk_ctl add ::e dev ve
tk_eventually 5 "runtime ::e on ve" tk_token_is ve ::e

# --- a broken reload: nothing changes, the error names FILE:LINE ---------------
tk_conf <<EOF
[tokend]
log-level = debug
[tokens]
va = ::a3
vc = ::c3
vb = ::zz
EOF
badline=$(grep -n '^vb = ::zz' "$TK_CONF" | cut -d: -f1)
mark=$(tk_log_lines)
kill -HUP "$TK_PID"
tk_eventually 5 "broken reload is logged with $TK_CONF:$badline" tk_log_has "$TK_CONF:$badline" "$mark"
tk_log_since "$mark" | grep -F "$TK_CONF:" | sed 's/^/#   /'
sleep 1
tk_check "tokend still runs" kill -0 "$TK_PID"
tk_check "kernel unchanged: va ::a2" tk_token_is va ::a2
tk_check "kernel unchanged: vc ::c" tk_token_is vc ::c
tk_check "kernel unchanged: vb none" tk_token_is vb ::
tk_check "kernel unchanged: g1 ::42" tk_token_is g1 ::42
tk_check "kernel unchanged: ve ::e" tk_token_is ve ::e
tk_check "tokend still answers status" tk_ctl_quiet status
tk_check "show still has the old token for va" [ "$(tk_entry_field va token)" = ::a2 ]
tk_check "tokend still takes changes (add ::b5 dev vb)" tk_ctl add ::b5 dev vb
tk_eventually 5 "...and applies them" tk_token_is vb ::b5
ip -n "$TK_NS" token set ::99 dev va
tk_eventually 5 "...and still repairs the old set (va back to ::a2)" tk_token_is va ::a2

# --- fixed: the new set applies, a config entry takes over a runtime one -----
tk_conf <<EOF
[tokend]
log-level = debug
[tokens]
va = ::a3
vc = ::c3
ve = ::e4
EOF
mark=$(tk_log_lines)
tk_check "SIGHUP with the fixed config" tk_reload
tk_check "...reloaded, not failed" bash -c "! tail -n +$((mark + 1)) '$TK_LOG' | grep -q 'config reload failed'"
tk_eventually 5 "va now ::a3" tk_token_is va ::a3
tk_eventually 5 "vc now ::c3" tk_token_is vc ::c3
tk_eventually 5 "global gone: g1 cleared" tk_token_is g1 ::
tk_eventually 5 "config entry for ve replaces the runtime one: ::e4" tk_token_is ve ::e4
tk_check "ve entry's source is config" [ "$(tk_entry_field ve source)" = config ]
tk_check "runtime vb (not in the config) kept: ::b5" tk_token_is vb ::b5
tk_check "delete of ve is refused now (config entry)" bash -c "! '$TOKENCTL' --socket '$TK_SOCK' delete dev ve 2>/dev/null"

# --- the command line ------------------------------------------------------------
mkdir -p "$TK_TMP/cc" "$TK_TMP/cc/bad.conf.d"
cat > "$TK_TMP/cc/bad.conf" <<EOF
[tokend]
retry-min = forever
frobnicate = 1
[tokens]
va = ::a
vb = nonsense
EOF
out=$(tk_ns "$TOKEND" --check-config --config "$TK_TMP/cc/bad.conf" 2>&1); rc=$?
echo "$out" | sed 's/^/#   /'
tk_check "--check-config on a bad config exits non-zero (rc=$rc)" [ "$rc" -ne 0 ]
tk_check "reports the bad duration at bad.conf:2" grep -q "$TK_TMP/cc/bad.conf:2:" <<<"$out"
tk_check "reports the unknown key at bad.conf:3" grep -q "$TK_TMP/cc/bad.conf:3:" <<<"$out"
tk_check "reports the bad token at bad.conf:6" grep -q "$TK_TMP/cc/bad.conf:6:" <<<"$out"
tk_check "reports no other line" [ "$(grep -oE "bad\.conf:[0-9]+:" <<<"$out" | sort -u | wc -l)" -eq 3 ]

# A token declared twice: in the main file and in a drop-in, both named.
printf '[tokens]\nva = ::a\n' > "$TK_TMP/cc/dup.conf"
mkdir -p "$TK_TMP/cc/dup.conf.d"
printf '# drop-in\n[tokens]\nva = ::b\n' > "$TK_TMP/cc/dup.conf.d/10-x.conf"
out=$(tk_ns "$TOKEND" --check-config --config "$TK_TMP/cc/dup.conf" 2>&1); rc=$?
echo "$out" | sed 's/^/#   /'
tk_check "--check-config on a duplicate token exits non-zero (rc=$rc)" [ "$rc" -ne 0 ]
tk_check "duplicate names the drop-in's line" grep -q "$TK_TMP/cc/dup.conf.d/10-x.conf:3" <<<"$out"
tk_check "duplicate names the main file's line" grep -q "$TK_TMP/cc/dup.conf:2" <<<"$out"

out=$(tk_ns "$TOKEND" --check-config --config "$TK_CONF" 2>&1); rc=$?
tk_check "--check-config on the good config exits 0 (rc=$rc)" [ "$rc" -eq 0 ]
out=$("$TOKEND" --version 2>&1); rc=$?
tk_check "--version exits 0 ($out)" [ "$rc" -eq 0 ]
tk_check "--version prints a version" grep -qE '[0-9]+\.[0-9]+' <<<"$out"
out=$("$TOKEND" --help 2>&1); rc=$?
tk_check "--help exits 0" [ "$rc" -eq 0 ]
tk_check "--help mentions --check-config" grep -q -- '--check-config' <<<"$out"
"$TOKEND" --no-such-option >/dev/null 2>&1; rc=$?
tk_check "an unknown option exits non-zero (rc=$rc)" [ "$rc" -ne 0 ]

tk_check "tokend survived it all" tk_ctl_quiet status
tk_done
