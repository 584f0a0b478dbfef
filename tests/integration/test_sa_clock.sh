#!/bin/bash
# Rotation by the clock, as the running daemon reports it: the generation
# the clock gives, the phase and the next rotation in `show` agree with an
# independent computation (python, from docs/associations.md), and
# tokenctl's table says when the next rotation is. The host has no ESP, so
# the SAs themselves are tested in UML (tests/uml/scenario_sa_rotation*.sh).
. "$(dirname "$0")/lib.sh"

tk_veth va vb
ip -n "$TK_NS" addr add 192.0.2.1/24 dev va
(umask 077; head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$TK_TMP/web.key")
tk_conf <<EOF2
[sa web]
number = 7
local = 192.0.2.1
remote = 192.0.2.9
secret = $TK_TMP/web.key
lifetime = 60s
epoch = 1767225600
overlap = 5s
EOF2
tk_start || exit 1
json=$(tk_ctl --json show sa web)
check=$(python3 - "$json" <<'PY'
import hashlib, json, sys, time
a = json.loads(sys.argv[1])["associations"][0]
r = a["rotation"]
L, E = 60, 1767225600
h = hashlib.sha256(b"tokend rotation phase v1" + (7).to_bytes(2, "big") + b"web").digest()
phase = int.from_bytes(h[:8], "big") % (L * 1000)
now = time.time() * 1000
g = int((now - E * 1000 - phase) // (L * 1000))
nxt = E * 1000 + phase + (g + 1) * L * 1000
ok = []
ok.append(("phase", r["phase_ms"] == phase))
# The daemon read the clock moments ago: allow one boundary in between.
ok.append(("clock generation", r["clock_generation"] in (g, g - 1)))
ok.append(("outbound generation is the clock's", a["outbound"]["generation"] == r["clock_generation"]))
ok.append(("overlap", r["overlap_ms"] == 5000 and r["period"] == 60 and r["epoch"] == E))
want = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((nxt if r["clock_generation"] == g else nxt - L * 1000) // 1000))
ok.append(("next rotation " + r["next_rotation"] + " vs " + want, r["next_rotation"].startswith(want)))
ok.append(("receive window starts at most one generation back", a["inbound"][0]["generation"] >= g - 1))
for name, good in ok:
    print(("ok " if good else "BAD ") + name)
PY
)
while read -r verdict what; do
    tk_check "show agrees with the independent clock: $what" [ "$verdict" = ok ]
done <<<"$check"
table=$(tk_ctl show sa web)
tk_check "the table says when the next rotation is" grep -Eq '^  rotation: every 60s, next [0-9]{4}-[0-9]{2}-[0-9]{2}T' <<<"$table"
tk_check "the log names the generation sending starts on" grep -q "web: sending starts on generation" "$TK_LOG"
tk_done
