#!/bin/bash
# The state file under faults.
# - Truncated or corrupted: tokend does not crash-loop. It starts degraded:
#   config tokens and the tokens it applied stay in the kernel, runtime
#   changes are refused with a typed error, the file is named in the log, in
#   status and in STATUS=, and the file is kept byte for byte for inspection.
# - A full disk (the state directory on a tiny tmpfs in a private mount
#   namespace): a change that cannot be written is refused with
#   StateWriteFailed, and neither the kernel nor `show` runs ahead of the
#   disk; once there is room again the same change works.
. "$(dirname "$0")/lib.sh"

tk_veth fa fb
tk_veth fc fd
tk_conf <<CONF
[tokend]
log-level = debug
[tokens]
fa = ::a
CONF
tk_start || { tk_done; exit 1; }
tk_ctl add ::b dev fb >/dev/null
tk_eventually 5 "runtime token applied" tk_token_is fb ::b
tk_stop

for damage in truncate garbage; do
    cp "$TK_STATE/state.json" "$TK_TMP/good.json"
    case $damage in
    truncate) head -c "$(( $(stat -c %s "$TK_STATE/state.json") / 2 ))" "$TK_TMP/good.json" > "$TK_STATE/state.json" ;;
    garbage) printf '{"version": 1, "entries": [{"interface": 7}' > "$TK_STATE/state.json" ;;
    esac
    sum=$(sha256sum < "$TK_STATE/state.json")
    NOTIFY=$TK_TMP/notify-$damage.sock
    python3 - "$NOTIFY" "$TK_TMP/notify-$damage.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); s.settimeout(10)
with open(sys.argv[2], "w") as f:
    try:
        while True:
            f.write(s.recv(4096).decode().replace("\n", " | ") + "\n"); f.flush()
    except socket.timeout:
        pass
PY
    LISTENER=$!
    for _ in $(seq 100); do [ -S "$NOTIFY" ] && break; sleep 0.05; done
    mark=$(tk_log_lines)
    ip netns exec "$TK_NS" env NOTIFY_SOCKET="$NOTIFY" "$TOKEND" --config "$TK_CONF" \
        --socket "$TK_SOCK" --state-dir "$TK_STATE" >> "$TK_LOG" 2>&1 &
    TK_PID=$!
    tk_wait 10 tk_ctl_quiet status
    sleep 0.5
    tk_check "$damage: tokend is up, not crash-looping" kill -0 "$TK_PID"
    status=$(tk_ctl --json status)
    tk_check "$damage: status says degraded and names the file" python3 -c '
import json, sys
s = json.loads(sys.argv[1])
assert s["degraded"] is True and sys.argv[2] in s["degraded_reason"], s' "$status" "$TK_STATE/state.json"
    tk_check "$damage: the log names the file" bash -c "tk_log_since() { tail -n +\$(( $mark + 1 )) '$TK_LOG'; }; tk_log_since | grep -q 'state.json.*running degraded'"
    tk_check "$damage: STATUS= says DEGRADED" grep -q "STATUS=DEGRADED" "$TK_TMP/notify-$damage.log"
    tk_check "$damage: the config token is applied" tk_token_is fa ::a
    tk_check "$damage: the runtime token is left in the kernel" tk_token_is fb ::b
    tk_run "$TOKENCTL" --socket "$TK_SOCK" --json add ::c dev fc
    tk_check "$damage: a runtime change is refused (exit $TK_RC)" [ "$TK_RC" -eq 1 ]
    tk_check "$damage: ... with io.tokend.Degraded" grep -q '"io.tokend.Degraded"' <<<"$TK_OUT"
    tk_check "$damage: ... and the kernel is untouched" tk_token_is fc ::
    ip -n "$TK_NS" token set ::bad dev fa
    tk_eventually 5 "$damage: drift of a config token is still repaired" tk_token_is fa ::a
    tk_check "$damage: the damaged file is kept byte for byte" [ "$(sha256sum < "$TK_STATE/state.json")" = "$sum" ]
    tk_stop
    tk_check "$damage: the file is still there after stop" [ "$(sha256sum < "$TK_STATE/state.json")" = "$sum" ]
    kill "$LISTENER" 2>/dev/null; wait "$LISTENER" 2>/dev/null
    cp "$TK_TMP/good.json" "$TK_STATE/state.json"
done

# Full disk: a tiny tmpfs in a mount namespace of its own (the host's mounts
# are not touched). A holder process keeps the namespace; tokend and the
# filler enter it.
unshare -m --propagation private sleep 1000 &
HOLDER=$!
sleep 0.2
inmnt() { nsenter --mount="/proc/$HOLDER/ns/mnt" "$@"; }
SMALL=$TK_TMP/small
mkdir -p "$SMALL"
inmnt mount -t tmpfs -o size=64k,mode=0700 tmpfs "$SMALL"
mark=$(tk_log_lines)
inmnt ip netns exec "$TK_NS" "$TOKEND" --config "$TK_CONF" --socket "$TK_SOCK" \
    --state-dir "$SMALL/state" >> "$TK_LOG" 2>&1 &
TK_PID=$!
tk_wait 10 tk_ctl_quiet status
tk_ctl add ::c dev fc >/dev/null
tk_eventually 5 "full disk: a change with room is applied" tk_token_is fc ::c
inmnt dd if=/dev/zero of="$SMALL/filler" bs=4k 2>/dev/null
tk_run "$TOKENCTL" --socket "$TK_SOCK" --json add ::d dev fd
tk_check "full disk: the change is refused (exit $TK_RC)" [ "$TK_RC" -eq 1 ]
tk_check "full disk: ... with io.tokend.StateWriteFailed naming the file" \
    bash -c "grep -q '\"io.tokend.StateWriteFailed\"' <<<'$TK_OUT' && grep -q 'state.json' <<<'$TK_OUT'"
sleep 0.3
tk_check "full disk: the kernel did not get the refused token" tk_token_is fd ::
tk_check "full disk: show does not list it" bash -c "! '$TOKENCTL' --socket '$TK_SOCK' show dev fd >/dev/null 2>&1"
tk_check "full disk: earlier changes are still held" tk_token_is fc ::c
inmnt rm -f "$SMALL/filler"
tk_ctl add ::d dev fd >/dev/null
tk_eventually 5 "full disk: with room again the change works" tk_token_is fd ::d
tk_stop
inmnt umount "$SMALL"
kill "$HOLDER"; wait "$HOLDER" 2>/dev/null

tk_done
