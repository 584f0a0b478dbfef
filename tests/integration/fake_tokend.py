#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A stand-in for tokend's Varlink socket, for testing clients (tokenctl).

It speaks the framing of docs/protocol.md and keeps tokens in memory; it
touches no network interface. Standard library only.

    fake_tokend.py --socket /tmp/x/tokend.sock [--scenario FILE] [--record FILE]

The socket appears atomically (bound under a temporary name, then renamed),
so a client may connect as soon as the path exists. SIGTERM/SIGINT stop it.

The scenario file (JSON) may hold:
  "global":  the global token object of ListTokens, or null
  "entries": the entry objects of ListTokens
  "admin":   false to answer changes with io.tokend.PermissionDenied
  "status":  fields merged into the GetStatus reply
  "replies": {"io.tokend.Method": ACTION} to override a method, ACTION being
             {"reply": {...}}                    send these parameters
             {"error": "name", "parameters": {}} send this error
             {"raw": "text"}                     send text plus a NUL as it is
             {"raw_hex": "7b00"}                 send these bytes as they are
             {"close": true}                     close without replying
             {"silent": true}                    never reply
             {"trickle": {...}, "pieces": N, "every": S, "stop_after": K}
                 send these parameters in N pieces, S seconds apart;
                 with stop_after, only the first K pieces, then nothing
