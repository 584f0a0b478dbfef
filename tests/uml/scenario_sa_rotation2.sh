#!/bin/bash
# Automatic key rotation between two tokend peers, part two, a ping a -> b
# at 20/s running through every case and every lost reply counted:
#   4. a new master secret scheduled a few generations ahead (SIGHUP on both
#      peers): zero loss across the switch; the generations before it keep
#      the old secret's keys, those from it on get the new one's; show's
#      rotation.secret_file follows; then the old secret file deleted and
#      both peers reloaded, and one restarted: still zero loss;
#   5. kill -9 of one peer's tokend just before a boundary and a restart
#      just after it (within the overlap, 2 s here), b then a: zero loss;
#      one outbound SA per peer, on the clock's generation; no SA installed
#      twice, no generation reused;
#   6. the clock stepped several periods ahead with date -s (both peers
#      share the UML kernel's clock): each peer goes straight to the clock's
#      generation in one "clock, several periods" rotation, and traffic
#      flows again by itself (the gap is printed, not judged). This case
#      leaves the UML clock ahead: it runs last.
#
#   tests/uml/run.sh tests/uml/scenario_sa_rotation2.sh [CASE...]
# (default: every case, in order; each case starts from scratch.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tokend_lib.sh"
trap 'tk_sampler_stop; tk_cleanup_all; uml_cleanup; cp "$TK_DIR"/*.log "$UML_RESULTS/" 2>/dev/null' EXIT

CASES=${*:-4 5 6}

uml_peers || { uml_fail "two peers"; uml_done; exit 1; }
tk_secret
touch "$TK_DIR/a.log" "$TK_DIR/b.log"   # log marks from the first case on

# installed_twice PEER MARK: SPIs PEER's tokend installed more than once
# since MARK ("SPI xN" each), nothing when none.
installed_twice() {
    tk_log_after "$1" "$2" | sed -n 's/.*: \(inbound\|outbound\) SA \(0x[0-9a-f]*\) installed (generation [0-9]*).*/\2/p' |
        sort | uniq -c | awk '$1 > 1 { printf "%s x%d ", $2, $1 }'
}

# outbound_gens PEER MARK: the generations of the outbound SAs PEER's
# tokend installed since MARK, in order, space-separated.
outbound_gens() {
    tk_log_after "$1" "$2" | sed -n 's/.*: outbound SA 0x[0-9a-f]* installed (generation \([0-9]*\)).*/\1/p' | tr '\n' ' '
}

# strictly_rising LIST: every number is above the one before.
strictly_rising() { awk '{ for (i = 2; i <= NF; i++) if ($i <= $(i - 1)) exit 1 }' <<<"$1"; }

