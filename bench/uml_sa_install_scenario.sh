#!/bin/bash
# Inside User-Mode Linux only (bench/sa_install.sh starts it through
# tests/uml/run.sh): installing N IPsec associations, tokend against
# `ip -batch`.
#
#   uml_sa_install_scenario.sh TOKEND SPAWN_TIME [N [RUNS [WARMUP]]]
#
# One network namespace (sabench) with a veth pair whose two ends both live
# inside it; 192.0.2.1/24 and 2001:db8::1/64 on sabench0. N associations
# (default 2000), `lookahead = 1`: 3 SAs (1 outbound, 2 inbound) and 2
# policies (in, out) each. No packet is sent; SAs and policies are installed
# in this namespace only.
#
#   (b) `ip -batch FILE` with the same SAs and policies (fixed keys), whole
#       process, kernel empty before each run;
#   (a) tokend, exec to READY=1, kernel empty and state directory fresh
#       before each run (spawn_time -r);
#   (a2) the same start, timed until the kernel holds all 5N objects
#       (drive.py below: READY=1 and the kernel's SA/policy counts);
#   (c0) one tokend restart over what tokend itself installed;
#   (c) tokend restart with the kernel already right: the SAs installed by
#       `ip -batch` with the keys of the documented derivation, the state
#       directory of a cold start (adoption: nothing should be written).
#
# (a), (b) and (a2) run in rounds, in an order that rotates from round to
# round: WARMUP uncounted rounds (default 1), then RUNS counted ones (default
# 3); each figure is the median of its RUNS runs. After every run the kernel's SAs and policies are counted
# (`ip xfrm state|policy | grep -c '^src'`); after tokend's runs every SA's
# key is also compared with the documented derivation.
# Output: the tools' lines, then "figure NAME summary ..." and
# "fact KEY=VALUE" lines that sa_install.sh turns into a table. Exit status 1
# when something broke, 3 when tokend left the kernel wrong (objects missing,
# keys that are not the derivation, writes on a restart over a right kernel).
# shellcheck disable=SC1091
. "$(dirname "$0")/../tests/uml/lib.sh"

USAGE="usage: $0 TOKEND SPAWN_TIME [N [RUNS [WARMUP]]]"
TOKEND=${1:?$USAGE}
SPAWN=${2:?$USAGE}
N=${3:-2000}
RUNS=${4:-3}
WARMUP=${5:-1}
SRC=$(cd "$(dirname "$0")/.." && pwd)
NS=sabench
D=/tmp/sa-bench         # UML's own tmpfs
SA_WANT=$((3 * N))
POL_WANT=$((2 * N))
FAILED=0
WRONG=0
MON=

broke() { FAILED=1; echo "BROKEN: $*"; }
wrong() { WRONG=1; echo "WRONG: $*"; }
fact() { echo "fact $1=$2"; }

