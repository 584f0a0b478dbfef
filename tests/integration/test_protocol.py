#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The control socket spoken by a program in another language than tokenctl.

Every check talks raw Varlink (docs/protocol.md) to the real tokend running in
a network namespace of its own, and the kernel's word (`ip token`) decides
what was applied. Covers: the org.varlink.service calls, every io.tokend
method, pipelining, oneway and more, each kind of bad input (typed error,
connection closed where the doc says so, other clients still served), the
1 MiB limit, client-timeout, clients that vanish or do not read, 300
concurrent clients, and max-clients.

Standard library only. Needs root (network namespaces); exits 77 otherwise.
Environment: TOKEND, TOKENCTL (binaries), TOKEND_SRCDIR.
"""

import atexit
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

SRC = os.environ.get("TOKEND_SRCDIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TOKEND = os.environ.get("TOKEND") or os.path.join(SRC, "build/daemon/tokend")
TOKENCTL = os.environ.get("TOKENCTL") or os.path.join(SRC, "build/client/tokenctl")
MIB = 1024 * 1024
CLIENT_TIMEOUT = 1.0  # client-timeout in the config, seconds


# --- environment ------------------------------------------------------------

class Env:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="tokend-test_protocol.", dir="/tmp")
        os.chmod(self.tmp, 0o755)
        self.ns = "tk-protocol-%d" % os.getpid()
        self.sock = os.path.join(self.tmp, "tokend.sock")
        self.state = os.path.join(self.tmp, "state")
        self.conf = os.path.join(self.tmp, "tokend.conf")
        self.logpath = os.path.join(self.tmp, "tokend.log")
        self.proc = None
        self.ns_made = False
        self.failed = False
        self.cleaned = False

    def ip(self, *args, check=True):
        r = subprocess.run(["ip", "-n", self.ns] + list(args), capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError("ip -n %s %s: %s" % (self.ns, " ".join(args), r.stderr.strip()))
        return r

    def setup(self):
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.ns_made = True
        self.ip("link", "set", "lo", "up")
        for a, b in (("pa", "pb"), ("pc", "pd")):
            self.ip("link", "add", a, "type", "veth", "peer", "name", b)
            self.ip("link", "set", a, "up")
            self.ip("link", "set", b, "up")
        for i in range(10):
            self.ip("link", "add", "cv%d" % i, "type", "veth", "peer", "name", "cw%d" % i)
            self.ip("link", "set", "cv%d" % i, "up")
            self.ip("link", "set", "cw%d" % i, "up")

    def write_conf(self, max_clients=None, reply_backlog_mib=None, client_timeout="1s",
                   absent_tokens=0):
        with open(self.conf, "w") as f:
            f.write("[tokend]\nlog-level = debug\nclient-timeout = %s\n" % client_timeout)
            if max_clients is not None:
                f.write("max-clients = %d\n" % max_clients)
            if reply_backlog_mib is not None:
                f.write("reply-backlog-mib = %d\n" % reply_backlog_mib)
            f.write("[tokens]\npc = ::c0:ffee\n")
            for i in range(absent_tokens):
                f.write("cfg%d = ::%x\n" % (i, i + 1))

    def start(self):
        log = open(self.logpath, "ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, TOKEND, "--config", self.conf, "--socket",
             self.sock, "--state-dir", self.state], stdout=log, stderr=log,
            stdin=subprocess.DEVNULL)
        log.close()
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("tokend exited with %s at start" % self.proc.returncode)
            try:
                c = Conn(self.sock, timeout=2)
                r = c.call("io.tokend.GetStatus")
                c.close()
                if "error" not in r:
                    return
            except (OSError, ProtocolError):
                pass
            time.sleep(0.05)
        raise RuntimeError("tokend did not come up")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self):
        if self.cleaned:
            return
        self.cleaned = True
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self.ns_made:
            r = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True)
            for p in r.stdout.split():
                try:
                    os.kill(int(p), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        if self.failed:
            print("--- tokend log (%s) ---" % self.logpath)
            try:
                with open(self.logpath, errors="replace") as f:
                    sys.stdout.write("".join(f.readlines()[-60:]))
            except OSError:
                pass
            print("--- kept %s ---" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def kernel_token(self, dev):
        """The kernel's token of dev, canonical ("::" for none); None when no such dev."""
        r = self.ip("token", "get", "dev", dev, check=False)
        parts = r.stdout.split()
        if r.returncode != 0 or len(parts) < 2:
            return None
        return canon(parts[1])

    def links(self):
        r = self.ip("-o", "link", "show")
        names = []
        for line in r.stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            names.append(name)
        return names


# --- Varlink client ---------------------------------------------------------

class ProtocolError(Exception):
    pass


class Closed(ProtocolError):
    pass


class Conn:
    def __init__(self, path, timeout=5.0):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.timeout = timeout
        self.buf = b""
        # A Unix socket in non-blocking mode (which a Python timeout is) fails
        # connect() with EAGAIN while the listen backlog is full, instead of
        # waiting: retry until the timeout.
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.s.connect(path)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.s.close()
                    raise
                time.sleep(0.01)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def send_raw(self, data):
        self.s.sendall(data)

    @staticmethod
    def encode(method, params=None, **extra):
        msg = {"method": method}
        if params is not None:
            msg["parameters"] = params
        msg.update(extra)
        return json.dumps(msg).encode() + b"\0"

    def send(self, method, params=None, **extra):
        self.send_raw(self.encode(method, params, **extra))

    def recv_bytes(self, timeout=None):
        """One whole message (without its NUL), as bytes."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError("no reply within the timeout (buffered %d bytes)"
                                    % len(self.buf))
            self.s.settimeout(left)
            try:
                data = self.s.recv(1 << 20)
            except socket.timeout:
                raise ProtocolError("no reply within the timeout (buffered %d bytes)"
                                    % len(self.buf))
            except ConnectionResetError:
                raise Closed("connection reset (buffered %d bytes)" % len(self.buf))
            if not data:
                raise Closed("connection closed by tokend (buffered %d bytes)" % len(self.buf))
            self.buf += data
        msg, _, self.buf = self.buf.partition(b"\0")
        return msg

    def recv(self, timeout=None):
        raw = self.recv_bytes(timeout)
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ProtocolError("reply is not JSON (%s): %r" % (e, raw[:200]))
        if not isinstance(obj, dict):
            raise ProtocolError("reply is not an object: %r" % raw[:200])
        if "error" in obj and not isinstance(obj["error"], str):
            raise ProtocolError("reply's error is not a string: %r" % raw[:200])
        if not isinstance(obj.get("parameters"), dict):
            raise ProtocolError("reply's parameters is not an object: %r" % raw[:200])
        return obj

    def call(self, method, params=None, timeout=None, **extra):
        self.send(method, params, **extra)
        return self.recv(timeout)

    def closed_within(self, timeout):
        """True when tokend closes the connection (EOF or reset, with nothing
        more sent) within timeout; False when it stays open."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.s.settimeout(left)
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not data:
                return True
            self.buf += data


# --- checks -----------------------------------------------------------------

class Fail(Exception):
    pass