# --- 4. a new master secret from a scheduled generation on ------------------------
case_schedule() {
    uml_note "case 4: a new master secret scheduled a few generations ahead"
    local name=sched number=14 s1=$TK_DIR/sched-old.key s2=$TK_DIR/sched-new.key
    local g next l ov f t_f p
    tk_secret_at "$s1"
    tk_secret_at "$s2"
    uml_check "both secrets are mode 0600, owned by root ($(stat -c '%a %u' "$s1") / $(stat -c '%a %u' "$s2"))" \
        test "$(stat -c '%a %u' "$s1")" = "600 0" -a "$(stat -c '%a %u' "$s2")" = "600 0"
    TK_ROT_TOKEND=""
    TK_ROT_SA="lifetime = 4s"          # lookahead 2, overlap 1 s: defaults
    TK_ROT_A="" TK_ROT_B=""
    tk_rot_fresh
    tk_rot_conf a "$name" "$number" "$s1"
    tk_rot_conf b "$name" "$number" "$s1"
    tk_start a && tk_start b || { uml_fail "both daemons started"; return; }
    uml_eventually 15 "a: association $name up" tk_assoc_up a "$name"
    uml_eventually 15 "b: association $name up" tk_assoc_up b "$name"
    tk_rot_settle a "$name"
    read -r g next l ov _ <<<"$(tk_rot_clock a "$name")"
    # The window reaches generation g + 2 now; a boundary may pass before
    # both reloads are done, so the new secret starts at g + 4.
    f=$((g + 4))
    t_f=$(( next + 3 * l ))            # when generation f starts
    uml_note "  clock generation $g; the new secret from generation $f, which starts in $(( t_f - $(tk_wall_ms) )) ms"
    tk_ping_start a "$UML_B4" $(( (t_f - $(tk_wall_ms)) / 1000 + 18 ))
    local mark_a mark_b
    mark_a=$(tk_log_mark a); mark_b=$(tk_log_mark b)
    TK_ROT_SA=$'lifetime = 4s\n'"schedule = from $f secret $s2"
    tk_rot_conf a "$name" "$number" "$s1"
    tk_rot_conf b "$name" "$number" "$s1"
    kill -HUP "${TK_PIDS[a]}" "${TK_PIDS[b]}"
    for p in a b; do
        local mk; [ "$p" = a ] && mk=$mark_a || mk=$mark_b
        uml_eventually 5 "$p: reloaded with the schedule" eval 'tk_log_after "$p" "$mk" | grep -q "config reloaded"'
        uml_check "$p: the reload did not fail" eval '! tk_log_after "$p" "$mk" | grep -q "config reload failed\|<3>"'
        uml_check "$p: show's secret_file is still the old one before generation $f ($(tk_fields "$p" "$name" rotation.secret_file))" \
            test "$(tk_fields "$p" "$name" rotation.secret_file)" = "$s1"
    done
    # In generation f - 1: its keys are the old secret's; generation f's
    # inbound SAs (installed ahead, lookahead 2) already the new one's.
    tk_sleep_until $(( t_f - l + 400 ))
    local alg=aes-gcm-128 snap=/tmp/tk-rot-snap
    tk_rot_snap "$snap" a b
    uml_check "generation $((f - 1)): a's outbound key is the old secret's" \
        tk_rot_key_in "$snap" a "$(tk_gen_spi "$number" 0 $((f - 1)))" "$s1" "$name" "$number" $((f - 1)) "$alg"
    uml_check "generation $((f - 1)): b's outbound key is the old secret's" \
        tk_rot_key_in "$snap" b "$(tk_gen_spi "$number" 1 $((f - 1)))" "$s1" "$name" "$number" $((f - 1)) "$alg"
    uml_check "generation $f, installed ahead: b's inbound key (from a) is the new secret's" \
        tk_rot_key_in "$snap" b "$(tk_gen_spi "$number" 0 "$f")" "$s2" "$name" "$number" "$f" "$alg"
    uml_check "generation $f, installed ahead: a's inbound key (from b) is the new secret's" \
        tk_rot_key_in "$snap" a "$(tk_gen_spi "$number" 1 "$f")" "$s2" "$name" "$number" "$f" "$alg"
    uml_check "generation $f: b's inbound key is not what the old secret gives" \
        eval 'tk_rot_key_in "$snap" b "$(tk_gen_spi "$number" 0 "$f")" "$s1" "$name" "$number" "$f" "$alg" | grep -q "differs from that derivation"'
    # Generation f: both send with the new secret's keys.
    tk_sleep_until $(( t_f + 400 ))
    tk_rot_snap "$snap" a b
    local pk og sf
    pk=$(uml_sa_packets a "$(tk_gen_spi "$number" 0 "$f")")
    uml_check "generation $f: a's outbound SA carries packets (${pk:-no such SA})" test "${pk:-0}" -gt 0
    for p in a b; do
        { read -r og; read -r sf; } <<<"$(tk_fields "$p" "$name" outbound.generation rotation.secret_file)"
        uml_check "$p: sends on generation $f ($og), show's secret_file is the new one ($sf)" test "$og" = "$f" -a "$sf" = "$s2"
    done
    uml_check "generation $f: a's outbound key is the new secret's" \
        tk_rot_key_in "$snap" a "$(tk_gen_spi "$number" 0 "$f")" "$s2" "$name" "$number" "$f" "$alg"
    uml_check "generation $f: b's outbound key is the new secret's" \
        tk_rot_key_in "$snap" b "$(tk_gen_spi "$number" 1 "$f")" "$s2" "$name" "$number" "$f" "$alg"
    rm -f "$snap"
    # The old secret's generations are all past by more than the overlap:
    # its file goes; both reload without it, then a restarts without it.
    tk_sleep_until $(( t_f + ov + 600 ))
    rm -f "$s1"
    mark_a=$(tk_log_mark a); mark_b=$(tk_log_mark b)
    kill -HUP "${TK_PIDS[a]}" "${TK_PIDS[b]}"
    for p in a b; do
        local mk; [ "$p" = a ] && mk=$mark_a || mk=$mark_b
        uml_eventually 5 "$p: reloaded with the old secret file deleted" eval 'tk_log_after "$p" "$mk" | grep -q "config reloaded"'
        uml_check "$p: that reload did not fail" eval '! tk_log_after "$p" "$mk" | grep -q "config reload failed\|<3>"'
        uml_check "$p: state up after it ($(tk_fields "$p" "$name" state reason | tr '\n' ' '))" tk_assoc_up "$p" "$name"
    done
    tk_stop a
    mark_a=$(tk_log_mark a)
    tk_start a || uml_fail "a: restarted"
    uml_eventually 15 "a: restarted without the old secret file, association up" tk_assoc_up a "$name"
    uml_check "a: no error at the restart" eval '! tk_log_after a "$mark_a" | grep -q "<3>"'
    uml_check "a: adopted its outbound SA at the restart" \
        eval '! tk_log_after a "$mark_a" | grep -q "no outbound SA in the kernel"'
    uml_check "ping is still running (the case ended within it)" tk_ping_running
    tk_ping_finish
    local gend
    gend=$(tk_fields a "$name" rotation.clock_generation)
    tk_rot_ping_report "secret schedule"
    uml_check "secret schedule: no reply lost ($TK_PING_LOST of $TK_PING_TX; generations $g -> $gend, new secret from $f)" \
        test "$TK_PING_LOST" = 0 -a "$TK_PING_TX" -gt 300
    uml_check "two boundaries went by after the old secret's deletion ($gend >= $((f + 2)))" test "$gend" -ge $((f + 2))
    # Every SA left in the kernel has the new secret's key (a snapshot
    # within one generation).
    local try spis_a spis_b bad
    for try in 1 2 3; do
        tk_rot_settle a "$name"
        spis_a=$(tk_spis a); spis_b=$(tk_spis b)
        bad=$(tk_rot_keys_from "$s2" "$name" "$number" "$TK_ROT_GEN" "$alg" a b)
        tk_rot_same_gen a "$name" "$TK_ROT_GEN" && break
    done
    tk_rot_kernel_exact "$number" 2 "$TK_ROT_GEN" "$spis_a" "$spis_b"
    uml_check "every SA in both kernels has the new secret's key${bad:+ (not: $bad)}" test -z "$bad"
}

