#!/bin/bash
# Proves the UML lab can do what the IPsec tests need: ESP transport-mode SAs
# installed by hand with `ip xfrm` between two peers carry ping, over IPv4
# and IPv6, with AES-GCM (rfc4106) and with AES-CBC + HMAC-SHA-256; a wrong
# key on the receiver breaks the traffic (so the crypto really runs); and
# soft then hard lifetime expiry reaches netlink listeners as XFRM_MSG_EXPIRE.
#
# Runs only inside UML: tests/uml/run.sh tests/uml/scenario_esp_smoke.sh
. "$(dirname "$0")/lib.sh"

if ! uml_peers; then
    uml_fail "two peers a and b joined by veth"
    uml_done
    exit 1
fi
uml_pass "two peers a and b joined by veth"

# ping4/ping6 NS DST COUNT: all COUNT echo requests answered.
ping_all() {
    local ns=$1 dst=$2 n=$3 out
    out=$(ip netns exec "$ns" ping -n -c "$n" -i 0.2 -w $((n + 3)) "$dst" 2>&1)
    grep -q " $n received" <<<"$out" && return 0
    printf '%s\n' "$out" | tail -n 3 | sed 's/^/#   /'
    return 1
}
# ping_none NS DST: no echo request answered within 1 s.
ping_none() {
    ! ip netns exec "$1" ping -n -c 3 -i 0.2 -w 1 "$2" >/dev/null 2>&1
}

uml_check "plain ping a -> b over IPv4 before any IPsec" ping_all a "$UML_B4" 2
uml_check "plain ping a -> b over IPv6 before any IPsec" ping_all a "$UML_B6" 2

# sa_add NS SRC DST SPI REQID ALGO...: one transport-mode ESP SA.
sa_add() {
    local ns=$1 src=$2 dst=$3 spi=$4 reqid=$5
    shift 5
    ip -n "$ns" xfrm state add src "$src" dst "$dst" proto esp spi "$spi" \
        reqid "$reqid" mode transport "$@"
}

# pol_add NS DIR SRC DST PLEN REQID: a policy for SRC -> DST requiring ESP.
pol_add() {
    local ns=$1 dir=$2 src=$3 dst=$4 plen=$5 reqid=$6
    ip -n "$ns" xfrm policy add src "$src/$plen" dst "$dst/$plen" dir "$dir" \
        tmpl src "$src" dst "$dst" proto esp reqid "$reqid" mode transport
}

# bytes_nonzero NS SPI: the SA has carried bytes and packets.
bytes_nonzero() {
    local b p
    b=$(uml_sa_bytes "$1" "$2")
    p=$(uml_sa_packets "$1" "$2")
    echo "SA $2 in $1: ${b:-none} bytes, ${p:-none} packets"
    [ -n "$b" ] && [ "$b" -gt 0 ] && [ -n "$p" ] && [ "$p" -ge 5 ]
}

# esp_case NAME FAMILY REQID SPI_AB SPI_BA: SAs in both directions on both
# peers, in/out policies on each side, then ping, counters, a wrong key.
# The algorithm comes from the function keys_NAME.
esp_case() {
    local name=$1 fam=$2 reqid=$3 ab=$4 ba=$5
    local a b plen algo_ab algo_ba
    if [ "$fam" = 6 ]; then a=$UML_A6 b=$UML_B6 plen=128; else a=$UML_A4 b=$UML_B4 plen=32; fi
    uml_xfrm_flush a b
    # A fresh key per direction.
    read -ra algo_ab <<<"$("keys_$name")"
    read -ra algo_ba <<<"$("keys_$name")"

    local ok=1
    for ns in a b; do
        sa_add "$ns" "$a" "$b" "$ab" "$reqid" "${algo_ab[@]}" || ok=0
        sa_add "$ns" "$b" "$a" "$ba" "$reqid" "${algo_ba[@]}" || ok=0
    done
    pol_add a out "$a" "$b" "$plen" "$reqid" || ok=0
    pol_add a in "$b" "$a" "$plen" "$reqid" || ok=0
    pol_add b out "$b" "$a" "$plen" "$reqid" || ok=0
    pol_add b in "$a" "$b" "$plen" "$reqid" || ok=0
    if [ $ok -eq 1 ] && [ "$(uml_sa_count a)" -eq 2 ] && [ "$(uml_sa_count b)" -eq 2 ]; then
        uml_pass "$name/IPv$fam: SAs and policies installed on both peers"
    else
        uml_fail "$name/IPv$fam: SAs and policies installed on both peers"
        ip -n a xfrm state | sed 's/^/#   /'
        return
    fi

    uml_check "$name/IPv$fam: ping -c 5 a -> b through ESP, no loss" ping_all a "$b" 5
    for ns in a b; do
        uml_check "$name/IPv$fam: SA a->b (spi $ab) carried bytes on $ns" bytes_nonzero "$ns" "$ab"
        uml_check "$name/IPv$fam: SA b->a (spi $ba) carried bytes on $ns" bytes_nonzero "$ns" "$ba"
    done

    # The policies really require ESP: without the SAs nothing passes.
    # And the crypto really runs: a wrong key on b's inbound SA breaks it.
    local errs_before errs_after wrong
    read -ra wrong <<<"$("keys_$name")"
    errs_before=$(uml_xfrm_stat b XfrmInStateProtoError)
    ip -n b xfrm state delete src "$a" dst "$b" proto esp spi "$ab"
    sa_add b "$a" "$b" "$ab" "$reqid" "${wrong[@]}"
    uml_check "$name/IPv$fam: a wrong key on b's inbound SA stops the ping" ping_none a "$b"
    errs_after=$(uml_xfrm_stat b XfrmInStateProtoError)
    uml_check "$name/IPv$fam: b counted the failed decryptions (XfrmInStateProtoError $errs_before -> $errs_after)" \
        test "$errs_after" -gt "$errs_before"
    ip -n a xfrm state delete src "$a" dst "$b" proto esp spi "$ab"
    uml_check "$name/IPv$fam: without the outbound SA the policy blocks the ping" ping_none a "$b"
}

