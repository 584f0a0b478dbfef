#!/bin/bash
# The life of an association between two tokend peers, with a ping a -> b at
# 20/s running through every case and every lost reply counted:
#   1. rotation on a: zero loss; a sends on generation 1, b's receive window
#      follows and b drops generation 0; a second rotation within dwell is
#      refused with io.tokend.RotationRefused;
#   2. SIGTERM and restart of a's tokend: zero loss, the kernel's SAs adopted
#      with not one netlink request;
#   3. kill -9 and restart of b's tokend: the same;
#   4. a's outbound SA deleted while a's tokend is down: a sends on the saved
#      generation + 1, never on one used before; loss only while the SA was
#      missing;
#   5. secret hygiene: neither the master secret nor any SA key tokend
#      installed appears in a log, in what the socket shows, or in the state
#      directories; the state files are 0600, the directories 0700.
# Bad configs and bad runtime input (case 6) are tested on the host by
# tests/integration/test_sa_config.sh.
#
#   tests/uml/run.sh tests/uml/scenario_sa_lifecycle.sh [CASE...]
# (default: every case, in order; each case also works alone, on a fresh
# association).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tokend_lib.sh"
# The daemons' logs (key-free: case 5 checks) are kept with a failed run.
trap 'tk_cleanup_all; uml_cleanup; rm -f "$TK_KEYS"; cp "$TK_DIR"/*.log "$UML_RESULTS/" 2>/dev/null' EXIT

CASES=${*:-1 2 3 4 5}
NAME=life
NUMBER=42

uml_peers || { uml_fail "two peers"; uml_done; exit 1; }
tk_secret
rm -f "$TK_KEYS"
tk_mirror_configs "$NAME" "$NUMBER" 4 "lookahead = 4"
tk_start a && tk_start b
uml_eventually 15 "a: association up" tk_assoc_up a "$NAME"
uml_eventually 15 "b: association up" tk_assoc_up b "$NAME"
uml_check "ping a -> b through ESP before the cases" tk_ping_all a "$UML_B4" 5 0.05
tk_record_keys a b

# Every outbound generation and SPI a has sent on, for case 4.
USED_GENS=" $(tk_assoc_field a "$NAME" outbound.generation) "
USED_SPIS=" $(tk_spi_hex "$(tk_assoc_field a "$NAME" outbound.spi)") "

# a's outbound SAs (src a, dst b) as SPIs.
a_out_spis() {
    ip -n a xfrm state | awk -v s="$UML_A4" -v d="$UML_B4" '
        /^src / { out = ($2 == s && $4 == d) }
        out && /proto esp spi/ { for (i = 1; i <= NF; i++) if ($i == "spi") print $(i + 1) }' |
        sort | tr '\n' ' '
}

field_is() { [ "$(tk_assoc_field "$1" "$NAME" "$2")" = "$3" ]; }

# json_get JSON PATH: one value of a reply line (dotted path; "null" if none).
json_get() {
    python3 -c '
import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
    v = v[int(k)] if isinstance(v, list) else (v or {}).get(k)
print("null" if v is None else v)' "$1" "$2"
}

# dump_note PEER MARK: how often PEER's tokend read the kernel's SAs (an
# SA dump: XFRM_MSG_NEWSA with NLM_F_MULTI, logged at debug) since MARK;
# the counter-interval (0.5 s) should have made one every half second.
dump_note() {
    local n
    n=$(tk_log_after "$1" "$2" | grep -c 'XFRM_MSG_NEWSA len [0-9]* flags 0x2 ')
    uml_note "  $1: SA dump replies in its log since the case began: $n; counter/periodic lines: $(tk_log_after "$1" "$2" | grep -c 'periodic reconcile')"
    local spi line=
    for spi in $(tk_spis "$1"); do line+="$spi:$(uml_sa_packets "$1" "$spi")p "; done
    uml_note "  $1: its SAs now (SPI:packets): $line"
}

