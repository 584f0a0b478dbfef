#!/bin/bash
# The manual pages (docs/man) and the sample config (conf/tokend.conf) against
# the code: each page renders without a single groff or man warning and has
# the usual sections; every option of tokend, every verb, keyword and option
# of tokenctl and every config key is documented (as a .TP entry, in the
# right section); the sample config lists every key, with the same default as
# the page, and stays valid both as shipped and with every line uncommented;
# the config examples of tokend.conf(5) pass --check-config.
#
# Needs no root and no network namespace: it only reads files and runs
# tokend --help, tokend --check-config and tokenctl help. Skips (77) only
# where man is not installed.
set -u

SRC=${TOKEND_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
TOKEND=${TOKEND:-$SRC/build/daemon/tokend}
TOKENCTL=${TOKENCTL:-$SRC/build/client/tokenctl}
MANDIR=$SRC/docs/man
CONF=$SRC/conf/tokend.conf
PAGES="tokend.8 tokenctl.8 tokend.conf.5"

# The keys daemon/config.c accepts, by section. The test also reads them from
# the code and fails when the two lists differ: a key added, renamed or
# removed must be documented (page and sample config) and listed here.
KEYS_TOKEND="socket state-dir socket-group admin-group reconcile-interval retry-min
  retry-max contest-repairs contest-window client-timeout max-clients reply-backlog-mib reqid-base
  policy-priority netlink-buffer counter-interval dwell log-level"
KEYS_GLOBAL="token match"
KEYS_SA="number local remote local-selector remote-selector mode algorithm secret
  protocol local-port remote-port dev replay-window lookahead lifetime epoch
  overlap schedule lifetime-bytes lifetime-packets"
# Verbs documented ahead of `tokenctl help` (being added).
EXTRA_VERBS="status monitor"

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
fail() { FAILED=$((FAILED + 1)); echo "not ok - $*"; }
# check "what" CMD...: pass if CMD succeeds.
check() {
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

if ! command -v man >/dev/null 2>&1; then
    echo "SKIP: test_man: man is not installed (apt-get install man-db); the manual pages were NOT checked" >&2
    exit 77
fi

TMP=$(mktemp -d /tmp/tokend-test_man.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

words() { tr -s ' \t' '\n' <<<"$1" | sed '/^$/d' | sort -u; }

# in_list WORD LIST: is WORD one of the lines of LIST?
in_list() { grep -qxF -- "$1" <<<"$2"; }

# The words of every .TP tag of a page, one per line, as "SECTION<TAB>WORD":
# the line after .TP with its macro, font escapes, \- and \& and quotes
# resolved, split at blanks and at | [ ] , = ( ). SECTION is the .SH the tag
# is under. With "first", only the first word of each tag.
tp_words() {
    awk -v first="${2:-}" '
        /^\.SH / { sh = substr($0, 5); gsub(/"/, "", sh); next }
        /^\.TP/ { tag = 1; next }
        tag {
            tag = 0
            line = $0
            sub(/^\.[A-Z][A-Z]? */, "", line)
            gsub(/\\f[BIRP]/, "", line)
            gsub(/\\-/, "-", line)
            gsub(/\\&/, "", line)
            gsub(/"/, " ", line)
            n = split(line, w, /[][ |,=()]+/)
            for (i = 1; i <= n; i++)
                if (w[i] != "") {
                    print sh "\t" w[i]
                    if (first)
                        break
                }
        }' "$1"
}

# --- each page renders cleanly and has the usual sections -----------------

for page in $PAGES; do
    f=$MANDIR/$page
    if [ ! -f "$f" ]; then
        fail "$page: exists ($f)"
        continue
    fi
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$f" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    check "$page: man --warnings exits 0 (got $rc)" [ "$rc" -eq 0 ]
    if [ -s "$TMP/err" ]; then
        fail "$page: man --warnings prints nothing on stderr"
        sed 's/^/#   /' "$TMP/err"
    else
        pass "$page: man --warnings prints nothing on stderr"
    fi
    check "$page: renders some text" [ "$(wc -l <"$TMP/out")" -gt 20 ]
    name=${page%.*} sect=${page##*.}
    check "$page: .TH names it ${name^^}($sect)" \
        grep -qE "^\.TH \"?${name^^}\"? $sect( |\$)" "$f"
    for s in NAME SYNOPSIS DESCRIPTION "SEE ALSO"; do
        check "$page: has section $s" grep -qE "^\.SH \"?$s\"?\$" "$f"
    done
    # man(7) only: no mdoc, no requests or macros outside this list.
    bad=$(grep -oE '^\.[A-Za-z]+' "$f" | sort -u |
        grep -vxE '\.(TH|SH|SS|TP|IP|PP|LP|P|HP|RS|RE|B|I|BR|BI|IB|IR|RB|RI|EX|EE|nf|fi|br|sp)' || true)
    check "$page: uses man(7) macros only${bad:+ (not: $(tr '\n' ' ' <<<"$bad"))}" [ -z "$bad" ]
done

# --- tokend: every option ---------------------------------------------------

T8=$MANDIR/tokend.8
if ! HELP=$("$TOKEND" --help 2>&1) || [ -z "$HELP" ]; then
    fail "tokend --help works ($TOKEND; build first)"
    HELP=
fi
TAGS=$(tp_words "$T8" | cut -f2 | sort -u)
OPTS=$(grep -oE -- '(^|[ ,])-(-[a-z][a-z-]*|[a-zA-Z])\b' <<<"$HELP" | tr -d ' ,' | sort -u)
check "tokend --help lists some options" [ "$(wc -l <<<"$OPTS")" -ge 8 ]
for o in $OPTS; do
    check "tokend.8 documents option $o" in_list "$o" "$TAGS"
done
# Options hidden from --help (for tests) are documented too.
CODE_OPTS=$(grep -oE '\{"[a-z][a-z-]*", (no|required|optional)_argument' "$SRC/daemon/main.c" |
    sed -E 's/^\{"([^"]*)".*/--\1/' | sort -u)
check "main.c has a long option table" [ -n "$CODE_OPTS" ]
for o in $CODE_OPTS; do
    check "tokend.8 documents option $o of main.c" in_list "$o" "$TAGS"
done

# --- tokenctl: every verb, keyword and option -------------------------------

C8=$MANDIR/tokenctl.8
if ! CHELP=$("$TOKENCTL" help 2>&1) || [ -z "$CHELP" ]; then
    fail "tokenctl help works ($TOKENCTL; build first)"
    CHELP=
fi
CTAGS=$(tp_words "$C8" | cut -f2 | sort -u)
# The "Commands:" and "IPsec associations:" blocks of the help.
VERB_TEXT=$(awk '/^(Commands|IPsec associations):$/ { on = 1; next } /^$/ { on = 0 } on' <<<"$CHELP")
VERBS=$(sed -nE 's/^  ([a-z]+).*/\1/p' <<<"$VERB_TEXT")
ALIASES=$(tr -s ' \n' '  ' <<<"$VERB_TEXT" | grep -oE '\(also [a-z]+(, [a-z]+)*\)' |
    sed -E 's/^\(also //; s/\)$//; s/,/ /g')
CODE_VERBS=$(grep -oE '^ *\{"[a-z]+( sa)?", (NULL|"io\.tokend\.)' "$SRC/client/tokenctl.c" |
    sed -E 's/^ *\{"([a-z]+).*/\1/')
ALL_VERBS=$(words "$VERBS $ALIASES $CODE_VERBS $EXTRA_VERBS")
check "tokenctl help lists verbs and aliases" \
    bash -c '[ "$(wc -w <<<"$1")" -ge 10 ] && grep -qx ls <<<"$1" && grep -qx del <<<"$1"' _ "$(words "$VERBS $ALIASES")"
for v in $ALL_VERBS; do
    check "tokenctl.8 documents verb $v" in_list "$v" "$CTAGS"
done
# "VERB sa" forms: each is a tag with the word sa.
for v in $(grep -oE '^ *\{"[a-z]+ sa",' "$SRC/client/tokenctl.c" | sed -E 's/^ *\{"([a-z]+) sa".*/\1/'); do
    check "tokenctl.8 documents \"$v sa\"" \
        bash -c 'awk "/^\\.TP/ { t = 1; next } t { print; t = 0 }" "$1" | sed "s/\\\\-/-/g" |
                 grep -E "(^|[ \"])$2([ \"].*)?[ \"]sa([ \"]|\$)" >/dev/null' _ "$C8" "$v"
done
KW_TEXT=$(awk '/^add sa keywords/ { on = 1; next } /^$/ { on = 0 } on' <<<"$CHELP")
KEYWORDS=$(words "$(sed -nE 's/^  ([a-z][a-z-]*) [A-Z].*/\1/p' <<<"$KW_TEXT")
$(grep -oE '^ *\[SA_[A-Z_]+\] = \{"[a-z-]+"' "$SRC/client/tokenctl.c" | sed -E 's/.*\{"//; s/"$//')")
check "tokenctl lists add sa keywords" [ "$(wc -l <<<"$KEYWORDS")" -ge 15 ]
for k in $KEYWORDS; do
    check "tokenctl.8 documents add sa keyword $k" in_list "$k" "$CTAGS"
done
COPTS=$(awk '/^Options:$/ { on = 1; next } /^$/ { on = 0 } on' <<<"$CHELP" |
    grep -oE -- '(^|[ ,])-(-[a-z][a-z-]*|[a-zA-Z])\b' | tr -d ' ,' | sort -u)
check "tokenctl help lists options" [ "$(wc -l <<<"$COPTS")" -ge 5 ]
for o in $COPTS; do
    check "tokenctl.8 documents option $o" in_list "$o" "$CTAGS"
done

# --- config keys: the code, this test, the page and the sample config agree --

# The keys each handler of daemon/config.c compares names with.
code_keys() {
    awk -v fn="handle_$1" '
        $0 ~ "^static void " fn "\\(" { on = 1; next }
        on && /^}/ { on = 0 }
        on {
            while (match($0, /strcmp\(name, "[a-z-]+"\)/)) {
                k = substr($0, RSTART + 14, RLENGTH - 16)
                print k
                $0 = substr($0, RSTART + RLENGTH)
            }
        }' "$SRC/daemon/config.c" | sort -u
}

C5=$MANDIR/tokend.conf.5
CONF_TAGS=$(tp_words "$C5" first)
# Sections of the sample config, commented [sa NAME] headers included, and
# its "#key = value" lines as "SECTION<TAB>KEY<TAB>VALUE" (inline comment cut).
CONF_LINES=$(awk '
    /^\[[a-z]+\]/ { s = substr($0, 2, index($0, "]") - 2); next }
    /^#\[sa / { s = "sa"; next }
    /^#[a-z][a-z0-9-]* *=/ {
        line = substr($0, 2)
        k = line; sub(/ *=.*/, "", k)
        v = line; sub(/^[^=]*= */, "", v); sub(/[ \t]+;.*$/, "", v); sub(/[ \t]+$/, "", v)
        print s "\t" k "\t" v
    }' "$CONF")

for sect in tokend global sa; do
    case $sect in
        tokend) listed=$KEYS_TOKEND; sh='THE [tokend] SECTION' ;;
        global) listed=$KEYS_GLOBAL; sh='THE [global] SECTION' ;;
        sa) listed=$KEYS_SA; sh='THE [sa NAME] SECTIONS' ;;
    esac
    fromcode=$(code_keys "$sect")
    listed=$(words "$listed")
    check "[$sect]: keys read from config.c ($(wc -l <<<"$fromcode"))" [ "$(wc -l <<<"$fromcode")" -ge 2 ]
    drift=$(comm -3 <(echo "$listed") <(echo "$fromcode") | tr -d '\t' | tr '\n' ' ')
    check "[$sect]: the key list of this test matches config.c${drift:+ (differ: $drift)}" [ -z "$drift" ]
    documented=$(awk -F'\t' -v sh="$sh" '$1 == sh { print $2 }' <<<"$CONF_TAGS" | sort -u)
    sample=$(awk -F'\t' -v s="$sect" '$1 == s { print $2 }' <<<"$CONF_LINES" | sort -u)
    for k in $(words "$listed $fromcode"); do
        check "tokend.conf.5 documents $k under $sh" in_list "$k" "$documented"
        check "conf/tokend.conf lists #$k = ... under [$sect]" in_list "$k" "$sample"
    done
    for k in $documented; do
        check "tokend.conf.5 documents only real keys under $sh: $k" in_list "$k" "$fromcode"
    done
    for k in $sample; do
        check "conf/tokend.conf lists only real keys under [$sect]: $k" in_list "$k" "$fromcode"
    done
done

# Where the page gives a default as a word of its own ("Default:" alone on its
# line, the value on the next), the sample config shows the same value.
PAGE_DEFAULTS=$(awk '
    /^\.SH / { sh = substr($0, 5); gsub(/"/, "", sh); next }
    /^\.TP/ { tag = 1; next }
    tag {
        tag = 0; line = $0
        sub(/^\.[A-Z][A-Z]? */, "", line); gsub(/\\-/, "-", line); gsub(/"/, " ", line)
        sub(/^ +/, "", line); split(line, w, /[ =]+/); key = w[1]; next
    }
    /^Default:$/ { want = 1; next }
    want {
        want = 0; line = $0
        sub(/^\.[A-Z][A-Z]? */, "", line); gsub(/\\-/, "-", line); gsub(/\\f[BIRP]/, "", line)
        split(line, w, / +/)
        print sh "\t" key "\t" w[1]
    }' "$C5")
check "tokend.conf.5 gives defaults" [ "$(wc -l <<<"$PAGE_DEFAULTS")" -ge 20 ]
while IFS=$'\t' read -r sh key value; do
    case $sh in
        *'[tokend]'*) s=tokend ;; *'[global]'*) s=global ;; *'[sa '*) s=sa ;; *) continue ;;
    esac
    got=$(awk -F'\t' -v s="$s" -v k="$key" '$1 == s && $2 == k { print $3; exit }' <<<"$CONF_LINES")
    check "conf/tokend.conf: $key = $value, the default of tokend.conf.5 (has \"$got\")" \
        [ "$got" = "$value" ]
done <<<"$PAGE_DEFAULTS"

# The defaults in the code: config_new_default() in config.c ([tokend]) and
# assoc_def_init() in assoc.c ([sa NAME], whose other fields start at zero),
# as "SECTION<TAB>FIELD<TAB>C EXPRESSION".
CODE_DEFAULTS=$(
    awk '/^struct config \*config_new_default\(/ { on = 1 } on && /^}/ { exit } on' \
        "$SRC/daemon/config.c" | sed -nE 's/^[[:space:]]*c->([a-z_]+) = (.*);.*$/tokend\t\1\t\2/p'
    awk '/^void assoc_def_init\(/ { on = 1 } on && /^}/ { exit } on' \
        "$SRC/daemon/assoc.c" | sed -nE 's/^[[:space:]]*\.([a-z_]+) = (.*),.*$/sa\t\1\t\2/p')

# code_value EXPR: the value of one of those initializers, "?" when it is not
# a constant this test understands; durations in microseconds.
code_value() {
    local e=$1
    case $e in
        strdup\(DEFAULT_*\))
            e=${e#strdup(}; e=${e%)}
            sed -nE "s/^#define ${e}[[:space:]]+\"(.*)\"\$/\1/p" "$SRC/daemon/config.c"
            return ;;
        LOG_*) e=${e#LOG_}; echo "${e,,}"; return ;;
        XFRM_MODE_*) e=${e#XFRM_MODE_}; echo "${e,,}"; return ;;
        KEYS_ALG_*) e=${e#KEYS_ALG_}; e=${e,,}; echo "${e//_/-}"; return ;;
    esac
    e=${e//USEC_PER_SEC/1000000}
    e=${e//USEC_PER_MSEC/1000}
    e=$(sed -E 's/\b(0x[0-9a-fA-F]+|[0-9]+)[uUlL]+\b/\1/g' <<<"$e")
    if [[ $e =~ ^[0-9a-fx\ *+]+$ ]]; then echo $((e)); else echo "?"; fi
}

# conf_value VALUE DURATION: a value of the sample config in the same terms.
conf_value() {
    local v=$1
    if [ "$2" = duration ] && [[ $v =~ ^([0-9]+)(ms|s|min|h)?$ ]]; then
        case ${BASH_REMATCH[2]} in
            ms) echo $((BASH_REMATCH[1] * 1000)) ;;
            min) echo $((BASH_REMATCH[1] * 60000000)) ;;
            h) echo $((BASH_REMATCH[1] * 3600000000)) ;;
            *) echo $((BASH_REMATCH[1] * 1000000)) ;;
        esac
    elif [[ $v =~ ^(0x[0-9a-fA-F]+|[0-9]+)$ ]]; then
        echo $((v))
    else
        echo "$v"
    fi
}

# defaults_agree CODE CONF KIND
defaults_agree() { [ "$1" != "?" ] && [ -n "$2" ] && [ "$(conf_value "$2" "$3")" = "$1" ]; }

check "config.c and assoc.c give defaults" [ "$(wc -l <<<"$CODE_DEFAULTS")" -ge 20 ]
while IFS=$'\t' read -r s field expr; do
    kind=value key=$field
    case $key in *_usec) kind=duration; key=${key%_usec} ;; esac
    key=${key%_path}
    key=${key//_/-}
    case $key in match|files) continue ;; esac
    want=$(code_value "$expr")
    got=$(awk -F'\t' -v s="$s" -v k="$key" '$1 == s && $2 == k { print $3; exit }' <<<"$CONF_LINES")
    check "conf/tokend.conf: [$s] $key = $got is the default of the code ($expr)" \
        defaults_agree "$want" "$got" "$kind"
done <<<"$CODE_DEFAULTS"
# The [sa NAME] defaults the page gives that assoc_def_init() leaves at zero.
while IFS=$'\t' read -r sh key value; do
    case $sh in *'[sa '*) ;; *) continue ;; esac
    awk -F'\t' -v f="${key//-/_}" '$1 == "sa" && ($2 == f || $2 == f "_sec") { found = 1 }
        END { exit !found }' <<<"$CODE_DEFAULTS" && continue
    check "tokend.conf.5: [sa] $key defaults to 0, as assoc_def_init() leaves it (page: $value)" \
        [ "$value" = 0 ]