keep_logs() {
    # Into the run's results directory (kept by run.sh on failure, or with
    # UML_KEEP=1). Not the secret.
    cp "$D"/*.log "$D"/*.out "$D"/*.txt "$D/tokend.conf" "$UML_RESULTS/" 2>/dev/null
}

# shellcheck disable=SC2317  # called from the trap
cleanup() {
    [ -n "$MON" ] && kill "$MON" 2>/dev/null
    ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$NS" 2>/dev/null
}
trap 'cleanup; uml_cleanup' EXIT

[ -x "$TOKEND" ] || { echo "BROKEN: no tokend at $TOKEND"; exit 1; }
[ -x "$SPAWN" ] || { echo "BROKEN: no spawn_time at $SPAWN"; exit 1; }
{ [ "$N" -ge 1 ] && [ "$N" -le 65535 ]; } 2>/dev/null || { echo "BROKEN: N must be 1..65535"; exit 1; }
{ [ "$RUNS" -ge 1 ] && [ "$WARMUP" -ge 0 ]; } 2>/dev/null || { echo "BROKEN: bad RUNS/WARMUP"; exit 1; }
mkdir -p "$D"
chmod 755 "$D"

# --- the namespace ----------------------------------------------------------
ip netns add "$NS" &&
ip netns exec "$NS" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 &&
ip -n "$NS" link set lo up &&
ip -n "$NS" link add sabench0 type veth peer name sabench1 &&
ip -n "$NS" addr add 192.0.2.1/24 dev sabench0 &&
ip -n "$NS" addr add 2001:db8::1/64 dev sabench0 nodad &&
ip -n "$NS" link set sabench0 up &&
ip -n "$NS" link set sabench1 up || { echo "BROKEN: cannot set up namespace $NS"; exit 1; }

# --- every file, in one python3 call -----------------------------------------
# secret.key, tokend.conf, sa.batch (fixed keys), right.batch (derived keys),
# the hooks verify.sh, empty.sh, record.sh, and the helpers keycheck.py and
# drive.py.
python3 - "$D" "$N" "$SRC/scripts" <<'PY' || { echo "BROKEN: generating the files failed"; exit 1; }
import ipaddress, os, sys

d, n, scripts = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.path.insert(0, scripts)
import kdf_vectors  # the documented derivation, independent of the daemon

REQID_BASE = 0x746B0000          # tokend's default reqid-base
PRIO = 0x2800                    # tokend's default policy-priority
HARD = 0xFFFF0000                # tokend's default lifetime-packets
SOFT = HARD - HARD // 10         # tokend's soft limit: 90 % of the hard one
# Any fixed key for the ip -batch comparison: 16 bytes of AES key + 4 bytes
# of salt (rfc4106, 128-bit ICV).
FIXED = "00112233445566778899aabbccddeeff01020304"

def remote(i):
    """Association i's peer: 1..250 198.51.100.i, 251..500 203.0.113.(i-250),
    the rest 2001:db8:1::i (the decimal digits read as one hex group)."""
    if i <= 250:
        return "198.51.100.%d" % i
    if i <= 500:
        return "203.0.113.%d" % (i - 250)
    return "2001:db8:1::%d" % i

def spi(number, src, dst, gen):
    # tokend's SPI layout (daemon/assoc.c assoc_spi): 0x01 | number | dir | gen.
    bit = 0 if ipaddress.ip_address(src).packed < ipaddress.ip_address(dst).packed else 1
    return 0x01000000 | (number & 0xFFFF) << 8 | bit << 7 | gen % 128

secret = os.urandom(32)
old = os.umask(0o077)
with open(os.path.join(d, "secret.key"), "w") as f:
    f.write(secret.hex() + "\n")
os.umask(old)

conf = ["[tokend]", "log-level = info", ""]
states, right, policies = [], [], []
for i in range(1, n + 1):
    r = remote(i)
    v6 = ":" in r
    l = "2001:db8::1" if v6 else "192.0.2.1"
    plen = 128 if v6 else 32
    reqid = REQID_BASE + i
    conf += ["[sa bench%d]" % i, "number = %d" % i, "local = %s" % l, "remote = %s" % r,
             "secret = %s/secret.key" % d, "lookahead = 1", ""]
    # What tokend installs for a fresh association with lookahead = 1:
    # outbound generation 0, inbound generations 0 and 1.
    for src, dst, gen in ((l, r, 0), (r, l, 0), (r, l, 1)):
        line = ("xfrm state add src %s dst %s proto esp spi 0x%08x reqid %d mode transport "
                "replay-window 32 aead rfc4106(gcm(aes)) 0x%%s 128 "
                "limit packet-soft %d limit packet-hard %d"
                % (src, dst, spi(i, src, dst, gen), reqid, SOFT, HARD))
        key = kdf_vectors.derive(secret, {"name": "bench%d" % i, "number": i, "src": src,
                                          "dst": dst, "generation": gen,
                                          "algorithm": "aes-gcm-128"}).hex()
        states.append(line % FIXED)
        right.append(line % key)
    for dirn, src, dst in (("out", l, r), ("in", r, l)):
        policies.append(
            "xfrm policy add src %s/%d dst %s/%d dir %s priority %d "
            "tmpl src %s dst %s proto esp reqid %d mode transport"
            % (src, plen, dst, plen, dirn, PRIO, src, dst, reqid))
with open(os.path.join(d, "tokend.conf"), "w") as f:
    f.write("\n".join(conf))
with open(os.path.join(d, "sa.batch"), "w") as f:
    f.write("\n".join(states + policies) + "\n")
with open(os.path.join(d, "right.batch"), "w") as f:
    f.write("\n".join(right + policies) + "\n")

sub = {"d": d, "sa": 3 * n, "pol": 2 * n, "scripts": scripts}
files = {
    # verify.sh: exactly the expected numbers of SAs and policies, or fail.
    "verify.sh": """#!/bin/bash
s=$(ip xfrm state | grep -c '^src')
p=$(ip xfrm policy | grep -c '^src')
[ "$s" -eq %(sa)d ] && [ "$p" -eq %(pol)d ] && exit 0
echo "verify: $s SAs (want %(sa)d), $p policies (want %(pol)d)" >&2
exit 1
""",
    # empty.sh [fresh-state]: flush SAs and policies (this namespace only),
    # and the state directory too if asked; then the kernel must hold none.
    "empty.sh": """#!/bin/bash
ip xfrm state flush && ip xfrm policy flush || exit 1
[ "${1:-}" = fresh-state ] && rm -rf %(d)s/state
s=$(ip xfrm state | grep -c '^src')
p=$(ip xfrm policy | grep -c '^src')
[ "$s" -eq 0 ] && [ "$p" -eq 0 ] && exit 0
echo "empty: $s SAs, $p policies left after the flush" >&2
exit 1
""",
    # record.sh LABEL: count SAs and policies, compare every SA's key with
    # the derivation; one "record" line in records.txt. Never fails (the
    # scenario judges the records), unless ip itself does.
    "record.sh": """#!/bin/bash
ip xfrm state > %(d)s/dump.txt || exit 1
s=$(grep -c '^src' %(d)s/dump.txt)
p=$(ip xfrm policy | grep -c '^src') || exit 1
k=$(python3 %(d)s/keycheck.py %(d)s/secret.key %(d)s/dump.txt)
echo "record $1 sa=$s pol=$p $k" >> %(d)s/records.txt
""",
    "keycheck.py": r'''import re, sys
sys.path.insert(0, "%(scripts)s")
import kdf_vectors
secret = bytes.fromhex(open(sys.argv[1]).read().strip())
ok = bad = zero = 0
bad_out = bad_in = 0
first = []
for blk in re.split(r"(?m)^(?=src )", open(sys.argv[2]).read()):
    m = re.match(r"src (\S+) dst (\S+)\s+proto esp spi (0x[0-9a-f]+) reqid (\d+)", blk)
    k = re.search(r"aead rfc4106\(gcm\(aes\)\) 0x([0-9a-f]+)", blk)
    if not m or not k:
        continue
    src, dst, spi, num = m.group(1), m.group(2), int(m.group(3), 16), int(m.group(4)) - 0x746B0000
    want = kdf_vectors.derive(secret, {"name": "bench%%d" %% num, "number": num, "src": src,
                                       "dst": dst, "generation": spi & 0x7F,
                                       "algorithm": "aes-gcm-128"}).hex()
    if want == k.group(1):
        ok += 1
        continue
    bad += 1
    zero += k.group(1) == "0" * len(want)
    if src in ("192.0.2.1", "2001:db8::1"):
        bad_out += 1
    else:
        bad_in += 1
    if len(first) < 3:
        first.append("bench%%d/0x%%08x" %% (num, spi))
print("keys_ok=%%d keys_bad=%%d bad_out=%%d bad_in=%%d all_zero=%%d first_bad=%%s"
      %% (ok, bad, bad_out, bad_in, zero, ",".join(first) or "-"))
''',
    # drive.py TARGET_SA TARGET_POL TIMEOUT_S LOG -- CMD...: start CMD (an
    # sd_notify daemon) with NOTIFY_SOCKET, note when READY=1 arrives and when
    # the kernel first holds TARGET_SA SAs and TARGET_POL policies (counts of
    # XFRM_MSG_GETSADINFO / GETSPDINFO, polled every 20 ms), then SIGTERM it.
    "drive.py": r'''import os, select, signal, socket, struct, sys, tempfile, time

def counts(nl, seq=[0]):
    out = []
    for typ in (0x23, 0x25):            # XFRM_MSG_GETSADINFO, XFRM_MSG_GETSPDINFO
        seq[0] += 1
        nl.send(struct.pack("=IHHII", 20, typ, 1, seq[0], 0) + struct.pack("=I", 0xFFFFFFFF))
        data = nl.recv(65536)
        ln = struct.unpack_from("=I", data)[0]
        off, val = 20, None
        while off + 4 <= ln:
            alen, atype = struct.unpack_from("=HH", data, off)
            if atype == 1:               # XFRMA_SAD_CNT / XFRMA_SPD_INFO
                val = (struct.unpack_from("=I", data, off + 4)[0] if typ == 0x23
                       else sum(struct.unpack_from("=III", data, off + 4)))
            off += (alen + 3) & ~3
        out.append(val)
    return out

tsa, tpol, timeout, log = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
cmd = sys.argv[sys.argv.index("--") + 1:]
tmp = tempfile.mkdtemp(prefix="drive.")
path = tmp + "/notify"
ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
ns.bind(path)
ns.setblocking(False)
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 6)   # NETLINK_XFRM
env = dict(os.environ, NOTIFY_SOCKET=path)
fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
t0 = time.monotonic()
pid = os.posix_spawn(cmd[0], cmd, env, file_actions=[(os.POSIX_SPAWN_DUP2, fd, 1),
                                                     (os.POSIX_SPAWN_DUP2, fd, 2)])
os.close(fd)
ready = complete = None
last = [None, None]
died = False
while time.monotonic() - t0 < timeout:
    if select.select([ns], [], [], 0.02)[0]:
        try:
            msg = ns.recv(4096).decode(errors="replace")
        except BlockingIOError:
            msg = ""
        if ready is None and "READY=1" in msg.split("\n"):
            ready = time.monotonic() - t0
    if complete is None:
        last = counts(nl)
        if last == [tsa, tpol]:
            complete = time.monotonic() - t0
    if ready is not None and complete is not None:
        break
    if os.waitpid(pid, os.WNOHANG)[0] == pid:
        died = True
        break
if not died:
    os.kill(pid, signal.SIGTERM)
    _, st, ru = os.wait4(pid, 0)
else:
    st, ru = -1, os.getrusage(os.RUSAGE_CHILDREN)
os.unlink(path)
os.rmdir(tmp)
us = lambda v: "n/a" if v is None else "%%.1f" %% (v * 1e6)
print("drive ready_us=%%s complete_us=%%s cpu_us=%%.1f sa=%%s pol=%%s status=%%d"
      %% (us(ready), us(complete), (ru.ru_utime + ru.ru_stime) * 1e6, last[0], last[1], st))
sys.exit(0 if ready is not None and complete is not None and not died else 1)
''',
    # phase.py NAME LOG GRACE_S -- CMD...: start CMD with its stdout and
    # stderr into a pipe, write each line to LOG stamped with the seconds
    # since the spawn, SIGTERM CMD GRACE_S after its "ready" line, print one
    # "phases" line. (python blocks in select() while CMD runs.)
    "phase.py": r'''import os, re, select, signal, sys, time
name, log, grace = sys.argv[1], sys.argv[2], float(sys.argv[3])
cmd = sys.argv[sys.argv.index("--") + 1:]
rd, wr = os.pipe()
t0 = time.monotonic()
pid = os.posix_spawn(cmd[0], cmd, os.environ,
                     file_actions=[(os.POSIX_SPAWN_DUP2, wr, 1), (os.POSIX_SPAWN_DUP2, wr, 2),
                                   (os.POSIX_SPAWN_CLOSE, rd)])
os.close(wr)
st = {"first_log_line": None, "ready": None, "last_install": None, "first_overrun": None}
n = 0
buf = b""
deadline = t0 + 600
stopped = False
with open(log, "w") as out:
    while True:
        wait = max(0.0, deadline - time.monotonic())
        if not stopped and not select.select([rd], [], [], wait)[0]:
            os.kill(pid, signal.SIGTERM)
            stopped = True
            continue
        data = os.read(rd, 65536)
        if not data:
            break
        now = time.monotonic() - t0
        buf += data
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            out.write("%%.3f %%s\n" %% (now, line))
            if st["first_log_line"] is None:
                st["first_log_line"] = now
            if st["ready"] is None and " ready: config " in line:
                st["ready"] = now
                deadline = time.monotonic() + grace
            if re.search(r" installed( \(|$)", line):
                st["last_install"] = now
                n += 1
            if st["first_overrun"] is None and "monitor overrun" in line:
                st["first_overrun"] = now
os.waitpid(pid, 0)
fmt = lambda v: "-" if v is None else "%%.3f" %% v
print("phases %%s first_log_line=%%s ready=%%s installs_logged=%%d last_install=%%s first_overrun=%%s"
      %% (name, fmt(st["first_log_line"]), fmt(st["ready"]), n, fmt(st["last_install"]),
         fmt(st["first_overrun"])))
''',
}
for name, text in files.items():
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text % sub)
    os.chmod(path, 0o755)
PY
n4=$(grep -c '^remote = [0-9.]*$' "$D/tokend.conf")
fact associations "$N"
fact ipv4 "$n4"
fact ipv6 $((N - n4))
fact objects $((SA_WANT + POL_WANT))
fact batch_lines "$(wc -l < "$D/sa.batch")"
fact runs "$RUNS"
fact warmup "$WARMUP"
"$TOKEND" --check-config --config "$D/tokend.conf" > "$D/check.log" 2>&1 ||
    { cat "$D/check.log"; broke "tokend refuses the generated config"; keep_logs; exit 1; }

T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }'; }
# (Not for background jobs: $! would be a subshell, not the command.)
inns() { ip netns exec "$NS" "$@"; }

# log_phases LOG: per tokend run in LOG (a run ends at "stopping on signal"),
# SAs/policies logged as installed before its "ready" line, then after it.
log_phases() {
    awk '/ SA 0x[0-9a-f]* installed/ { if (r) sa2++; else sa1++ }
         / policy installed$/ { if (r) p2++; else p1++ }
         / ready: config / { r = 1 }
         /stopping on signal/ { printf "%d/%d+%d/%d ", sa1, p1, sa2, p2; sa1 = p1 = sa2 = p2 = r = 0 }' "$1"
}

# judge_records LABEL: every record LABEL line must show the expected counts
# and no wrong key; prints the records.
judge_records() {
    local line
    # (No process substitution: UML's /dev has no /dev/fd.)
    grep "^record $1 " "$D/records.txt" > "$D/records-$1.txt"
    while read -r line; do
        echo "  $line"
        case " $line " in
            *" sa=$SA_WANT pol=$POL_WANT "*" keys_bad=0 "*) ;;
            *) wrong "after a $1 run the kernel is not what tokend should have left: $line" ;;
        esac
    done < "$D/records-$1.txt"
}

monitor_start() {
    # Not through inns: $! must be ip itself (ip netns exec execs it).
    ip netns exec "$NS" ip xfrm monitor > "$1" 2>&1 &
    MON=$!
    sleep 1
}
# monitor_stop FILE: MON_EVENTS = SA and policy notifications seen
# (adds, updates, deletes), MON_LINES = lines printed.
monitor_stop() {
    sleep 1
    kill "$MON" 2>/dev/null
    wait "$MON" 2>/dev/null
    MON=
    MON_EVENTS=$(grep -cE '^(Deleted |Updated )?src ' "$1")
    MON_LINES=$(grep -c . "$1")
}
# writes_logged LOG FROM: install/remove lines tokend logged after line FROM.
writes_logged() {
    tail -n "+$(($2 + 1))" "$1" | grep -cE ' installed( \(|$)| removed$| restored$'
}

: > "$D/records.txt"

# --- (a), (b), (a2): interleaved rounds ----------------------------------------
# WARMUP uncounted rounds, then RUNS counted ones. Each round runs (b), (a)
# and (a2) once, in an order that rotates from round to round: the load of a
# shared machine drifts, and no run should always follow the same other one.
# The first warm-up run also takes the kernel's one-time work (crypto
# template lookups, module requests).
#   (b)  ip -batch: kernel emptied before (untimed), exactly 3N SAs and 2N
#        policies after (or the run fails);
#   (a)  tokend until READY=1 (spawn_time -r; SIGTERM 0.3 s after it), kernel
#        emptied and state directory removed before; record.sh after;
#   (a2) the same start under drive.py: READY=1 and the moment the kernel
#        holds every object; record.sh after.
# shellcheck disable=SC2317  # called as "run_$who"
run_b() {
    inns "$SPAWN" -b "$D/empty.sh" -a "$D/verify.sh" -- ip -batch "$D/sa.batch" > "$1" 2>&1
}
# shellcheck disable=SC2317
run_a() {
    inns "$SPAWN" -r -t 1200 -o "$D/cold.log" -b "$D/empty.sh fresh-state" \
        -a "$D/record.sh cold" -- "$TOKEND" \
        --config "$D/tokend.conf" --socket "$D/tokend.sock" --state-dir "$D/state" > "$1" 2>&1
}
run_a2() {
    inns "$D/empty.sh" fresh-state &&
    inns python3 "$D/drive.py" "$SA_WANT" "$POL_WANT" 600 "$D/drive.log" -- "$TOKEND" \
        --config "$D/tokend.conf" --socket "$D/tokend.sock" --state-dir "$D/state" > "$1" 2>&1
    local rc=$?
    inns "$D/record.sh" drive
    return $rc
}

# spawn_stats FILE...: one "summary runs=... min_us= median_us= max_us=
# cpu_median_us=" line from spawn_time's single-run summaries (lower median).
# drive_stats FILE...: the same from drive.py's lines.
stats_awk='
    function sort(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t } }
    function med(a, n) { sort(a, n); return a[int((n + 1) / 2)] }'
spawn_stats() {
    awk "$stats_awk"'
        /^summary / { n++
            for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "median_us") t[n] = kv[2] + 0; if (kv[1] == "cpu_median_us") c[n] = kv[2] + 0 } }
        END { if (n) { m = med(t, n); printf "summary runs=%d min_us=%.1f median_us=%.1f max_us=%.1f cpu_median_us=%.1f\n", n, t[1], m, t[n], med(c, n) } }' "$@"
}
drive_stats() {
    awk "$stats_awk"'
        /^drive / { n++
            for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] + 0 }
            r[n] = v["ready_us"]; t[n] = v["complete_us"]; c[n] = v["cpu_us"] }
        END { if (n) { rm = med(r, n); cm = med(c, n); m = med(t, n)
              printf "summary runs=%d ready_median_us=%.1f complete_min_us=%.1f complete_median_us=%.1f complete_max_us=%.1f cpu_median_us=%.1f\n", n, rm, t[1], m, t[n], cm } }' "$@"
}

ORDERS=("b a a2" "a a2 b" "a2 b a")
echo "== (a) (b) (a2): $WARMUP warm-up + $RUNS counted rounds, order rotating [t+$(elapsed) s]"
for r in $(seq $((WARMUP + RUNS))); do
    if [ "$r" -le "$WARMUP" ]; then tag=warmup$r; else tag=run$((r - WARMUP)); fi
    line="$tag:"
    for who in ${ORDERS[$(( (r - 1) % 3 ))]}; do
        out=$D/$who-$tag.out
        "run_$who" "$out" || { cat "$out"; broke "($who) $tag failed"; break 2; }
        case $who in
            b)  line+=" (b) ip -batch $(sed -n 's/^summary .* median_us=\([0-9.]*\) .*/\1/p' "$out" | head -n 1) us;" ;;
            a)  line+=" (a) READY $(sed -n 's/^summary .* median_us=\([0-9.]*\) .*/\1/p' "$out" | head -n 1) us;" ;;
            a2) line+=" (a2) $(sed -n 's/^drive ready_us=\([^ ]*\) complete_us=\([^ ]*\) .*/READY \1 us, all in \2 us/p' "$out");" ;;
        esac
    done
    echo "${line%;}"
