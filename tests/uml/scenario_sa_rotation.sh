#!/bin/bash
# Automatic key rotation between two tokend peers, a ping a -> b at 20/s
# running through every case and every lost reply counted:
#   1. rotation by the clock (lifetime 4 s) across six boundaries: zero loss;
#      every generation carried traffic both ways; old generations leave the
#      kernel (never more SAs than the window's); both peers count the
#      rotations and send on the clock's generation; the SAs' time limits
#      follow the clock, none is rewritten; neither peer calls the other
#      behind (they share one clock);
#   2. the peers' epochs apart: 1 s within a 2 s overlap loses nothing; 3 s
#      with a 1 s overlap loses packets and says so (log warning, show state
#      error, peer_in_step false) and the report stays while b is behind;
#      b's epoch put right with SIGHUP, the peers recover by themselves: zero
#      loss, the report clears, b rewrites no SA's lifetimes over and over;
#   3. a byte limit (lifetime-bytes) small enough that the senders move
#      early several times within one period (lifetime 30 s, lookahead 8,
#      dwell 1 s): zero loss, several "soft byte limit" rotations.
# Scheduled secret changes, kill -9 at a boundary and clock steps are in
# scenario_sa_rotation2.sh.
#
#   tests/uml/run.sh tests/uml/scenario_sa_rotation.sh [CASE...]
# (default: every case, in order; each case starts from scratch: fresh
# daemons, no SAs, no state.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tokend_lib.sh"
trap 'tk_sampler_stop; tk_cleanup_all; uml_cleanup; cp "$TK_DIR"/*.log "$UML_RESULTS/" 2>/dev/null' EXIT

CASES=${*:-1 2 3}

uml_peers || { uml_fail "two peers"; uml_done; exit 1; }
tk_secret
touch "$TK_DIR/a.log" "$TK_DIR/b.log"   # log marks from the first case on

