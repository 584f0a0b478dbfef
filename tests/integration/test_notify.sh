#!/bin/bash
# sd_notify: READY=1 after the first reconciliation (the token is already in
# the kernel when READY arrives), STATUS= with counts, RELOADING=1 then
# READY=1 around SIGHUP, STOPPING=1 and a clean exit on SIGTERM; with
# WATCHDOG_USEC set (WatchdogSec=), WATCHDOG=1 at least every half period;
# STATUS= follows a change (an interface gone) and is not repeated unchanged.
. "$(dirname "$0")/lib.sh"

tk_veth na nb
tk_conf <<EOF
[tokend]
log-level = debug
[tokens]
na = ::a
EOF
NOTIFY=$TK_TMP/notify.sock
MSGS=$TK_TMP/notify.log
python3 - "$NOTIFY" "$MSGS" "$TK_NS" <<'PY' &
import socket, subprocess, sys, time
path, out, ns = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(15)
with open(out, "w") as f:
    try:
        while True:
            msg = s.recv(4096).decode()
            if "READY=1" in msg:
                # The kernel's truth at the moment READY arrives.
                tok = subprocess.run(["ip", "-n", ns, "token", "get", "dev", "na"],
                                     capture_output=True, text=True).stdout.strip()
                msg += "\nKERNEL=" + tok
            f.write(msg.replace("\n", " | ") + "\n")
            f.flush()
            if "STOPPING=1" in msg:
                break
    except socket.timeout:
        pass
PY
LISTENER=$!
for _ in $(seq 100); do [ -S "$NOTIFY" ] && break; sleep 0.05; done

ip netns exec "$TK_NS" env NOTIFY_SOCKET="$NOTIFY" WATCHDOG_USEC=400000 "$TOKEND" --config "$TK_CONF" \
    --socket "$TK_SOCK" --state-dir "$TK_STATE" >> "$TK_LOG" 2>&1 &
TK_PID=$!
tk_wait 10 grep -q "READY=1" "$MSGS"
tk_check "READY=1 sent" grep -q "READY=1" "$MSGS"
tk_check "token in the kernel when READY arrives" grep -q "KERNEL=token ::a dev na" "$MSGS"
tk_check "STATUS= with counts" grep -q "STATUS=.*1 token held: 1 applied" "$MSGS"

# Watchdog: 400 ms period; sd-event sends between a half and three quarters
# of it, so at least 3 in 1.2 s.
n0=$(grep -c "WATCHDOG=1" "$MSGS")
sleep 1.2
n1=$(grep -c "WATCHDOG=1" "$MSGS")
tk_check "WATCHDOG=1 keeps coming ($((n1 - n0)) in 1.2 s, want >= 3)" [ $((n1 - n0)) -ge 3 ]

# A change is reported once; nothing changes, nothing more is sent.
st0=$(grep -c "STATUS=" "$MSGS")
ip -n "$TK_NS" link del na
tk_wait 5 grep -q "STATUS=.*1 absent" "$MSGS"
tk_check "STATUS= says the token is absent once the interface is gone" grep -q "STATUS=.*1 token held: 0 applied, 0 pending, 1 absent" "$MSGS"
sleep 0.5
st1=$(grep -c "STATUS=" "$MSGS")
tk_check "STATUS= sent once for one change ($((st1 - st0)))" [ $((st1 - st0)) -eq 1 ]
tk_veth na nb2
tk_wait 5 tk_token_is na ::a

kill -HUP "$TK_PID"
tk_wait 5 bash -c "grep -q RELOADING=1 '$MSGS' && [ \$(grep -c READY=1 '$MSGS') -ge 2 ]"
tk_check "RELOADING=1 on SIGHUP" grep -q "RELOADING=1" "$MSGS"
tk_check "READY=1 again after reload" [ "$(grep -c READY=1 "$MSGS")" -ge 2 ]

kill -TERM "$TK_PID"
wait "$TK_PID"
rc=$?
TK_PID=
tk_check "clean exit on SIGTERM (status $rc)" [ $rc -eq 0 ]
wait "$LISTENER" 2>/dev/null
tk_check "STOPPING=1 sent" grep -q "STOPPING=1" "$MSGS"
tk_check "token left in the kernel on stop" tk_token_is na ::a
tk_check "socket file removed on stop" [ ! -e "$TK_SOCK" ]

tk_done