done
shopt -s nullglob
counted_b=("$D"/b-run*.out)
counted_a=("$D"/a-run*.out)
counted_a2=("$D"/a2-run*.out)
shopt -u nullglob
if [ "${#counted_b[@]}" -ne "$RUNS" ] || [ "${#counted_a[@]}" -ne "$RUNS" ] ||
   [ "${#counted_a2[@]}" -ne "$RUNS" ]; then
    broke "not every round ran"
fi
[ "${#counted_b[@]}" -gt 0 ] && echo "figure batch $(spawn_stats "${counted_b[@]}")"
[ "${#counted_a[@]}" -gt 0 ] && echo "figure cold $(spawn_stats "${counted_a[@]}")"
[ "${#counted_a2[@]}" -gt 0 ] && echo "figure drive $(drive_stats "${counted_a2[@]}")"
echo "after each tokend start (warm-up included), SAs, policies and keys in the kernel:"
judge_records cold
judge_records drive
echo "logged installs, SAs/policies before READY=1 + after, per run of (a): $(log_phases "$D/cold.log")"
fact cold_phases "$(log_phases "$D/cold.log")"
fact cold_records "$(grep -E '^record (cold|drive) ' "$D/records.txt" | sed 's/^record //' | tr '\n' ';')"
fact drive_overruns "$(grep -c 'XFRM monitor overrun' "$D/drive.log")"

