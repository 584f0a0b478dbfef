#!/bin/bash
# The unit's sandbox without systemd as PID 1 (this machine has none): the
# system-call filter of systemd/tokend.service.in (@system-service minus
# @privileged and @resources, and @clock from ProtectClock=, refused calls
# failing with EPERM) is emulated by strace's fault injection: every call
# outside that set fails with EPERM, as seccomp would make it. tokend must
# start, set and repair tokens, take changes and a monitor over the socket,
# reload, hold an association (host XFRM) and stop cleanly under it; the only
# calls refused are the ones it is known to make and handle (setrlimit of
# RLIMIT_CORE, where LimitCORE= does the job, and adjtimex, which makes the
# clock's state "unknown"). The other unit restrictions are checked on the
# trace: sockets only AF_UNIX and AF_NETLINK, no writable+executable memory.
. "$(dirname "$0")/lib.sh"

command -v strace >/dev/null || { echo "SKIP: needs strace" >&2; exit 77; }
command -v systemd-analyze >/dev/null || { echo "SKIP: needs systemd-analyze" >&2; exit 77; }
UNIT=$TK_SRC/systemd/tokend.service.in

# The allowed set, from the unit's own lines and systemd's groups.
ALLOWED=$(python3 - "$UNIT" <<'PY'
import re, subprocess, sys
unit = open(sys.argv[1]).read()
def expand(name, seen=None):
    seen = seen if seen is not None else set()
    if not name.startswith("@"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    out = subprocess.run(["systemd-analyze", "syscall-filter", name],
                         capture_output=True, text=True, check=True).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        w = line.strip()
        if not w or w.startswith("#"):
            continue
        calls |= expand(w, seen)
    return calls
allowed = None
for line in unit.splitlines():
    m = re.match(r"SystemCallFilter=(~?)(.*)$", line)
    if not m:
        continue
    names = set()
    for w in m.group(2).split():
        names |= expand(w)
    if m.group(1):
        allowed -= names
    elif allowed is None:
        allowed = names
    else:
        allowed |= names
assert allowed, "no SystemCallFilter= in the unit"
if re.search(r"^ProtectClock=yes", unit, re.M):
    allowed -= expand("@clock")
# "?": a name this architecture lacks is no error for strace.
print(",".join("?" + c for c in sorted(allowed)))
PY
)
tk_check "the unit's filter expands to a set of calls" [ -n "$ALLOWED" ]

tk_veth sx sy
ip -n "$TK_NS" addr add 192.0.2.1/24 dev sx
(umask 077; head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$TK_TMP/web.key")
tk_conf <<CONF
[tokend]
log-level = debug
[tokens]
sx = ::5
[sa web]
number = 7
local = 192.0.2.1
remote = 192.0.2.9
secret = $TK_TMP/web.key
lifetime = 3600
CONF

TRACE=$TK_TMP/trace
ip netns exec "$TK_NS" strace -f -qq -o "$TRACE" -e trace=all \
    -e "inject=!$ALLOWED:error=EPERM" \
    "$TOKEND" --config "$TK_CONF" --socket "$TK_SOCK" --state-dir "$TK_STATE" >> "$TK_LOG" 2>&1 &
TK_PID=$!
tk_wait 20 tk_ctl_quiet status
tk_eventually 10 "token applied under the filter" tk_token_is sx ::5
"$TOKENCTL" --socket "$TK_SOCK" --json monitor > "$TK_TMP/mon.json" 2>/dev/null &
MON=$!
tk_wait 10 grep -q "monitors events" "$TK_LOG"
ip -n "$TK_NS" token set ::bad dev sx
tk_eventually 10 "drift repaired under the filter" tk_token_is sx ::5
tk_ctl add ::6 dev sy >/dev/null
tk_eventually 10 "runtime token under the filter" tk_token_is sy ::6
tk_eventually 10 "the monitor saw the repair" grep -q '"event":"repairing"' "$TK_TMP/mon.json"
tk_eventually 10 "association policies installed under the filter" \
    bash -c "ip -n '$TK_NS' xfrm policy | grep -q 'dir out'"
status=$(tk_ctl --json status)
tk_check "clock state unknown (adjtimex refused), not a failure" \
    python3 -c 'import json,sys; s=json.loads(sys.argv[1]); assert s["clock_synchronized"] is None, s' "$status"
mark=$(tk_log_lines)
kill -HUP "$(pgrep -f -- "--state-dir $TK_STATE" | grep -v "^$TK_PID$" | head -n1)"
tk_eventually 10 "reload under the filter" tk_log_has "config reloaded" "$mark"
kill "$MON" 2>/dev/null; wait "$MON" 2>/dev/null
DPID=$(pgrep -f -- "--state-dir $TK_STATE" | grep -v "^$TK_PID$" | head -n1)
kill -TERM "$DPID"
wait "$TK_PID"
rc=$?
TK_PID=
tk_check "clean exit under the filter (status $rc)" [ "$rc" -eq 0 ]

refused=$(grep -o '^[0-9]* [a-z_0-9]*(.*(INJECTED)' "$TRACE" | awk '{print $2}' | cut -d'(' -f1 | sort -u | tr '\n' ' ')
echo "# refused by the filter: ${refused:-none}"
unexpected=$(tr ' ' '\n' <<<"$refused" | grep -vxE 'prlimit64|setrlimit|adjtimex|clock_adjtime|' || true)
tk_check "only the known, handled calls are refused (unexpected: ${unexpected:-none})" [ -z "$unexpected" ]
tk_check "no crash or abort in the trace" bash -c "! grep -qE 'killed by SIG|SIGSEGV|SIGABRT' '$TRACE'"
fams=$(grep -oE 'socket\((AF_[A-Z0-9]+)' "$TRACE" | sort -u | sed 's/socket(//' | tr '\n' ' ')
echo "# socket families: $fams"
tk_check "sockets only AF_UNIX and AF_NETLINK (RestrictAddressFamilies=)" \
    bash -c "[ -z \"\$(tr ' ' '\n' <<<'$fams' | grep -vxE 'AF_UNIX|AF_NETLINK|')\" ]"
tk_check "no memory both writable and executable (MemoryDenyWriteExecute=)" \
    bash -c "! grep -E '(mmap|mprotect)\(.*PROT_WRITE\|PROT_EXEC|PROT_EXEC\|PROT_WRITE' '$TRACE' | grep -q ."

tk_done
