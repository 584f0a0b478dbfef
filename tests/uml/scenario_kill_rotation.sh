#!/bin/bash
# kill -9 of tokend at random moments, a few hundred times, while keys
# rotate every 2-3 s and clients change associations; both peers (a and b)
# are killed and restarted, each in its own loop, with a ping a -> b running
# throughout. Each round, on the peer whose turn it is:
#   - an acknowledged `tokenctl add sa` of a runtime association (and now
#     and then an acknowledged `tokenctl delete sa`);
#   - a kill moment drawn uniformly over the rotation period (in
#     TK_KILL_BOUNDARY_PCT of the rounds instead 0-12 ms after one
#     association's boundary, when its new sending generation is written to
#     the state file and its SA installed), and a racing AddAssociation (or
#     DeleteAssociation) sent 0-12 ms before it, so that some kills land in
#     its state writes;
#   - kill -9, restart (at once, or in 20 % of the rounds after 0.5-2.5 s
#     down, so the kernel may expire an outbound SA meanwhile; timed to
#     READY=1 on NOTIFY_SOCKET), then:
#     1. every change acknowledged to a client is held (ListAssociations)
#        and in the kernel;
#     2. the racing change, when it was not acknowledged, is wholly held (in
#        the list and its SAs and policies in the kernel) or wholly absent
#        (neither);
#     3. the kernel matches the held set: each association's outbound SA
#        (its sending generation's SPI), its inbound window's SAs and its
#        two policies, and nothing else in tokend's reqid range;
#     4. nothing is duplicated (no association listed twice, no two SAs
#        with one SPI and destination, no two policies with one selector
#        and direction), and the outbound generation is never lower than
#        the one shown before the kill (strictly higher for an association
#        deleted and added again); and right after the kill, the kernel
#        has no outbound SA of a generation the state file does not record
#        as used (written before the SA is installed).
#   Over the whole loop, `ip -o xfrm monitor` in each namespace: no outbound
#   key is ever added twice, no outbound (dst, SPI) twice for one
#   generation (SPIs repeat after 128 generations; the generation is the
#   one nearest the clock's with the SPI's low bits), and each association's
#   outbound generations only rise: no key and sequence pair is sent twice.
# After the loop: the peers carry a ping without loss, every generation both
# ways on both peers.
#
# The state directories are on the host's disk (the results directory, kept
# when the test fails), so each state write takes an fsync of about 1 ms.
#
#   tests/uml/run.sh tests/uml/scenario_kill_rotation.sh
# Environment (pass with UML_PASS_ENV; test_kill_rotation.sh does):
#   TK_KILL_ROUNDS (200) kills in all, TK_KILL_SEED (random) the seed,
#   TK_KILL_MAX_SECONDS (330) no new round after that long,
#   TK_KILL_BOUNDARY_PCT (30) rounds killed at a boundary.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tokend_lib.sh"
trap 'tk_sampler_stop; tk_cleanup_all; uml_cleanup; cp "$TK_DIR"/*.log /tmp/kill-loop.out "$UML_RESULTS/" 2>/dev/null' EXIT

ROUNDS=${TK_KILL_ROUNDS:-200}
SEED=${TK_KILL_SEED:-$(od -An -tu4 -N4 /dev/urandom | tr -d ' ')}
MAX_SECONDS=${TK_KILL_MAX_SECONDS:-330}
BOUNDARY_PCT=${TK_KILL_BOUNDARY_PCT:-30}
NAME=rot NUMBER=1

uml_peers a b || { uml_fail "two peers"; uml_done; exit 1; }
tk_secret
# The config association: lifetime 2 s, overlap the default (500 ms), so a
# restart sometimes finds its outbound SA expired and sometimes not.
tk_mirror_configs "$NAME" "$NUMBER" 4 'lifetime = 2s'
for p in a b; do : > "$TK_DIR/$p.log"; done
uml_note "kill loop: $ROUNDS rounds, seed $SEED, boundary rounds $BOUNDARY_PCT %, at most $MAX_SECONDS s"

