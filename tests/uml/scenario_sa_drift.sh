#!/bin/bash
# Drift repair: someone changes the kernel's XFRM state under two tokend
# peers (a, b; one association "drift", number 7, transport, IPv4) and tokend
# puts back what is its own, and only that. A ping a -> b at 20/s runs
# across every case; every lost reply is counted and printed, and for cases
# 1-4 `ip xfrm monitor` timestamps show how long tokend's object was missing
# (at most 1 s allowed).
#   1. a's outbound SA deleted: a sends on the next generation (new SPI),
#      b sees it in use and moves its receive window; loss only while the SA
#      was missing (at most 5 of 200);
#   2. b's inbound SA for the generation a sends on deleted: put back under
#      the same SPI with the same key (at most 5 of 200 lost);
#   3. `ip xfrm state flush` on a: every SA of tokend's comes back, the
#      outbound one on a new generation (at most 10 of 200 lost);
#   4. `ip xfrm policy flush` on a: the policies come back, byte-identical
#      (at most 10 of 200 lost: without policies a's pings leave in the
#      clear and b drops them);
#   5. `ip xfrm state update` of lifetimes (same SPI and key) on a's outbound
#      and b's inbound SA: tokend's lifetimes restored (no loss);
#   6. foreign SAs and policies (reqid 42) on a and on b survive every case,
#      a restart of a's tokend and a FlushAssociations of runtime
#      associations, byte-identical in `ip xfrm state/policy`; the flushes of
#      cases 3 and 4 remove them with everything else (that is what a flush
#      does): there the check is that tokend does not bring them back, and
#      they are added again by hand with the same parameters;
#   7. a foreign SA on an SPI tokend computes (b's inbound generation 0 of a
#      fresh association, number 11) before tokend starts: that association
#      reports conflict or error naming the SPI, the SA stays as it was;
#   8. an orphan (SA and policy in tokend's reqid range, number 99, which no
#      association uses) is removed; ReleaseAssociation leaves the released
#      association's SAs and policies in the kernel and alone, also across a
#      restart, after which the association shows state "released".
#
#   tests/uml/run.sh tests/uml/scenario_sa_drift.sh [CASE...]
# (default: every case, in order; each case also works alone. The foreign
# objects of case 6 are always there and checked after every case; "6"
# adds the restart and the FlushAssociations.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tokend_lib.sh"

CASES=${*:-1 2 3 4 5 6 7 8}
NAME=drift
NUMBER=7
# lookahead = 8: until rotation by the clock exists, a sender may go at most
# lookahead - 1 generations past generation 0 (the peer's window after a loss
# of its state is [0, lookahead], and the sender keeps one generation of
# margin: out_ceiling() in daemon/assoc.c). Cases 1 and 3 each move a's
# sending generation once (a lost outbound SA is never reinstalled with a
# used key), and a whole run moves it 2 times; with the default lookahead of
# 2 only one move would be allowed, so the second loss would stay unrepaired.
LOOKAHEAD=8
A=$UML_A4
B=$UML_B4
REQID_BASE=$((0x746b0000)) # tokend's default reqid-base ("tk")
REQID=$((REQID_BASE + NUMBER))
GCM="rfc4106(gcm(aes))"