# --- (c0) one restart over what tokend itself installed -----------------------
# Set up by one more cold start (untimed), whose state directory (every
# generation 0) is also kept for (c).
echo "== (c0) tokend restart over its own install (1 run) [t+$(elapsed) s]"
run_a2 "$D/c0-setup.out" || broke "the cold start before (c0) failed: $(cat "$D/c0-setup.out")"
rm -rf "$D/state.cold"
cp -a "$D/state" "$D/state.cold"
monitor_start "$D/monitor-c0.txt"
inns "$SPAWN" -r -t 1200 -n 1 -o "$D/warm0.log" -a "$D/record.sh restart-own" -- "$TOKEND" \
    --config "$D/tokend.conf" --socket "$D/tokend.sock" --state-dir "$D/state" \
    > "$D/warm0.out" 2>&1 || broke "tokend restart over its own install failed"
monitor_stop "$D/monitor-c0.txt"
cat "$D/warm0.out"
echo "restart over its own install: $MON_EVENTS SA/policy notifications from the kernel," \
     "$(writes_logged "$D/warm0.log" 0) writes logged by tokend," \
     "$(grep -c 'no outbound SA in the kernel' "$D/warm0.log") 'no outbound SA in the kernel' lines"
grep "^record restart-own " "$D/records.txt" | sed 's/^/  /'
fact c0_events "$MON_EVENTS"
fact c0_logged_writes "$(writes_logged "$D/warm0.log" 0)"
fact c0_no_outbound "$(grep -c 'no outbound SA in the kernel' "$D/warm0.log")"
fact c0_figure "$(grep '^summary' "$D/warm0.out")"