def ensure(cond, what):
    if not cond:
        raise Fail(what)


def ok_reply(r, what=""):
    if "error" in r:
        raise Fail("%s: expected a reply, got %s" % (what, json.dumps(r)[:400]))
    return r["parameters"]


def err_reply(r, name, what="", **fields):
    """r is error `name`, carrying "message" and each of fields (a value of
    Ellipsis means: present, any value)."""
    if r.get("error") != name:
        raise Fail("%s: expected error %s, got %s" % (what, name, json.dumps(r)[:400]))
    p = r["parameters"]
    if not isinstance(p.get("message"), str) or not p["message"]:
        raise Fail("%s: %s without a \"message\": %s" % (what, name, json.dumps(r)[:400]))
    for k, v in fields.items():
        if k not in p:
            raise Fail("%s: %s lacks parameter %r: %s" % (what, name, k, json.dumps(r)[:400]))
        if v is not Ellipsis and p[k] != v:
            raise Fail("%s: %s parameter %r is %r, expected %r" % (what, name, k, p[k], v))
    return p


def wait_for(what, fn, timeout=5.0):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise Fail("%s: not true within %ss (last: %r)" % (what, timeout, last))


def canon(t):
    """RFC 5952 text of an IPv6 address (never dotted quad), computed here so
    the oracle does not depend on how this Python prints mapped addresses."""
    b = ipaddress.IPv6Address(t.split("/")[0]).packed
    g = [b[2 * i] << 8 | b[2 * i + 1] for i in range(8)]
    best, best_len, i = -1, 0, 0
    while i < 8:
        j = i
        while j < 8 and g[j] == 0:
            j += 1
        if j - i > best_len and j - i >= 2:
            best, best_len = i, j - i
        i = j if j > i else i + 1
    if best < 0:
        return ":".join("%x" % x for x in g)
    return (":".join("%x" % x for x in g[:best]) + "::" +
            ":".join("%x" % x for x in g[best + best_len:]))


ENTRY_KEYS = {"interface", "ifindex", "token", "origin", "source", "file", "state", "reason",
              "kernel_token", "addresses"}
STATES = {"applied", "pending", "absent", "blocked", "unsupported", "contested", "removing"}


def check_entry(e, what):
    ensure(isinstance(e, dict), "%s: entry is not an object: %r" % (what, e))
    ensure(set(e) >= ENTRY_KEYS, "%s: entry lacks %s: %r" % (what, ENTRY_KEYS - set(e), e))
    ensure(e["state"] in STATES, "%s: unknown state %r" % (what, e["state"]))
    ensure(e["origin"] in ("interface", "global"), "%s: bad origin %r" % (what, e["origin"]))
    ensure(e["source"] in ("config", "runtime"), "%s: bad source %r" % (what, e["source"]))
    ensure(isinstance(e["addresses"], list), "%s: addresses not a list" % what)
    ensure(e["token"] == canon(e["token"]), "%s: token %r not canonical" % (what, e["token"]))


class Runner:
    def __init__(self, env):
        self.env = env
        self.passed = 0
        self.failed = 0

    def run(self, name, fn, *args):
        t0 = time.monotonic()
        try:
            fn(*args)
        except Fail as e:
            self.failed += 1
            print("FAIL - %s: %s" % (name, e), flush=True)
        except Exception as e:  # a crash of the check itself is a failure too
            self.failed += 1
            print("FAIL - %s: %s: %s" % (name, type(e).__name__, e), flush=True)
            traceback.print_exc(limit=3, file=sys.stdout)
        else:
            self.passed += 1
            print("ok - %s (%.1fs)" % (name, time.monotonic() - t0), flush=True)
        self.env.failed = self.failed > 0


# --- the tests ----------------------------------------------------------------

def t_get_info(env):
    c = Conn(env.sock)
    p = ok_reply(c.call("org.varlink.service.GetInfo", {}), "GetInfo")
    for k in ("vendor", "product", "version", "url"):
        ensure(isinstance(p.get(k), str), "GetInfo %s is not a string: %r" % (k, p))
    ensure(isinstance(p.get("interfaces"), list) and
           {"org.varlink.service", "io.tokend"} <= set(p["interfaces"]),
           "GetInfo interfaces: %r" % p.get("interfaces"))
    # Without "parameters" at all, as some generic clients send it.
    ok_reply(c.call("org.varlink.service.GetInfo"), "GetInfo without parameters")
    c.close()


def t_get_interface_description(env):
    c = Conn(env.sock)
    p = ok_reply(c.call("org.varlink.service.GetInterfaceDescription",
                        {"interface": "io.tokend"}), "describe io.tokend")
    d = p.get("description")
    ensure(isinstance(d, str), "description not a string: %r" % p)
    ensure("interface io.tokend" in d, "io.tokend description lacks its interface line")
    for m in ("ListTokens", "SetToken", "DeleteToken", "FlushTokens", "ResumeToken",
              "GetStatus", "InvalidMessage", "TooManyClients", "PermissionDenied",
              "InvalidToken", "InvalidInterface", "ConfigEntry", "NoSuchEntry",
              "StateWriteFailed", "Degraded"):
        ensure(m in d, "io.tokend description lacks %s" % m)
    p = ok_reply(c.call("org.varlink.service.GetInterfaceDescription",
                        {"interface": "org.varlink.service"}), "describe org.varlink.service")
    d = p.get("description")
    ensure(isinstance(d, str) and "interface org.varlink.service" in d and
           "GetInfo" in d and "GetInterfaceDescription" in d,
           "org.varlink.service description: %r" % d)
    err_reply(c.call("org.varlink.service.GetInterfaceDescription",
                     {"interface": "com.example.nope"}),
              "org.varlink.service.InterfaceNotFound", "describe unknown",
              interface="com.example.nope")
    err_reply(c.call("org.varlink.service.GetInterfaceDescription", {}),
              "org.varlink.service.InvalidParameter", "describe without interface",
              parameter="interface")
    c.close()


def list_entry(c, dev):
    p = ok_reply(c.call("io.tokend.ListTokens", {"interface": dev}), "ListTokens %s" % dev)
    ensure(len(p.get("entries", [])) == 1, "ListTokens %s: %r" % (dev, p))
    check_entry(p["entries"][0], "ListTokens %s" % dev)
    return p["entries"][0]