# Failures: keep the full logs, show what tokend said (not its debug noise).
drift_exit() {
    local f
    cp "$TK_DIR"/*.log "$UML_RESULTS/" 2>/dev/null
    if [ "$UML_FAILED" -ne 0 ]; then
        for f in "$TK_DIR"/*.log; do
            echo "# --- $f: the last 60 lines without debug ones (whole log in results/) ---"
            grep -v '^<7>' "$f" | tail -n 60 | sed 's/^/#   /'
        done
    fi
    tk_cleanup_all
    uml_cleanup
}
trap drift_exit EXIT

want() { case " $CASES " in *" $1 "*) return 0 ;; esac; return 1; }

# spi_of NUMBER DIRECTION GEN: docs/key-derivation.md, "SPIs". a -> b is
# direction 0 (192.0.2.1 is the lower address), b -> a direction 1.
spi_of() { tk_spi_hex $((0x01000000 | $1 << 8 | $2 << 7 | $3 % 128)); }

field() { tk_assoc_field "$1" "${3:-$NAME}" "$2"; }
# field_is PEER FIELD VALUE: ListAssociations of drift on PEER shows it.
field_is() {
    local have
    have=$(field "$1" "$2")
    [ "$have" = "$3" ] && return 0
    echo "$1: $2 is $have, not $3"
    return 1
}

# eventually SECONDS "what" CMD...: uml_eventually, but CMD's output is shown
# when it still fails at the end.
eventually() {
    local limit=$1
    shift
    uml_wait "$limit" "${@:2}"
    uml_check "$@"
}

# sa_exists NS SRC DST SPI
sa_exists() { ip -n "$1" xfrm state get src "$2" dst "$3" proto esp spi "$4" >/dev/null 2>&1; }
sa_absent() { ! sa_exists "$@"; }

# dir_spis NS SRC DST REQID: SPIs of the SAs SRC -> DST with that reqid,
# sorted, on one line.
dir_spis() {
    ip -n "$1" xfrm state | awk -v s="$2" -v d="$3" -v r="$4" '
        /^src / { hit = ($2 == s && $4 == d) }
        hit && /proto esp spi/ {
            spi = ""; rq = ""
            for (i = 1; i <= NF; i++) { if ($i == "spi") spi = $(i + 1); if ($i == "reqid") rq = $(i + 1) }
            if (rq == r) print spi }' | sort | tr '\n' ' '
}

# want_spis NUMBER DIRECTION FIRST LAST: the SPIs of generations FIRST..LAST.
want_spis() {
    local g
    for ((g = $3; g <= $4; g++)); do spi_of "$1" "$2" "$g"; echo; done | sort | tr '\n' ' '
}

# window_is NS SRC DST DIRECTION FIRST: NS holds exactly the inbound SAs of
# generations FIRST..FIRST+LOOKAHEAD of association NUMBER.
window_is() {
    local have want
    have=$(dir_spis "$1" "$2" "$3" "$REQID")
    want=$(want_spis "$NUMBER" "$4" "$5" $(($5 + LOOKAHEAD)))
    [ "$have" = "$want" ] && return 0
    echo "have: $have"
    echo "want: $want"
    return 1
}

# out_is NS SRC DST SPI: NS has exactly one outbound SA of ours, SPI.
out_is() {
    local have
    have=$(dir_spis "$1" "$2" "$3" "$REQID")
    [ "$have" = "$4 " ] && return 0
    echo "outbound SAs: $have (want $4)"
    return 1
}

# ours NS state|policy: tokend's own entries for "drift", without the
# anti-replay counters (they move with the traffic).
ours() { tk_xfrm_blocks "$1" "$2" "reqid $REQID " | grep -v 'anti-replay context'; }

# same TEXT CMD...: CMD prints TEXT; a diff is shown when it does not.
same() {
    local want=$1 have
    shift
    have=$("$@")
    [ "$have" = "$want" ] && [ -n "$want" ] && return 0
    diff <(printf '%s\n' "$want") <(printf '%s\n' "$have") | head -n 30
    return 1
}

# start_peer PEER: start PEER's tokend (not inside uml_check: tk_start must
# run in this shell to record the pid that tk_stop uses); succeeds when a new
# process said "ready" and still runs.
ready_count() { grep -c ' ready: ' "$TK_DIR/$1.log" 2>/dev/null; }
ready_more() { [ "$(ready_count "$1")" -gt "$2" ]; }
start_peer() {
    local n
    n=$(ready_count "$1")
    tk_start "$1" || { uml_fail "$1: tokend started (no socket)"; return 1; }
    if uml_wait 10 ready_more "$1" "${n:-0}" && kill -0 "${TK_PIDS[$1]}" 2>/dev/null; then
        uml_pass "$1: tokend started, a new process (pid ${TK_PIDS[$1]}) is ready"
    else
        uml_fail "$1: tokend started, a new process is ready"
        grep -v '^<7>' "$TK_DIR/$1.log" | tail -n 5 | sed 's/^/#   /'
        return 1
    fi
}

# own_not_foreign MARK_A MARK_B: since the log marks, neither tokend said
# that one of drift's own SPIs (0x010007xx) is "taken by an SA tokend did not
# make": no foreign SA sits on them in these cases, so such a line means
# tokend took its own SA for somebody else's.
own_not_foreign() {
    local lines
    lines=$({ tk_log_after a "$1" | sed 's/^/a.log: /'; tk_log_after b "$2" | sed 's/^/b.log: /'; } |
        grep -E "drift: SPI 0x010007[0-9a-f]{2} is already taken")
    [ -z "$lines" ] && return 0
    printf '%s\n' "$lines"
    return 1
}

# --- the ping across each case ----------------------------------------------

# ping_begin: 200 echo requests a -> b at 50 ms (10 s); the disruption comes
# about 2 s in. ping_end CASE MAX [T0 T1]: at most MAX lost; every loss
# between T0 (the disruption) and T1 (the repair was seen); and recovered: the
# last 2 s (40 requests) all answered.
ping_begin() {
    tk_ping_start a "$B" 10
    sleep 2
}
ping_end() {
    local what=$1 max=$2 last
    tk_ping_finish
    uml_note "$what: lost $TK_PING_LOST of $TK_PING_TX echo requests at 50 ms spacing (missing icmp_seq: ${TK_PING_MISSING:-none})"
    uml_check "$what: lost $TK_PING_LOST of $TK_PING_TX, at most $max" test "$TK_PING_LOST" -le "$max"
    if [ $# -ge 4 ] && [ "$TK_PING_LOST" -gt 0 ]; then
        uml_check "$what: replies lost only while the repair was pending" tk_ping_lost_between "$3" "$4"
    fi
    last=0
    [ -n "$TK_PING_MISSING" ] && last=$(tr ' ' '\n' <<<"$TK_PING_MISSING" | sort -n | tail -n 1)
    uml_check "$what: ping recovered (last lost icmp_seq ${last:-0}; the last 40 of $TK_PING_TX answered)" \
        test "$last" -le $((TK_PING_TX - 40)) -a "$TK_PING_TX" -ge 200
}

# --- kernel events: how long was tokend's object missing? ----------------------

# mon_start NS: `ip xfrm monitor` of NS with timestamps, in the background
# (a file on UML's /tmp tmpfs: it shows keys, and is never printed).
MON_N=0
mon_start() {
    MON_N=$((MON_N + 1))
    MON_OUT=/tmp/drift-mon.$MON_N
    ip -n "$1" -ts xfrm monitor > "$MON_OUT" 2>&1 &
    MON_PID=$!
    UML_BG_PIDS+=("$MON_PID")
    sleep 0.3
}
mon_stop() { kill "$MON_PID" 2>/dev/null; wait "$MON_PID" 2>/dev/null; }
# mon_gap DISRUPT REPAIR...: milliseconds from the first event matching the
# regex DISRUPT to the last of the first later events matching each REPAIR
# regex (an event is one line here: its lines joined by spaces); "none" when
# an event is missing.
mon_gap() {
    python3 - "$MON_OUT" "$@" <<'PY'
import re, sys
from datetime import datetime
text = open(sys.argv[1], errors="replace").read()
events = []
for m in re.finditer(r"^\[([0-9T:.-]+)\] (.*?)(?=^\[|\Z)", text, re.M | re.S):
    events.append((datetime.fromisoformat(m.group(1)).timestamp(), " ".join(m.group(2).split())))
dis = next(((t, i) for i, (t, e) in enumerate(events) if re.search(sys.argv[2], e)), None)
if dis is None:
    print("none"); sys.exit()
ends = []
for rx in sys.argv[3:]:
    t = next((t for t, e in events[dis[1] + 1:] if re.search(rx, e)), None)
    if t is None:
        print("none"); sys.exit()
    ends.append(t)
print("%.0f" % ((max(ends) - dis[0]) * 1000))
PY
}
# mon_report WHAT GAP: print the figure; at most 1000 ms.
mon_report() {
    uml_note "$1: missing for $2 ms (from the kernel's own events, ip xfrm monitor)"
    uml_check "$1: repaired within 1 s of the kernel event ($2 ms)" le_ms "$2" 1000
}
le_ms() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -le "$2" ]; }

# --- foreign objects (case 6) ------------------------------------------------

declare -A FKEY FSTATE FPOL
# foreign_add_sas NS LOCAL REMOTE, foreign_add_policy NS LOCAL: two SAs and a
# policy of "another tool", reqid 42: an SA to 198.51.100.7 with the policy
# for 198.51.100.0/24, and an SA between the very addresses tokend's
# association uses (SPI 0x5001), which tokend must not take for its own. The
# same keys every time, so adding them again after a flush gives
# byte-identical output.
foreign_add_sas() {
    ip -n "$1" xfrm state add src "$2" dst 198.51.100.7 proto esp spi 0x5000 reqid 42 \
        mode transport aead "$GCM" "${FKEY[$1.0]}" 128 &&
    ip -n "$1" xfrm state add src "$2" dst "$3" proto esp spi 0x5001 reqid 42 \
        mode transport aead "$GCM" "${FKEY[$1.1]}" 128
}
foreign_add_policy() {
    ip -n "$1" xfrm policy add src "$2/32" dst 198.51.100.0/24 dir out \
        tmpl src "$2" dst 198.51.100.7 proto esp reqid 42 mode transport
}
foreign_snap() {
    FSTATE[$1]=$(tk_xfrm_blocks "$1" state "reqid 42 ")
    FPOL[$1]=$(tk_xfrm_blocks "$1" policy "reqid 42 ")
}
# foreign_same WHEN NS...: the foreign objects are byte-identical.
foreign_same() {
    local when=$1 ns
    shift
    for ns in "$@"; do
        uml_check "$ns: foreign SAs (reqid 42) byte-identical $when" \
            same "${FSTATE[$ns]}" tk_xfrm_blocks "$ns" state "reqid 42 "
        uml_check "$ns: foreign policy (reqid 42) byte-identical $when" \
            same "${FPOL[$ns]}" tk_xfrm_blocks "$ns" policy "reqid 42 "
    done
}

# --- setup -------------------------------------------------------------------

uml_peers || { uml_fail "two peers"; uml_done; exit 1; }
tk_secret
tk_mirror_configs "$NAME" "$NUMBER" 4 "lookahead = $LOOKAHEAD"
for ns in a b; do
    FKEY[$ns.0]=0x$(uml_random_hex 20)
    FKEY[$ns.1]=0x$(uml_random_hex 20)
done
# Before tokend starts: its first full read of the kernel meets them too.
uml_check "a: foreign SAs and policy added by hand" \
    eval 'foreign_add_sas a "$A" "$B" && foreign_add_policy a "$A"'
uml_check "b: foreign SAs and policy added by hand" \
    eval 'foreign_add_sas b "$B" "$A" && foreign_add_policy b "$B"'
foreign_snap a
foreign_snap b
uml_check "foreign snapshot: 2 SAs and 1 policy on each peer" test \
    "$(printf '%s\n' "${FSTATE[a]}" "${FSTATE[b]}" | grep -c '^src ')" = 4 -a \
    "$(printf '%s\n' "${FPOL[a]}" "${FPOL[b]}" | grep -c '^src ')" = 2

tk_start a && tk_start b
eventually 15 "a: association up" tk_assoc_up a "$NAME"
eventually 15 "b: association up" tk_assoc_up b "$NAME"
uml_check "ping a -> b through ESP before the cases" tk_ping_all a "$B" 5 0.05
foreign_same "after tokend started" a b

# --- 1. a's outbound SA deleted ------------------------------------------------

case_1() {
    uml_note "case 1: ip -n a xfrm state delete of a's outbound SA"
    local g spi next nspi moves t0 t1
    g=$(field a outbound.generation)
    spi=$(spi_of "$NUMBER" 0 "$g")
    next=$((g + 1))
    nspi=$(spi_of "$NUMBER" 0 "$next")
    moves=$(field a moves)
    uml_check "a sends on generation $g, SPI $spi, in the kernel" out_is a "$A" "$B" "$spi"
    mon_start a
    ping_begin
    t0=$(tk_now)
    uml_check "ip -n a xfrm state delete ... spi $spi" \
        ip -n a xfrm state delete src "$A" dst "$B" proto esp spi "$spi"
    uml_wait 5 out_is a "$A" "$B" "$nspi"
    t1=$(tk_now)
    uml_check "a: the only outbound SA in the kernel is generation $next, SPI $nspi" \
        out_is a "$A" "$B" "$nspi"
    uml_check "a: the key of $nspi is not the key of $spi" \
        test -n "$(tk_sa_key a "$A" "$B" "$nspi")"
    uml_check "a: ListAssociations outbound.generation $g -> $next" field_is a outbound.generation "$next"
    uml_check "a: moves counted ($moves -> $((moves + 1)))" field_is a moves $((moves + 1))
    eventually 8 "b: receive window moved to generation $next (inbound.0.generation)" \
        field_is b inbound.0.generation "$next"
    eventually 5 "b: kernel holds exactly the inbound SAs of generations $next..$((next + LOOKAHEAD))" \
        window_is b "$A" "$B" 0 "$next"
    mon_stop
    mon_report "case 1: a's outbound SA" "$(mon_gap "^Deleted src $A dst $B .*spi $spi " "^src $A dst $B .*spi $nspi ")"
    ping_end "case 1" 5 "$t0" "$t1"
    local pk
    pk=$(uml_sa_packets b "$nspi")
    uml_check "b: inbound SA $nspi carried the pings after the move (${pk:-0} packets)" \
        test "${pk:-0}" -ge 100
    foreign_same "after case 1" a b
}

# --- 2. b's inbound SA for the generation a uses deleted --------------------------

case_2() {
    uml_note "case 2: ip -n b xfrm state delete of b's inbound SA for a's sending generation"
    local g spi key t0 t1 moves
    g=$(field a outbound.generation)
    spi=$(spi_of "$NUMBER" 0 "$g")
    moves=$(field a moves)
    key=$(tk_sa_key b "$A" "$B" "$spi")
    uml_check "b has the inbound SA $spi (generation $g) with a key" test -n "$key"
    mon_start b
    ping_begin
    t0=$(tk_now)
    uml_check "ip -n b xfrm state delete ... spi $spi" \
        ip -n b xfrm state delete src "$A" dst "$B" proto esp spi "$spi"
    uml_wait 5 sa_exists b "$A" "$B" "$spi"
    t1=$(tk_now)
    uml_check "b: inbound SA $spi is back" sa_exists b "$A" "$B" "$spi"
    uml_check "b: ... under the same key" test "$(tk_sa_key b "$A" "$B" "$spi")" = "$key"
    uml_check "b: ... with tokend's reqid" eval \
        'ip -n b xfrm state get src "$A" dst "$B" proto esp spi "$spi" | grep -q "reqid $REQID "'
    uml_check "b: receive window complete" window_is b "$A" "$B" 0 "$(field b inbound.0.generation)"
    mon_stop
    mon_report "case 2: b's inbound SA" "$(mon_gap "^Deleted src $A dst $B .*spi $spi " "^src $A dst $B .*spi $spi ")"
    ping_end "case 2" 5 "$t0" "$t1"
    uml_check "a did not move: generation $g, moves $moves" \
        test "$(field a outbound.generation)/$(field a moves)" = "$g/$moves"
    foreign_same "after case 2" a b
}

# --- 3. ip xfrm state flush on a ------------------------------------------------

case_3() {
    uml_note "case 3: ip -n a xfrm state flush"
    local g next nspi ing t0 t1 pol
    g=$(field a outbound.generation)
    next=$((g + 1))
    nspi=$(spi_of "$NUMBER" 0 "$next")
    ing=$(field a inbound.0.generation)
    pol=$(ours a policy)
    mon_start a
    ping_begin
    t0=$(tk_now)
    uml_check "ip -n a xfrm state flush" ip -n a xfrm state flush
    uml_wait 5 eval 'out_is a "$A" "$B" "$nspi" && window_is a "$B" "$A" 1 "$ing"'
    t1=$(tk_now)
    uml_check "a: outbound SA back on a new generation $next, SPI $nspi (was $g)" \
        out_is a "$A" "$B" "$nspi"
    uml_check "a: inbound SAs of generations $ing..$((ing + LOOKAHEAD)) back" \
        window_is a "$B" "$A" 1 "$ing"
    uml_check "a: ListAssociations outbound.generation $next, state up" \
        test "$(field a outbound.generation)/$(field a state)" = "$next/up"
    uml_check "a: tokend's policies untouched" same "$pol" ours a policy
    eventually 8 "b: receive window moved to generation $next" \
        window_is b "$A" "$B" 0 "$next"
    mon_stop
    mon_report "case 3: a's outbound SA (and the inbound one b sends on)" "$(mon_gap "^Flushed state" \
        "^src $A dst $B .*spi $nspi " "^src $B dst $A .*spi $(spi_of "$NUMBER" 1 "$(field b outbound.generation)") ")"
    ping_end "case 3" 10 "$t0" "$t1"
    # The flush removed the foreign SAs too; tokend must not make them up.
    uml_check "a: tokend did not bring back the flushed foreign SAs" \
        test -z "$(tk_xfrm_blocks a state "reqid 42 ")"
    uml_check "a: foreign SAs added again by hand" foreign_add_sas a "$A" "$B"
    foreign_same "after case 3 (a's SAs added again after the flush)" a b
}

# --- 4. ip xfrm policy flush on a ------------------------------------------------

case_4() {
    uml_note "case 4: ip -n a xfrm policy flush"
    local pol sas t0 t1
    pol=$(ours a policy)
    sas=$(dir_spis a "$A" "$B" "$REQID")
    uml_check "a: tokend's in and out policies before" test "$(grep -c '^src ' <<<"$pol")" = 2
    mon_start a
    ping_begin
    t0=$(tk_now)
    uml_check "ip -n a xfrm policy flush" ip -n a xfrm policy flush
    uml_wait 5 same "$pol" ours a policy
    t1=$(tk_now)
    uml_check "a: tokend's policies back, byte-identical" same "$pol" ours a policy
    uml_check "a: ListAssociations policies in and out, state up" test \
        "$(field a policies.in)/$(field a policies.out)/$(field a state)" = True/True/up
    uml_check "a: outbound SA unchanged" test "$(dir_spis a "$A" "$B" "$REQID")" = "$sas"
    mon_stop
    mon_report "case 4: a's policies" "$(mon_gap "^Flushed policy" \
        "^src $A/32 dst $B/32 dir out .*reqid $REQID " "^src $B/32 dst $A/32 dir in .*reqid $REQID ")"
    ping_end "case 4" 10 "$t0" "$t1"
    uml_check "a: tokend did not bring back the flushed foreign policy" \
        test -z "$(tk_xfrm_blocks a policy "reqid 42 ")"
    uml_check "a: foreign policy added again by hand" foreign_add_policy a "$A"
    foreign_same "after case 4 (a's policy added again after the flush)" a b
}

# --- 5. lifetimes changed with ip xfrm state update ----------------------------

# lft_drift NS SRC DST SPI PEER: update the SA's lifetimes (same SPI, key,
# reqid) to a packet-hard limit of 100000; succeed when tokend put its own
# back.
case_5() {
    uml_note "case 5: ip xfrm state update of lifetimes (limit packet-hard 100000)"
    local g spi lft_a lft_b key_a key_b na nb
    g=$(field a outbound.generation)
    spi=$(spi_of "$NUMBER" 0 "$g")
    lft_a=$(tk_sa_lft a "$A" "$B" "$spi")
    lft_b=$(tk_sa_lft b "$A" "$B" "$spi")
    key_a=$(tk_sa_key a "$A" "$B" "$spi")
    key_b=$(tk_sa_key b "$A" "$B" "$spi")
    uml_check "tokend's lifetimes on $spi: packets soft 3865411584, hard 4294901760" \
        eval 'grep -q "limit: soft 3865411584(packets), hard 4294901760(packets)" <<<"$lft_a" &&
              test "$lft_a" = "$lft_b"'
    na=$(grep -c "lifetimes of SA $spi restored" "$TK_DIR/a.log")
    nb=$(grep -c "lifetimes of SA $spi restored" "$TK_DIR/b.log")
    ping_begin
    uml_check "ip -n a xfrm state update ... spi $spi (a's outbound) limit packet-hard 100000" \
        ip -n a xfrm state update src "$A" dst "$B" proto esp spi "$spi" reqid "$REQID" \
        mode transport replay-window 32 aead "$GCM" "$key_a" 128 limit packet-hard 100000
    uml_check "ip -n b xfrm state update ... spi $spi (b's inbound) limit packet-hard 100000" \
        ip -n b xfrm state update src "$A" dst "$B" proto esp spi "$spi" reqid "$REQID" \
        mode transport replay-window 32 aead "$GCM" "$key_b" 128 limit packet-hard 100000
    eventually 5 "a: tokend's lifetimes back on $spi (ip -s xfrm state)" \
        same "$lft_a" tk_sa_lft a "$A" "$B" "$spi"
    eventually 5 "b: tokend's lifetimes back on $spi (ip -s xfrm state)" \
        same "$lft_b" tk_sa_lft b "$A" "$B" "$spi"
    # The log shows the change was seen and repaired (the repair can be
    # quicker than any look at the kernel).
    eventually 3 "a: log says the lifetimes of $spi were restored" \
        test "$(grep -c "lifetimes of SA $spi restored" "$TK_DIR/a.log")" -gt "$na"
    eventually 3 "b: log says the lifetimes of $spi were restored" \
        test "$(grep -c "lifetimes of SA $spi restored" "$TK_DIR/b.log")" -gt "$nb"
    uml_check "same keys, same SPI, no move (generation $g)" test \
        "$(tk_sa_key a "$A" "$B" "$spi")/$(tk_sa_key b "$A" "$B" "$spi")/$(field a outbound.generation)" \
        = "$key_a/$key_b/$g"
    ping_end "case 5" 0
    foreign_same "after case 5" a b
}

# --- 6. restart and FlushAssociations: foreign objects stay ----------------------

case_6() {
    uml_note "case 6: foreign objects across a restart of a's tokend and a FlushAssociations"
    local g st pol reply rq=$((REQID_BASE + 12))
    g=$(field a outbound.generation)
    st=$(ours a state)
    pol=$(ours a policy)
    ping_begin
    tk_stop a
    start_peer a
    eventually 10 "a: association up after the restart" tk_assoc_up a "$NAME"
    sleep 2 # a few counter intervals: anything tokend would do, it has done
    uml_check "a: still sending on generation $g (the kernel's SA adopted)" \
        field_is a outbound.generation "$g"
    uml_check "a: tokend's SAs unchanged by the restart" same "$st" ours a state
    uml_check "a: tokend's policies unchanged by the restart" same "$pol" ours a policy
    ping_end "case 6 (restart)" 0
    foreign_same "after a restart of a's tokend" a b

    ping_begin
    reply=$(tk_call a AddAssociation "{\"name\": \"rt\", \"number\": 12, \"local\": \"$A\",
        \"remote\": \"$B\", \"secret_file\": \"$TK_DIR/secret.key\", \"protocol\": \"udp\"}")
    uml_check "a: runtime association rt (number 12, udp) added" eval '! grep -q "\"error\"" <<<"$reply"'
    eventually 10 "a: rt's SAs and policies in the kernel" eval \
        'test "$(tk_xfrm_blocks a state "reqid $rq " | grep -c "^src ")" -ge 2 -a \
              "$(tk_xfrm_blocks a policy "reqid $rq " | grep -c "^src ")" = 2'
    reply=$(tk_call a FlushAssociations '{}')
    uml_check "a: FlushAssociations removed rt ($reply)" \
        eval 'grep -q "\"removed\": \[\"rt\"\]" <<<"$reply"'
    eventually 5 "a: rt's SAs and policies gone from the kernel" eval \
        'test -z "$(tk_xfrm_blocks a state "reqid $rq ")$(tk_xfrm_blocks a policy "reqid $rq ")"'
    sleep 1
    uml_check "a: drift (from the config) kept: its SAs" same "$st" ours a state
    uml_check "a: drift (from the config) kept: its policies" same "$pol" ours a policy
    ping_end "case 6 (FlushAssociations)" 0
    foreign_same "after FlushAssociations" a b
}

# --- 7. a foreign SA on an SPI tokend computes ---------------------------------

case_7() {
    local fnum=11 fspi fsa i bad=0 st reason samples=""
    fspi=$(spi_of "$fnum" 0 0)
    uml_note "case 7: a foreign SA (reqid 42) on $fspi, b's inbound generation 0 of association 11"
    ping_begin
    tk_stop b
    {
        cat "$TK_DIR/b.conf"
        # protocol = udp: a selector of its own (the kernel keys policies
        # by selector; drift's would be taken).
        printf '[sa fresh]\nnumber = %s\nlocal = %s\nremote = %s\nsecret = %s\nlookahead = %s\nprotocol = udp\n' \
            "$fnum" "$B" "$A" "$TK_DIR/secret.key" "$LOOKAHEAD"
    } > "$TK_DIR/b.conf.new" && mv "$TK_DIR/b.conf.new" "$TK_DIR/b.conf"
    uml_check "b: foreign SA on $fspi added by hand" \
        ip -n b xfrm state add src "$A" dst "$B" proto esp spi "$fspi" reqid 42 \
        mode transport aead "$GCM" "0x$(uml_random_hex 20)" 128
    fsa=$(tk_xfrm_blocks b state "spi $fspi ")
    foreign_snap b # the new one is foreign too, from now on
    start_peer b # with association fresh (number 11)
    eventually 10 "b: fresh reports conflict or error" \
        eval 'st=$(field b state fresh); [ "$st" = conflict ] || [ "$st" = error ]'
    # Sampled for 4 s: the state must stay so, the reason naming the SPI.
    for i in 1 2 3 4 5 6 7 8; do
        st=$(field b state fresh)
        reason=$(field b reason fresh)
        samples+="$st "
        case "$st:$reason" in
        conflict:*"$fspi"* | error:*"$fspi"*) ;;
        *) bad=$((bad + 1)); uml_note "sample $i: state $st, reason: $reason" ;;
        esac
        sleep 0.5
    done
    uml_note "b: fresh: states sampled: $samples"
    uml_note "b: fresh: reason: $(field b reason fresh)"
    uml_check "b: fresh stays conflict/error with a reason naming $fspi (8 samples over 4 s)" test "$bad" = 0
    uml_check "b: the foreign SA on $fspi untouched (same key, same reqid 42)" \
        same "$fsa" tk_xfrm_blocks b state "spi $fspi "
    uml_check "b: fresh's own policies installed (in, out)" \
        test "$(field b policies.in fresh)/$(field b policies.out fresh)" = True/True
    uml_note "b: requests to add $fspi so far: $(grep -c "add SA esp spi $fspi " "$TK_DIR/b.log")"
    uml_check "b: drift still up" tk_assoc_up b "$NAME"
    ping_end "case 7" 0
    foreign_same "after case 7" a b
}

# --- 8. orphans; ReleaseAssociation ---------------------------------------------

case_8() {
    uml_note "case 8: orphans in tokend's reqid range; ReleaseAssociation"
    local orq=$((REQID_BASE + 99)) ospi st pol reply g spi key lft
    ospi=$(spi_of 99 0 0)
    uml_check "a: orphan SA (reqid base + 99 = $(printf 0x%08x $orq), spi $ospi) added by hand" \
        ip -n a xfrm state add src "$A" dst "$B" proto esp spi "$ospi" reqid "$orq" \
        mode transport aead "$GCM" "0x$(uml_random_hex 20)" 128
    uml_check "a: orphan policy (reqid base + 99, 203.0.113.0/24) added by hand" \
        ip -n a xfrm policy add src "$A/32" dst 203.0.113.0/24 dir out \
        tmpl src "$A" dst 203.0.113.9 proto esp reqid "$orq" mode transport
    eventually 5 "a: tokend removed the orphan SA" sa_absent a "$A" "$B" "$ospi"
    eventually 5 "a: tokend removed the orphan policy" \
        test -z "$(tk_xfrm_blocks a policy "reqid $orq ")"
    foreign_same "after the orphans" a b

    g=$(field a outbound.generation)
    spi=$(spi_of "$NUMBER" 0 "$g")
    st=$(ours a state)
    pol=$(ours a policy)
    ping_begin
    reply=$(tk_call a ReleaseAssociation "{\"name\": \"$NAME\"}")
    uml_note "ReleaseAssociation reply: $reply"
    uml_check "a: ReleaseAssociation $NAME answered with its SPIs" \
        eval 'grep -q "\"spis\": \[[0-9]" <<<"$reply"'
    uml_check "a: state released" field_is a state released
    sleep 3 # six counter intervals
    uml_check "a: released SAs left in the kernel, unchanged" same "$st" ours a state
    uml_check "a: released policies left in the kernel, unchanged" same "$pol" ours a policy
    # Drift on a released SA is no longer tokend's business.
    key=$(tk_sa_key a "$A" "$B" "$spi")
    uml_check "a: lifetimes of the released SA $spi changed by hand" \
        ip -n a xfrm state update src "$A" dst "$B" proto esp spi "$spi" reqid "$REQID" \
        mode transport replay-window 32 aead "$GCM" "$key" 128 limit packet-hard 100000
    sleep 2
    lft=$(tk_sa_lft a "$A" "$B" "$spi")
    uml_check "a: tokend left the released SA's lifetimes alone (hard 100000)" \
        grep -q 'hard 100000(packets)' <<<"$lft"
    st=$(ours a state)
    tk_stop a
    start_peer a
    eventually 10 "a: after the restart drift shows state released" field_is a state released
    sleep 3
    uml_check "a: after the restart its SAs are untouched" same "$st" ours a state
    uml_check "a: after the restart its policies are untouched" same "$pol" ours a policy
    uml_check "a: still state released" field_is a state released
    ping_end "case 8 (release, restart)" 0
    foreign_same "after the release and restart" a b
}

for c in $CASES; do
    case $c in
    [1-8])
        ma=$(tk_log_mark a)
        mb=$(tk_log_mark b)
        "case_$c"
        uml_check "case $c: tokend never took one of its own SAs for a foreign one (logs)" \
            own_not_foreign "$ma" "$mb"
        ;;
    *) uml_fail "no case $c (cases are 1 to 8)" ;;
    esac
done
foreign_same "at the end" a b
uml_check "ping a -> b at the end" tk_ping_all a "$B" 5 0.05
uml_done