# --- (c) restart, kernel already right -------------------------------------------
echo "== (c) tokend restart, kernel already right ($WARMUP warm-up + $RUNS runs) [t+$(elapsed) s]"
inns "$D/empty.sh" fresh-state || broke "cannot empty the kernel"
cp -a "$D/state.cold" "$D/state"
inns ip -batch "$D/right.batch" || broke "ip -batch right.batch failed"
inns "$D/record.sh" right-before
grep "^record right-before " "$D/records.txt" | sed 's/^/  prepared: /'
grep -q "^record right-before sa=$SA_WANT pol=$POL_WANT .* keys_bad=0 " "$D/records.txt" ||
    broke "the prepared kernel is not right"
monitor_start "$D/monitor-c.txt"
mark=0
[ -f "$D/warm.log" ] && mark=$(wc -l < "$D/warm.log")
inns "$SPAWN" -r -t 1200 -n "$RUNS" -W "$WARMUP" -o "$D/warm.log" -b "$D/verify.sh" \
    -a "$D/verify.sh" -- "$TOKEND" \
    --config "$D/tokend.conf" --socket "$D/tokend.sock" --state-dir "$D/state" \
    > "$D/warm.out" 2>&1 || broke "tokend restart runs failed (log: warm.log)"
monitor_stop "$D/monitor-c.txt"
cat "$D/warm.out"
echo "figure warm $(grep '^summary' "$D/warm.out")"
inns "$D/record.sh" right-after
grep "^record right-after " "$D/records.txt" | sed 's/^/  after the restarts: /'
writes=$(writes_logged "$D/warm.log" "$mark")
echo "restarts: $MON_EVENTS SA/policy notifications from the kernel ($MON_LINES lines of" \
     "ip xfrm monitor), $writes writes logged by tokend"
