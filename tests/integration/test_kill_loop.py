#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""kill -9 at random moments while clients change tokens (so while the
state file is being written), many times over.

Each round: tokend runs in a private network namespace with 8 veth ends; a
client sends SetToken/DeleteToken calls as fast as they are answered and
records each call before sending it and each answer; after a random 0-120 ms
tokend is killed with SIGKILL, and started again. Then:
- every change acknowledged to the client is held (ListTokens) and in the
  kernel;
- the one change in flight (sent, not answered) is either wholly held or
  wholly absent;
- no interface is listed twice, and the kernel matches the held set.

Rounds: TK_KILL_ROUNDS (default 200). Needs root; exits 77 otherwise.
"""

import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("TOKEND_SRCDIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TOKEND = os.environ.get("TOKEND") or os.path.join(SRC, "build/daemon/tokend")
ROUNDS = int(os.environ.get("TK_KILL_ROUNDS", "200"))
IFACES = ["kl%d" % i for i in range(8)]

if os.geteuid() != 0:
    print("SKIP: needs root for network namespaces", file=sys.stderr)
    sys.exit(77)

NS = "tk-kill-%d" % os.getpid()
TMP = tempfile.mkdtemp(prefix="tokend-kill-loop.")
SOCK = os.path.join(TMP, "tokend.sock")
STATE = os.path.join(TMP, "state")
CONF = os.path.join(TMP, "tokend.conf")
LOG = os.path.join(TMP, "tokend.log")
failed = 0


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True).stdout


def cleanup():
    subprocess.run(["ip", "netns", "pids", NS], capture_output=True)
    pids = subprocess.run(["ip", "netns", "pids", NS], capture_output=True, text=True).stdout.split()
    for p in pids:
        try:
            os.kill(int(p), signal.SIGKILL)
        except OSError:
            pass
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def call(s, method, params):
    s.sendall(json.dumps({"method": method, "parameters": params}).encode() + b"\0")
    buf = b""
    while not buf.endswith(b"\0"):
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed")
        buf += d
    return json.loads(buf[:-1])


def connect(timeout=5.0):
    end = time.monotonic() + timeout
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(SOCK)
            s.settimeout(5)
            return s
        except OSError:
            s.close()
            if time.monotonic() > end:
                raise
            time.sleep(0.005)


def start():
    log = open(LOG, "a")
    p = subprocess.Popen(["ip", "netns", "exec", NS, TOKEND, "--config", CONF, "--socket", SOCK,
                          "--state-dir", STATE], stdout=log, stderr=log)
    s = connect()
    return p, s


def kernel_tokens():
    out = sh("ip", "-n", NS, "token", "list")
    got = {}
    for line in out.splitlines():
        w = line.split()
        if len(w) >= 4 and w[0] == "token":
            got[w[3]] = ipaddress.IPv6Address(w[1]).compressed
    return got


def check(what, ok):
    global failed
    if ok:
        return True
    failed += 1
    print("FAIL - %s" % what)
    return False


def main():
    sh("ip", "netns", "add", NS)
    sh("ip", "-n", NS, "link", "set", "lo", "up")
    for i in range(0, len(IFACES), 2):
        sh("ip", "-n", NS, "link", "add", IFACES[i], "type", "veth", "peer", "name", IFACES[i + 1])
    for n in IFACES:
        sh("ip", "-n", NS, "link", "set", n, "up")
    with open(CONF, "w") as f:
        f.write("[tokend]\nlog-level = info\n")
    rng = random.Random(int(os.environ.get("TK_KILL_SEED", str(os.getpid()))))
    held = {}  # the model: interface -> token, from acknowledged changes
    acked = calls = inflight_rounds = temps_seen = 0
    for rnd in range(ROUNDS):
        p, s = start()
        deadline = time.monotonic() + rng.uniform(0, 0.12)
        inflight = None
        try:
            while time.monotonic() < deadline:
                ifname = rng.choice(IFACES)
                if rng.random() < 0.25 and ifname in held:
                    op = (ifname, None)
                    msg = ("io.tokend.DeleteToken", {"interface": ifname})
                else:
                    op = (ifname, "::%x:%x" % (rnd + 1, rng.randrange(1, 0xffff)))
                    msg = ("io.tokend.SetToken", {"interface": ifname, "token": op[1]})
                inflight = op
                calls += 1
                # Kill while the request may be in the daemon's hands.
                if time.monotonic() + 0.002 > deadline:
                    s.sendall(json.dumps({"method": msg[0], "parameters": msg[1]}).encode() + b"\0")
                    break
                r = call(s, *msg)
                if "error" in r:
                    check("round %d: %s refused: %s" % (rnd, msg, r), False)
                    inflight = None
                    continue
                inflight = None
                acked += 1
                if op[1] is None:
                    held.pop(op[0], None)
                else:
                    held[op[0]] = op[1]
        except (ConnectionError, OSError):
            pass
        p.send_signal(signal.SIGKILL)
        p.wait()
        s.close()
        if inflight:
            inflight_rounds += 1
        leftovers = [n for n in os.listdir(STATE) if n.startswith(".state.json.")]
        temps_seen += len(leftovers)
        # Restart and compare.
        p, s = start()
        # (The new tokend may be saving right now: only the files the
        # killed one left are looked for.)
        left = [n for n in leftovers if os.path.exists(os.path.join(STATE, n))]
        check("round %d: the restart removed the temporary files of interrupted saves: %s"
              % (rnd, left), not left)
        r = call(s, "io.tokend.ListTokens", {})
        entries = [e for e in r["parameters"]["entries"] if e["source"] == "runtime"]
        names = [e["interface"] for e in entries]
        check("round %d: no interface listed twice: %s" % (rnd, names), len(names) == len(set(names)))
        got = {e["interface"]: e["token"] for e in entries}
        want = dict(held)
        if got != want and inflight:
            alt = dict(held)
            if inflight[1] is None:
                alt.pop(inflight[0], None)
            else:
                alt[inflight[0]] = inflight[1]
            if got == alt:
                want = alt
        if not check("round %d: held set = acknowledged changes (+ the one in flight or not): "
                     "held %s, want %s, in flight %s" % (rnd, got, held, inflight), got == want):
            break
        held = want
        # The kernel follows the held set.
        end = time.monotonic() + 5
        while True:
            k = kernel_tokens()
            ok = all(k.get(n, "::") == ipaddress.IPv6Address(held.get(n, "::")).compressed
                     for n in IFACES)
            if ok or time.monotonic() > end:
                break
            time.sleep(0.02)
        if not check("round %d: kernel %s matches held %s" % (rnd, k, held), ok):
            break
        s.close()
        p.send_signal(signal.SIGTERM)
        p.wait()
    print("ok - %d rounds, %d calls, %d acknowledged, %d kills with a request in flight, "
          "%d temporary files of interrupted saves removed at restart"
          % (ROUNDS, calls, acked, inflight_rounds, temps_seen) if not failed else
          "FAIL - %d failures in %d rounds" % (failed, ROUNDS))


try:
    main()
finally:
    cleanup()
    if failed:
        print("--- kept %s ---" % TMP)
        subprocess.run(["tail", "-n", "30", LOG])
    else:
        shutil.rmtree(TMP, ignore_errors=True)
sys.exit(1 if failed else 0)