# --- 5. kill -9 just before a boundary, restart just after --------------------------
case_kill() {
    uml_note "case 5: kill -9 of a tokend just before a boundary, restart just after"
    local name=kill number=15 p g next l ov t_kill t_start t_up mark_a mark_b
    TK_ROT_TOKEND=""
    # The restarted tokend must act within the overlap: the peer drops the
    # old generation an overlap after the boundary. Under UML a tokend
    # takes 0.5-1 s to its socket, so the overlap is 2 s, not the default
    # 1 s (with 1 s, a restart 0.4 s after the boundary lost one reply).
    TK_ROT_SA=$'lifetime = 4s\noverlap = 2s'
    TK_ROT_A="" TK_ROT_B=""
    tk_rot_fresh
    tk_rot_start "$name" "$number" || return
    mark_a=$(tk_log_mark a); mark_b=$(tk_log_mark b)
    local g_first
    g_first=$(tk_fields a "$name" rotation.clock_generation)
    tk_ping_start a "$UML_B4" 30
    local events=""
    sleep 1
    for p in b a; do
        read -r g next l ov _ <<<"$(tk_rot_clock a "$name")"
        [ $(( next - $(tk_wall_ms) )) -lt 1500 ] && { next=$((next + l)); g=$((g + 1)); }
        local saved_out
        saved_out=$(tk_fields "$p" "$name" outbound.generation)
        tk_sleep_until $(( next - 500 ))
        tk_kill9 "$p"
        t_kill=$(tk_wall_ms)
        tk_sleep_until $(( next + 200 ))
        t_start=$(tk_wall_ms)
        local mk
        mk=$(tk_log_mark "$p")
        tk_start "$p" || uml_fail "$p: restarted"
        t_up=$(tk_wall_ms)
        events+="$p-killed:$t_kill boundary:$next $p-started:$t_start $p-socket:$t_up "
        uml_note "  $p: killed $(( next - t_kill )) ms before the boundary into generation $((g + 1)), started $(( t_start - next )) ms after it, socket up $(( t_up - next )) ms after it"
        uml_eventually 15 "$p: association up after the restart" tk_assoc_up "$p" "$name"
        local og cg
        { read -r og; read -r cg; } <<<"$(tk_fields "$p" "$name" outbound.generation rotation.clock_generation)"
        uml_check "$p: sends on the clock's generation after the restart ($og = $cg; it sent on $saved_out before)" \
            test "$og" = "$cg" -a "$og" -gt "$saved_out"
        tk_log_after "$p" "$mk" | grep "$name: \(rotation\|no outbound\|sending starts\|outbound SA .* installed\|SA .* removed\|SA .* went away\|SA .* reached\)" | sed "s/^/#   $p: /"
        tk_rot_settle a "$name"
        tk_rot_kernel_exact "$number" 2 "$TK_ROT_GEN"
    done
    uml_check "ping is still running (the case ended within it)" tk_ping_running
    tk_ping_finish
    tk_rot_ping_report "kill -9 at a boundary"
    if [ "$TK_PING_LOST" != 0 ]; then
        # Where each lost request fell among the kills and restarts.
        cp "$TK_PING_OUT" "$UML_RESULTS/ping-kill.out"
        python3 - "$TK_PING_OUT" $events <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
ev = sorted((int(e.split(":")[1]) / 1000.0, e.split(":")[0]) for e in sys.argv[2:])
ts = {int(m.group(2)): float(m.group(1)) for m in
      re.finditer(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+) ", text, re.M)}
tx = int(re.search(r"(\d+) packets transmitted", text).group(1))
for s in range(1, tx + 1):
    if s in ts:
        continue
    b = max((k for k in ts if k < s), default=None)
    a = min((k for k in ts if k > s), default=None)
    tb, ta = ts.get(b), ts.get(a)
    near = [(n, t) for t, n in ev if tb is not None and abs(t - tb) < 3]
    print("#   lost icmp_seq %d: sent between the replies at %s and %s; events within 3 s: %s" % (
        s, "%.3f" % tb if tb else "-", "%.3f" % ta if ta else "-",
        ", ".join("%s %+.3f s" % (n, t - tb) for n, t in near) or "none"))
PY
    fi
    uml_check "kill -9 at a boundary, b then a: no reply lost ($TK_PING_LOST of $TK_PING_TX)" \
        test "$TK_PING_LOST" = 0 -a "$TK_PING_TX" -gt 300
    for p in a b; do
        local mk twice gens st
        [ "$p" = a ] && mk=$mark_a || mk=$mark_b
        twice=$(installed_twice "$p" "$mk")
        gens=$(outbound_gens "$p" "$mk")
        st=$(tk_fields "$p" "$name" state)
        uml_check "$p: no SA installed twice during the case${twice:+ ($twice)}" test -z "$twice"
        uml_check "$p: its outbound generations only rose ($gens)" strictly_rising "$gens"
        uml_check "$p: state up ($st)" test "$st" = up
        local sg cg1 cg2
        for _ in 1 2 3; do
            cg1=$(tk_fields "$p" "$name" rotation.clock_generation)
            sg=$(tk_state_gen "$p" "$name" out_generation)
            cg2=$(tk_fields "$p" "$name" rotation.clock_generation)
            [ "$cg1" = "$cg2" ] && break
        done
        uml_check "$p: state file says out_generation = the clock's ($sg = $cg2)" test "$sg" = "$cg2"
    done
    uml_note "  generations $g_first -> $(tk_fields a "$name" rotation.clock_generation) during the case"
}

# --- 6. the clock stepped several periods ahead -------------------------------------
case_step() {
    uml_note "case 6: the clock stepped about 30 s (7 periods and a bit) ahead with date -s"
    local name=step number=16 g next l ov t_step g_new mark_a mark_b p g_from
    TK_ROT_TOKEND=""
    TK_ROT_SA="lifetime = 4s"
    TK_ROT_A="" TK_ROT_B=""
    tk_rot_fresh
    tk_rot_start "$name" "$number" || return
    tk_ping_start a "$UML_B4" 20
    # Mid-period, away from the boundaries.
    tk_rot_settle a "$name" 1000
    read -r g next l ov _ <<<"$(tk_rot_clock a "$name")"
    mark_a=$(tk_log_mark a); mark_b=$(tk_log_mark b)
    # Seven periods and a bit: the clock lands 1.5 s into a period (past
    # the overlap), so the checks below finish before its end.
    local now step
    now=$(tk_wall_ms)
    step=$(( 7 * l + ((1500 - (l - (next - now))) % l + l) % l ))
    t_step=$(tk_now)
    date -s "@$(awk -v t="$(tk_now)" -v s="$step" 'BEGIN { printf "%.3f", t + s / 1000 }')" >/dev/null
    local t_after
    t_after=$(tk_now)
    read -r g_new next l ov _ <<<"$(awk -v t="$t_after" -v n="$next" -v l="$l" -v g="$g" -v ov="$ov" '
        BEGIN { o = n - (g + 1) * l; G = int((t * 1000 - o) / l); printf "%.0f %.0f %.0f %.0f\n", G, o + (G + 1) * l, l, ov }')"
    uml_note "  clock stepped $step ms ahead: from generation $g to $g_new ($((g_new - g)) periods); the next boundary in $(( next - $(tk_wall_ms) )) ms"
    for p in a b; do
        uml_eventually 5 "$p: sends on the clock's generation $g_new again" \
            eval 'test "$(tk_fields "$p" "$name" outbound.generation rotation.clock_generation | tr "\n" " ")" = "$g_new $g_new "'
    done
    local t_moved
    t_moved=$(tk_now)
    uml_note "  both peers showed generation $g_new $(awk -v a="$t_after" -v b="$t_moved" 'BEGIN { printf "%.1f", b - a }') s after the step (each look takes a few tenths of a second)"
    # The logs: the step, then one move per peer straight to g_new, then
    # the next boundary's ordinary move (looked at once it has passed).
    tk_sleep_until $(( next + ov + 500 ))
    for p in a b; do
        local mk lines gens; [ "$p" = a ] && mk=$mark_a || mk=$mark_b
        uml_check "$p: logs the clock step" eval 'tk_log_after "$p" "$mk" | grep -q "the wall clock was set: rotation times are recomputed"'
        lines=$(tk_log_after "$p" "$mk" | grep "$name: rotation [0-9]*: sending moves")
        sed "s/^/#   $p: /" <<<"$lines"
        lines=$(sed -n "s/.*sending moves from generation \([0-9]*\) to \([0-9]*\) (\([^)]*\)).*/\1>\2 \3/p" <<<"$lines" | tr '\n' ';')
        # On a slow lab a boundary may pass between reading the clock
        # and the step: then one ordinary move to g + 1 comes first.
        local pre="" pre_gen=""
        case $lines in "$g>$((g + 1)) clock;"*) pre="$g>$((g + 1)) clock;" pre_gen="$((g + 1)) " g_from=$((g + 1)) ;; *) g_from=$g ;; esac
        uml_check "$p: after the step one rotation straight from $g_from to $g_new (clock, several periods), then at the next boundary one ordinary one to $((g_new + 1))" \
            test "$lines" = "$pre$g_from>$g_new clock, several periods;$g_new>$((g_new + 1)) clock;"
        gens=$(outbound_gens "$p" "$mk")
        uml_check "$p: outbound SAs installed after the step: generations $g_new and $((g_new + 1)) only (${pre_gen:+before it $pre_gen}$gens)" \
            test "$gens" = "$pre_gen$g_new $((g_new + 1)) "
    done
    tk_ping_finish
    tk_rot_ping_report "clock step"
    python3 - "$TK_PING_OUT" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