fact warm_events "$MON_EVENTS"
fact warm_logged_writes "$writes"
fact warm_after "$(grep '^record right-after ' "$D/records.txt" | sed 's/^record right-after //')"
if [ "$MON_LINES" -ne 0 ] || [ "$writes" -ne 0 ]; then
    wrong "tokend wrote on a restart where the kernel was already right"
fi
# --- phases: where a start spends its time -------------------------------------
# One untimed restart (kernel right) and one cold start at log-level info,
# each line stamped with the time since tokend's exec (phase.py reads the
# log through a pipe; tokend writes one line per install, so the cold start
# is a little slower here than in (a)). Stopped 3 s after READY=1.
phase_run() {
    inns python3 "$D/phase.py" "$1" "$D/phase-$1.log" 3 -- "$TOKEND" --config "$D/tokend.conf" \
        --socket "$D/tokend.sock" --state-dir "$D/state" --log-level=info ||
        broke "phase run $1 failed"
}
echo "== phases (log-level info, stamped lines; seconds since exec) [t+$(elapsed) s]"
phase_run restart-right
inns "$D/empty.sh" fresh-state || broke "cannot empty the kernel"
phase_run cold

fact warnings "$(cat "$D"/cold.log "$D"/drive.log "$D"/warm*.log | grep '^<[0-4]>' | sort | uniq -c | sort -rn | sed 's/^ *//' | tr '\n' ';')"

echo "== done [t+$(elapsed) s]"
keep_logs
[ "$FAILED" -eq 0 ] || exit 1
[ "$WRONG" -eq 0 ] || exit 3
exit 0