def t_round_trip(env):
    c = Conn(env.sock)
    p = ok_reply(c.call("io.tokend.ListTokens", {}), "ListTokens at start")
    ensure(p.get("global") is None, "no global token at start: %r" % p)
    names = [e["interface"] for e in p["entries"]]
    ensure(names == ["pc"], "only the config entry pc at start, got %r" % names)
    e = p["entries"][0]
    check_entry(e, "pc")
    ensure(e["source"] == "config" and e["file"] == env.conf + ":5",
           "pc is from %s:5: %r" % (env.conf, e))
    wait_for("kernel holds pc's config token", lambda: env.kernel_token("pc") == "::c0:ffee")

    # SetToken on an interface.
    p = ok_reply(c.call("io.tokend.SetToken", {"interface": "pa", "token": "::1a:2b:3c:4d"}),
                 "SetToken pa")
    ensure(p.get("changed") is True, "SetToken pa changed: %r" % p)
    check_entry(p.get("entry"), "SetToken pa entry")
    ensure(p["entry"]["interface"] == "pa" and p["entry"]["token"] == "::1a:2b:3c:4d" and
           p["entry"]["source"] == "runtime" and p["entry"]["origin"] == "interface" and
           p["entry"]["file"] is None, "SetToken pa entry: %r" % p["entry"])
    wait_for("kernel holds pa's token", lambda: env.kernel_token("pa") == "::1a:2b:3c:4d")
    wait_for("pa applied", lambda: list_entry(c, "pa")["state"] == "applied")
    e = list_entry(c, "pa")
    ensure(e["kernel_token"] == "::1a:2b:3c:4d", "pa kernel_token: %r" % e)
    ensure(isinstance(e["ifindex"], int), "pa ifindex: %r" % e)

    # Same token in another spelling: a no-op.
    p = ok_reply(c.call("io.tokend.SetToken",
                        {"interface": "pa", "token": "0:0:0:0:1a:2b:3c:4d/64"}),
                 "SetToken pa again")
    ensure(p.get("changed") is False, "same token again: changed must be false: %r" % p)

    # Spellings: always answered in canonical form, never dotted quad.
    for spelling in ("::1.2.3.4", "0:0:0:0:1:0:0:0", "::0:0:1:0", "::ABCD:EF01/64",
                     "::ffff:1.2.3.4"):
        p = ok_reply(c.call("io.tokend.SetToken", {"interface": "pb", "token": spelling}),
                     "SetToken pb %s" % spelling)
        want = canon(spelling)
        ensure(p["entry"]["token"] == want,
               "SetToken %s answered token %r, canonical is %r" % (spelling, p["entry"]["token"], want))
        ensure("." not in p["entry"]["token"], "dotted quad in reply: %r" % p["entry"]["token"])
        wait_for("kernel holds %s on pb" % spelling, lambda: env.kernel_token("pb") == want)
    ok_reply(c.call("io.tokend.DeleteToken", {"interface": "pb"}), "DeleteToken pb")
    wait_for("pb cleared", lambda: env.kernel_token("pb") == "::")

    # Global token (absent interface / null interface).
    p = ok_reply(c.call("io.tokend.SetToken", {"token": "::42"}), "SetToken global")
    ensure(p.get("changed") is True and p.get("entry", "x") is None, "SetToken global: %r" % p)
    wait_for("global reaches pb", lambda: env.kernel_token("pb") == "::42")
    ensure(env.kernel_token("pa") == "::1a:2b:3c:4d", "per-interface token wins over global")
    p = ok_reply(c.call("io.tokend.ListTokens", {}), "ListTokens with global")
    g = p.get("global")
    ensure(isinstance(g, dict) and g.get("token") == "::42" and g.get("source") == "runtime",
           "global object: %r" % g)
    ensure(isinstance(g.get("match"), list), "global match list: %r" % g)
    names = [e["interface"] for e in p["entries"]]
    ensure(names == sorted(names), "entries sorted by name: %r" % names)
    byname = {e["interface"]: e for e in p["entries"]}
    ensure("pb" in byname and byname["pb"]["origin"] == "global", "pb gets global: %r" % byname.get("pb"))
    p = ok_reply(c.call("io.tokend.SetToken", {"interface": None, "token": "::42"}),
                 "SetToken global with null interface")
    ensure(p.get("changed") is False, "null interface is the global token: %r" % p)

    # GetStatus.
    p = ok_reply(c.call("io.tokend.GetStatus", {}), "GetStatus")
    for k, typ in (("version", str), ("pid", int), ("uptime_usec", int), ("config_files", list),
                   ("state_file", str), ("degraded", bool), ("counts", dict), ("repairs", int),
                   ("resyncs", int), ("reconciles", int)):
        ensure(isinstance(p.get(k), typ), "GetStatus %s: %r" % (k, p.get(k)))
    ensure("degraded_reason" in p, "GetStatus lacks degraded_reason")
    ensure(p["pid"] == env.proc.pid, "GetStatus pid %r is not tokend's %r" % (p["pid"], env.proc.pid))
    ensure(p["config_files"][:1] == [env.conf], "config_files: %r" % p["config_files"])
    ensure(p["state_file"].startswith(env.state + "/"), "state_file: %r" % p["state_file"])
    ensure(p["degraded"] is False, "not degraded")
    for k in ("held", "applied", "pending", "absent", "blocked", "unsupported", "contested",
              "removing"):
        ensure(isinstance(p["counts"].get(k), int), "counts.%s: %r" % (k, p["counts"]))

    # DeleteToken.
    ok_reply(c.call("io.tokend.DeleteToken", {"interface": "pa"}), "DeleteToken pa")
    wait_for("global applies to pa after delete", lambda: env.kernel_token("pa") == "::42")
    err_reply(c.call("io.tokend.DeleteToken", {"interface": "pa"}), "io.tokend.NoSuchEntry",
              "DeleteToken pa twice", interface="pa")
    err_reply(c.call("io.tokend.DeleteToken", {"interface": "pc"}), "io.tokend.ConfigEntry",
              "DeleteToken config entry", interface="pc", file=env.conf + ":5")
    err_reply(c.call("io.tokend.SetToken", {"interface": "pc", "token": "::9"}),
              "io.tokend.ConfigEntry", "SetToken config entry", interface="pc",
              file=env.conf + ":5")
    ensure(env.kernel_token("pc") == "::c0:ffee", "config token untouched")
    err_reply(c.call("io.tokend.ListTokens", {"interface": "nosuch0"}), "io.tokend.NoSuchEntry",
              "ListTokens of an interface without entry", interface="nosuch0")

    # FlushTokens: runtime entries, the global included; config entries kept.
    ok_reply(c.call("io.tokend.SetToken", {"interface": "pa", "token": "::aa"}), "SetToken pa ::aa")
    ok_reply(c.call("io.tokend.SetToken", {"interface": "ghost0", "token": "::a0"}),
             "SetToken absent ghost0")
    e = list_entry(c, "ghost0")
    ensure(e["state"] == "absent" and e["ifindex"] is None and e["kernel_token"] is None,
           "ghost0 absent: %r" % e)
    p = ok_reply(c.call("io.tokend.FlushTokens", {"interface": "ghost0"}), "FlushTokens ghost0")
    ensure(p.get("removed") == ["ghost0"] and p.get("kept") == [], "flush ghost0: %r" % p)
    p = ok_reply(c.call("io.tokend.FlushTokens", {}), "FlushTokens")
    ensure(sorted(p.get("removed", []), key=str) == sorted(["pa", None], key=str),
           "flush removed: %r" % p)
    ensure(p.get("kept") == [{"interface": "pc", "file": env.conf + ":5"}], "flush kept: %r" % p)
    wait_for("flush cleared pa", lambda: env.kernel_token("pa") == "::")
    wait_for("flush cleared pb", lambda: env.kernel_token("pb") == "::")
    ensure(env.kernel_token("pc") == "::c0:ffee", "flush kept pc in the kernel")
    err_reply(c.call("io.tokend.DeleteToken", {}), "io.tokend.NoSuchEntry",
              "DeleteToken global when none", interface=None)

    # ResumeToken: nothing contested.
    p = ok_reply(c.call("io.tokend.ResumeToken", {}), "ResumeToken")
    ensure(p.get("resumed") == [], "resumed: %r" % p)
    p = ok_reply(c.call("io.tokend.ResumeToken", {"interface": "pa"}), "ResumeToken pa")
    ensure(p.get("resumed") == [], "resumed pa: %r" % p)
    c.close()


