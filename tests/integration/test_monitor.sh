#!/bin/bash
# Operability: `tokenctl monitor` streams events (Varlink "more" replies) as
# tokend works: repairs, runtime changes, an interface leaving, a refusal,
# a reload; every event names its kind and object; two monitors see the
# same stream; Monitor without "more" is a typed error; a monitoring
# connection takes no other calls. `tokenctl status` shows the association
# counts, the last reconciliation and the last error.
. "$(dirname "$0")/lib.sh"

tk_veth mon0 mon1
tk_veth mon2 mon3
tk_conf <<CONF
[tokend]
log-level = debug
[tokens]
mon0 = ::a
CONF
tk_start || { tk_done; exit 1; }

"$TOKENCTL" --socket "$TK_SOCK" --json monitor > "$TK_TMP/mon.json" 2> "$TK_TMP/mon.err" &
MON1=$!
"$TOKENCTL" --socket "$TK_SOCK" monitor > "$TK_TMP/mon.txt" 2> "$TK_TMP/mon.txt.err" &
MON2=$!
tk_wait 5 bash -c "[ \$(grep -c 'monitors events' '$TK_LOG') -ge 2 ]"
tk_check "both monitors subscribed" [ "$(grep -c 'monitors events' "$TK_LOG")" -ge 2 ]

# has KIND OBJECT EVENT: the JSON stream has such an event.
has() {
    python3 - "$TK_TMP/mon.json" "$@" <<'PY'
import json, sys
path, kind, obj, ev = sys.argv[1:5]
for line in open(path):
    e = json.loads(line)
    if e["kind"] == kind and (e["object"] or "") == obj and e["event"] == ev:
        sys.exit(0)
sys.exit(1)
PY
}

ip -n "$TK_NS" token set ::bad dev mon0
tk_eventually 5 "drift: a 'repairing' event for mon0" has token mon0 repairing
tk_eventually 5 "... then 'applied'" has token mon0 applied
tk_ctl add ::c dev mon2 >/dev/null
tk_eventually 5 "runtime change: a 'set' event for mon2" has token mon2 set
ip -n "$TK_NS" link del mon2
tk_eventually 5 "interface gone: an 'absent' event for mon2" has token mon2 absent
# NOARP: the kernel refuses a token there.
ip -n "$TK_NS" link set dev mon1 arp off
tk_run "$TOKENCTL" --socket "$TK_SOCK" add ::b dev mon1
tk_eventually 5 "refusal: a 'refused' warning for mon1" has token mon1 refused
tk_check "tokenctl add says the token is held but blocked, and why ($TK_OUT)" \
    grep -q "^mon1: token ::b held, not applied: blocked: " <<<"$TK_OUT"
tk_run "$TOKENCTL" --socket "$TK_SOCK" add ::e dev lo
tk_check "tokenctl add on lo says unsupported ($TK_OUT)" \
    grep -q "^lo: token ::e held, not applied: unsupported: loopback" <<<"$TK_OUT"
tk_eventually 5 "an 'unsupported' event for lo" has token lo unsupported
tk_ctl delete dev lo >/dev/null
tk_reload
tk_eventually 5 "reload: 'reloading' and 'reloaded' events" \
    bash -c "grep -q '\"event\":\"reloading\"' '$TK_TMP/mon.json' && grep -q '\"event\":\"reloaded\"' '$TK_TMP/mon.json'"

tk_check "every event has time, level, kind, event and message" python3 - "$TK_TMP/mon.json" <<'PY'
import json, re, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", e["time"]), e
    assert e["level"] in ("err", "warning", "notice", "info"), e
    assert e["kind"] in ("token", "association", "daemon"), e
    assert e["event"] and e["message"], e
    # The message names its object.
    assert not e["object"] or e["object"] in e["message"], e
PY
tk_check "the refusal carries the kernel's reason" \
    grep -q '"object":"mon1","event":"refused","message":"mon1: kernel refused to set token ::b' "$TK_TMP/mon.json"
n1=$(grep -c . "$TK_TMP/mon.json")
n2=$(grep -c . "$TK_TMP/mon.txt")
tk_check "both monitors got the same events ($n1, $n2)" [ "$n1" -eq "$n2" ]
tk_check "text lines: TIME LEVEL KIND: MESSAGE" \
    grep -qE '^[0-9T:.-]+Z info token: mon0: token ::a applied$' "$TK_TMP/mon.txt"

# status: last error, last reconcile, association counts.
tk_run "$TOKENCTL" --socket "$TK_SOCK" --json status
tk_check "status --json has last_error with the refusal" python3 -c '
import json, sys
s = json.loads(sys.argv[1])
e = s["last_error"]
assert e["object"] == "mon1" and e["kind"] == "token" and "refused" in e["message"], e
assert s["last_reconcile"].endswith("Z"), s
assert s["association_counts"] == {"up": 0, "pending": 0, "error": 0, "conflict": 0, "released": 0}, s
' "$TK_OUT"
tk_run "$TOKENCTL" --socket "$TK_SOCK" status
tk_check "status prints the last error" grep -q "^last error: .*mon1: kernel refused to set token ::b" <<<"$TK_OUT"
tk_check "status prints the last reconcile" grep -qE "^last reconcile: +[0-9-]+T" <<<"$TK_OUT"

# The protocol: Monitor needs "more"; a monitoring connection is for events.
tk_check "Monitor without more: ExpectedMore; with more then another call: refused, closed" \
    python3 - "$TK_SOCK" <<'PY'
import json, socket, sys
def conn():
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(5); return s
def recv(s):
    buf = b""
    while not buf.endswith(b"\0"):
        d = s.recv(65536)
        if not d: return None
        buf += d
    return [json.loads(m) for m in buf.split(b"\0") if m]
s = conn()
s.sendall(json.dumps({"method": "io.tokend.Monitor"}).encode() + b"\0")
r = recv(s)[0]
assert r["error"] == "org.varlink.service.ExpectedMore", r
s = conn()
s.sendall(json.dumps({"method": "io.tokend.Monitor", "more": True}).encode() + b"\0")
r = recv(s)[0]
assert r["continues"] is True and r["parameters"]["event"] == "monitoring", r
s.sendall(json.dumps({"method": "io.tokend.GetStatus"}).encode() + b"\0")
r = recv(s)
assert r and r[-1]["error"] == "io.tokend.InvalidMessage", r
assert recv(s) is None  # closed
PY

# The daemon going away ends the monitors with a message.
tk_stop
wait "$MON1"
rc=$?
tk_check "monitor exits 1 when tokend stops (got $rc)" [ "$rc" -eq 1 ]
tk_check "... saying tokend closed the connection" grep -q "closed the connection" "$TK_TMP/mon.err"
wait "$MON2" 2>/dev/null

tk_done