# AES-GCM-128 in ESP: 16-byte key + 4-byte salt, 128-bit ICV.
keys_gcm() { echo "aead rfc4106(gcm(aes)) 0x$(uml_random_hex 20) 128"; }
# AES-CBC-128 + HMAC-SHA-256 truncated to 128 bits.
keys_cbc_hmac() { echo "enc cbc(aes) 0x$(uml_random_hex 16) auth-trunc hmac(sha256) 0x$(uml_random_hex 32) 128"; }

esp_case gcm 4 1 0x1001 0x1002
esp_case cbc_hmac 4 2 0x2001 0x2002
esp_case gcm 6 3 0x3001 0x3002
esp_case cbc_hmac 6 4 0x4001 0x4002
uml_xfrm_flush a b
uml_check "plain ping a -> b works again once SAs and policies are gone" ping_all a "$UML_B4" 2

# --- lifetimes: XFRM_MSG_EXPIRE soft (hard 0), then hard (hard 1) ---------------

MON=$TMPDIR/xfrm-monitor.txt
: > "$MON"
uml_bg ip -n a xfrm monitor all > "$MON" 2>&1 < /dev/null
# The monitor must be listening before the SA goes in: add and delete a
# marker policy until the monitor has printed it (this also proves its
# output is not stuck in a buffer).
mon_ready() {
    ip -n a xfrm policy add src 198.51.100.1/32 dst 198.51.100.2/32 dir out 2>/dev/null
    ip -n a xfrm policy delete src 198.51.100.1/32 dst 198.51.100.2/32 dir out 2>/dev/null
    grep -q 198.51.100.2 "$MON"
}
if ! uml_wait 5 mon_ready; then
    uml_fail "ip xfrm monitor is listening"
    uml_done
    exit 1
fi
uml_pass "ip xfrm monitor is listening"

# expired_seen HARD: an "Expired" record for spi 0x5001 with "hard HARD".
expired_seen() {
    awk -v want="$1" '
        /^Expired / { rec = 1; spi = 0; next }
        /^[^\t]/ { rec = 0 }
        rec && /proto esp spi 0x00005001/ { spi = 1 }
        rec && spi && $1 == "hard" && $2 == want { found = 1 }
        END { exit !found }' "$MON"
}
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

read -ra gcm_key <<<"$(keys_gcm)"
t0=$(date +%s%N)
if sa_add a "$UML_A4" "$UML_B4" 0x5001 5 "${gcm_key[@]}" limit time-soft 2 limit time-hard 4; then
    uml_pass "SA with time-soft 2 / time-hard 4 added"
else
    uml_fail "SA with time-soft 2 / time-hard 4 added"
fi
soft_ms='' hard_ms='' present_after_soft=''
while [ "$(ms_since "$t0")" -lt 10000 ]; do
    if [ -z "$soft_ms" ] && expired_seen 0; then
        soft_ms=$(ms_since "$t0")
        ip -n a xfrm state get src "$UML_A4" dst "$UML_B4" proto esp spi 0x5001 >/dev/null 2>&1 \
            && present_after_soft=1
    fi
    if [ -z "$hard_ms" ] && expired_seen 1; then
        hard_ms=$(ms_since "$t0")
        break
    fi
    sleep 0.05
done
uml_note "soft expire seen after ${soft_ms:-never} ms, hard after ${hard_ms:-never} ms"
uml_check "soft expire (XFRM_MSG_EXPIRE, hard 0) seen" test -n "$soft_ms"
uml_check "hard expire (XFRM_MSG_EXPIRE, hard 1) seen" test -n "$hard_ms"
if [ -n "$soft_ms" ] && [ -n "$hard_ms" ]; then
    # Lifetimes count whole seconds from the add, so soft 2 s can come
    # after a little over 1 s.
    uml_check "soft came first, after at least 1 s (${soft_ms} ms)" \
        test "$soft_ms" -ge 1000 -a "$soft_ms" -lt "$hard_ms"
    uml_check "hard came after at least 3 s (${hard_ms} ms)" test "$hard_ms" -ge 3000
fi
uml_check "the SA was still there after the soft expire" test -n "$present_after_soft"
uml_check "the SA is gone after the hard expire" \
    uml_wait 2 bash -c "! ip -n a xfrm state get src $UML_A4 dst $UML_B4 proto esp spi 0x5001"
if [ "$UML_FAILED" -gt 0 ]; then
    echo "# xfrm monitor output:"
    sed 's/^/#   /' "$MON"
fi

uml_done