seqs = sorted(int(m.group(1)) for m in re.finditer(r"bytes from .*icmp_seq=(\d+) ", text))
m = re.search(r"(\d+) packets transmitted", text)
tx = int(m.group(1)) if m else 0
got = set(seqs)
runs, run = [], []
for s in range(1, tx + 1):
    if s not in got:
        run.append(s)
    elif run:
        runs.append(run); run = []
if run:
    runs.append(run)
if runs:
    longest = max(runs, key=len)
    print("# clock step: gap: %d lost in a row (icmp_seq %d-%d), about %.2f s at 20/s; %d gap(s)" % (
        len(longest), longest[0], longest[-1], len(longest) * 0.05, len(runs)))
else:
    print("# clock step: gap: none, not one reply lost")
PY
    local tail_lost
    tail_lost=$(awk -v tx="$TK_PING_TX" '{ for (i = 1; i <= NF; i++) if ($i > tx - 40) n++ } END { print n + 0 }' <<<"${TK_PING_MISSING:-}")
    uml_check "traffic flows again by itself: the last 2 s of the ping all answered ($tail_lost of the last 40 lost)" test "$tail_lost" = 0
    tk_rot_settle a "$name"
    tk_rot_kernel_exact "$number" 2 "$TK_ROT_GEN"
}

for c in $CASES; do
    case $c in
        4) case_schedule ;;
        5) case_kill ;;
        6) case_step ;;
        *) uml_fail "no case $c" ;;
    esac
done

uml_done