done <<<"$PAGE_DEFAULTS"

# --- the sample config and the page's examples are valid --------------------

# secret FILE...: a fresh master secret in each FILE.
secret() {
    local f
    for f in "$@"; do
        (umask 077; head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' >"$f")
    done
}

if "$TOKEND" --check-config -c "$CONF" >"$TMP/out" 2>&1; then
    pass "conf/tokend.conf passes --check-config"
else
    fail "conf/tokend.conf passes --check-config"
    sed 's/^/#   /' "$TMP/out"
fi
check "conf/tokend.conf as shipped declares nothing" \
    grep -q 'config OK: 0 tokens, 0 associations' "$TMP/out"

# Every line uncommented: the defaults and examples are values tokend takes.
# overlap needs a rotation period, which is 0 (none) by default.
mkdir -p "$TMP/keys"
sed -E "s/^#([a-z[])/\1/; s#/etc/tokend/keys/#$TMP/keys/#g; s/^lifetime = 0( |\$)/lifetime = 1h\1/" \
    "$CONF" >"$TMP/all.conf"
for f in $(grep -oE "$TMP/keys/[A-Za-z0-9._-]+" "$TMP/all.conf" | sort -u); do secret "$f"; done
if "$TOKEND" --check-config -c "$TMP/all.conf" >"$TMP/out" 2>&1; then
    pass "conf/tokend.conf with every setting uncommented passes --check-config"
else
    fail "conf/tokend.conf with every setting uncommented passes --check-config"
    sed 's/^/#   /' "$TMP/out"
fi

# The .EX blocks of tokend.conf.5 that are config files (they start with a
# section header), each on its own, with its secrets and credentials made.
mkdir -p "$TMP/creds"
awk -v dir="$TMP" '
    /^\.EX$/ { n++; on = 1; next }
    /^\.EE$/ { on = 0; next }
    on { line = $0; gsub(/\\-/, "-", line); gsub(/\\e/, "\\", line); print line > (dir "/ex" n ".txt") }
' "$C5"
nex=0
for ex in "$TMP"/ex*.txt; do
    [ -e "$ex" ] || continue
    head -n1 "$ex" | grep -q '^\[' || continue
    nex=$((nex + 1))
    conf=${ex%.txt}.conf
    sed "s#/etc/tokend/keys/#$TMP/keys/#g" "$ex" >"$conf"
    for f in $(grep -oE "$TMP/keys/[A-Za-z0-9._-]+" "$conf" | sort -u); do secret "$f"; done
    for c in $(sed -nE 's/^secret *= *credential:([A-Za-z0-9._-]+).*/\1/p' "$conf"); do
        secret "$TMP/creds/$c"
    done
    if CREDENTIALS_DIRECTORY=$TMP/creds "$TOKEND" --check-config -c "$conf" >"$TMP/out" 2>&1; then
        pass "tokend.conf.5 example $(basename "$ex" .txt) ($(head -n1 "$ex")) passes --check-config"
    else
        fail "tokend.conf.5 example $(basename "$ex" .txt) ($(head -n1 "$ex")) passes --check-config"
        sed 's/^/#   /' "$TMP/out"
    fi
done
check "tokend.conf.5 has config examples ($nex)" [ "$nex" -ge 3 ]

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