# kill_loop OUT: the loop; prints "CHECK ok|fail TEXT", "BAD TEXT" and "# "
# lines to OUT; leaves both daemons running, their pids in $TK_DIR/pids.
kill_loop() {
    python3 - "$TK_DIR" "$UML_RESULTS" "$TOKEND" "$TOKENCTL" "$TK_DIR/secret.key" "$ROUNDS" "$SEED" \
        "$MAX_SECONDS" "$BOUNDARY_PCT" "$UML_A4" "$UML_B4" > "$1" 2>&1 <<'PY'
import collections, ctypes, glob, hashlib, json, os, random, re, signal, socket, struct
import subprocess, sys, threading, time

(TK_DIR, STATE_ROOT, TOKEND, TOKENCTL, SECRET, ROUNDS, SEED, MAX_SECONDS, BOUNDARY_PCT,
 A4, B4) = sys.argv[1:12]
ROUNDS, MAX_SECONDS, BOUNDARY_PCT = int(ROUNDS), float(MAX_SECONDS), float(BOUNDARY_PCT)
REQID_BASE = 0x746b0000
L_CFG = 2.0          # the config association's lifetime (s)
L_RT = 3             # the runtime associations' lifetime (s)
POOL = 10            # runtime association names per peer (each with its number)
MAX_HELD = 3         # acknowledged runtime associations kept before the kill
REUSE_AFTER = 2 * L_RT + 1  # a deleted name comes back only after that long
RACE_MAX = 0.012     # the racing call goes out 0-12 ms before the kill
SETTLE = 8.0         # how long after READY the kernel may take to match
DOWN_PCT = 20        # rounds that stay down 0.5-2.5 s before the restart, so
DOWN = (0.5, 2.5)    # the kernel may expire an outbound SA meanwhile
T0 = time.monotonic()

lock = threading.Lock()
stop = threading.Event()
bad = []
stats = collections.Counter()
ready_times, kill_ready_times = [], []
events = []  # (wall time, peer, round, what): to place monitor findings
leads = []   # (ms from the racing call to the kill, acknowledged)


def bump(key, n=1):
    with lock:
        stats[key] += n


def out(line):
    with lock:
        print(line, flush=True)


def spi(number, d, g):
    return 0x01000000 | number << 8 | d << 7 | (g % 128)


def report(inv, peer, rnd, text, log=None):
    with lock:
        bad.append((inv, "round %s, %s: %s" % (rnd, peer, text), log or []))
    stop.set()


def sleep_until(t):
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)


def vcall(path, method, params, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(json.dumps({"method": "io.tokend." + method, "parameters": params}).encode() + b"\0")
        buf = b""
        while not buf.endswith(b"\0"):
            d = s.recv(65536)
            if not d:
                raise ConnectionError("tokend closed the connection")
            buf += d
        return json.loads(buf[:-1])
    finally:
        s.close()


# The kernel's SAs and policies, read over NETLINK_XFRM sockets opened in
# each namespace (`ip xfrm` costs 150 ms a call under UML; this, a few).
LIBC = ctypes.CDLL(None, use_errno=True)
NLSOCK = {}


def nl_socket(ns):
    res = {}

    def enter():  # setns changes this thread only
        fd = os.open("/run/netns/" + ns, os.O_RDONLY)
        if LIBC.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            res["err"] = os.strerror(ctypes.get_errno())
        else:
            res["sock"] = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 6)  # NETLINK_XFRM
        os.close(fd)
    t = threading.Thread(target=enter)
    t.start()
    t.join()
    if "sock" not in res:
        raise RuntimeError("setns %s: %s" % (ns, res.get("err")))
    res["sock"].bind((0, 0))
    return res["sock"]


def nl_dump(ns, msgtype):
    if ns not in NLSOCK:
        NLSOCK[ns] = nl_socket(ns)
    s = NLSOCK[ns]
    s.send(struct.pack("=IHHII", 20, msgtype, 0x301, 1, 0) + bytes(4))  # REQUEST|DUMP
    msgs = []
    while True:
        data = s.recv(1 << 20)
        off = 0
        while off + 16 <= len(data):
            ln, typ, _, _, _ = struct.unpack_from("=IHHII", data, off)
            if typ == 3:  # NLMSG_DONE
                return msgs
            if typ == 2:  # NLMSG_ERROR
                raise RuntimeError("xfrm dump: error %d" % struct.unpack_from("=i", data, off + 16)[0])
            msgs.append(data[off + 16:off + ln])
            off += (ln + 3) & ~3


def ip_str(b, family):
    return socket.inet_ntop(socket.AF_INET, b[:4]) if family == socket.AF_INET else \
        socket.inet_ntop(socket.AF_INET6, b[:16])


def kernel(ns):
    """SAs and policies of ns: [{src,dst,proto,spi,reqid}], [{sel,dir,ptype,reqid}]."""
    sas, pols = [], []
    for p in nl_dump(ns, 0x12):  # XFRM_MSG_GETSA -> struct xfrm_usersa_info
        fam = struct.unpack_from("=H", p, 212)[0]
        sas.append({"dst": ip_str(p[56:72], fam), "spi": struct.unpack_from(">I", p, 72)[0],
                    "proto": p[76], "src": ip_str(p[80:96], fam),
                    "reqid": struct.unpack_from("=I", p, 208)[0]})
    for p in nl_dump(ns, 0x15):  # XFRM_MSG_GETPOLICY -> struct xfrm_userpolicy_info
        fam = struct.unpack_from("=H", p, 40)[0]
        sel = "%s/%d %s/%d proto %d sport %d dport %d" % (
            ip_str(p[16:32], fam), p[43], ip_str(p[0:16], fam), p[42], p[44],
            struct.unpack_from(">H", p, 36)[0], struct.unpack_from(">H", p, 32)[0])
        reqid, ptype, off = None, 0, 168
        while off + 4 <= len(p):
            alen, atype = struct.unpack_from("=HH", p, off)
            if alen < 4:
                break
            if atype == 5 and alen >= 4 + 64:  # XFRMA_TMPL: xfrm_user_tmpl, reqid at 44
                reqid = struct.unpack_from("=I", p, off + 4 + 44)[0]
            elif atype == 16:  # XFRMA_POLICY_TYPE
                ptype = p[off + 4]
            off += (alen + 3) & ~3
        pols.append({"sel": sel, "dir": {0: "in", 1: "out", 2: "fwd"}.get(p[160], str(p[160])),
                     "ptype": ptype, "reqid": reqid})
    return sas, pols