# --- 1. rotation by the clock -------------------------------------------------
case_clock() {
    uml_note "case 1: rotation by the clock, lifetime 4 s, ping across six boundaries"
    local name=clk number=11 g0 next l ov origin gend r0a r0b ra rb t_end mark_a mark_b
    TK_ROT_TOKEND=""                       # counter-interval 1 s, dwell 3 s: defaults
    TK_ROT_SA="lifetime = 4s"              # overlap: the default, L/4 = 1 s
    TK_ROT_A="" TK_ROT_B=""
    tk_rot_fresh
    local start_a start_b
    start_a=$(tk_log_mark a); start_b=$(tk_log_mark b)
    tk_rot_start "$name" "$number" || return
    read -r g0 next l ov origin <<<"$(tk_rot_clock a "$name")"
    uml_note "  clock generation $g0, period $l ms, overlap $ov ms, next boundary in $(( next - $(tk_wall_ms) )) ms"
    uml_check "show: period 4 s, overlap 1 s (the default L/4)" test "$l" = 4000 -a "$ov" = 1000
    # From just after a boundary, so the ping spans whole generations.
    tk_sleep_until $(( next + 200 ))
    g0=$((g0 + 1))
    mark_a=$(tk_log_mark a); mark_b=$(tk_log_mark b)
    r0a=$(tk_fields a "$name" rotation.rotations)
    r0b=$(tk_fields b "$name" rotation.rotations)
    tk_sampler_start /tmp/rot-samples 1 a b
    tk_ping_start a "$UML_B4" 25
    # Six boundaries go by; each peer is looked at now and then.
    local polls=0 bad=""
    while tk_ping_running; do
        sleep 1.5
        tk_ping_running || break
        local p st og cg
        for p in a b; do
            read -r st og cg <<<"$(tk_fields "$p" "$name" state outbound.generation rotation.clock_generation | tr '\n' ' ')"
            polls=$((polls + 1))
            [ "$st" = up ] && [ "$og" = "$cg" ] || bad+=" $p:state=$st,outbound=$og,clock=$cg"
        done
    done
    tk_ping_finish
    tk_sampler_stop
    t_end=$(tk_wall_ms)
    tk_rot_ping_report "clock rotation"
    uml_check "clock rotation: no reply lost ($TK_PING_LOST of $TK_PING_TX)" test "$TK_PING_LOST" = 0 -a "$TK_PING_TX" -gt 400
    uml_check "every look at a and b while the ping ran: state up, outbound generation = the clock's ($polls looks)$bad" \
        test -z "$bad"

    # Wait until the newest generation's overlap is over (and not at the
    # next boundary), then look at the kernel's SAs and at show: a snapshot
    # within one generation (taken again if a boundary came in between).
    local try spis_a spis_b show_a show_b
    for try in 1 2 3; do
        tk_rot_settle a "$name"
        gend=$TK_ROT_GEN
        spis_a=$(tk_spis a); spis_b=$(tk_spis b)
        show_a=$(tk_fields a "$name" outbound.generation rotation.clock_generation rotation.rotations \
            rotation.last.reason rotation.last.to rotation.last.outcome | tr '\n' ' ')
        show_b=$(tk_fields b "$name" outbound.generation rotation.clock_generation rotation.rotations \
            rotation.last.reason rotation.last.to rotation.last.outcome | tr '\n' ' ')
        tk_rot_same_gen a "$name" "$gend" && break
        uml_note "  a boundary came during the snapshot; again"
    done
    uml_note "  generations $g0 -> $gend during the case ($((gend - g0)) boundaries)"
    uml_check "at least six boundaries went by ($g0 -> $gend)" test $((gend - g0)) -ge 6
    for p in a b; do
        local og cg rot reason to outcome r0
        if [ "$p" = a ]; then r0=$r0a; read -r og cg rot reason to outcome <<<"$show_a"
        else r0=$r0b; read -r og cg rot reason to outcome <<<"$show_b"; fi
        uml_check "$p: sends on the clock's generation ($og = $cg = $gend)" test "$og" = "$gend" -a "$cg" = "$gend"
        uml_check "$p: show counts $((gend - g0)) more rotations ($r0 -> $rot)" test "$rot" = $((r0 + gend - g0))
        uml_check "$p: last rotation: to $gend, reason clock, outcome done ($to, $reason, $outcome)" \
            test "$to" = "$gend" -a "$reason" = clock -a "$outcome" = done
    done
    # The log: one rotation per boundary, each to the next generation.
    for p in a b; do
        local mk; [ "$p" = a ] && mk=$mark_a || mk=$mark_b
        local lines want="" g
        lines=$(tk_log_after "$p" "$mk" | sed -n "s/.*$name: rotation [0-9]*: sending moves from generation \([0-9]*\) to \([0-9]*\) (\([^)]*\)).*/\1>\2 \3/p" |
            awk -F'[> ]' -v e="$gend" '$2 <= e' | tr '\n' ';')
        for ((g = g0; g < gend; g++)); do want+="$g>$((g + 1)) clock;"; done
        uml_check "$p's log: one clock rotation per boundary, one generation each ($lines)" test "$lines" = "$want"
    done
    # Each generation that ran whole under the ping carried traffic, both
    # directions, on both peers; the old ones left the kernel.
    tk_rot_gen_traffic "$number" $((g0 + 1)) $((g0 + 6)) /tmp/rot-samples
    tk_rot_window_check "$number" /tmp/rot-samples 2 "$l" "$ov" "$origin"
    tk_rot_removed_check "$name" "$number" "$g0" $((gend - 1 < g0 + 6 ? gend - 1 : g0 + 6)) "$mark_a" "$mark_b"
    tk_rot_kernel_exact "$number" 2 "$gend" "$spis_a" "$spis_b"
    tk_rot_expiry_check "$gend" "$l" "$ov" "$origin"
    # Both peers share one clock (the UML kernel's): neither is ever behind
    # (looked at once the ping has been over for a while: a receiver that
    # stops hearing from its peer must not call it behind either).
    for p in a b; do
        local mk warn; [ "$p" = a ] && mk=$mark_a || mk=$mark_b
        warn=$(tk_log_after "$p" "$mk" | grep "$name: its clock or epoch is behind ours")
        uml_check "$p: no 'clock or epoch is behind' warning, the peers share one clock ($(grep -c . <<<"$warn") warnings, $(tk_log_after "$p" "$mk" | grep -c "$name: the peer is in step again") 'in step again')" \
            test -z "$warn"
        [ -n "$warn" ] && head -n 3 <<<"$warn" | cut -c1-120 | sed "s/^/#   $p: /"
    done
    # Nobody touched the SAs: none needed its lifetimes put back, from the
    # daemons' start on (each SA installed right the first time).
    for p in a b; do
        local mk; [ "$p" = a ] && mk=$start_a || mk=$start_b
        uml_check "$p: no SA's lifetimes were 'restored' since the start ($(tk_log_after "$p" "$mk" | grep -c "$name: lifetimes of SA .* restored"))" \
            eval '! tk_log_after "$p" "$mk" | grep -q "$name: lifetimes of SA .* restored"'
    done
}

