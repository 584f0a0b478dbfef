#!/bin/bash
# Interfaces that come and go (T5): a managed name that does not exist is
# `absent`; an interface created, deleted and re-created under that name (a
# new ifindex each time) gets its token; a fast down/up flap ends with the
# token right; an interface renamed onto a managed name gets the managed
# token; a new interface gets the global token when the match allows it, and
# not otherwise. The kernel (ip token) decides every check.
. "$(dirname "$0")/lib.sh"

tk_conf <<EOF
[tokend]
log-level = debug
retry-min = 500ms
retry-max = 2s
[global]
token = ::42
match = vx*
[tokens]
managed = ::1:2
EOF
tk_start || exit 1

# --- absent while the interface does not exist ------------------------------
tk_eventually 3 "managed is absent" tk_state_is managed absent
tk_check "absent entry has ifindex null" [ "$(tk_entry_field managed ifindex)" = null ]
tk_check "absent entry has kernel_token null" [ "$(tk_entry_field managed kernel_token)" = null ]
tk_check "absent entry keeps its token" [ "$(tk_entry_field managed token)" = ::1:2 ]

# --- created after start ------------------------------------------------------
ip -n "$TK_NS" link add managed type veth peer name mpeer
tk_eventually 5 "new 'managed' (down) gets ::1:2" tk_token_is managed ::1:2
ip -n "$TK_NS" link set managed up; ip -n "$TK_NS" link set mpeer up
tk_check "still ::1:2 after up" tk_wait 3 tk_token_is managed ::1:2
tk_eventually 3 "managed is applied" tk_state_is managed applied
idx1=$(tk_ifindex managed)
tk_check "show has the kernel's ifindex ($idx1)" [ "$(tk_entry_field managed ifindex)" = "$idx1" ]
tk_check "mpeer (not matching vx*) has no token" tk_token_is mpeer ::

# --- deleted: absent again ------------------------------------------------------
ip -n "$TK_NS" link del managed
tk_eventually 3 "managed is absent after delete" tk_state_is managed absent
tk_check "absent entry has ifindex null after delete" [ "$(tk_entry_field managed ifindex)" = null ]

# --- re-created under the same name, new ifindex ------------------------------
tk_veth managed mpeer
idx2=$(tk_ifindex managed)
tk_check "re-created interface has a new ifindex ($idx1 -> $idx2)" [ "$idx1" != "$idx2" ]
tk_eventually 5 "re-created 'managed' gets ::1:2" tk_token_is managed ::1:2
tk_eventually 3 "show: applied on the new ifindex" \
    bash -c "[ \"\$('$TOKENCTL' --socket '$TK_SOCK' --json show dev managed | python3 -c 'import json,sys; e=json.load(sys.stdin)[\"entries\"][0]; print(e[\"state\"], e[\"ifindex\"])')\" = 'applied $idx2' ]"

# Delete and re-create several times in quick succession.
for i in 1 2 3 4 5; do
    ip -n "$TK_NS" link del managed
    tk_veth managed mpeer
done
tk_eventually 5 "after 5 quick delete/re-create cycles the token is ::1:2" tk_token_is managed ::1:2
tk_eventually 3 "and the entry is applied" tk_state_is managed applied

# --- fast down/up flap ---------------------------------------------------------
for i in $(seq 20); do
    ip -n "$TK_NS" link set managed down
    ip -n "$TK_NS" link set managed up
done
tk_eventually 5 "after a 20x down/up flap the token is ::1:2" tk_token_is managed ::1:2
tk_eventually 3 "and the entry is applied" tk_state_is managed applied
# Flap while someone clears the token in the middle: tokend must put it back.
for i in $(seq 20); do
    ip -n "$TK_NS" link set managed down
    [ "$i" = 10 ] && ip -n "$TK_NS" token del dev managed
    ip -n "$TK_NS" link set managed up
done
tk_eventually 5 "flap with a token cleared midway ends with ::1:2" tk_token_is managed ::1:2
sleep 1
tk_check "token stays ::1:2" tk_token_is managed ::1:2

# --- rename onto a managed name --------------------------------------------------
ip -n "$TK_NS" link del managed
tk_eventually 3 "managed absent before the rename" tk_state_is managed absent
tk_veth other operr
tk_check "'other' has no token (not managed, not matching)" tk_wait 1 tk_token_is other ::
ip -n "$TK_NS" link set other down
ip -n "$TK_NS" link set other name managed
ip -n "$TK_NS" link set managed up
tk_eventually 5 "interface renamed onto 'managed' gets ::1:2" tk_token_is managed ::1:2
tk_eventually 3 "entry applied on the renamed interface" tk_state_is managed applied
tk_check "show has the renamed interface's ifindex" \
    [ "$(tk_entry_field managed ifindex)" = "$(tk_ifindex managed)" ]

# --- global token on new interfaces, subject to match ---------------------------
tk_veth vx1 vx1p
tk_eventually 5 "new veth vx1 gets the global token" tk_token_is vx1 ::42
tk_eventually 5 "new veth vx1p gets the global token" tk_token_is vx1p ::42
tk_eventually 3 "vx1 entry is global and applied" \
    bash -c "[ \"\$('$TOKENCTL' --socket '$TK_SOCK' --json show dev vx1 | python3 -c 'import json,sys; e=json.load(sys.stdin)[\"entries\"][0]; print(e[\"origin\"], e[\"state\"])')\" = 'global applied' ]"
tk_veth ny1 ny1p
sleep 2
tk_check "new veth ny1 (not matching vx*) has no token" tk_token_is ny1 ::
tk_check "ny1p has no token" tk_token_is ny1p ::
tk_check "show has no ny1 entry" bash -c "! '$TOKENCTL' --socket '$TK_SOCK' show dev ny1 >/dev/null 2>&1"
tk_check "operr (peer of the renamed one) has no token" tk_token_is operr ::

# A matching interface deleted and re-created gets the global token again.
ip -n "$TK_NS" link del vx1
tk_veth vx1 vx1p
tk_eventually 5 "re-created vx1 gets the global token" tk_token_is vx1 ::42
# Renamed away from the match: tokend does not hand out the global token to it
# any more (it may or may not clear the one it set); renamed into the match: it
# gets it.
ip -n "$TK_NS" link set ny1 down; ip -n "$TK_NS" link set ny1 name vx2; ip -n "$TK_NS" link set vx2 up
tk_eventually 5 "ny1 renamed to vx2 gets the global token" tk_token_is vx2 ::42

tk_done