ping_report() {
    uml_note "$1: ping sent $TK_PING_TX, got $TK_PING_RX replies, lost $TK_PING_LOST${TK_PING_MISSING:+ (icmp_seq $TK_PING_MISSING)}"
}

# --- 1. rotation -------------------------------------------------------------
case_rotation() {
    uml_note "case 1: rotation while ping runs"
    local gen0 spi0 gen1 spi1 b_in0 replies r1 r2 t0 t1 bytes_a bytes_b
    gen0=$(tk_assoc_field a "$NAME" outbound.generation)
    spi0=$(tk_spi_hex "$(tk_assoc_field a "$NAME" outbound.spi)")
    b_in0=$(tk_assoc_field b "$NAME" inbound.0.generation)
    gen1=$((gen0 + 1))
    uml_check "b's receive window starts at a's sending generation ($b_in0 = $gen0)" \
        test "$b_in0" = "$gen0"
    tk_ping_start a "$UML_B4" 30
    sleep 1
    local mark_a mark_b; mark_a=$(tk_log_mark a); mark_b=$(tk_log_mark b)
    t0=$(tk_now)
    # Two rotations back to back on one connection: the second lands well
    # within dwell (1 s).
    replies=$(tk_call a RotateAssociation "{\"name\": \"$NAME\"}" \
        RotateAssociation "{\"name\": \"$NAME\"}")
    # First the peer, so the time it took is measured closely (each poll
    # costs a few tenths of a second under UML).
    if uml_wait 5 field_is b inbound.0.generation "$gen1"; then
        t1=$(tk_now)
        uml_pass "b: receive window moved to generation $gen1 within 5 s ($(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s after the rotation; counter-interval 0.5 s)"
    else
        uml_fail "b: receive window moved to generation $gen1 within 5 s (inbound.0.generation is $(tk_assoc_field b "$NAME" inbound.0.generation))"
        dump_note b "$mark_b"
    fi
    r1=$(sed -n 1p <<<"$replies")
    r2=$(sed -n 2p <<<"$replies")
    uml_check "rotate: accepted (reply: ${r1:0:120})" test "$(json_get "$r1" error)" = null
    uml_check "rotate: the reply shows outbound generation $gen1" \
        test "$(json_get "$r1" parameters.associations.0.outbound.generation)" = "$gen1"
    uml_check "second rotate within dwell: io.tokend.RotationRefused (got $(json_get "$r2" error))" \
        test "$(json_get "$r2" error)" = io.tokend.RotationRefused
    uml_check "RotationRefused names the association and gives a reason ($(json_get "$r2" parameters.reason))" \
        test "$(json_get "$r2" parameters.name)" = "$NAME" -a "$(json_get "$r2" parameters.reason)" != null
    spi1=$(tk_spi_hex "$(tk_assoc_field a "$NAME" outbound.spi)")
    uml_check "a: outbound generation is $gen1" field_is a outbound.generation "$gen1"
    uml_check "a: generation $gen1 has a new SPI ($spi0 -> $spi1)" test "$spi1" != "$spi0"
    uml_eventually 5 "a: the kernel has the new outbound SA $spi1" tk_has_sa a "$spi1"
    uml_eventually 5 "a: the old outbound SA $spi0 is removed" eval '! tk_has_sa a "$spi0"'
    uml_check "a: exactly one outbound SA in the kernel ($(a_out_spis))" test "$(a_out_spis)" = "$spi1 "
    uml_check "a: state file says out_generation $gen1" test "$(tk_state_gen a "$NAME" out_generation)" = "$gen1"
    uml_eventually 5 "b: the old inbound SA $spi0 (generation $gen0) is removed" eval '! tk_has_sa b "$spi0"'
    uml_check "b: inbound window is generations $gen1..$((gen1 + 4)) (lookahead 4)" \
        field_is b inbound.4.generation $((gen1 + 4))
    uml_eventually 5 "b: the inbound SA of generation $((gen1 + 4)) is installed" \
        field_is b inbound.4.installed True
    uml_check "b: state file says in_generation $gen1" test "$(tk_state_gen b "$NAME" in_generation)" = "$gen1"
    uml_check "ping is still running (the case ended within it)" tk_ping_running
    sleep 1
    bytes_a=$(uml_sa_bytes a "$spi1")
    bytes_b=$(uml_sa_bytes b "$spi1")
    uml_check "a: the new outbound SA counted bytes (${bytes_a:-0})" test "${bytes_a:-0}" -gt 0
    uml_check "b: the new inbound SA counted bytes (${bytes_b:-0})" test "${bytes_b:-0}" -gt 0
    uml_check "a's log shows the rotation's netlink requests (debug works)" \
        eval 'tk_log_after a "$mark_a" | grep -q "netlink request: .*add SA.*spi $spi1"'
    tk_record_keys a b
    tk_ping_finish
    ping_report "rotation"
    uml_check "rotation: no reply lost ($TK_PING_LOST of $TK_PING_TX)" test "$TK_PING_LOST" = 0 -a "$TK_PING_TX" -gt 0
    USED_GENS+="$gen1 "
    USED_SPIS+="$spi1 "
}