# --- 2. epochs apart ------------------------------------------------------------
case_epochs() {
    uml_note "case 2: the peers' epochs apart"
    local name=ep number=12 e=1700000000 next_a next_b l ov d
    # (a) b's epoch 1 s after a's, overlap 2 s: b rotates 1 s after a.
    uml_note "case 2a: b's epoch = a's + 1 s, overlap 2 s"
    TK_ROT_TOKEND=""
    TK_ROT_SA=$'lifetime = 4s\noverlap = 2s'
    TK_ROT_A="epoch = $e" TK_ROT_B="epoch = $((e + 1))"
    tk_rot_fresh
    tk_rot_start "$name" "$number" || return
    read -r _ next_a l ov _ <<<"$(tk_rot_clock a "$name")"
    read -r _ next_b _ _ _ <<<"$(tk_rot_clock b "$name")"
    d=$(( ((next_b - next_a) % l + l) % l ))
    uml_check "show: b's boundaries are 1 s after a's (epochs $e / $((e + 1)); $d ms)" test "$d" = 1000
    uml_check "show: overlap 2 s ($ov ms)" test "$ov" = 2000
    local mark_a mark_b g0 g1
    mark_a=$(tk_log_mark a); mark_b=$(tk_log_mark b)
    g0=$(tk_fields a "$name" rotation.clock_generation)
    tk_ping_start a "$UML_B4" 14
    tk_ping_finish
    g1=$(tk_fields a "$name" rotation.clock_generation)
    tk_rot_ping_report "epochs 1 s apart"
    uml_check "epochs 1 s apart within a 2 s overlap: no reply lost ($TK_PING_LOST of $TK_PING_TX, generations $g0 -> $g1)" \
        test "$TK_PING_LOST" = 0 -a "$TK_PING_TX" -gt 200
    uml_check "three boundaries went by ($g0 -> $g1)" test $((g1 - g0)) -ge 3
    for p in a b; do
        local mk; [ "$p" = a ] && mk=$mark_a || mk=$mark_b
        uml_check "$p: no 'clock or epoch is behind' warning" eval '! tk_log_after "$p" "$mk" | grep -q "its clock or epoch is behind ours"'
        uml_check "$p: state up, peer in step ($(tk_fields "$p" "$name" state rotation.peer_in_step | tr '\n' ' '))" \
            test "$(tk_fields "$p" "$name" state rotation.peer_in_step | tr '\n' ' ')" = "up true "
    done

    # (b) 3 s apart with a 1 s overlap: b's replies on its old generation
    # reach a after a dropped that generation.
    uml_note "case 2b: b's epoch = a's + 3 s, overlap 1 s"
    TK_ROT_SA=$'lifetime = 4s\noverlap = 1s'
    TK_ROT_A="epoch = $e" TK_ROT_B="epoch = $((e + 3))"
    tk_rot_fresh
    tk_rot_start "$name" "$number" || return
    mark_a=$(tk_log_mark a); mark_b=$(tk_log_mark b)
    g0=$(tk_fields a "$name" rotation.clock_generation)
    tk_ping_start a "$UML_B4" 14
    local looks="" seen_error=0 seen_reason=0 seen_step=0 st pis reason
    while tk_ping_running; do
        sleep 1
        tk_ping_running || break
        { read -r st; read -r pis; read -r reason; } <<<"$(tk_fields a "$name" state rotation.peer_in_step reason)"
        looks+=" $st/$pis"
        [ "$st" = error ] && seen_error=1
        [ "$pis" = false ] && seen_step=1
        grep -q "its clock or epoch is behind ours" <<<"$reason" && seen_reason=1 && ROT_REASON=$reason
    done
    tk_ping_finish
    g1=$(tk_fields a "$name" rotation.clock_generation)
    tk_rot_ping_report "epochs 3 s apart"
    uml_note "  a's state/peer_in_step each second:$looks"
    uml_check "epochs 3 s apart, overlap 1 s: replies lost ($TK_PING_LOST of $TK_PING_TX, generations $g0 -> $g1)" \
        test "$TK_PING_LOST" -gt 0
    uml_check "a: logs the warning that the peer moved on too late" \
        eval 'tk_log_after a "$mark_a" | grep "<4>" | grep -q "$name: the peer moved on to generation [0-9]* about [0-9]* ms after it began, more than the overlap"'
    tk_log_after a "$mark_a" | grep "its clock or epoch is behind ours" | head -n 1 | sed 's/^/#   a: /'
    uml_check "a: show said state error while it lasted" test "$seen_error" = 1
    uml_check "a: show said rotation.peer_in_step false" test "$seen_step" = 1
    uml_check "a: show's reason names it (${ROT_REASON:-none})" test "$seen_reason" = 1
    # b stayed 3 s behind the whole time: nothing was in step again.
    uml_check "a: the report did not clear while b stayed behind (no 'in step again': $(tk_log_after a "$mark_a" | grep -c "the peer is in step again") times; warnings: $(tk_log_after a "$mark_a" | grep -c "its clock or epoch is behind ours"))" \
        eval '! tk_log_after a "$mark_a" | grep -q "$name: the peer is in step again"'
    uml_check "b: no such warning (a is ahead of b, which b accepts)" \
        eval '! tk_log_after b "$mark_b" | grep -q "its clock or epoch is behind ours"'

    # b's epoch put right: rewrite its config, SIGHUP.
    mark_a=$(tk_log_mark a); mark_b=$(tk_log_mark b)
    TK_ROT_B="epoch = $e"
    tk_rot_conf b "$name" "$number"
    kill -HUP "${TK_PIDS[b]}"
    uml_eventually 5 "b: reloaded its config" eval 'tk_log_after b "$mark_b" | grep -q "config reloaded"'
    uml_check "b: the reload did not fail" eval '! tk_log_after b "$mark_b" | grep -q "config reload failed"'
    read -r _ next_a _ _ _ <<<"$(tk_rot_clock a "$name")"
    read -r _ next_b _ _ _ <<<"$(tk_rot_clock b "$name")"
    d=$(( ((next_b - next_a) % l + l) % l ))
    uml_check "show: a's and b's boundaries coincide now ($next_a / $next_b: $d ms apart modulo the period)" test "$d" = 0
    g0=$(tk_fields a "$name" rotation.clock_generation)
    tk_ping_start a "$UML_B4" 14
    # The report is looked at while the traffic flows (once it stops, a
    # receiver's view of its peer is another matter: case 1).
    looks=""
    local last_a="" last_b=""
    while tk_ping_running; do
        sleep 1
        tk_ping_running || break
        last_a=$(tk_fields a "$name" state rotation.peer_in_step reason | tr '\n' ' ')
        last_b=$(tk_fields b "$name" state rotation.peer_in_step reason | tr '\n' ' ')
        looks+=" ${last_a%% *}/$(cut -d' ' -f2 <<<"$last_a")"
    done
    tk_ping_finish
    local mark_end_a mark_end_b
    mark_end_a=$(tk_log_mark a); mark_end_b=$(tk_log_mark b)
    g1=$(tk_fields a "$name" rotation.clock_generation)
    local restores
    restores=$(tk_log_after b "$mark_b" | sed -n "s/.*$name: lifetimes of SA \(0x[0-9a-f]*\) restored.*/\1/p" | sort | uniq -c | awk '{ printf "%s x%d ", $2, $1 }')
    uml_check "b: after the new epoch, each SA's lifetimes rewritten once at most (${restores:-none})" \
        eval '! grep -q " x\([2-9]\|[1-9][0-9]\)" <<<" $restores"'
    tk_rot_ping_report "after b's epoch was put right"
    uml_note "  a's state/peer_in_step each second:$looks"
    uml_check "after the fix: no reply lost ($TK_PING_LOST of $TK_PING_TX, generations $g0 -> $g1)" \
        test "$TK_PING_LOST" = 0 -a "$TK_PING_TX" -gt 200
    uml_check "three boundaries went by ($g0 -> $g1)" test $((g1 - g0)) -ge 3
    uml_check "a: logs that the peer is in step again" \
        eval 'tk_log_after a "$mark_a" | grep -q "$name: the peer is in step again"'
    local warn
    warn=$(tk_log_after a "$mark_a" | head -n $((mark_end_a - mark_a)) | grep "$name: its clock or epoch is behind ours")
    uml_check "a: no new warning after the fix while the ping ran ($(grep -c . <<<"$warn"))" test -z "$warn"
    [ -n "$warn" ] && head -n 3 <<<"$warn" | cut -c1-120 | sed "s/^/#   a: /"
    uml_check "a: the report cleared by the last look during the ping: state up, peer in step, no reason ($last_a)" \
        test "$last_a" = "up true null "
    uml_check "b: the same at its last look ($last_b)" test "$last_b" = "up true null "
}