--record appends every call received, one JSON object per line.
"""

import argparse
import ipaddress
import json
import os
import signal
import socket
import sys
import threading
import time

MAX_MESSAGE = 1024 * 1024

CHANGES = {
    "io.tokend.SetToken",
    "io.tokend.DeleteToken",
    "io.tokend.FlushTokens",
    "io.tokend.ResumeToken",
}


class Error(Exception):
    def __init__(self, name, message, **params):
        super().__init__(message)
        self.name = name
        self.params = dict(params, message=message)


def canonical_token(text):
    """The token in canonical form, or Error(InvalidToken)."""
    spelled = text[:-3] if text.endswith("/64") else text
    try:
        addr = ipaddress.IPv6Address(spelled)
    except ValueError:
        raise Error("io.tokend.InvalidToken", f"{text!r} is not an IPv6 address",
                    token=text, reason="not an IPv6 address")
    if int(addr) >> 64:
        raise Error("io.tokend.InvalidToken", f"{text!r}: the upper 64 bits must be zero",
                    token=text, reason="the upper 64 bits must be zero")
    groups = [(int(addr) >> (16 * (7 - i))) & 0xFFFF for i in range(8)]
    return format_groups(groups)


def format_groups(groups):
    """RFC 5952 text, never dotted-quad (Python prints ::ffff:a.b.c.d)."""
    best, best_len, i = -1, 0, 0
    while i < 8:
        j = i
        while j < 8 and groups[j] == 0:
            j += 1
        if j - i > best_len and j - i >= 2:
            best, best_len = i, j - i
        i = max(j, i + 1)
    if best < 0:
        return ":".join(f"{g:x}" for g in groups)
    head = ":".join(f"{g:x}" for g in groups[:best])
    tail = ":".join(f"{g:x}" for g in groups[best + best_len:])
    return f"{head}::{tail}"


class State:
    def __init__(self, scenario):
        self.lock = threading.Lock()
        self.glob = scenario.get("global")
        self.entries = {e["interface"]: e for e in scenario.get("entries", [])}
        self.admin = scenario.get("admin", True)
        self.status = scenario.get("status", {})
        self.replies = scenario.get("replies", {})

    def entry(self, name, token):
        return {"interface": name, "ifindex": None, "token": token, "origin": "interface",
                "source": "runtime", "file": None, "state": "absent", "reason": None,
                "kernel_token": None, "addresses": []}

    def list_tokens(self, p):
        name = p.get("interface")
        if name is None:
            entries = [self.entries[k] for k in sorted(self.entries)]
        elif name in self.entries:
            entries = [self.entries[name]]
        else:
            raise Error("io.tokend.NoSuchEntry", f"no token is held for {name}", interface=name)
        return {"global": self.glob, "entries": entries}

    def check_config(self, name, item):
        if item and item.get("source") == "config":
            raise Error("io.tokend.ConfigEntry",
                        f"{name or 'the global token'} is declared in {item.get('file')}",
                        interface=name, file=item.get("file"))

    def set_token(self, p):
        token = canonical_token(p["token"])
        name = p.get("interface")
        if name is None:
            self.check_config(None, self.glob)
            changed = not self.glob or self.glob["token"] != token
            self.glob = {"token": token, "source": "runtime", "file": None, "match": ["*"]}
            return {"changed": changed, "entry": None}
        old = self.entries.get(name)
        if old and old.get("origin") != "global":
            self.check_config(name, old)
        changed = not old or old.get("origin") == "global" or old["token"] != token
        if changed:
            self.entries[name] = self.entry(name, token)
        elif old.get("state") == "contested":
            old["state"], old["reason"] = "applied", None
        return {"changed": changed, "entry": self.entries[name]}

    def delete_token(self, p):
        name = p.get("interface")
        if name is None:
            if not self.glob:
                raise Error("io.tokend.NoSuchEntry", "no global token is held", interface=None)
            self.check_config(None, self.glob)
            self.glob = None
            return {}
        old = self.entries.get(name)
        if not old or old.get("origin") == "global":
            raise Error("io.tokend.NoSuchEntry", f"no token is held for {name}", interface=name)
        self.check_config(name, old)
        del self.entries[name]
        return {}

    def flush_tokens(self, p):
        only = p.get("interface")
        removed, kept = [], []
        if only is None and self.glob:
            if self.glob.get("source") == "config":
                kept.append({"interface": None, "file": self.glob.get("file")})
            else:
                removed.append(None)
                self.glob = None
        for name in sorted(self.entries):
            e = self.entries[name]
            if (only is not None and name != only) or e.get("origin") == "global":
                continue
            if e.get("source") == "config":
                kept.append({"interface": name, "file": e.get("file")})
            else:
                removed.append(name)
                del self.entries[name]
        return {"removed": removed, "kept": kept}

    def resume_token(self, p):
        only = p.get("interface")
        resumed = []
        for name in sorted(self.entries):
            e = self.entries[name]
            if e.get("state") == "contested" and only in (None, name):
                e["state"], e["reason"] = "applied", None
                resumed.append(name)
        return {"resumed": resumed}

    def get_status(self, p):
        counts = {s: 0 for s in ("applied", "pending", "absent", "blocked", "unsupported",
                                 "contested", "removing")}
        for e in self.entries.values():
            counts[e.get("state", "applied")] = counts.get(e.get("state", "applied"), 0) + 1
        counts["held"] = len(self.entries)
        status = {"version": "0.1.0", "pid": os.getpid(), "uptime_usec": 5000000,
                  "config_files": ["/etc/tokend/tokend.conf"],
                  "state_file": "/var/lib/tokend/state.json", "degraded": False,
                  "degraded_reason": None, "counts": counts, "repairs": 0, "resyncs": 0,
                  "reconciles": 0}
        status.update(self.status)
        return status

    PARAMS = {
        "io.tokend.ListTokens": ({"interface"}, set(), list_tokens),
        "io.tokend.SetToken": ({"interface", "token"}, {"token"}, set_token),
        "io.tokend.DeleteToken": ({"interface"}, set(), delete_token),
        "io.tokend.FlushTokens": ({"interface"}, set(), flush_tokens),
        "io.tokend.ResumeToken": ({"interface"}, set(), resume_token),
        "io.tokend.GetStatus": (set(), set(), get_status),
    }

    def call(self, method, params):
        if method not in self.PARAMS:
            iface = method.rpartition(".")[0]
            if iface != "io.tokend":
                raise Error("org.varlink.service.InterfaceNotFound",
                            f"unknown interface {iface}", interface=iface)
            raise Error("org.varlink.service.MethodNotFound", f"unknown method {method}",
                        method=method)
        allowed, required, fn = self.PARAMS[method]
        for k in set(params) - allowed | {r for r in required if r not in params}:
            raise Error("org.varlink.service.InvalidParameter", f"bad parameter {k}",
                        parameter=k)
        for k in ("interface", "token"):
            if params.get(k) is not None and not isinstance(params[k], str):
                raise Error("org.varlink.service.InvalidParameter", f"bad parameter {k}",
                            parameter=k)
        if method in CHANGES and not self.admin:
            raise Error("io.tokend.PermissionDenied",
                        "changing tokens needs membership of group tokend-admin",
                        uid=os.getuid(), required="tokend-admin")
        with self.lock:
            return fn(self, params)


def send_message(conn, obj):
    conn.sendall(json.dumps(obj).encode() + b"\0")


def override(conn, action):
    """Carry out a scenario override; False when the connection must end."""
    if "reply" in action:
        send_message(conn, {"parameters": action["reply"]})
    elif "error" in action:
        send_message(conn, {"error": action["error"], "parameters": action.get("parameters", {})})
    elif "raw" in action:
        conn.sendall(action["raw"].encode() + b"\0")
    elif "raw_hex" in action:
        conn.sendall(bytes.fromhex(action["raw_hex"]))
    elif "trickle" in action:
        data = json.dumps({"parameters": action["trickle"]}).encode() + b"\0"
        n = max(1, int(action.get("pieces", 10)))
        step = (len(data) + n - 1) // n
        for i in range(n):
            if "stop_after" in action and i >= action["stop_after"]:
                threading.Event().wait()
            conn.sendall(data[i * step:(i + 1) * step])
            time.sleep(float(action.get("every", 0.1)))
    elif action.get("silent"):
        threading.Event().wait()
    return not action.get("close")


def handle_message(conn, state, record, text):
    try:
        msg = json.loads(text)
        method = msg["method"]
        if not isinstance(msg, dict) or not isinstance(method, str):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        send_message(conn, {"error": "io.tokend.InvalidMessage",
                            "parameters": {"reason": "malformed", "message": "malformed"}})
        return False
    params = msg.get("parameters") or {}
    if record:
        with open(record, "a") as f:
            f.write(json.dumps(msg) + "\n")
    if method in state.replies:
        return override(conn, state.replies[method])
    try:
        reply = {"parameters": state.call(method, params)}
    except Error as e:
        reply = {"error": e.name, "parameters": e.params}
    if not msg.get("oneway"):
        send_message(conn, reply)
    return True


def serve(conn, state, record):
    buf = b""
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            while b"\0" in buf:
                text, buf = buf.split(b"\0", 1)
                if not handle_message(conn, state, record, text.decode("utf-8", "replace")):
                    return
            if len(buf) > MAX_MESSAGE:
                send_message(conn, {"error": "io.tokend.InvalidMessage",
                                    "parameters": {"reason": "too long", "message": "too long"}})
                return


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--scenario")
    ap.add_argument("--record")
    ap.add_argument("--mode", default="0660", help="socket file mode (octal)")
    args = ap.parse_args()
    scenario = {}
    if args.scenario:
        with open(args.scenario) as f:
            scenario = json.load(f)
    state = State(scenario)
    tmp = args.socket + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(tmp)
    os.chmod(tmp, int(args.mode, 8))
    srv.listen(64)
    os.rename(tmp, args.socket)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn, state, args.record), daemon=True).start()
    except KeyboardInterrupt:
        pass
    finally:
        if os.path.exists(args.socket):
            os.unlink(args.socket)



# --- IPsec associations (docs/protocol.md, "Associations") -----------------
#
# More scenario keys:
#   "associations":    association objects as ListAssociations returns them
#                      (those with "source": "config" cannot be deleted,
#                      flushed or replaced)
#   "refuse_rotation": {"NAME": "reason"} answers RotateAssociation for NAME
#                      with io.tokend.RotationRefused
#   "legacy":          true to act as a tokend from before associations: their
#                      methods are answered with MethodNotFound
# Keys are never part of these objects: tokend never sends any.

ASSOC_CHANGES = {
    "io.tokend.AddAssociation",
    "io.tokend.DeleteAssociation",
    "io.tokend.FlushAssociations",
    "io.tokend.RotateAssociation",
    "io.tokend.ReleaseAssociation",
}
CHANGES |= ASSOC_CHANGES

ASSOC_INTS = {"number", "local_port", "remote_port", "replay_window", "lookahead",
              "lifetime_bytes", "lifetime_packets", "lifetime", "epoch", "overlap_ms"}
ASSOC_STRINGS = {"name", "local", "remote", "secret_file", "mode", "algorithm",
                 "local_selector", "remote_selector", "protocol", "dev"}
ASSOC_REQUIRED = {"name", "number", "local", "remote", "secret_file"}


def assoc_spi(number, gen, outbound=True):
    """0x01000000 | number << 8 | direction << 7 | generation mod 128."""
    return 0x01000000 | number << 8 | (0 if outbound else 1) << 7 | gen % 128


def assoc_sa(number, gen, outbound=True):
    return {"generation": gen, "spi": assoc_spi(number, gen, outbound), "installed": False,
            "bytes": 0, "packets": 0}


def assoc_error(error, message, **params):
    """Error() with a "name" parameter (Error's own first argument is called name)."""
    e = Error(error, message)
    e.params.update(params)
    return e


def no_such_assoc(name):
    return assoc_error("io.tokend.NoSuchAssociation", f"no association named {name}", name=name)


def check_assoc_types(params):
    for k, v in params.items():
        ok = (isinstance(v, int) and not isinstance(v, bool) if k in ASSOC_INTS
              else isinstance(v, str) if k in ASSOC_STRINGS else False)
        if not ok:
            raise Error("org.varlink.service.InvalidParameter",
                        f"{'unknown' if k not in ASSOC_INTS | ASSOC_STRINGS else 'mistyped'} "
                        f"parameter {k}", parameter=k)


def new_assoc(p):
    """The association object AddAssociation makes from its parameters."""
    host = 128 if ":" in p["local"] else 32
    lookahead = p.get("lookahead", 2)
    return {"name": p["name"], "number": p["number"], "local": p["local"],
            "remote": p["remote"], "mode": p.get("mode", "transport"),
            "algorithm": p.get("algorithm", "aes-gcm-128"),
            "local_selector": p.get("local_selector", f"{p['local']}/{host}"),
            "remote_selector": p.get("remote_selector", f"{p['remote']}/{host}"),
            "protocol": p.get("protocol"), "local_port": p.get("local_port"),
            "remote_port": p.get("remote_port"), "dev": p.get("dev"), "source": "runtime",
            "file": None, "secret_file": p["secret_file"], "state": "pending",
            "reason": None, "lookahead": lookahead, "reqid": 0x746b0000 + p["number"],
            "moves": 0, "outbound": assoc_sa(p["number"], 1),
            "inbound": [assoc_sa(p["number"], g, False) for g in range(1, lookahead + 2)],
            "policies": {"out": False, "in": False}}


def _assoc_init(self, scenario):
    _token_init(self, scenario)
    self.assocs = {a["name"]: a for a in scenario.get("associations", [])}
    self.refuse_rotation = scenario.get("refuse_rotation", {})
    self.legacy = scenario.get("legacy", False)


def _assoc_call(self, method, params):
    if self.legacy and method.startswith("io.tokend.") and method.endswith(
            ("Association", "Associations")):
        raise Error("org.varlink.service.MethodNotFound", f"unknown method {method}",
                    method=method)
    return _token_call(self, method, params)


def _find_assoc(self, name):
    if name not in self.assocs:
        raise no_such_assoc(name)
    return self.assocs[name]


def _not_config(a, verb):
    if a.get("source") == "config":
        raise assoc_error("io.tokend.ConfigEntry",
                          f"association {a['name']} is declared in {a.get('file')}; {verb} it there",
                          name=a["name"], file=a.get("file"))


def invalid_assoc(name, field, why):
    return assoc_error("io.tokend.InvalidAssociation",
                       f"invalid association {name}: {field + ': ' if field else ''}{why}",
                       name=name, reason=why)


def list_assocs(self, p):
    name = p.get("name")
    if name is None:
        return {"associations": list(self.assocs.values())}
    return {"associations": [_find_assoc(self, name)]}


def add_assoc(self, p):
    """Checked in tokend's order: the definition, then the name, then the number."""
    check_assoc_types(p)
    name = p["name"]
    if not p["secret_file"].startswith("/"):
        raise invalid_assoc(name, "secret_file", "the absolute path of a secret file is required")
    if p["local"] == p["remote"]:
        raise invalid_assoc(name, None, "local and remote are the same address")
    if name in self.assocs:
        _not_config(self.assocs[name], "change")
        raise assoc_error("io.tokend.AssociationExists", f"association {name} already exists",
                          name=name)
    for a in self.assocs.values():
        if a["number"] == p["number"]:
            raise invalid_assoc(name, "number", f"number {p['number']} is already used by "
                                f"association {a['name']}")
    self.assocs[name] = new_assoc(p)
    return {"associations": [self.assocs[name]]}


def delete_assoc(self, p):
    a = _find_assoc(self, p["name"])
    _not_config(a, "remove")
    del self.assocs[p["name"]]
    return {}


def flush_assocs(self, p):
    removed, kept = [], []
    for name, a in list(self.assocs.items()):
        if a.get("source") == "config":
            kept.append({"name": name, "file": a.get("file")})
        else:
            removed.append(name)
            del self.assocs[name]
    return {"removed": removed, "kept": kept}


def rotate_assoc(self, p):
    a = _find_assoc(self, p["name"])
    if p["name"] in self.refuse_rotation:
        why = self.refuse_rotation[p["name"]]
        raise assoc_error("io.tokend.RotationRefused",
                    f"{p['name']} cannot move to its next generation now: {why}",
                    name=p["name"], reason=why)
    a["outbound"] = assoc_sa(a["number"], a["outbound"]["generation"] + 1)
    a["moves"] = a.get("moves", 0) + 1
    return {"associations": [a]}


def release_assoc(self, p):
    a = _find_assoc(self, p["name"])
    if a.get("state") == "released":
        return {"released": None}
    a["state"] = "released"
    a["reason"] = "handed over to another tool: tokend leaves its SAs and policies alone"
    spis = [a["outbound"]["spi"]] + [s["spi"] for s in a.get("inbound", [])]
    return {"released": {"name": a["name"], "number": a["number"], "spis": spis}}


def _name_string(fn):
    def checked(self, p):
        if p.get("name") is not None and not isinstance(p["name"], str):
            raise Error("org.varlink.service.InvalidParameter", "bad parameter name",
                        parameter="name")
        return fn(self, p)
    return checked


_token_init = State.__init__
_token_call = State.call
State.__init__ = _assoc_init
State.call = _assoc_call
State.PARAMS.update({
    "io.tokend.ListAssociations": ({"name"}, set(), _name_string(list_assocs)),
    "io.tokend.AddAssociation": (ASSOC_INTS | ASSOC_STRINGS, ASSOC_REQUIRED, add_assoc),
    "io.tokend.DeleteAssociation": ({"name"}, {"name"}, _name_string(delete_assoc)),
    "io.tokend.FlushAssociations": (set(), set(), flush_assocs),
    "io.tokend.RotateAssociation": ({"name"}, {"name"}, _name_string(rotate_assoc)),
    "io.tokend.ReleaseAssociation": ({"name"}, {"name"}, _name_string(release_assoc)),
})


if __name__ == "__main__":
    main()