# --- 2 and 3. restarts --------------------------------------------------------
# case_restart PEER term|kill9
case_restart() {
    local peer=$1 how=$2 other out_gen in_gen spis_a spis_b mark after
    [ "$peer" = a ] && other=b || other=a
    uml_note "case $([ "$how" = term ] && echo 2 || echo 3): $how of $peer's tokend while ping runs"
    out_gen=$(tk_assoc_field "$peer" "$NAME" outbound.generation)
    in_gen=$(tk_assoc_field "$peer" "$NAME" inbound.0.generation)
    spis_a=$(tk_spis a)
    spis_b=$(tk_spis b)
    tk_record_keys a b
    tk_ping_start a "$UML_B4" 12
    sleep 1
    if [ "$how" = term ]; then tk_stop "$peer"; else tk_kill9 "$peer"; fi
    uml_check "$peer: tokend is gone (the socket does not answer)" eval '! tk_call "$peer" GetStatus "{}" >/dev/null 2>&1'
    sleep 1
    uml_check "$peer: the SAs stayed in the kernel while tokend was down" test "$(tk_spis "$peer")" = "$([ "$peer" = a ] && echo "$spis_a" || echo "$spis_b")"
    mark=$(tk_log_mark "$peer")
    tk_start "$peer"
    uml_eventually 15 "$peer: association up after the restart" tk_assoc_up "$peer" "$NAME"
    # Several counter intervals (0.5 s) and a reconcile pass go by.
    sleep 3
    uml_check "ping is still running (the case ended within it)" tk_ping_running
    uml_check "$peer: still sends on generation $out_gen (adopted)" field_is "$peer" outbound.generation "$out_gen"
    uml_check "$peer: receive window still starts at $in_gen" field_is "$peer" inbound.0.generation "$in_gen"
    uml_check "$peer: state file out_generation still $out_gen" test "$(tk_state_gen "$peer" "$NAME" out_generation)" = "$out_gen"
    after=$(tk_log_after "$peer" "$mark")
    uml_check "$peer: the restarted tokend logged at debug level" grep -q '<7>' <<<"$after"
    uml_check "$peer: not one netlink request after the restart" \
        eval '! grep "netlink request:" <<<"$after"'
    uml_check "a: the same SPIs before and after ($spis_a)" test "$(tk_spis a)" = "$spis_a"
    uml_check "b: the same SPIs before and after ($spis_b)" test "$(tk_spis b)" = "$spis_b"
    tk_ping_finish
    ping_report "$how of $peer"
    uml_check "$how of $peer: no reply lost ($TK_PING_LOST of $TK_PING_TX)" test "$TK_PING_LOST" = 0 -a "$TK_PING_TX" -gt 0
}