# --- 3. a byte limit: early moves within one period ------------------------------
case_bytes() {
    uml_note "case 3: lifetime-bytes small enough for several early moves within one period"
    local name=bytes number=13 g0 next l ov
    TK_ROT_TOKEND=$'counter-interval = 250ms\ndwell = 1s'
    TK_ROT_SA=$'lifetime = 30s\nlookahead = 8\nlifetime-bytes = 3000'
    TK_ROT_A="" TK_ROT_B=""
    tk_rot_fresh
    tk_rot_start "$name" "$number" || return
    read -r g0 next l ov _ <<<"$(tk_rot_clock a "$name")"
    # The whole run within one period: from just after a boundary when the
    # next one is less than 16 s away.
    if [ $(( next - $(tk_wall_ms) )) -lt 16000 ]; then
        uml_note "  waiting $(( next - $(tk_wall_ms) )) ms for the boundary"
        tk_sleep_until $(( next + 300 ))
        read -r g0 next l ov _ <<<"$(tk_rot_clock a "$name")"
    fi
    local mark_a mark_b moves_a0 moves_b0 og_a0 og_b0
    mark_a=$(tk_log_mark a); mark_b=$(tk_log_mark b)
    { read -r moves_a0; read -r og_a0; } <<<"$(tk_fields a "$name" moves outbound.generation)"
    { read -r moves_b0; read -r og_b0; } <<<"$(tk_fields b "$name" moves outbound.generation)"
    tk_ping_start a "$UML_B4" 12
    tk_ping_finish
    sleep 1
    local g1 p
    g1=$(tk_fields a "$name" rotation.clock_generation)
    tk_rot_ping_report "byte limit"
    uml_check "byte limit: no reply lost ($TK_PING_LOST of $TK_PING_TX)" test "$TK_PING_LOST" = 0 -a "$TK_PING_TX" -gt 200
    uml_check "all within one period (clock generation $g0 -> $g1)" test "$g0" = "$g1"
    for p in a b; do
        local mk m0 o0 n lines moves og rg other
        [ "$p" = a ] && { mk=$mark_a; m0=$moves_a0; o0=$og_a0; other=b; } || { mk=$mark_b; m0=$moves_b0; o0=$og_b0; other=a; }
        lines=$(tk_log_after "$p" "$mk" | grep "$name: rotation [0-9]*: sending moves from generation")
        n=$(grep -c "(soft byte limit)" <<<"$lines")
        { read -r moves; read -r og; } <<<"$(tk_fields "$p" "$name" moves outbound.generation)"
        rg=$(tk_fields "$other" "$name" receiving_generation)
        uml_note "  $p: $n soft byte limit rotations, moves $m0 -> $moves, outbound generation $o0 -> $og (clock $g1); $other receives on $rg"
        uml_check "$p: at least 3 'soft byte limit' rotations within the period ($n)" test "$n" -ge 3
        uml_check "$p: every rotation was for the byte limit" test "$(grep -vc '(soft byte limit)' <<<"$lines")" = 0
        uml_check "$p: each moved one generation on" \
            eval '! sed -n "s/.*from generation \([0-9]*\) to \([0-9]*\) .*/\1 \2/p" <<<"$lines" | awk "\$2 != \$1 + 1 { bad = 1 } END { exit !bad }"'
        uml_check "$p: show counts the early moves ($m0 -> $moves, $n logged)" test $((moves - m0)) = "$n"
        uml_check "$p: sends ahead of the clock by the moves, within lookahead - 1 ($og, clock $g1)" \
            test "$og" = $((o0 + n)) -a "$og" -le $((g1 + 7))
        uml_check "$other: receives on $p's sending generation ($rg = $og)" test "$rg" = "$og"
        uml_check "$p: no 'cannot move ahead' warning" eval '! tk_log_after "$p" "$mk" | grep -q "cannot move ahead"'
    done
}

for c in $CASES; do
    case $c in
        1) case_clock ;;
        2) case_epochs ;;
        3) case_bytes ;;
        *) uml_fail "no case $c" ;;
    esac
done

uml_done