def t_pipelined(env):
    c = Conn(env.sock)
    calls = [
        Conn.encode("io.tokend.GetStatus", {}),
        Conn.encode("io.tokend.SetToken", {"interface": "pa", "token": "::1"}),
        Conn.encode("io.tokend.ListTokens", {"interface": "pa"}),
        Conn.encode("io.tokend.Nope", {}),
        Conn.encode("io.tokend.SetToken", {"interface": "pa", "token": "::2"}),
        Conn.encode("io.tokend.ListTokens", {"interface": "pa"}),
        Conn.encode("org.varlink.service.GetInfo", {}),
        Conn.encode("io.tokend.DeleteToken", {"interface": "pa"}),
        Conn.encode("io.tokend.ListTokens", {"interface": "pa"}),
    ]
    c.send_raw(b"".join(calls))
    r = [c.recv() for _ in calls]
    ensure(ok_reply(r[0]).get("pid") == env.proc.pid, "1st reply is GetStatus: %r" % r[0])
    ensure(ok_reply(r[1]).get("entry", {}).get("token") == "::1", "2nd is SetToken ::1: %r" % r[1])
    ensure(ok_reply(r[2])["entries"][0]["token"] == "::1", "3rd is ListTokens ::1: %r" % r[2])
    err_reply(r[3], "org.varlink.service.MethodNotFound", "4th reply")
    ensure(ok_reply(r[4]).get("entry", {}).get("token") == "::2", "5th is SetToken ::2: %r" % r[4])
    ensure(ok_reply(r[5])["entries"][0]["token"] == "::2", "6th is ListTokens ::2: %r" % r[5])
    ensure("interfaces" in ok_reply(r[6]), "7th is GetInfo: %r" % r[6])
    ensure(ok_reply(r[7]) == {}, "8th is DeleteToken: %r" % r[7])
    err_reply(r[8], "io.tokend.NoSuchEntry", "9th reply", interface="pa")
    ensure(not c.closed_within(0.3) and c.buf == b"", "nothing more after the replies: %r" % c.buf)

    # Byte by byte: framing does not depend on how the stream is cut.
    data = Conn.encode("io.tokend.GetStatus", {}) + Conn.encode("org.varlink.service.GetInfo", {})
    for i in range(len(data)):
        c.send_raw(data[i:i + 1])
    ensure("pid" in ok_reply(c.recv()), "byte-by-byte GetStatus")
    ensure("interfaces" in ok_reply(c.recv()), "byte-by-byte GetInfo")
    c.close()


def t_oneway(env):
    c = Conn(env.sock)
    c.send("io.tokend.SetToken", {"interface": "pb", "token": "::bb"}, oneway=True)
    c.send("io.tokend.Nope", {}, oneway=True)  # an error is suppressed too
    c.send("io.tokend.GetStatus", {}, oneway=True)
    p = ok_reply(c.call("org.varlink.service.GetInfo", {}), "call after oneway calls")
    ensure("interfaces" in p, "first reply after oneway calls is GetInfo's: %r" % p)
    wait_for("oneway SetToken took effect", lambda: env.kernel_token("pb") == "::bb")
    e = list_entry(c, "pb")
    ensure(e["token"] == "::bb", "tokend holds the oneway token: %r" % e)
    c.send("io.tokend.DeleteToken", {"interface": "pb"}, oneway=True)
    wait_for("oneway DeleteToken took effect", lambda: env.kernel_token("pb") == "::")
    ensure(not c.closed_within(0.3) and c.buf == b"", "no reply to oneway calls: %r" % c.buf)
    c.close()


def t_more(env):
    c = Conn(env.sock)
    c.send("io.tokend.ListTokens", {}, more=True)
    r = c.recv()
    ok_reply(r, "ListTokens with more")
    ensure(not r.get("continues"), "single reply, not continued: %r" % r)
    ensure("pid" in ok_reply(c.call("io.tokend.GetStatus", {})), "next call after more answered")
    c.close()


def witness_ok(w):
    p = ok_reply(w.call("io.tokend.GetStatus", {}), "second client")
    ensure("pid" in p, "second client's GetStatus: %r" % p)


