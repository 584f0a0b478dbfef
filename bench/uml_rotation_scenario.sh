#!/bin/bash
# Inside User-Mode Linux only (bench/rotation.sh starts it through
# tests/uml/run.sh): N associations rotating by the clock in the same
# period, the daemon's CPU time per rotation and how the rotations spread
# over the period; next to it, the same kernel work done by iproute2.
#
#   uml_rotation_scenario.sh TOKEND [N [LIFETIME [PERIODS]]]
#
# One network namespace (rotbench) with a veth pair whose two ends both
# live in it; 192.0.2.1/24 on rotbench0, the peers 198.18.x.y (RFC 2544's
# benchmarking range; no packet is sent). N associations (default 1000),
# lookahead 1, lifetime LIFETIME seconds (default 20).
#
#   (base) tokend with the same N associations and a lifetime of one day:
#          CPU time over PERIODS * LIFETIME seconds (counter reads, timers:
#          everything but rotations);
#   (rot)  the same with the short lifetime: CPU time over the same span and
#          the rotations it made (from its log); per rotation = (rot - base)
#          / rotations;
#   spread: each association's last rotation (`rotation.last.at` from the
#          socket) against its own boundary: lateness, and how many fell in
#          the same millisecond / in each tenth of the period;
#   (ip)   what one rotation is in kernel requests (add the new outbound SA,
#          delete the old one, add the new inbound lookahead SA, delete the
#          oldest inbound one), for all N associations: `ip -batch` (one
#          process), and 4 `ip xfrm state` processes per rotation (a shell
#          loop), each process's CPU time measured.
# Output: lines, then "figure KEY=VALUE" lines rotation.sh prints as a table.
# shellcheck disable=SC1091
. "$(dirname "$0")/../tests/uml/lib.sh"

USAGE="usage: $0 TOKEND [N [LIFETIME [PERIODS]]]"
TOKEND=${1:?$USAGE}
N=${2:-1000}
L=${3:-20}
PERIODS=${4:-2}
SRC=$(cd "$(dirname "$0")/.." && pwd)
NS=rotbench
D=/tmp/rot-bench
PID=
broke() { echo "BROKEN: $*"; exit 1; }
fig() { echo "figure $1=$2"; }
inns() { ip netns exec "$NS" "$@"; }
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null
    ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$NS" 2>/dev/null
}
trap 'cleanup; uml_cleanup' EXIT

mkdir -p "$D" && chmod 755 "$D"
ip netns add "$NS" && ip -n "$NS" link set lo up &&
ip -n "$NS" link add rotbench0 type veth peer name rotbench1 &&
ip -n "$NS" addr add 192.0.2.1/24 dev rotbench0 &&
ip -n "$NS" link set rotbench0 up && ip -n "$NS" link set rotbench1 up ||
    broke "cannot set up namespace $NS"

# conf-L.conf for the two lifetimes, the ip batches, the helpers.
python3 - "$D" "$N" "$L" "$SRC/scripts" <<'PY' || broke "generating the files failed"
import os, sys
d, n, L = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
secret = os.urandom(32)
old = os.umask(0o077)
with open(os.path.join(d, "secret.key"), "w") as f:
    f.write(secret.hex() + "\n")
