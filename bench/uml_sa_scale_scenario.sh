#!/bin/bash
# Inside User-Mode Linux only (bench/sa_scale.sh starts it through
# tests/uml/run.sh): tokend holding many IPsec associations.
#
#   uml_sa_scale_scenario.sh TOKEND TOKENCTL SPAWN_TIME SIZES RUNS TRACE_N
#
# One network namespace (sascale) with a veth pair whose two ends are both
# inside it; 192.0.2.1/24 and 2001:db8::1/64 on sascale0. No packet is sent.
# For each size S in SIZES (e.g. "0 2000 10000"; 0 first), one tokend with S
# associations (IPv6, lookahead 1: 3 SAs and 2 policies each), kernel empty
# and state directory fresh before:
#   - rss: VmRSS / RssAnon / VmHWM of tokend (/proc/PID/status) once the
#     kernel holds all 5S objects, every association is "up" and 2 s have
#     passed (monitor echoes of its own installs handled);
#   - show: `tokenctl show sa --json` (all associations) against
#     `ip -json xfrm state` (the same 3S SAs), each a whole process with its
#     output into /dev/null (spawn_time -o /dev/null), RUNS runs after 1
#     warm-up, alternating; checked once, untimed: the JSON holds S
#     associations, ip prints 3S SAs.
# Then TRACE_N associations once more, for batching: tokend under
# `strace -f -e trace=sendto,sendmsg` (netlink requests decoded), and
# `ip -batch` with the same 5*TRACE_N SAs and policies under `strace -c`.
# Output: "scale ..." and "trace ..." lines that sa_scale.sh reads.
# shellcheck disable=SC1091
. "$(dirname "$0")/../tests/uml/lib.sh"

USAGE="usage: $0 TOKEND TOKENCTL SPAWN_TIME SIZES RUNS TRACE_N"
TOKEND=${1:?$USAGE}
TOKENCTL=${2:?$USAGE}
SPAWN=${3:?$USAGE}
SIZES=${4:?$USAGE}
RUNS=${5:?$USAGE}
TRACE_N=${6:?$USAGE}
NS=sascale
D=/tmp/sa-scale         # UML's own tmpfs
SOCK=$D/tokend.sock
FAILED=0
PID=

broke() { FAILED=1; echo "BROKEN: $*"; }
inns() { ip netns exec "$NS" "$@"; }

# shellcheck disable=SC2317  # called from the trap
cleanup() {
    ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$NS" 2>/dev/null
}
trap 'cleanup; uml_cleanup' EXIT

for f in "$TOKEND" "$TOKENCTL" "$SPAWN"; do
    [ -x "$f" ] || { echo "BROKEN: no $f"; exit 1; }
done
command -v strace >/dev/null || echo "NOTE: strace is not installed: no batching figures"
mkdir -p "$D"
chmod 755 "$D"

ip netns add "$NS" &&
ip netns exec "$NS" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 &&
ip -n "$NS" link set lo up &&
ip -n "$NS" link add sascale0 type veth peer name sascale1 &&
ip -n "$NS" addr add 192.0.2.1/24 dev sascale0 &&
ip -n "$NS" addr add 2001:db8::1/64 dev sascale0 nodad &&
ip -n "$NS" link set sascale0 up &&
ip -n "$NS" link set sascale1 up || { echo "BROKEN: cannot set up namespace $NS"; exit 1; }

# --- files: a config per size, the trace batch, the helpers ----------------------
# shellcheck disable=SC2086  # one argument per size
python3 - "$D" "$TRACE_N" $SIZES <<'PY' || { echo "BROKEN: generating the files failed"; exit 1; }
import ipaddress, os, sys
d, trace_n, sizes = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3:]]
REQID_BASE, PRIO, HARD = 0x746B0000, 0x2800, 0xFFFF0000
SOFT = HARD - HARD // 10
FIXED = "00112233445566778899aabbccddeeff01020304"
L = "2001:db8::1"
remote = lambda i: "2001:db8:1::%x" % i      # i up to 65535: one hex group

def spi(number, src, dst, gen):              # daemon/assoc.c assoc_spi
    bit = 0 if ipaddress.ip_address(src).packed < ipaddress.ip_address(dst).packed else 1
    return 0x01000000 | (number & 0xFFFF) << 8 | bit << 7 | gen % 128

old = os.umask(0o077)
with open(os.path.join(d, "secret.key"), "w") as f:
    f.write(os.urandom(32).hex() + "\n")
os.umask(old)
for n in set(sizes + [trace_n]):
    conf = ["[tokend]", "log-level = info", ""]
    for i in range(1, n + 1):
        conf += ["[sa s%d]" % i, "number = %d" % i, "local = %s" % L, "remote = %s" % remote(i),
                 "secret = %s/secret.key" % d, "lookahead = 1", ""]
    with open(os.path.join(d, "conf-%d.conf" % n), "w") as f:
        f.write("\n".join(conf))