class Monitor(threading.Thread):
    """`ip -o xfrm monitor` in one namespace: every SA event, timestamped;
    keys only as a hash, in memory."""
    RE = re.compile(r"^(Deleted |Updated |Expired )?src (\S+) dst (\S+)\\\s*proto (\S+) spi "
                    r"(0x[0-9a-f]+) reqid (\d+)")

    def __init__(self, ns):
        super().__init__(daemon=True)
        self.ns = ns
        self.events = []
        self.other = []  # lines that are neither an SA nor a policy
        self.proc = subprocess.Popen(["ip", "-n", ns, "-o", "xfrm", "monitor"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)

    def run(self):
        for line in self.proc.stdout:
            t = time.time()
            m = self.RE.match(line)
            if not m:
                # Policies, and the async events (two lines each) are not SAs.
                if not re.search(r"\bdir (in|out|fwd)\b|^Async event |"
                                 r"reqid 0x[0-9a-f]+ protocol \S+ +SPI 0x", line):
                    with lock:
                        self.other.append(line.strip()[:120])
                continue
            kind = (m.group(1) or "Added").strip()
            if kind == "Expired" and not re.search(r"hard 1", line):
                kind = "SoftExpired"
            k = re.search(r"(?:aead|enc) \S+ (0x[0-9a-f]+)", line)
            kh = hashlib.sha256(k.group(1).encode()).hexdigest()[:16] if k else None
            ev = (t, kind, m.group(2), m.group(3), int(m.group(5), 16), int(m.group(6)), kh)
            with lock:
                self.events.append(ev)


class Peer:
    def __init__(self, name, local, remote, nbase):
        self.name, self.local, self.remote = name, local, remote
        # Direction 0: the lower address sends.
        self.dout = 0 if socket.inet_aton(local) < socket.inet_aton(remote) else 1
        self.din = 1 - self.dout
        self.sock = "%s/%s.sock" % (TK_DIR, name)
        self.conf = "%s/%s.conf" % (TK_DIR, name)
        self.state = "%s/%s.state" % (STATE_ROOT, name)
        self.log = "%s/%s.log" % (TK_DIR, name)
        self.rng = random.Random("%s-%s" % (SEED, name))
        self.numbers = {"rot": 1}
        self.pool = ["k%s%d" % (name, i) for i in range(POOL)]
        for i, n in enumerate(self.pool):
            self.numbers[n] = nbase + i
        self.held = {}            # runtime associations held: name -> number
        self.deleted_at = {}      # name -> when it went
        self.max_seen = {}        # name -> highest outbound generation seen
        self.readded = {}         # name -> highest seen before its delete
        self.clock = {}           # reqid -> (start of generation 0, period) in s
        self.leftovers = set()
        self.proc = None
        self.ready = threading.Event()
        self.notify_path = "/tmp/tk-kill-notify-%s" % name
        try:
            os.unlink(self.notify_path)
        except OSError:
            pass
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        threading.Thread(target=self.notify_reader, daemon=True).start()

    def notify_reader(self):
        while True:
            m = self.notify.recv(4096)
            if b"READY=1" in m.split(b"\n"):
                self.ready.set()

    def start(self):
        self.ready.clear()
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path)
        t0 = time.monotonic()
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.name, TOKEND, "--config", self.conf, "--socket",
                 self.sock, "--state-dir", self.state], stdout=logf, stderr=logf, env=env)
        while not self.ready.wait(0.1):
            if self.proc.poll() is not None:
                raise RuntimeError("tokend exited with status %d before READY" % self.proc.returncode)
            if time.monotonic() - t0 > 20:
                raise RuntimeError("no READY=1 within 20 s")
        return time.monotonic() - t0

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def mark(self):
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def log_after(self, mark, n=40):
        """The log since mark, netlink requests and replies left out."""
        with open(self.log, "rb") as f:
            f.seek(mark)
            lines = f.read().decode(errors="replace").splitlines()
        return [x for x in lines if "netlink:" not in x][-n:]

    def list(self):
        r = vcall(self.sock, "ListAssociations", {})
        if "error" in r:
            raise RuntimeError("ListAssociations: %s" % r)
        return r["parameters"]["associations"]

    def ctl(self, *args):
        return subprocess.run([TOKENCTL, "--socket", self.sock] + list(args),
                              capture_output=True, text=True)

    def add_params(self, name):
        n = self.numbers[name]
        return {"name": name, "number": n, "local": self.local, "remote": self.remote,
                "secret_file": SECRET, "protocol": "udp", "remote_port": 40000 + n,
                "lifetime": L_RT}

    def free_name(self, now):
        free = [n for n in self.pool if n not in self.held and
                now - self.deleted_at.get(n, -1e9) > REUSE_AFTER]
        return self.rng.choice(free) if free else None

    def observe(self, assocs, rnd):
        """Record outbound generations; a re-added association must have
        moved past the one it had before its delete."""
        for a in assocs:
            og = (a.get("outbound") or {}).get("generation")
            if og is None:
                continue
            nm = a["name"]
            rot = a.get("rotation") or {}
            if rot.get("period"):
                self.clock[REQID_BASE + a["number"]] = (rot["epoch"] + rot["phase_ms"] / 1000.0, rot["period"])
            if nm in self.readded:
                prev = self.readded.pop(nm)
                if og <= prev:
                    report("generation", self.name, rnd,
                           "%s was added again and sends on generation %d, not past %d, "
                           "the highest it had before its delete" % (nm, og, prev))
            self.max_seen[nm] = max(self.max_seen.get(nm, og), og)

    def now_held(self, name):
        if name in self.deleted_at and name in self.max_seen:
            self.readded[name] = self.max_seen[name]
        self.held[name] = self.numbers[name]

    def now_deleted(self, name):
        self.held.pop(name, None)
        self.readded.pop(name, None)
        self.deleted_at[name] = time.monotonic()