os.umask(old)
def remote(i):
    return "198.18.%d.%d" % (i // 250, i % 250 + 1)
for name, life in (("short", L), ("long", 86400)):
    conf = ["[tokend]", "log-level = info", ""]
    for i in range(1, n + 1):
        conf += ["[sa rot%d]" % i, "number = %d" % i, "local = 192.0.2.1",
                 "remote = %s" % remote(i), "secret = %s/secret.key" % d,
                 "lookahead = 1", "lifetime = %ds" % life, ""]
    with open(os.path.join(d, "%s.conf" % name), "w") as f:
        f.write("\n".join(conf))
# One rotation of association i in kernel requests, as tokend makes them.
KEY = "0x00112233445566778899aabbccddeeff01020304"
def sa(src, dst, spi, i, timed=True):
    # The time limits only on the rotation's new SAs: the set-up ones must
    # not expire while the slow per-process loop runs.
    return ("xfrm state add src %s dst %s proto esp spi 0x%08x reqid %d mode transport "
            "replay-window 32 aead rfc4106(gcm(aes)) %s 128 limit packet-soft 3865411584 "
            "limit packet-hard 4294901760%s"
            % (src, dst, spi, 0x746B0000 + i, KEY,
               " limit time-soft %d limit time-hard %d" % (L, L + L // 4) if timed else ""))
def spi(i, out, gen):
    return 0x01000000 | i << 8 | (0 if out else 1) << 7 | gen
setup, rot = [], []
for i in range(1, n + 1):
    r = remote(i)
    setup += [sa("192.0.2.1", r, spi(i, True, 0), i, False),
              sa(r, "192.0.2.1", spi(i, False, 0), i, False),
              sa(r, "192.0.2.1", spi(i, False, 1), i, False)]
    rot += [sa("192.0.2.1", r, spi(i, True, 1), i),
            "xfrm state delete src 192.0.2.1 dst %s proto esp spi 0x%08x" % (r, spi(i, True, 0)),
            sa(r, "192.0.2.1", spi(i, False, 2), i),
            "xfrm state delete src %s dst 192.0.2.1 proto esp spi 0x%08x" % (r, spi(i, False, 0))]
with open(os.path.join(d, "setup.batch"), "w") as f:
    f.write("\n".join(setup) + "\n")
with open(os.path.join(d, "rot.batch"), "w") as f:
    f.write("\n".join(rot) + "\n")
PY

# cpu_ticks PID: utime + stime of PID, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# run_daemon NAME: start tokend on NAME.conf, wait until every association
# is up, measure CPU over PERIODS periods; prints cpu_ms and rotations.
run_daemon() {
    local name=$1 t0 t1 c0 c1 m0 m1 up
    rm -rf "$D/state-$name" "$D/$name.sock"
    inns ip xfrm state flush; inns ip xfrm policy flush
    ip netns exec "$NS" "$TOKEND" --config "$D/$name.conf" --socket "$D/$name.sock" \
        --state-dir "$D/state-$name" >> "$D/$name.log" 2>&1 &
    PID=$!
    for _ in $(seq 600); do
        up=$(python3 "$D/list.py" "$D/$name.sock" up 2>/dev/null)
        [ "$up" = "$N" ] && break
        sleep 0.5
    done
    [ "$up" = "$N" ] || broke "$name: only $up of $N associations up"
    # Settle one period, so the start's work is not counted.
    sleep "$L"
    m0=$(grep -c ': rotation [0-9]*: sending moves' "$D/$name.log")
    c0=$(cpu_ticks "$PID"); t0=$(date +%s.%N)
    sleep $((PERIODS * L))
    c1=$(cpu_ticks "$PID"); t1=$(date +%s.%N)
    m1=$(grep -c ': rotation [0-9]*: sending moves' "$D/$name.log")
    echo "$name: $(( m1 - m0 )) rotations, CPU $(( (c1 - c0) * 1000 / HZ )) ms in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s"
    fig "${name}_rotations" $((m1 - m0))
    fig "${name}_cpu_ms" $(( (c1 - c0) * 1000 / HZ ))
    fig "${name}_span_s" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')"
}

cat > "$D/list.py" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(json.dumps({"method": "io.tokend.ListAssociations", "parameters": {}}).encode() + b"\0")
buf = b""
while not buf.endswith(b"\0"):
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    buf += chunk
a = json.loads(buf.rstrip(b"\0"))["parameters"]["associations"]
if sys.argv[2] == "up":
    print(sum(1 for x in a if x["state"] == "up"))
else:
    json.dump(a, open(sys.argv[3], "w"))
PY

echo "== $N associations, lifetime ${L}s, measured over $PERIODS periods"
run_daemon long
kill "$PID"; wait "$PID" 2>/dev/null; PID=
run_daemon short
inns python3 "$D/list.py" "$D/short.sock" dump "$D/assocs.json" || broke "cannot list"
kill "$PID"; wait "$PID" 2>/dev/null; PID=

python3 - "$D/assocs.json" "$L" <<'PY'
import calendar, hashlib, json, sys, time
a, L = json.load(open(sys.argv[1])), int(sys.argv[2])
late, offs = [], []
for x in a:
    r = x["rotation"]
    last = r.get("last")
    if not last or last["reason"] != "clock":
        continue
    at = last["at"]
    t = calendar.timegm(time.strptime(at[:19], "%Y-%m-%dT%H:%M:%S")) * 1000 + int(at[20:23])
    start = r["epoch"] * 1000 + r["phase_ms"] + last["to"] * L * 1000
    late.append(t - start)
    offs.append(t % (L * 1000))
late.sort()
per_ms = {}
for o in offs:
    per_ms[o] = per_ms.get(o, 0) + 1
tenth = [0] * 10
for o in offs:
    tenth[o * 10 // (L * 1000)] += 1
q = lambda p: late[min(len(late) - 1, int(p * len(late)))]
print("spread: %d last rotations; lateness after the boundary ms: median %d, p99 %d, max %d"
      % (len(late), q(0.5), q(0.99), late[-1]))
print("spread: %d distinct milliseconds of the period, at most %d rotations in one; per tenth of the period: %s"
      % (len(per_ms), max(per_ms.values()), " ".join(map(str, tenth))))
print("figure spread_n=%d" % len(late))
print("figure late_median_ms=%d" % q(0.5))
print("figure late_p99_ms=%d" % q(0.99))
print("figure late_max_ms=%d" % late[-1])
print("figure distinct_ms=%d" % len(per_ms))
print("figure max_same_ms=%d" % max(per_ms.values()))
print("figure tenths=%s" % ",".join(map(str, tenth)))
PY

# iproute2: the same kernel work.
cat > "$D/cpu.py" <<'PY'
import os, sys, time
t0 = time.monotonic()
pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ)
_, st, ru = os.wait4(pid, 0)
print("cpu_us=%.0f wall_us=%.0f status=%d" % ((ru.ru_utime + ru.ru_stime) * 1e6,
                                              (time.monotonic() - t0) * 1e6, st))
PY
inns ip xfrm state flush
inns ip -batch "$D/setup.batch" || broke "ip setup batch"
out=$(inns python3 "$D/cpu.py" ip -batch "$D/rot.batch")
echo "ip -batch, $N rotations (4 requests each): $out"
grep -q 'status=0$' <<<"$out" || broke "ip -batch failed"
fig ip_batch_cpu_us "$(sed 's/.*cpu_us=\([0-9]*\).*/\1/' <<<"$out")"
# Separate processes: 100 rotations' worth, as a shell loop would run them.
inns ip xfrm state flush
inns ip -batch "$D/setup.batch" || broke "ip setup batch"
head -n 400 "$D/rot.batch" > "$D/rot100.txt"
cat > "$D/loop.sh" <<'SH'
while read -r line; do ip $line || exit 1; done < "$1"
SH
out=$(inns python3 "$D/cpu.py" bash "$D/loop.sh" "$D/rot100.txt")
echo "ip, one process per request, 100 rotations: $out"
grep -q 'status=0$' <<<"$out" || broke "the per-process loop failed"
fig ip_proc100_cpu_us "$(sed 's/.*cpu_us=\([0-9]*\).*/\1/' <<<"$out")"
fig n "$N"
fig lifetime "$L"
fig periods "$PERIODS"
grep -h '^<[0-4]>' "$D"/*.log | sort | uniq -c | sort -rn | head -5 | sed 's/^/warnings: /'
echo "== done"