states, policies = [], []
for i in range(1, trace_n + 1):
    r = remote(i)
    for src, dst, gen in ((L, r, 0), (r, L, 0), (r, L, 1)):
        states.append("xfrm state add src %s dst %s proto esp spi 0x%08x reqid %d mode transport "
                      "replay-window 32 aead rfc4106(gcm(aes)) 0x%s 128 limit packet-soft %d "
                      "limit packet-hard %d" % (src, dst, spi(i, src, dst, gen), REQID_BASE + i,
                                                FIXED, SOFT, HARD))
    for dirn, src, dst in (("out", L, r), ("in", r, L)):
        policies.append("xfrm policy add src %s/128 dst %s/128 dir %s priority %d tmpl src %s "
                        "dst %s proto esp reqid %d mode transport"
                        % (src, dst, dirn, PRIO, src, dst, REQID_BASE + i))
with open(os.path.join(d, "trace.batch"), "w") as f:
    f.write("\n".join(states + policies) + "\n")

# wait.py SOCK S TIMEOUT: until tokenctl status says S associations up (and
# none in error) and the kernel holds 3S SAs and 2S policies; prints the pid.
with open(os.path.join(d, "wait.py"), "w") as f:
    f.write(r'''import json, socket, struct, subprocess, sys, time
tokenctl, sock, n, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 6)
def counts():
    out = []
    for typ in (0x23, 0x25):                 # GETSADINFO, GETSPDINFO
        nl.send(struct.pack("=IHHII", 20, typ, 1, 1, 0) + struct.pack("=I", 0xFFFFFFFF))
        data = nl.recv(65536)
        ln, off, val = struct.unpack_from("=I", data)[0], 20, None
        while off + 4 <= ln:
            alen, atype = struct.unpack_from("=HH", data, off)
            if atype == 1:
                val = (struct.unpack_from("=I", data, off + 4)[0] if typ == 0x23
                       else sum(struct.unpack_from("=III", data, off + 4)))
            off += (alen + 3) & ~3
        out.append(val)
    return out
t0, last = time.monotonic(), None
while time.monotonic() - t0 < timeout:
    p = subprocess.run([tokenctl, "--socket", sock, "--json", "status"], capture_output=True, text=True)
    if p.returncode == 0:
        st = json.loads(p.stdout)
        ac = st.get("association_counts") or {}
        last = (st.get("pid"), ac, counts())
        if ac.get("up", 0) == n and st.get("associations") == n and last[2] == [3 * n, 2 * n]:
            print(st["pid"])
            sys.exit(0)
    time.sleep(0.5)
print("wait: not complete after %ds: %s" % (timeout, last), file=sys.stderr)
sys.exit(1)
''')
# trace.py FILE: netlink requests per sendto/sendmsg on tokend's XFRM socket,
# from strace's decoding (-yy names the socket; -v -s 4096 prints whole arrays).
with open(os.path.join(d, "trace.py"), "w") as f:
    f.write(r'''import re, sys
calls = msgs = inst_calls = inst_msgs = mx = 0
for line in open(sys.argv[1]):
    if not re.search(r"\b(sendto|sendmsg)\(\d+<NETLINK:\[XFRM", line):
        continue
    types = re.findall(r"nlmsg_type=(XFRM_MSG_\w+|0x[0-9a-f]+|\d+)", line)
    calls += 1
    msgs += len(types)
    if types and all(t in ("XFRM_MSG_NEWSA", "XFRM_MSG_NEWPOLICY", "XFRM_MSG_UPDPOLICY",
                           "XFRM_MSG_UPDSA") for t in types):
        inst_calls += 1
        inst_msgs += len(types)
        mx = max(mx, len(types))
print("calls=%d msgs=%d install_calls=%d install_msgs=%d max_per_call=%d"
      % (calls, msgs, inst_calls, inst_msgs, mx))
''')
PY

# empty: flush SAs and policies of this namespace, fresh state directory.
empty() {
    inns ip xfrm state flush && inns ip xfrm policy flush && rm -rf "$D/state"
}
# tokend_up S [PREFIX...]: start tokend with conf-S (under PREFIX, e.g. strace)
# in the background; PID = its pid once every association is up.
tokend_up() {
    local n=$1 bg
    shift
    empty || { broke "cannot empty the kernel"; return 1; }
    ip netns exec "$NS" "$@" "$TOKEND" --config "$D/conf-$n.conf" --socket "$SOCK" \
        --state-dir "$D/state" > "$D/tokend-$n.log" 2>&1 &
    bg=$!
    PID=$(inns python3 "$D/wait.py" "$TOKENCTL" "$SOCK" "$n" $((120 + n / 20))) || {
        broke "tokend with $n associations did not come up (log $D/tokend-$n.log)"
        tail -n 5 "$D/tokend-$n.log"
        kill -9 "$bg" 2>/dev/null; PID=; return 1
    }
    BG=$bg
}
tokend_down() {
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null
    wait "$BG" 2>/dev/null
    PID=
}
kb() { sed -n "s/^$1:\s*\([0-9]*\) kB/\1/p" "/proc/$PID/status"; }
median_of() { sed -n 's/^summary .* median_us=\([0-9.]*\) .*/\1/p' "$1"; }