def assoc_problem(peer, a, sas, pols):
    """None when the kernel holds exactly what show says for a."""
    if a is None:
        return "not listed"
    n, rq = a["number"], REQID_BASE + a["number"]
    ob = a.get("outbound") or {}
    if a["state"] != "up":
        return "state %s (%s)" % (a["state"], a.get("reason"))
    if not ob.get("installed") or not all(i.get("installed") for i in a["inbound"]):
        return "show: not every SA installed"
    if a.get("policies") != {"out": True, "in": True}:
        return "show: policies %s" % a.get("policies")
    want_out = [spi(n, peer.dout, ob["generation"])]
    want_in = sorted(spi(n, peer.din, i["generation"]) for i in a["inbound"])
    if ob.get("spi") != want_out[0] or sorted(i["spi"] for i in a["inbound"]) != want_in:
        return "show's SPIs are not the ones the generations give"
    kout = sorted(s["spi"] for s in sas if s["reqid"] == rq and s["src"] == peer.local)
    kin = sorted(s["spi"] for s in sas if s["reqid"] == rq and s["dst"] == peer.local)
    kpol = sorted(p["dir"] for p in pols if p["reqid"] == rq)
    if kout != want_out or kin != want_in or kpol != ["in", "out"]:
        hx = lambda v: " ".join("0x%08x" % x for x in v) or "none"
        return ("kernel: outbound %s, inbound %s, policies %s; show: outbound generation %d "
                "(%s), inbound generations %s (%s)" % (
                    hx(kout), hx(kin), ",".join(kpol) or "none", ob["generation"], hx(want_out),
                    [i["generation"] for i in a["inbound"]], hx(want_in)))
    return None


def check_kernel(peer, rnd, race_name, mark):
    """Checks 3 and 4 (duplicates) until a consistent look passes or SETTLE
    runs out: show, the kernel, show again; each association must match
    one of the two shows (a boundary may fall in between)."""
    end = time.monotonic() + SETTLE
    attempts = 0
    while True:
        attempts += 1
        s1 = peer.list()
        sas, pols = kernel(peer.name)
        s2 = peer.list()
        bump("kernel_looks")
        dup = [k for k, c in collections.Counter((s["dst"], s["proto"], s["spi"]) for s in sas).items() if c > 1]
        dup += [k for k, c in collections.Counter((p["sel"], p["dir"], p["ptype"]) for p in pols).items() if c > 1]
        if dup:
            report("dup", peer.name, rnd, "duplicated in the kernel: %s" % dup, peer.log_after(mark))
            return None
        by1 = {a["name"]: a for a in s1}
        problems = []
        held_rq = set()
        for a in s2:
            held_rq.add(REQID_BASE + a["number"])
            p2 = assoc_problem(peer, a, sas, pols)
            if p2 and assoc_problem(peer, by1.get(a["name"]), sas, pols):
                problems.append((a["name"], p2))
        for a in s1:
            held_rq.add(REQID_BASE + a["number"])
        left = sorted({o["reqid"] for o in sas + pols if o["reqid"] is not None and
                       REQID_BASE < o["reqid"] <= REQID_BASE + 65535 and o["reqid"] not in held_rq})
        for rq in left:
            nm = [k for k, v in peer.numbers.items() if v == rq - REQID_BASE]
            problems.append((nm[0] if nm else "?", "left over in the kernel: %d SAs, %d policies with reqid %d, "
                             "which no held association has" % (
                                 sum(s["reqid"] == rq for s in sas), sum(p["reqid"] == rq for p in pols), rq)))
        if not problems:
            with lock:
                stats["kernel_attempts_max"] = max(stats["kernel_attempts_max"], attempts)
            return s2
        if time.monotonic() > end:
            for nm, why in problems:
                report("inflight" if nm == race_name else "kernel", peer.name, rnd,
                       "%.0f s after READY the kernel still does not match: %s: %s" % (SETTLE, nm, why),
                       peer.log_after(mark))
            return None
        time.sleep(0.15)


