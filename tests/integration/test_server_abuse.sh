#!/bin/bash
# Abuse of the control socket found by a hostile review, each a regression
# test now:
# - out of file descriptors (a low RLIMIT_NOFILE, more clients than it
#   allows): accept pauses instead of spinning, logs a few rate-limited
#   lines, and serves again when descriptors are free;
# - a connection being closed (after InvalidMessage) whose client sends more
#   and reads nothing does not keep the loop busy;
# - an interface name that is not UTF-8 does not break the JSON of replies;
# - a client that shuts its side after a call still gets the whole reply;
# - LISTEN_FDS=1 with no descriptor 3: a warning and a socket of its own,
#   no descriptor of its own closed by mistake.
. "$(dirname "$0")/lib.sh"

tk_veth sa0 sb0
tk_conf <<CONF
[tokend]
log-level = info
client-timeout = 3s
[global]
token = ::42
match = *
CONF
cpu() { awk '{print $14 + $15}' "/proc/$DPID/stat"; }

# --- out of descriptors ---------------------------------------------------
ip netns exec "$TK_NS" prlimit --nofile=48:48 "$TOKEND" --config "$TK_CONF" --socket "$TK_SOCK" \
    --state-dir "$TK_STATE" >> "$TK_LOG" 2>&1 &
TK_PID=$!
DPID=$TK_PID
tk_wait 10 tk_ctl_quiet status
mark=$(tk_log_lines)
python3 - "$TK_SOCK" 60 4 > "$TK_TMP/hold.out" 2>&1 <<'PY' &
import socket, sys, time
path, n, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
held = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX); s.setblocking(False)
    try:
        s.connect(path)
    except BlockingIOError:
        pass
    held.append(s)
print("holding", len(held), flush=True)
time.sleep(secs)
PY
HOLDER=$!
sleep 1
c0=$(cpu); sleep 2; c1=$(cpu)
echo "# tokend CPU with the descriptors used up: $(( (c1 - c0) * 10 )) ms in 2 s"
tk_check "no busy loop while out of descriptors ($(( (c1 - c0) * 10 )) ms CPU in 2 s)" [ $((c1 - c0)) -lt 50 ]
lines=$(tk_log_count "accept on" "$mark")
tk_check "accept failures logged a few times, rate limited ($lines)" [ "$lines" -ge 1 -a "$lines" -le 5 ]
tk_check "... saying what to change" tk_log_has "raise LimitNOFILE= or lower max-clients" "$mark"
wait "$HOLDER"
tk_eventually 5 "served again once descriptors are free" tk_ctl_quiet status
tk_stop

tk_start || { tk_done; exit 1; }
DPID=$TK_PID

# --- closing connection with unread input ---------------------------------
python3 - "$TK_SOCK" <<'PY' &
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
call = json.dumps({"method": "org.varlink.service.GetInterfaceDescription",
                   "parameters": {"interface": "io.tokend"}}).encode() + b"\0"
s.setblocking(False)
try:
    for _ in range(200):
        s.send(call)
    s.send(b"not json\0")
    s.send(b"x")
except BlockingIOError:
    pass
time.sleep(4)
PY
SPIN=$!
sleep 1
c0=$(cpu); sleep 2; c1=$(cpu)
tk_check "a closing connection that reads nothing costs no CPU ($(( (c1 - c0) * 10 )) ms in 2 s)" [ $((c1 - c0)) -lt 50 ]
tk_check "others are served meanwhile" tk_ctl_quiet status
wait "$SPIN"

# --- a name that is not UTF-8 -------------------------------------------------
ip -n "$TK_NS" link add $'d\xff' type veth peer name $'e\xfe'
ip -n "$TK_NS" link set $'d\xff' up
tk_eventually 5 "the odd interface gets the global token" tk_token_is $'d\xff' ::42
tk_run "$TOKENCTL" --socket "$TK_SOCK" show
tk_check "tokenctl show still works ($TK_ERR)" [ "$TK_RC" -eq 0 ]
tk_check "... showing the name with the byte escaped" grep -qF 'd\xc3\xbf' <<<"$TK_OUT"
tk_check "the reply is valid JSON for other programs" python3 - "$TK_SOCK" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(json.dumps({"method": "io.tokend.ListTokens", "parameters": {}}).encode() + b"\0")
buf = b""
while not buf.endswith(b"\0"):
    buf += s.recv(65536)
r = json.loads(buf[:-1].decode("utf-8"))
names = [e["interface"] for e in r["parameters"]["entries"]]
assert "d\u00ff" in names, names
PY

# --- half-close -----------------------------------------------------------------
for i in $(seq 200); do echo "link add h$i type veth peer name k$i"; done > "$TK_TMP/add.batch"
ip -n "$TK_NS" -batch "$TK_TMP/add.batch"
tk_check "a client that shuts its side after a call gets the whole reply" python3 - "$TK_SOCK" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(json.dumps({"method": "io.tokend.ListTokens", "parameters": {}}).encode() + b"\0")
s.shutdown(socket.SHUT_WR)
buf = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    buf += d
assert buf.endswith(b"\0"), len(buf)
r = json.loads(buf[:-1])
assert len(r["parameters"]["entries"]) >= 400, len(r["parameters"]["entries"])
print("# reply of %d bytes after SHUT_WR" % len(buf))
PY
tk_stop

# --- LISTEN_FDS without a descriptor 3 ----------------------------------------
# (Before, fd 3 was by then tokend's own lock file, closed as "not a socket".)
ip netns exec "$TK_NS" bash -c 'exec 3>&-; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" --config "$1" --state-dir "$2" --socket "$3"' \
    "$TOKEND" "$TK_CONF" "$TK_TMP/state3" "$TK_TMP/s3.sock" > "$TK_TMP/fd3.log" 2>&1 &
TK_PID=$!
tk_wait 10 "$TOKENCTL" --socket "$TK_TMP/s3.sock" status
tk_check "LISTEN_FDS=1 without fd 3: tokend runs on its own socket" \
    "$TOKENCTL" --socket "$TK_TMP/s3.sock" status
tk_check "... and says LISTEN_FDS was not usable" grep -q "LISTEN_FDS/LISTEN_PID are set but not usable" "$TK_TMP/fd3.log"
tk_stop

tk_done
