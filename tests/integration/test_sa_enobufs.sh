#!/bin/bash
# Case S3 on the host kernel (policies install here; SAs need UML): while
# tokend is paused, its policies are flushed and thousands of foreign
# policies come and go, overrunning its XFRM monitor socket. tokend keeps
# the socket, re-reads everything and puts its policies back; the foreign
# ones are untouched.
. "$(dirname "$0")/lib.sh"

tk_veth va vb
ip -n "$TK_NS" addr add 192.0.2.1/24 dev va
(umask 077; head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$TK_TMP/web.key")
tk_conf <<EOF
[tokend]
log-level = debug
# Small enough that the flood below overruns it.
netlink-buffer = 262144
[sa web]
number = 7
local = 192.0.2.1
remote = 192.0.2.2
secret = $TK_TMP/web.key
EOF
tk_start || exit 1
mine() { ip -n "$TK_NS" xfrm policy | grep -c "reqid $((0x746b0000 + 7))"; }
tk_eventually 5 "tokend's two policies are installed" bash -c "[ \$(ip -n '$TK_NS' xfrm policy | grep -c 'dir \(in\|out\)') -eq 2 ]"

# Pause tokend, then flood: add and delete thousands of foreign policies.
kill -STOP "$TK_PID"
ip -n "$TK_NS" xfrm policy flush
python3 - "$TK_TMP/batch" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(15000):
        f.write(f"xfrm policy add src 10.{i // 250}.{i % 250}.0/24 dst 198.51.100.0/24 dir out "
                f"priority 500 tmpl src 192.0.2.1 dst 198.51.100.1 proto esp reqid 42 mode tunnel\n")
    for i in range(12000):
        f.write(f"xfrm policy delete src 10.{i // 250}.{i % 250}.0/24 dst 198.51.100.0/24 dir out\n")
PY
ip -n "$TK_NS" -batch "$TK_TMP/batch"
foreign_before=$(ip -n "$TK_NS" xfrm policy | grep -c "reqid 42")
kill -CONT "$TK_PID"

tk_eventually 10 "tokend's policies are back after the flood" bash -c "[ \$(ip -n '$TK_NS' xfrm policy | grep -c 'reqid $((0x746b0000 + 7))') -eq 2 ]"
tk_check "the overrun was seen and handled by a re-read" grep -q "XFRM monitor overrun (ENOBUFS)" "$TK_LOG"
tk_check "foreign policies untouched (3000 left)" [ "$(ip -n "$TK_NS" xfrm policy | grep -c 'reqid 42')" -eq "$foreign_before" ]
tk_check "tokend still serves" tk_ctl_quiet status
tk_done