def write_kind(tmp, cur, held):
    """What the write a kill interrupted was about: the leftover temporary
    file against the state file (held: the associations shown before)."""
    try:
        new = json.load(open(tmp))
    except ValueError:
        return "torn (not whole JSON)"
    old = json.load(open(cur))
    if {d["name"] for d in new["runtime_associations"]} != {d["name"] for d in old["runtime_associations"]}:
        return "definitions (a client's change)"
    og = {g["name"]: g["out_generation"] for g in old["associations"]}
    up = [g["name"] for g in new["associations"]
          if g["name"] in held and g["out_generation"] > og.get(g["name"], 1 << 62)]
    if up:
        return "rotation (a new sending generation for %s)" % ", ".join(up)
    return "other (generation records)"


def one_round(peer, rnd):
    rng = peer.rng
    # 1. Acknowledged changes, by tokenctl.
    if peer.held and (len(peer.held) >= MAX_HELD or rng.random() < 0.3):
        nm = rng.choice(sorted(peer.held))
        r = peer.ctl("delete", "sa", nm)
        if r.returncode != 0:
            report("acked", peer.name, rnd, "tokenctl delete sa %s failed: %s" % (nm, r.stderr.strip()))
            return
        peer.now_deleted(nm)
        bump("acked_deletes")
    nm = peer.free_name(time.monotonic())
    if nm:
        p = peer.add_params(nm)
        r = peer.ctl("add", "sa", nm, "number", str(p["number"]), "local", p["local"], "remote",
                     p["remote"], "secret", SECRET, "protocol", "udp", "remote-port",
                     str(p["remote_port"]), "lifetime", str(L_RT))
        if r.returncode != 0:
            report("acked", peer.name, rnd, "tokenctl add sa %s failed: %s" % (nm, r.stderr.strip()))
            return
        peer.now_held(nm)
        bump("acked_adds")

    # 2. The kill moment and the racing call.
    now = time.monotonic()
    mode = "uniform"
    t_kill = now + rng.uniform(0, L_CFG)
    if rng.random() * 100 < BOUNDARY_PCT:
        rot = [a for a in peer.list() if (a.get("rotation") or {}).get("next_rotation_in_ms") is not None]
        if rot:
            a = rng.choice(rot)
            nxt = a["rotation"]["next_rotation_in_ms"] / 1000.0
            if nxt < 0.15:
                nxt += a["rotation"]["period"]
            # The new generation is written and its SA installed 2-15 ms
            # after the boundary (under UML).
            t_kill = time.monotonic() + nxt + rng.uniform(0, 0.012)
            mode = "boundary"
    bump("kills_" + mode)
    free = peer.free_name(time.monotonic())
    if mode == "boundary":  # the daemon busy with its rotation only
        op, msg = None, None
    elif peer.held and (rng.random() < 0.3 or not free):
        op = ("delete", rng.choice(sorted(peer.held)))
        msg = ("DeleteAssociation", {"name": op[1]})
    elif free:
        op = ("add", free)
        msg = ("AddAssociation", peer.add_params(free))
    else:
        op, msg = None, None
    lead = rng.uniform(0, RACE_MAX)
    t_send = t_kill - lead
    sleep_until(t_send - 0.04)
    mark = peer.mark()  # failures show the log from here: the racing call, the restart
    before = peer.list()
    peer.observe(before, rnd)
    gen_before = {a["name"]: a["outbound"]["generation"] for a in before if a.get("outbound")}
    rs = None
    if msg:
        rs = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        rs.connect(peer.sock)
        sleep_until(t_send)
        rs.sendall(json.dumps({"method": "io.tokend." + msg[0], "parameters": msg[1]}).encode() + b"\0")
    sleep_until(t_kill)
    peer.kill9()
    t_killed = time.monotonic()
    with lock:
        events.append((time.time(), peer.name, rnd, "kill"))
    acked = False
    if rs:
        rs.settimeout(1)
        buf = b""
        try:
            while True:
                d = rs.recv(65536)
                if not d:
                    break
                buf += d
        except OSError:
            pass
        rs.close()
        if buf.endswith(b"\0"):
            reply = json.loads(buf.split(b"\0")[0])
            if "error" in reply:
                report("acked", peer.name, rnd, "the racing %s was refused: %s" % (msg[0], reply))
                return
            acked = True
        with lock:
            leads.append((round((t_killed - t_send) * 1000, 1), acked))
    # Where the kill fell: inside a state write (a temporary file left
    # behind), or between a generation's write and its outbound SA.
    tmp = set(glob.glob(peer.state + "/.state.json.*"))
    for f in sorted(tmp - peer.leftovers):
        kind = write_kind(f, peer.state + "/state.json", gen_before)
        bump("kills_in_write")
        bump("kills_in_write_" + kind.split()[0])
        out("# round %d, %s: killed inside a state write (%s left behind: %s; %s kill, racing call %s)" % (
            rnd, peer.name, os.path.basename(f), kind, mode,
            "none" if not op else "answered" if acked else "unanswered"))
    peer.leftovers = tmp
    try:
        st = json.load(open(peer.state + "/state.json"))
    except (OSError, ValueError) as e:
        report("daemon", peer.name, rnd, "state file unreadable after the kill: %s" % e)
        return
    # What the kill left in the kernel against the state file: no outbound
    # SA of a generation the file does not record as used (it is written
    # before the SA is installed: that is what keeps a restarted tokend
    # from sending on a key again); a rotation written (past what show said
    # before the kill) whose outbound SA the kernel does not have yet.
    sas, _ = kernel(peer.name)
    used = {g["name"]: g["out_generation"] for g in st.get("associations", [])}
    outs = {(s["reqid"], s["spi"]) for s in sas if s["src"] == peer.local}
    by_reqid = {REQID_BASE + n: nm for nm, n in peer.numbers.items()}
    for rq, sp in sorted(outs):
        nm = by_reqid.get(rq)
        if nm is None or rq not in peer.clock:
            continue
        origin, period = peer.clock[rq]
        g = int((time.time() - origin) // period)
        g += ((sp & 0x7f) - g % 128 + 192) % 128 - 64
        if g > used.get(nm, -1):
            report("generation", peer.name, rnd, "after the kill the kernel has %s's outbound SA 0x%08x "
                   "(generation %d), the state file records %s" % (
                       nm, sp, g, "generation %d as the highest used" % used[nm] if nm in used
                       else "no generation for it"), peer.log_after(mark))
    defs = {d["name"] for d in st.get("runtime_associations", [])} | {"rot"}
    for nm, g in used.items():
        if nm in defs and nm in gen_before and g > gen_before[nm] and \
                (REQID_BASE + peer.numbers[nm], spi(peer.numbers[nm], peer.dout, g)) not in outs:
            bump("kills_before_install_" + mode)
            break

    # 3. Restart, at once or after a while down.
    late = rng.random() * 100 < DOWN_PCT
    if late:
        bump("restarts_late")
        time.sleep(rng.uniform(*DOWN))
    try:
        t_ready = peer.start()
    except RuntimeError as e:
        report("daemon", peer.name, rnd, "restart: %s" % e, peer.log_after(mark))
        return
    bump("restarts")
    with lock:
        ready_times.append(t_ready)
        if not late:
            kill_ready_times.append(time.monotonic() - t_killed)
        events.append((time.time(), peer.name, rnd, "ready"))

    # 4. Checks. The held set: the model, with the racing change or without
    # it (only with it when it was acknowledged).
    lst = peer.list()
    names = [a["name"] for a in lst]
    if len(names) != len(set(names)):
        report("dup", peer.name, rnd, "associations listed twice: %s" % names, peer.log_after(mark))
        return
    if "rot" not in names:
        report("acked", peer.name, rnd, "the config association is not listed: %s" % names, peer.log_after(mark))
        return
    got = {a["name"]: a["number"] for a in lst if a["source"] == "runtime"}
    without = dict(peer.held)
    with_op = dict(peer.held)
    if op and op[0] == "add":
        with_op[op[1]] = peer.numbers[op[1]]
    elif op:
        with_op.pop(op[1], None)
    if acked:
        bump("race_acked")
        if got != with_op:
            report("acked", peer.name, rnd, "held after the restart %s, acknowledged %s (the racing %s %s "
                   "was acknowledged)" % (sorted(got), sorted(with_op), op[0], op[1]), peer.log_after(mark))
            return
    elif got == with_op and op:
        bump("race_unacked_held")
    elif got == without:
        if op:
            bump("race_unacked_absent")
    else:
        report("acked" if op is None else "inflight", peer.name, rnd,
               "held after the restart %s; acknowledged %s, the unacknowledged %s %s would make %s" % (
                   sorted(got), sorted(without), op[0] if op else "-", op[1] if op else "-",
                   sorted(with_op)), peer.log_after(mark))
        return
    if op and got == with_op:
        if op[0] == "add":
            peer.now_held(op[1])
        else:
            peer.now_deleted(op[1])
    view = check_kernel(peer, rnd, op[1] if op and not acked else None, mark)
    if view is None:
        return
    for a in view:
        g, prev = a["outbound"]["generation"], gen_before.get(a["name"])
        if prev is not None and g < prev:
            report("generation", peer.name, rnd, "%s sends on generation %d after the restart, "
                   "%d was shown before the kill" % (a["name"], g, prev), peer.log_after(mark))
    peer.observe(view, rnd)
    # How the associations held before the kill resumed sending.
    gone = {m.group(1) for m in re.finditer(r"<\d>(\S+): no outbound SA in the kernel",
                                            "\n".join(peer.log_after(mark, 100000)))}
    if gone & set(gen_before):
        bump("restarts_outbound_gone")


def peer_loop(peer):
    while not stop.is_set():
        with lock:
            if stats["rounds"] >= ROUNDS or time.monotonic() - T0 > MAX_SECONDS:
                break
            stats["rounds"] += 1
            rnd = stats["rounds"]
        try:
            one_round(peer, rnd)
        except Exception as e:  # a broken connection, a tool that failed
            report("daemon", peer.name, rnd, "%s: %s" % (type(e).__name__, e), peer.log_after(0, 30))


MON = {"a": Monitor("a"), "b": Monitor("b")}
for m in MON.values():
    m.start()
time.sleep(0.5)  # the monitors listen before anything is installed
PEERS = [Peer("a", A4, B4, 100), Peer("b", B4, A4, 200)]
for p in PEERS:
    p.start()
for p in PEERS:
    end = time.monotonic() + 15
    while time.monotonic() < end:
        if all(a["state"] == "up" for a in p.list()):
            break
        time.sleep(0.2)
ping = subprocess.Popen(["ip", "netns", "exec", "a", "ping", "-n", "-q", "-i", "0.2", "-W", "1", B4],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
threads = [threading.Thread(target=peer_loop, args=(p,)) for p in PEERS]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - T0
stopped_early = stop.is_set()
ping.send_signal(signal.SIGINT)
ping_out = ping.communicate()[0]
time.sleep(0.5)
for m in MON.values():
    m.proc.terminate()
    m.join(2)

# The monitors: no outbound key added twice, no (dst, SPI) twice for one
# generation (SPIs repeat every 128 generations: the generation an SA
# stands for is the one nearest the clock's at its add with the SPI's low
# 7 bits), each association's outbound generations rising.
def when(t, peer):
    last = [(et, r, w) for (et, p, r, w) in events if p == peer and et <= t]
    if not last:
        return "before %s's first kill" % peer
    et, r, w = last[-1]
    return "round %d, %.2f s after %s's %s" % (r, t - et, peer, "kill" if w == "kill" else "READY")


mon_bad = []
n_out = {}
no_clock = set()
for p in PEERS:
    evs = [e for e in MON[p.name].events if e[1] == "Added" and e[2] == p.local]
    n_out[p.name] = len(evs)
    for kh, c in collections.Counter(e[6] for e in evs if e[6]).items():
        if c > 1:
            ts = [e for e in evs if e[6] == kh]
            mon_bad.append("%s: the same outbound key was added %d times: SPI 0x%08x at %s" % (
                p.name, c, ts[0][4], "; ".join(when(e[0], p.name) for e in ts)))
    def gen(e):
        if e[5] not in p.clock:
            return None
        origin, period = p.clock[e[5]]
        g = int((e[0] - origin) // period)
        return g + ((e[4] & 0x7f) - g % 128 + 192) % 128 - 64
    last, lastg = {}, {}
    for e in evs:
        g = gen(e)
        k = (e[3], e[4], g)
        if k in last:
            mon_bad.append("%s: outbound SA dst %s SPI 0x%08x (generation %s) added twice (%s, then %s)" % (
                p.name, e[3], e[4], g, when(last[k][0], p.name), when(e[0], p.name)))
        last[k] = e
        if g is None:
            no_clock.add(e[5])
        elif e[5] in lastg and g <= lastg[e[5]][0]:
            mon_bad.append("%s: reqid %d: outbound SA 0x%08x (generation %d) added after 0x%08x (generation "
                           "%d) at %s: the generation did not rise" % (
                               p.name, e[5], e[4], g, lastg[e[5]][1], lastg[e[5]][0], when(e[0], p.name)))
        if g is not None:
            lastg[e[5]] = (g, e[4])
for b in mon_bad:
    bad.append(("monitor", b, []))

n = stats["rounds"]
kr = sorted(kill_ready_times)
rt = sorted(ready_times)
m = re.search(r"(\d+) packets transmitted, (\d+) received", ping_out)
inv_rounds = {}
for inv, _, _ in bad:
    inv_rounds[inv] = inv_rounds.get(inv, 0) + 1
def check(inv, text):
    print("CHECK %s %s" % ("fail" if inv_rounds.get(inv) else "ok", text))
    for i, b, log in bad:
        if i == inv:
            print("BAD " + b)
            for line in log:
                print("BAD   | " + line[:200])
print("# %d rounds (kills) in %.0f s, %d restarts; kill moments: %d uniform over the period, %d at a boundary" % (
    n, elapsed, stats["restarts"], stats["kills_uniform"], stats["kills_boundary"]))
print("# kills inside a state write (a temporary file left behind): %d (a rotation's new sending generation: "
      "%d, a client's change: %d, other generation records: %d, torn: %d); after a rotation's state write, "
      "before its outbound SA: %d (%d of them boundary kills)" % (
          stats["kills_in_write"], stats["kills_in_write_rotation"], stats["kills_in_write_definitions"],
          stats["kills_in_write_other"], stats["kills_in_write_torn"],
          stats["kills_before_install_uniform"] + stats["kills_before_install_boundary"],
          stats["kills_before_install_boundary"]))
print("# restarts: %d after %.1f-%.1f s down; %d found an outbound SA of an association held before the "
      "kill gone (expired, or never installed) and went past the saved generation" % (
          stats["restarts_late"], DOWN[0], DOWN[1], stats["restarts_outbound_gone"]))
print("# racing calls: %d acknowledged before the kill, %d unacknowledged and held, %d unacknowledged "
      "and absent; %d acknowledged adds and %d deletes by tokenctl" % (
          stats["race_acked"], stats["race_unacked_held"], stats["race_unacked_absent"],
          stats["acked_adds"], stats["acked_deletes"]))
if kr:
    print("# kill to READY (restarts at once): median %.0f ms, max %.0f ms; start to READY (all restarts): "
          "median %.0f ms, max %.0f ms" % (
        kr[len(kr) // 2] * 1000, kr[-1] * 1000, rt[len(rt) // 2] * 1000, rt[-1] * 1000))
la = sorted(x for x, a in leads if a)
lu = sorted(x for x, a in leads if not a)
if la and lu:
    print("# racing calls went out %.1f-%.1f ms before the kill; the earliest answered one %.1f ms, "
          "the latest unanswered one %.1f ms before" % (min(la + lu), max(la + lu), la[0], lu[-1]))
print("# kernel looks: %d (up to %d per restart before show and kernel agreed)" % (
    stats["kernel_looks"], stats["kernel_attempts_max"]))
print("# xfrm monitor: %d outbound SAs added on a, %d on b" % (n_out["a"], n_out["b"]))
if no_clock:
    print("# xfrm monitor: no clock known for reqids %s: their generations not compared" % sorted(no_clock))
for p in PEERS:
    if MON[p.name].other:
        print("# xfrm monitor on %s: %d other lines, such as: %s" % (
            p.name, len(MON[p.name].other), MON[p.name].other[0]))
if m:
    print("# ping a -> b during the loop: %s sent, %s answered (losses are not judged)" % (m.group(1), m.group(2)))
check("daemon", "every restart reached READY=1; no call failed")
check("acked", "1: every acknowledged change was held after each restart")
check("inflight", "2: every unacknowledged change was wholly held or wholly absent, list and kernel alike")
check("kernel", "3: after each restart the kernel matched the held set (SPIs of the sending generation and "
      "the window, both policies, nothing left in tokend's range)")
check("dup", "4: nothing duplicated (associations listed, SAs, policies)")
check("generation", "4: no outbound SA in the kernel of a generation the state file did not record as used "
      "(at each kill); the outbound generation after a restart never below the one before the kill (past it "
      "for an association added again)")
check("monitor", "4: xfrm monitor: no outbound key added twice, no outbound SPI twice for one generation, "
      "each association's outbound generations only rose")
if stopped_early:
    print("# the loop stopped at round %d of %d, after the first failure" % (n, ROUNDS))
else:
    print("CHECK %s all %d rounds ran%s" % ("ok" if n >= ROUNDS else "fail", ROUNDS,
          "" if n >= ROUNDS else " (only %d within %.0f s)" % (n, MAX_SECONDS)))
with open(TK_DIR + "/pids", "w") as f:
    for p in PEERS:
        f.write("%s %d\n" % (p.name, p.proc.pid))
PY
}

T_LOOP=$(tk_wall_ms)
kill_loop /tmp/kill-loop.out
status=$?
uml_note "the loop took $(( ($(tk_wall_ms) - T_LOOP) / 1000 )) s"
if [ -s "$TK_DIR/pids" ]; then
    # shellcheck disable=SC2034 # read by tokend_lib.sh
    while read -r p pid; do TK_PIDS[$p]=$pid; done < "$TK_DIR/pids"
fi
grep '^#' /tmp/kill-loop.out
# Anything else the driver said (a Python traceback).
grep -v '^#\|^CHECK\|^BAD' /tmp/kill-loop.out | head -n 30 | sed 's/^/# driver: /'
while read -r _ verdict text; do
    [ -n "$verdict" ] || continue
    if [ "$verdict" = ok ]; then uml_pass "$text"; else uml_fail "$text"; fi
done <<<"$(grep '^CHECK' /tmp/kill-loop.out)"
grep '^BAD' /tmp/kill-loop.out | head -n 80 | sed 's/^BAD /#   /'
loop_ran() { [ "$status" = 0 ] && grep -q '^CHECK' /tmp/kill-loop.out; }
uml_check "the kill loop ran to its verdict (status $status)" loop_ran

# The logs, and what the kills inside state writes left behind (tokend does
# not remove temporary files of interrupted writes).
for p in a b; do
    uml_note "$p: $(grep -c '<3>' "$TK_DIR/$p.log") error lines in the log;" \
        "$(find "$UML_RESULTS/$p.state" -name '.state.json.*' | wc -l) temporary state files left in the state directory"
done

# After the loop: the peers carry traffic again, each on the other's
# generation, with nothing lost.
if [ "$UML_FAILED" -eq 0 ]; then
    uml_eventually 10 "a: $NAME up after the loop" tk_assoc_up a "$NAME"
    uml_eventually 10 "b: $NAME up after the loop" tk_assoc_up b "$NAME"
    read -r g0 next _ <<<"$(tk_rot_clock a "$NAME")"
    tk_sleep_until $(( next + 300 ))
    g0=$((g0 + 1))
    tk_sampler_start /tmp/kill-samples 0.5 a b
    tk_ping_start a "$UML_B4" 7
    tk_ping_finish
    tk_sampler_stop
    gend=$(tk_fields a "$NAME" rotation.clock_generation)
    tk_rot_ping_report "after the loop"
    uml_check "after the loop: no reply lost ($TK_PING_LOST of $TK_PING_TX, generations $g0 -> $gend)" \
        test "$TK_PING_LOST" = 0 -a "$TK_PING_TX" -gt 100
    tk_rot_gen_traffic "$NUMBER" "$g0" $((gend - 1)) /tmp/kill-samples
fi

uml_done