T0=$(date +%s)
for S in $SIZES; do
    echo "== $S associations [t+$(( $(date +%s) - T0 )) s]"
    tokend_up "$S" || continue
    sleep 2
    line="scale n=$S rss_kb=$(kb VmRSS) anon_kb=$(kb RssAnon) hwm_kb=$(kb VmHWM)"
    if [ "$S" -gt 0 ]; then
        # Untimed checks of what the timed commands print. --timeout 120:
        # in UML tokend takes longer than tokenctl's default 10 s to begin
        # the reply for 10,000 associations (the timeout is for silence;
        # this is a measurement, not a check of the default).
        inns "$TOKENCTL" --socket "$SOCK" --timeout 120 show sa --json > "$D/show.json" 2> "$D/show.err"
        rc=$?
        got=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["associations"]))' \
              "$D/show.json" 2>/dev/null)
        inns ip -json xfrm state > "$D/ip.out"
        sas=$(grep -c '^src' "$D/ip.out")
        line+=" show_rc=$rc show_assocs=${got:-0} show_bytes=$(wc -c < "$D/show.json")"
        line+=" ip_sas=$sas ip_bytes=$(wc -c < "$D/ip.out")"
        [ "$sas" -eq $((3 * S)) ] || broke "ip -json xfrm state shows $sas SAs, want $((3 * S))"
        if [ "$rc" -eq 0 ] && [ "${got:-0}" -eq "$S" ]; then
            : > "$D/show.out"; : > "$D/ip.time"
            for r in $(seq 0 "$RUNS"); do
                for who in show ip; do
                    if [ "$who" = show ]; then
                        set -- "$TOKENCTL" --socket "$SOCK" --timeout 120 show sa --json
                    else
                        set -- ip -json xfrm state
                    fi
                    inns "$SPAWN" -n 1 -o /dev/null -- "$@" > "$D/$who-$r.out" 2>&1 ||
                        { cat "$D/$who-$r.out"; broke "$who run $r failed"; }
                done
            done
            show_t=$(for r in $(seq "$RUNS"); do median_of "$D/show-$r.out"; done | sort -g |
                     sed -n "$(( (RUNS + 1) / 2 ))p")
            ip_t=$(for r in $(seq "$RUNS"); do median_of "$D/ip-$r.out"; done | sort -g |
                   sed -n "$(( (RUNS + 1) / 2 ))p")
            line+=" show_median_us=$show_t ip_median_us=$ip_t"
        else
            # Not broken here: the figure is a limit of tokend's, reported as such.
            line+=" show_error=$(tr ' \n' '_ ' < "$D/show.err" | head -c 200)"
            echo "LIMIT: tokenctl show sa --json with $S associations: exit $rc," \
                 "$(cat "$D/show.err")"
        fi
    fi
    echo "$line"
    tokend_down
done

if command -v strace >/dev/null && [ "$TRACE_N" -gt 0 ]; then
    echo "== batching, $TRACE_N associations under strace [t+$(( $(date +%s) - T0 )) s]"
    if tokend_up "$TRACE_N" strace -f -qq -yy -v -s 65536 -e trace=sendto,sendmsg -o "$D/strace-tokend.txt"; then
        tokend_down
        echo "trace tokend $(python3 "$D/trace.py" "$D/strace-tokend.txt")"
    fi
    empty || broke "cannot empty the kernel"
    inns strace -f -c -o "$D/strace-ip.txt" -e trace=sendto,sendmsg ip -batch "$D/trace.batch" ||
        broke "ip -batch under strace failed"
    echo "trace ip_batch lines=$(wc -l < "$D/trace.batch") sendmsg=$(awk '$NF == "sendmsg" { print $4 }' "$D/strace-ip.txt") sendto=$(awk '$NF == "sendto" { print $4 }' "$D/strace-ip.txt")"
    empty
fi
cp "$D"/tokend-*.log "$D"/*.out "$D"/strace-ip.txt "$UML_RESULTS/" 2>/dev/null
echo "== done [t+$(( $(date +%s) - T0 )) s]"
exit "$FAILED"