def bad_closing(env, w, data, what, reason=True):
    c = Conn(env.sock)
    try:
        c.send_raw(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        r = c.recv(5)
    except Closed as e:
        raise Fail("%s: closed without io.tokend.InvalidMessage (%s)" % (what, e))
    except ProtocolError as e:
        raise Fail("%s: %s" % (what, e))
    if reason:
        p = err_reply(r, "io.tokend.InvalidMessage", what, reason=Ellipsis)
        ensure(isinstance(p["reason"], str) and p["reason"], "%s: reason %r" % (what, p))
    ensure(c.closed_within(3), "%s: connection not closed after InvalidMessage" % what)
    c.close()
    witness_ok(w)
    return r


def bad_open(env, w, call_method, call_params, error, what, **fields):
    c = Conn(env.sock)
    err_reply(c.call(call_method, call_params), error, what, **fields)
    # The connection stays usable after a typed error.
    ensure("pid" in ok_reply(c.call("io.tokend.GetStatus", {}), what + ": same connection after"),
           what + ": GetStatus after the error")
    c.close()
    witness_ok(w)


def t_bad_json(env, w):
    bad_closing(env, w, b'{"method": "io.tokend.GetStatus", \0', "malformed JSON")
    bad_closing(env, w, b'{"method": "io.tokend.GetStatus"} trailing\0', "garbage after object")
    bad_closing(env, w, b'\0', "empty message")
    bad_closing(env, w, b'{"method": "io.tokend.GetStatus", "parameters": {"x": "\xff\xfe"}}\0',
                "invalid UTF-8")


def t_bad_array(env, w):
    bad_closing(env, w, b'[{"method": "io.tokend.GetStatus"}]\0', "JSON array")
    bad_closing(env, w, b'"io.tokend.GetStatus"\0', "JSON string")


def t_bad_missing_method(env, w):
    bad_closing(env, w, b'{"parameters": {}}\0', "missing method")


def t_bad_method_type(env, w):
    bad_closing(env, w, b'{"method": 42, "parameters": {}}\0', "method is a number")
    bad_closing(env, w, b'{"method": null}\0', "method is null")


def t_bad_parameters_type(env, w):
    # The doc lists InvalidMessage for a message that cannot be a call and
    # InvalidParameter for a bad parameter; either is a typed answer, and an
    # InvalidMessage must close the connection.
    for data, what in ((b'{"method": "io.tokend.GetStatus", "parameters": []}\0',
                        "parameters is an array"),
                       (b'{"method": "io.tokend.ListTokens", "parameters": "pa"}\0',
                        "parameters is a string")):
        c = Conn(env.sock)
        c.send_raw(data)
        r = c.recv()
        if r.get("error") == "io.tokend.InvalidMessage":
            err_reply(r, "io.tokend.InvalidMessage", what, reason=Ellipsis)
            ensure(c.closed_within(3), "%s: InvalidMessage but not closed" % what)
        else:
            err_reply(r, "org.varlink.service.InvalidParameter", what, parameter=Ellipsis)
        c.close()
        witness_ok(w)


def t_unknown_method(env, w):
    bad_open(env, w, "io.tokend.Nope", {}, "org.varlink.service.MethodNotFound",
             "unknown io.tokend method", method="io.tokend.Nope")
    bad_open(env, w, "org.varlink.service.Nope", {}, "org.varlink.service.MethodNotFound",
             "unknown org.varlink.service method", method="org.varlink.service.Nope")


def t_unknown_interface(env, w):
    bad_open(env, w, "com.example.Thing.Do", {}, "org.varlink.service.InterfaceNotFound",
             "unknown interface", interface="com.example.Thing")
    c = Conn(env.sock)
    r = c.call("NoDots", {})
    ensure(r.get("error") in ("org.varlink.service.InterfaceNotFound",
                              "org.varlink.service.MethodNotFound"),
           "method without interface part: %r" % r)
    c.close()
    witness_ok(w)


def t_unknown_parameter(env, w):
    bad_open(env, w, "io.tokend.ListTokens", {"bogus": "x"},
             "org.varlink.service.InvalidParameter", "unknown ListTokens parameter",
             parameter="bogus")
    bad_open(env, w, "io.tokend.GetStatus", {"interface": "pa"},
             "org.varlink.service.InvalidParameter", "GetStatus takes no parameters",
             parameter="interface")
    bad_open(env, w, "io.tokend.SetToken", {"interface": "pa", "token": "::5", "force": True},
             "org.varlink.service.InvalidParameter", "unknown SetToken parameter",
             parameter="force")
    ensure(env.kernel_token("pa") == "::", "refused SetToken changed nothing")
    bad_open(env, w, "io.tokend.SetToken", {"interface": "pa"},
             "org.varlink.service.InvalidParameter", "SetToken without token",
             parameter="token")


def t_wrong_type(env, w):
    bad_open(env, w, "io.tokend.SetToken", {"interface": "pa", "token": 42},
             "org.varlink.service.InvalidParameter", "token as a number", parameter="token")
    bad_open(env, w, "io.tokend.SetToken", {"interface": "pa", "token": None},
             "org.varlink.service.InvalidParameter", "token as null", parameter="token")
    bad_open(env, w, "io.tokend.SetToken", {"interface": 7, "token": "::5"},
             "org.varlink.service.InvalidParameter", "interface as a number",
             parameter="interface")
    bad_open(env, w, "io.tokend.DeleteToken", {"interface": ["pa"]},
             "org.varlink.service.InvalidParameter", "interface as an array",
             parameter="interface")
    ensure(env.kernel_token("pa") == "::", "refused calls changed nothing")


def t_invalid_token(env, w):
    for tok in ("2001:db8::1", "1::1", "::1/48", "not-a-token", "", "::1/64/64", "1.2.3.4",
                "::1 ", "::"):
        bad_open(env, w, "io.tokend.SetToken", {"interface": "pa", "token": tok},
                 "io.tokend.InvalidToken", "invalid token %r" % tok, token=tok,
                 reason=Ellipsis)
    bad_open(env, w, "io.tokend.SetToken", {"token": "2001:db8::1"}, "io.tokend.InvalidToken",
             "invalid global token", token="2001:db8::1")
    ensure(env.kernel_token("pa") == "::", "invalid tokens changed nothing on pa")
    ensure(env.kernel_token("pb") == "::", "invalid global token changed nothing on pb")


def t_invalid_interface(env, w):
    for name in ("a/b", "abcdefghijklmnop", "", "a b", "a:b", ".", ".."):
        bad_open(env, w, "io.tokend.SetToken", {"interface": name, "token": "::5"},
                 "io.tokend.InvalidInterface", "SetToken interface %r" % name,
                 interface=name, reason=Ellipsis)
    for name in ("a/b", "abcdefghijklmnop"):
        bad_open(env, w, "io.tokend.DeleteToken", {"interface": name},
                 "io.tokend.InvalidInterface", "DeleteToken interface %r" % name,
                 interface=name, reason=Ellipsis)
    # 15 bytes is the longest valid name.
    c = Conn(env.sock)
    p = ok_reply(c.call("io.tokend.SetToken", {"interface": "abcdefghijklmno", "token": "::5"}),
                 "15-byte interface name")
    ensure(p["entry"]["state"] == "absent", "15-byte name is absent: %r" % p)
    ok_reply(c.call("io.tokend.DeleteToken", {"interface": "abcdefghijklmno"}), "delete it")
    c.close()
    witness_ok(w)


def t_over_1mib(env, w):
    # 2 MiB without a NUL: refused once it passes 1 MiB, without waiting for
    # the rest.
    c = Conn(env.sock)
    box = {}

    def sender():
        try:
            c.s.sendall(b"{" + b" " * (2 * MIB))
        except OSError as e:
            box["err"] = e

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    try:
        r = c.recv(10)
    except Closed as e:
        raise Fail("2 MiB unterminated: closed without a reply (%s)" % e)
    except ProtocolError as e:
        raise Fail("2 MiB unterminated: %s" % e)
    err_reply(r, "io.tokend.InvalidMessage", "2 MiB unterminated", reason=Ellipsis)
    ensure(c.closed_within(3), "2 MiB unterminated: connection not closed")
    c.close()
    t.join(5)
    witness_ok(w)


def t_over_1mib_terminated(env, w):
    # Exactly one byte over the limit, NUL included in the same write: the
    # whole message reaches tokend before it can see that it is too long.
    fails = []
    for n in (MIB + 1, MIB + 4096, MIB + 65536 + 7):
        try:
            bad_closing(env, w, b"{" + b" " * (n - 1) + b"\0", "%d-byte message then NUL" % n)
        except Fail as e:
            fails.append(str(e))
    ensure(not fails, "; ".join(fails))


def t_1mib_junk(env, w):
    # Valid sizes with junk inside: an error, not a hang.
    for n in (MIB, MIB - 1, MIB - 100, 65536, 65537):
        r = bad_closing(env, w, b"x" * n + b"\0", "%d bytes of junk" % n)
        ensure("long" not in r["parameters"]["reason"],
               "%d bytes is within the limit, yet refused as too long: %r" % (n, r))


def t_1mib_valid(env, w):
    # A valid call padded to exactly 1 MiB is answered normally.
    body = b'{"method": "io.tokend.GetStatus", "parameters": {}'
    c = Conn(env.sock)
    c.send_raw(body + b" " * (MIB - len(body) - 1) + b"}\0")
    r = c.recv(10)
    ensure("pid" in ok_reply(r, "1 MiB valid call"), "1 MiB valid call: %r" % r)
    ensure("pid" in ok_reply(c.call("io.tokend.GetStatus", {})), "connection usable after")
    c.close()
    witness_ok(w)


def t_stall(env, w):
    c = Conn(env.sock)
    c.send_raw(b'{"method": "io.tokend.GetSta')
    t0 = time.monotonic()
    served = 0
    closed_at = None
    while time.monotonic() - t0 < CLIENT_TIMEOUT + 4:
        wt = time.monotonic()
        witness_ok(w)
        ensure(time.monotonic() - wt < 1.0, "second client answered slowly during the stall")
        served += 1
        if c.closed_within(0.05):
            closed_at = time.monotonic() - t0
            break
    ensure(closed_at is not None,
           "stalled client not disconnected within %.1fs (client-timeout 1s)" % (CLIENT_TIMEOUT + 4))
    ensure(closed_at >= CLIENT_TIMEOUT * 0.8,
           "stalled client disconnected after %.2fs, before client-timeout" % closed_at)
    ensure(served >= 3, "second client served %d times during the stall" % served)
    c.close()


def t_trickle(env, w):
    # One byte at a time never finishing a message: the clock runs from the
    # first byte of the unfinished message.
    c = Conn(env.sock)
    t0 = time.monotonic()
    closed = False
    data = b'{"method": "io.tokend.GetStatus", "parameters": {' + b' ' * 1000
    for i in range(len(data)):
        try:
            c.send_raw(data[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if c.closed_within(0.2):
            closed = True
            break
        if time.monotonic() - t0 > CLIENT_TIMEOUT + 4:
            break
    took = time.monotonic() - t0
    ensure(closed, "trickling client not disconnected within %.1fs" % took)
    ensure(took < CLIENT_TIMEOUT + 3, "trickling client disconnected only after %.1fs" % took)
    c.close()
    witness_ok(w)


def t_idle_kept(env, w):
    # Only an unfinished message runs the clock: an idle connection between
    # whole calls stays.
    c = Conn(env.sock)
    ok_reply(c.call("io.tokend.GetStatus", {}))
    ensure(not c.closed_within(CLIENT_TIMEOUT + 1), "idle connection closed")
    ensure("pid" in ok_reply(c.call("io.tokend.GetStatus", {})), "idle connection still served")
    c.close()


N_GHOSTS = 300


def ghosts_add(env):
    c = Conn(env.sock, timeout=30)
    c.send_raw(b"".join(Conn.encode("io.tokend.SetToken",
                                    {"interface": "ghost%03d" % i, "token": "::%x" % (i + 1)})
                        for i in range(N_GHOSTS)))
    for i in range(N_GHOSTS):
        ok_reply(c.recv(30), "SetToken ghost%03d" % i)
    p = ok_reply(c.call("io.tokend.ListTokens", {}), "ListTokens with ghosts")
    c.close()
    return len(json.dumps(p))


def ghosts_flush(env):
    c = Conn(env.sock, timeout=30)
    ok_reply(c.call("io.tokend.FlushTokens", {}), "flush ghosts")
    c.close()


def t_vanish(env, w, size):
    ensure(size > 50000, "ListTokens reply is %d bytes, expected a big one" % size)
    for i in range(30):
        c = Conn(env.sock)
        c.send_raw(Conn.encode("io.tokend.ListTokens", {}) * (1 + i % 5))
        if i % 2:
            c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        c.close()
    # Half read, then gone.
    for i in range(10):
        c = Conn(env.sock)
        c.send_raw(Conn.encode("io.tokend.ListTokens", {}) * 3)
        c.s.recv(1000)
        c.close()
    time.sleep(0.3)
    ensure(env.alive(), "tokend died after clients vanished mid-reply")
    witness_ok(w)
    c = Conn(env.sock)
    p = ok_reply(c.call("io.tokend.ListTokens", {}), "ListTokens after vanished clients")
    ensure(len([e for e in p["entries"] if e["interface"].startswith("ghost")]) == N_GHOSTS,
           "all ghosts still held")
    c.close()


def calls_logged(env, method):
    with open(env.logpath, "rb") as f:
        return f.read().count(("call %s from" % method).encode())


def t_unread_replies(env, w, size):
    # A client that sends many calls at once and reads no replies: tokend
    # answers one call at a time (the next is taken once the reply before it
    # is out), so it holds one reply, not all of them; and it cuts the client
    # off after client-timeout without progress.
    n = (8 * MIB) // size + 2
    before = calls_logged(env, "io.tokend.ListTokens")
    c = Conn(env.sock, timeout=10)
    c.send_raw(Conn.encode("io.tokend.ListTokens", {}) * n)
    time.sleep(0.5)  # half of client-timeout
    taken = calls_logged(env, "io.tokend.ListTokens") - before
    # The replies the socket's buffer holds, one waiting in tokend, one
    # more for rounding.
    with open("/proc/sys/net/core/wmem_default") as f:
        sndbuf = int(f.read())
    most = 2 + (2 * sndbuf) // size
    ensure(1 <= taken <= most, "tokend took %d of %d pipelined calls (%d bytes of replies each) "
           "while the client read no reply: one at a time, the socket holds %d at most"
           % (taken, n, size, most))
    witness_ok(w)
    time.sleep(1.0)
    got = 0
    closed = False
    while True:
        try:
            c.recv(5)
            got += 1
        except Closed:
            closed = True
            break
        except ProtocolError:
            break
    ensure(closed, "non-reading client not disconnected after client-timeout (%d replies read)"
           % got)
    ensure(got < n, "all %d replies were delivered to a client that read nothing for 1.5 s" % n)
    c.close()
    ensure(env.alive(), "tokend alive")
    witness_ok(w)


def t_slow_reader_served(env, w, size):
    # A client that reads slowly but steadily (progress within every
    # client-timeout) gets every reply of its pipelined calls, in order.
    n = max(3, (2 * MIB) // size + 1)
    c = Conn(env.sock, timeout=10)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.send_raw(Conn.encode("io.tokend.ListTokens", {}) * n + Conn.encode("io.tokend.GetStatus", {}))
    data = b""
    deadline = time.monotonic() + 60
    while data.count(b"\0") < n + 1 and time.monotonic() < deadline:
        chunk = c.s.recv(size // 3 + 1)
        if not chunk:
            break
        data += chunk
        time.sleep(0.02)
    msgs = [json.loads(m) for m in data.split(b"\0")[:-1]]
    ensure(len(msgs) == n + 1, "%d of %d replies reached a slow reader" % (len(msgs), n + 1))
    ensure(all("entries" in m.get("parameters", {}) for m in msgs[:n]),
           "a ListTokens reply is not one")
    ensure("pid" in msgs[n].get("parameters", {}), "the GetStatus reply came out of order")
    c.close()
    witness_ok(w)


def t_oneway_after_backlog(env, w, size):
    # Replies queued but only partly sent (the client reads nothing yet),
    # then a oneway call: its suppressed reply must not disturb the queued
    # ones.
    n = max(2, (1 * MIB) // size + 1)
    c = Conn(env.sock, timeout=10)
    c.send_raw(Conn.encode("io.tokend.ListTokens", {}) * n)
    time.sleep(0.5)
    c.send("io.tokend.GetStatus", {}, oneway=True)
    time.sleep(0.2)
    c.send("org.varlink.service.GetInfo", {})
    for i in range(n):
        try:
            r = c.recv(10)
        except ProtocolError as e:
            raise Fail("reply %d of %d: %s" % (i + 1, n, e))
        p = ok_reply(r, "ListTokens reply %d" % (i + 1))
        ensure("entries" in p, "reply %d of %d is not ListTokens': %s" % (i + 1, n, json.dumps(r)[:200]))
    try:
        r = c.recv(10)
    except ProtocolError as e:
        raise Fail("GetInfo reply after the backlog: %s" % e)
    if "interfaces" not in r["parameters"]:
        what = ("the suppressed reply of the oneway GetStatus"
                if "pid" in r["parameters"] else "not GetInfo's")
        stray = len(c.buf)
        c.closed_within(1)
        raise Fail("after the %d ListTokens replies came %s (%s), then %d more bytes "
                   "(%d NULs) before/instead of the GetInfo reply"
                   % (n, what, json.dumps(r)[:80], len(c.buf), c.buf.count(b"\0")))
    ensure(not c.closed_within(0.3) and c.buf == b"", "stray bytes after the replies: %r" % c.buf[:200])
    c.close()
    ensure(env.alive(), "tokend alive")
    witness_ok(w)


def t_concurrent(env, n=300):
    errors = []
    lock = threading.Lock()
    barrier = threading.Barrier(n, timeout=60)

    def worker(i):
        try:
            try:
                c = Conn(env.sock, timeout=30)
            except Exception:
                barrier.abort()
                raise
            barrier.wait()
            name = "cv%d" % i if i < 10 else "conc%03d" % i
            tok = "::c:%x" % (i + 1)
            for _ in range(3):
                p = ok_reply(c.call("io.tokend.ListTokens", {}), "ListTokens")
                ensure("entries" in p, "ListTokens reply")
                p = ok_reply(c.call("io.tokend.GetStatus", {}), "GetStatus")
                ensure(p.get("pid") == env.proc.pid, "GetStatus pid")
            p = ok_reply(c.call("io.tokend.SetToken", {"interface": name, "token": tok}), "SetToken")
            ensure(p["changed"] is True and p["entry"]["interface"] == name and
                   p["entry"]["token"] == tok, "SetToken %s reply %r" % (name, p))
            e = ok_reply(c.call("io.tokend.ListTokens", {"interface": name}))["entries"][0]
            ensure(e["token"] == tok, "ListTokens %s token %r" % (name, e))
            if i % 2 == 0 or i < 10:
                # Keep: the even ones and the real interfaces.
                pass
            else:
                ok_reply(c.call("io.tokend.DeleteToken", {"interface": name}), "DeleteToken")
                err_reply(c.call("io.tokend.ListTokens", {"interface": name}),
                          "io.tokend.NoSuchEntry", "ListTokens after delete", interface=name)
            c.close()
        except Exception as e:
            with lock:
                errors.append("client %d: %s: %s" % (i, type(e).__name__, e))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    ensure(not any(t.is_alive() for t in threads), "some clients still running after 120s")
    ensure(not errors, "%d of %d clients failed; first: %s" % (len(errors), n, errors[:3]))
    ensure(env.alive(), "tokend alive after %d clients" % n)
    c = Conn(env.sock)
    p = ok_reply(c.call("io.tokend.ListTokens", {}))
    held = {e["interface"]: e["token"] for e in p["entries"] if e["origin"] == "interface"}
    for i in range(n):
        name = "cv%d" % i if i < 10 else "conc%03d" % i
        if i % 2 == 0 or i < 10:
            ensure(held.get(name) == "::c:%x" % (i + 1), "%s held as %r" % (name, held.get(name)))
        else:
            ensure(name not in held, "%s deleted but still held" % name)
    for i in range(10):
        wait_for("kernel holds cv%d's token" % i,
                 lambda: env.kernel_token("cv%d" % i) == "::c:%x" % (i + 1))
    c.close()
    print("# %d concurrent clients took %.1fs" % (n, time.monotonic() - t0))


def t_kernel_matches(env):
    ensure(env.alive(), "tokend alive")

    def consistent():
        c = Conn(env.sock)
        p = ok_reply(c.call("io.tokend.ListTokens", {}))
        c.close()
        held = {e["interface"]: e for e in p["entries"]}
        bad = []
        for dev in env.links():
            k = env.kernel_token(dev)
            e = held.get(dev)
            if dev == "lo":
                continue
            if e is None:
                if k != "::":
                    bad.append("%s: kernel %s, tokend holds nothing" % (dev, k))
            else:
                if e["state"] != "applied" or k != e["token"]:
                    bad.append("%s: kernel %s, tokend %s (%s)" % (dev, k, e["token"], e["state"]))
                if e["kernel_token"] != k:
                    bad.append("%s: kernel %s, kernel_token says %s" % (dev, k, e["kernel_token"]))
        for name, e in held.items():
            if name not in env.links() and e["state"] != "absent":
                bad.append("%s: no such interface but state %s" % (name, e["state"]))
        return bad

    last = []
    end = time.monotonic() + 5
    while time.monotonic() < end:
        last = consistent()
        if not last:
            return
        time.sleep(0.1)
    raise Fail("ip token differs from what tokend holds: %s" % "; ".join(last[:5]))


def t_busy(env, size):
    # reply-backlog-mib = 1: clients that read nothing hold one reply each
    # in tokend (what the socket buffer does not take); once those reach
    # 1 MiB together, a further call (a change too) is refused with
    # io.tokend.Busy before anything is done. When they go, calls are
    # answered again. The replies are large (4,000 config entries) so that
    # most of each stays in tokend.
    ensure(size > 500000, "ListTokens reply is %d bytes, expected a big one" % size)
    stuck = []
    before = calls_logged(env, "io.tokend.ListTokens")
    try:
        for i in range((4 * MIB) // size + 2):
            c = Conn(env.sock, timeout=10)
            c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.send_raw(Conn.encode("io.tokend.ListTokens", {}) * 20)
            stuck.append(c)
        time.sleep(0.5)
        print("# %d readers that read nothing; tokend took %d of their %d calls"
              % (len(stuck), calls_logged(env, "io.tokend.ListTokens") - before, 20 * len(stuck)))
        c = Conn(env.sock)
        err_reply(c.call("io.tokend.SetToken", {"interface": "busy0", "token": "::b"}),
                  "io.tokend.Busy", "SetToken while replies pile up", limit=MIB)
        c.close()
    finally:
        for c in stuck:
            c.close()
    time.sleep(0.3)
    c = Conn(env.sock)
    p = ok_reply(c.call("io.tokend.ListTokens", {}), "ListTokens after the readers went")
    ensure(not [e for e in p["entries"] if e["interface"] == "busy0"],
           "the SetToken refused with Busy was done anyway")
    ok_reply(c.call("io.tokend.SetToken", {"interface": "busy0", "token": "::b"}),
             "SetToken after the readers went")
    ok_reply(c.call("io.tokend.DeleteToken", {"interface": "busy0"}), "DeleteToken busy0")
    c.close()
    with open(env.logpath, "rb") as f:
        ensure(b"answered io.tokend.Busy" in f.read(), "no warning about Busy in the log")


def t_max_clients(env):
    conns = []
    try:
        for i in range(50):
            c = Conn(env.sock)
            ensure("pid" in ok_reply(c.call("io.tokend.GetStatus", {}), "client %d" % (i + 1)),
                   "client %d served" % (i + 1))
            conns.append(c)
        extra = Conn(env.sock)
        try:
            r = extra.recv(5)
        except ProtocolError as e:
            raise Fail("51st connection: %s" % e)
        err_reply(r, "io.tokend.TooManyClients", "51st connection", limit=50)
        ensure(extra.closed_within(3), "51st connection not closed after TooManyClients")
        extra.close()
        # The 51st that sends a call first also gets the error.
        extra = Conn(env.sock)
        try:
            extra.send("io.tokend.GetStatus", {})
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            r = extra.recv(5)
        except ProtocolError as e:
            raise Fail("51st connection sending a call: %s" % e)
        err_reply(r, "io.tokend.TooManyClients", "51st connection sending a call", limit=50)
        extra.close()
        for i, c in enumerate(conns):
            ensure("pid" in ok_reply(c.call("io.tokend.GetStatus", {}), "held client %d" % i),
                   "held client %d still served" % i)
        conns.pop().close()
        time.sleep(0.2)

        def slot_free():
            c = Conn(env.sock)
            r = c.call("io.tokend.GetStatus", {})
            if "error" in r:
                c.close()
                return False
            conns.append(c)
            return True
        wait_for("a freed slot is usable", slot_free, 3)
    finally:
        for c in conns:
            c.close()


# --- main ---------------------------------------------------------------------

def main():
    if os.geteuid() != 0:
        print("SKIP: test_protocol needs root for network namespaces", file=sys.stderr)
        return 77
    for b in (TOKEND,):
        if not os.access(b, os.X_OK):
            print("cannot run %s" % b, file=sys.stderr)
            return 1
    env = Env()
    atexit.register(env.cleanup)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *a: sys.exit(130))
    tr = Runner(env)
    try:
        env.setup()
        env.write_conf()
        env.start()
    except Exception as e:
        print("FAIL - setup: %s" % e)
        env.failed = True
        print("0 passed, 1 failed")
        return 1

    w = Conn(env.sock)  # the second client, open through all the bad input
    tr.run("GetInfo", t_get_info, env)
    tr.run("GetInterfaceDescription", t_get_interface_description, env)
    tr.run("ListTokens/SetToken/DeleteToken/FlushTokens/ResumeToken/GetStatus round trip",
           t_round_trip, env)
    tr.run("pipelined calls answered in order", t_pipelined, env)
    tr.run("oneway calls: no reply, but effect", t_oneway, env)
    tr.run("more: accepted, one reply", t_more, env)
    tr.run("malformed JSON: InvalidMessage, closed", t_bad_json, env, w)
    tr.run("JSON array: InvalidMessage, closed", t_bad_array, env, w)
    tr.run("missing method: InvalidMessage, closed", t_bad_missing_method, env, w)
    tr.run("method not a string: InvalidMessage, closed", t_bad_method_type, env, w)
    tr.run("parameters not an object: typed error", t_bad_parameters_type, env, w)
    tr.run("unknown method: MethodNotFound", t_unknown_method, env, w)
    tr.run("unknown interface: InterfaceNotFound", t_unknown_interface, env, w)
    tr.run("unknown or missing parameter: InvalidParameter", t_unknown_parameter, env, w)
    tr.run("wrong parameter type: InvalidParameter", t_wrong_type, env, w)
    tr.run("invalid token: InvalidToken, kernel unchanged", t_invalid_token, env, w)
    tr.run("invalid interface name: InvalidInterface", t_invalid_interface, env, w)
    tr.run("unterminated message over 1 MiB: InvalidMessage, closed", t_over_1mib, env, w)
    tr.run("terminated message over 1 MiB: InvalidMessage, closed", t_over_1mib_terminated, env, w)
    tr.run("junk of valid size up to 1 MiB: InvalidMessage, no hang", t_1mib_junk, env, w)
    tr.run("valid call of exactly 1 MiB answered", t_1mib_valid, env, w)
    tr.run("stalled half message: disconnected after client-timeout, others served",
           t_stall, env, w)
    tr.run("trickling client disconnected after client-timeout", t_trickle, env, w)
    tr.run("idle connection kept past client-timeout", t_idle_kept, env, w)
    size = 0
    try:
        size = ghosts_add(env)
    except Exception as e:
        print("# adding %d absent entries failed: %s" % (N_GHOSTS, e))
    tr.run("clients vanishing mid-reply do not hurt tokend", t_vanish, env, w, size)
    tr.run("client not reading its replies: one call at a time, cut off after client-timeout",
           t_unread_replies, env, w, max(size, 1))
    tr.run("slow but steady reader of pipelined calls gets every reply in order",
           t_slow_reader_served, env, w, max(size, 1))
    tr.run("oneway call behind partly sent replies does not disturb them",
           t_oneway_after_backlog, env, w, max(size, 1))
    try:
        ghosts_flush(env)
    except Exception as e:
        print("# flushing the absent entries failed: %s" % e)
    try:
        witness_ok(w)
        tr.run("second client served throughout", lambda: None)
    except Exception as e:
        tr.run("second client served throughout", lambda: (_ for _ in ()).throw(Fail(str(e))))
    w.close()
    tr.run("300 concurrent clients answered correctly", t_concurrent, env)
    tr.run("ip token matches what tokend holds", t_kernel_matches, env)

    # max-clients needs a restart with another config.
    restarted = False
    try:
        env.stop()
        env.write_conf(max_clients=50)
        env.start()
        restarted = True
    except Exception as e:
        tr.run("restart with max-clients = 50", lambda: (_ for _ in ()).throw(Fail(str(e))))
    if restarted:
        tr.run("max-clients = 50: the 51st gets TooManyClients", t_max_clients, env)
        tr.run("after everything: tokend alive, ip token matches", t_kernel_matches, env)

    # reply-backlog-mib too: another restart (client-timeout long enough
    # that the stuck readers stay while the test looks).
    restarted = False
    try:
        env.stop()
        env.write_conf(reply_backlog_mib=1, client_timeout="30s", absent_tokens=4000)
        env.start()
        c = Conn(env.sock, timeout=30)
        size = len(json.dumps(ok_reply(c.call("io.tokend.ListTokens", {}), "ListTokens")))
        c.close()
        restarted = True
    except Exception as e:
        tr.run("restart with reply-backlog-mib = 1", lambda: (_ for _ in ()).throw(Fail(str(e))))
    if restarted:
        tr.run("reply-backlog-mib = 1: past it, calls get Busy and nothing is done", t_busy, env,
               size)
        tr.run("after Busy: tokend alive, ip token matches", t_kernel_matches, env)

    print("%d passed, %d failed" % (tr.passed, tr.failed))
    return 0 if tr.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