# --- 4. the outbound SA lost while tokend was down ----------------------------
case_lost_outbound() {
    uml_note "case 4: a's outbound SA deleted while a's tokend is down"
    local gen saved spi new_gen new_spi t_del t_up mark mark_b after b_in
    gen=$(tk_assoc_field a "$NAME" outbound.generation)
    saved=$(tk_state_gen a "$NAME" out_generation)
    spi=$(tk_spi_hex "$(tk_assoc_field a "$NAME" outbound.spi)")
    uml_check "a: state file holds the sending generation ($saved = $gen)" test "$saved" = "$gen"
    tk_record_keys a b
    tk_ping_start a "$UML_B4" 30
    sleep 1
    tk_stop a
    t_del=$(tk_now)
    uml_check "delete a's outbound SA $spi by SPI" \
        ip -n a xfrm state delete src "$UML_A4" dst "$UML_B4" proto esp spi "$spi"
    uml_check "a: no outbound SA left ($(a_out_spis))" test -z "$(a_out_spis)"
    sleep 1
    mark=$(tk_log_mark a)
    mark_b=$(tk_log_mark b)
    tk_start a
    new_gen=$((saved + 1))
    if uml_wait 15 eval 'test -n "$(a_out_spis)"'; then
        t_up=$(tk_now)
        uml_pass "a: an outbound SA is back ($(a_out_spis)) $(awk -v a="$t_del" -v b="$t_up" 'BEGIN { printf "%.1f", b - a }') s after the deletion"
    else
        t_up=$(tk_now)
        uml_fail "a: an outbound SA is back"
    fi
    new_spi=$(tk_spi_hex "$(tk_assoc_field a "$NAME" outbound.spi)")
    uml_check "a: sends on saved generation + 1 = $new_gen" field_is a outbound.generation "$new_gen"
    uml_check "a: state file out_generation is $new_gen" test "$(tk_state_gen a "$NAME" out_generation)" = "$new_gen"
    uml_check "a: the kernel's outbound SA is generation $new_gen's SPI $new_spi" test "$(a_out_spis)" = "$new_spi "
    uml_check "a: generation $new_gen was never used before (used:$USED_GENS)" eval '! grep -q " $new_gen " <<<"$USED_GENS"'
    uml_check "a: SPI $new_spi was never sent on before (used:$USED_SPIS)" eval '! grep -q " $new_spi " <<<"$USED_SPIS"'
    after=$(tk_log_after a "$mark")
    uml_check "a: logs why it moved on" grep -q "generation $saved was used before, so sending starts on $new_gen" <<<"$after"
    local used_re
    used_re=$(echo $USED_SPIS | tr ' ' '|')
    uml_check "a: no request after the restart adds an SA under an old SPI ($used_re)" \
        eval '! grep "netlink request: .*add SA" <<<"$after" | grep -qE "spi ($used_re) "'
    if uml_wait 10 field_is b inbound.0.generation "$new_gen"; then
        uml_pass "b: receive window moved to generation $new_gen"
    else
        b_in=$(tk_assoc_field b "$NAME" inbound.0.generation)
        uml_fail "b: receive window moved to generation $new_gen (it is at $b_in)"
        dump_note b "$mark_b"
    fi
    uml_eventually 5 "b: the inbound SA of the lost generation $gen is removed" eval '! tk_has_sa b "$spi"'
    uml_check "ping is still running (the case ended within it)" tk_ping_running
    tk_record_keys a b
    tk_ping_finish
    ping_report "outbound SA lost"
    uml_check "lost SA: replies were lost while it was missing ($TK_PING_LOST of $TK_PING_TX)" test "$TK_PING_LOST" -gt 0
    uml_check "lost SA: every lost request was sent between the deletion and the new SA" \
        tk_ping_lost_between "$t_del" "$t_up"
    USED_GENS+="$new_gen "
    USED_SPIS+="$new_spi "
}

# --- 5. secret hygiene ----------------------------------------------------------
case_hygiene() {
    uml_note "case 5: secret hygiene"
    local out=/tmp/tk-shown p f mode res
    mkdir -p "$out"
    tk_record_keys a b
    for p in a b; do
        tk_call "$p" ListAssociations '{}' > "$out/$p.list.json"
        tk_call "$p" ListAssociations "{\"name\": \"$NAME\"}" > "$out/$p.list-name.json"
        tk_call "$p" GetStatus '{}' > "$out/$p.status.json"
        tk_ctl "$p" show > "$out/$p.show.txt" 2>&1
        tk_ctl "$p" show sa > "$out/$p.show-sa.txt" 2>&1
        tk_ctl "$p" --json show sa > "$out/$p.show-sa-json.txt" 2>&1
        tk_ctl "$p" status > "$out/$p.status.txt" 2>&1
        tk_ctl "$p" --json status > "$out/$p.status-json.txt" 2>&1
    done
    uml_check "the socket shows the association on both peers" \
        grep -q "\"name\": \"$NAME\"" "$out/a.list.json" "$out/b.list.json"
    for p in a b; do
        uml_check "$p's log was written at debug level" grep -q '<7>' "$TK_DIR/$p.log"
    done
    # The search itself: labels only are printed, never a value.
    res=$(python3 - "$TK_DIR/secret.key" "$TK_KEYS" "$TK_DIR/a.log" "$TK_DIR/b.log" \
        "$out"/* $(find "$TK_DIR/a.state" "$TK_DIR/b.state" -type f) <<'PY'
import base64, sys
secret_hex = open(sys.argv[1]).read().strip()
keys = [l.strip() for l in open(sys.argv[2]) if l.strip()]
files = sys.argv[3:]
def forms(label, hexstr):
    raw = bytes.fromhex(hexstr)
    b64 = base64.b64encode(raw).decode()
    u64 = base64.urlsafe_b64encode(raw).decode()
    out = [(label + " hex", hexstr.lower(), False), (label + " HEX", hexstr.upper(), False),
           (label + " base64", b64, False), (label + " base64 unpadded", b64.rstrip("="), False),
           (label + " base64url", u64.rstrip("="), False)]
    return out
needles = forms("master secret", secret_hex)
for i, k in enumerate(keys):
    needles += forms("SA key %d (%d bytes)" % (i + 1, len(k) // 2), k)
hits = []
total = 0
for f in files:
    data = open(f, "rb").read().decode("latin-1")
    total += len(data)
    for label, n, _ in needles:
        if n in data:
            hits.append("%s in %s" % (label, f))
print("%d keys, %d needles, %d files, %d bytes" % (len(keys), len(needles), len(files), total))
for h in hits:
    print("FOUND " + h)
PY
)
    uml_note "hygiene: searched $(head -n 1 <<<"$res")"
    uml_check "hygiene: at least the keys of 3 generations of each direction were recorded ($(wc -l < "$TK_KEYS"))" \
        test "$(wc -l < "$TK_KEYS")" -ge 6
    # The search finds what is there: the kernel's own listing has the keys.
    uml_check "hygiene: the search finds a recorded key in ip xfrm state (control)" \
        eval 'ip -n a xfrm state | grep -qFf "$TK_KEYS" || ip -n b xfrm state | grep -qFf "$TK_KEYS"'
    if grep -q '^FOUND' <<<"$res"; then
        uml_fail "hygiene: no secret or key in logs, socket output or state files"
        grep '^FOUND' <<<"$res" | sed 's/^/#   /'
    else
        uml_pass "hygiene: no secret or key in logs, socket output or state files"
    fi
    for p in a b; do
        mode=$(stat -c %a "$TK_DIR/$p.state")
        uml_check "$p: state directory mode 0700 (is 0$mode)" test "$mode" = 700
        for f in $(find "$TK_DIR/$p.state" -mindepth 1); do
            mode=$(stat -c %a "$f")
            uml_check "$p: $(basename "$f") mode 0600 (is 0$mode)" test "$mode" = 600
        done
    done
    rm -rf "$out"
}

for c in $CASES; do
    case $c in
        1) case_rotation ;;
        2) case_restart a term ;;
        3) case_restart b kill9 ;;
        4) case_lost_outbound ;;
        5) case_hygiene ;;
        *) uml_fail "no case $c" ;;
    esac
done

uml_done
