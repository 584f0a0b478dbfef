#!/bin/bash
# The installed tree, as a distribution package would ship it: a fresh build
# of the source tree with prefix /usr, installed with DESTDIR into a temp dir
# (never into /), then checked there:
#  - programs, units, sysusers file, config and its drop-in dir, manuals,
#    bash completion and docs are where the distribution's tools look (unit,
#    sysusers and completion dirs from pkg-config, as CMakeLists.txt asks);
#  - nothing is written outside DESTDIR (every write of `cmake --install`,
#    seen with strace, and install_manifest.txt, whose entries cmake records
#    without the DESTDIR prefix);
#  - an upgrade keeps the admin's /etc/tokend/tokend.conf;
#  - `systemd-analyze verify` passes on both units inside the root, with the
#    Documentation=man: pages looked up in the installed manuals only; it
#    fails when ExecStart's program is missing;
#  - `systemd-analyze security --offline` rates tokend.service below Debian's
#    systemd-networkd and systemd-timesyncd, and at most 1.5;
#  - systemd-sysusers creates user tokend and groups tokend and tokend-admin
#    in the root, and the host's /etc/passwd and friends are unchanged.
# Needs no namespace and no lib.sh; runs as root (for systemd-sysusers), but
# writes only inside its own temp dir. Skips (77) only without cmake or
# systemd-analyze.
set -u

NAME=$(basename "$0" .sh)
SRC=${TOKEND_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
PASSED=0
FAILED=0

pass() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
fail() { FAILED=$((FAILED + 1)); echo "not ok - $*"; }
note() { echo "# $*"; }
# check "what" CMD...: pass if CMD succeeds.
check() {
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
# indent FILE: show a log as comment lines.
indent() { sed 's/^/#   /' "$@"; }

for tool in cmake systemd-analyze; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: $NAME needs $tool, which is not installed" >&2
        echo "# SKIP: $NAME needs $tool, which is not installed"
        exit 77
    fi
done
[ "$(id -u)" -eq 0 ] || note "not root: systemd-sysusers --root may fail (it only ever writes inside the temp dir)"

TMP=$(mktemp -d "/tmp/tokend-$NAME.XXXXXX") || { echo "cannot create a temp dir" >&2; exit 1; }
BUILD=$TMP/build
DEST=$TMP/root

cleanup() {
    local rc=$?
    if [ "$FAILED" -ne 0 ] || [ $rc -ne 0 ]; then
        echo "--- kept $TMP (build in $BUILD, installed tree in $DEST) ---"
    else
        case $TMP in /tmp/tokend-"$NAME".*) rm -rf "$TMP" ;; esac
    fi
}
trap cleanup EXIT

# The host's account databases, to prove they are left alone.
host_sums() { sha256sum /etc/passwd /etc/group /etc/shadow /etc/gshadow 2>/dev/null; }
HOST_SUMS=$(host_sums)

# inside_dest PATH: PATH, with every symlink resolved, is inside DEST (so a
# copy there cannot land on the host through a symlink in the tree).
inside_dest() {
    local real
    real=$(realpath -m -- "$1") || return 1
    case $real in "$DEST"/*) return 0 ;; *) return 1 ;; esac
}

# Directories the distribution's tools read, as CMakeLists.txt finds them.
pc_var() { pkg-config --variable="$2" "$1" 2>/dev/null; }
UNITDIR=$(pc_var systemd systemdsystemunitdir); UNITDIR=${UNITDIR:-/usr/lib/systemd/system}
SYSUSERSDIR=$(pc_var systemd sysusersdir); SYSUSERSDIR=${SYSUSERSDIR:-/usr/lib/sysusers.d}
COMPLETIONSDIR=$(pc_var bash-completion completionsdir)
COMPLETIONSDIR=${COMPLETIONSDIR:-/usr/share/bash-completion/completions}
D_UNIT=$DEST$UNITDIR
D_MAN=$DEST/usr/share/man
note "source $SRC; unit dir $UNITDIR, sysusers dir $SYSUSERSDIR, completions dir $COMPLETIONSDIR"

HAVE_STRACE=yes
command -v strace >/dev/null 2>&1 || HAVE_STRACE=no
WRITE_CALLS=open,openat,openat2,creat,mkdir,mkdirat,mknod,mknodat,rename,renameat,renameat2
WRITE_CALLS=$WRITE_CALLS,link,linkat,symlink,symlinkat,unlink,unlinkat,rmdir,truncate
WRITE_CALLS=$WRITE_CALLS,chmod,fchmodat,chown,lchown,fchownat,utime,utimes,utimensat,setxattr,lsetxattr

# traced LOG CMD...: run CMD with DESTDIR=$DEST, its successful file system
# calls recorded in LOG.strace (when strace is there), its output in LOG.
traced() {
    local log=$1; shift
    # Never without a DESTDIR of our own: that would install into /.
    case $DEST in /tmp/tokend-"$NAME".*/root) ;; *) echo "refusing DESTDIR '$DEST'" >"$log"; return 1 ;; esac
    if [ "$HAVE_STRACE" = yes ]; then
        DESTDIR=$DEST strace -f -qq --successful-only -e trace="$WRITE_CALLS" \
            -o "$log.strace" "$@" >"$log" 2>&1
    else
        DESTDIR=$DEST "$@" >"$log" 2>&1
    fi
}
install_dest() { traced "$1" cmake --install "$BUILD"; }

# stray_writes STRACE-LOG ROOT: each path the traced run changed outside ROOT
# (besides the build's install_manifest.txt and /dev/null), one a line.
# Opens for reading are not changes; a call on a file descriptor (no path)
# follows an open that was checked; a relative path is reported.
stray_writes() {
    awk -v root="$2/" -v manifest="$BUILD/install_manifest.txt" '
    {
        line = $0
        sub(/^[0-9]+ +/, "", line)
        if (line !~ /^[a-z0-9_]+\(/) next
        call = substr(line, 1, index(line, "(") - 1)
        if (call ~ /^(open|openat|openat2)$/ && line !~ /O_WRONLY|O_RDWR|O_CREAT|O_TRUNC/) next
        n = 0; rest = line
        while (match(rest, /"([^"\\]|\\.)*"/)) {
            s[++n] = substr(rest, RSTART + 1, RLENGTH - 2)
            rest = substr(rest, RSTART + RLENGTH)
        }
        if (n == 0) next
        path = (call ~ /^(rename|renameat|renameat2|link|linkat|symlink|symlinkat)$/) ? s[n] : s[1]
        if (index(path, root) == 1 || path "/" == root || path == manifest || path == "/dev/null") next
        print call ": " path
    }' "$1"
}

# ---------------------------------------------------------------------------
# 1. configure, build (the two programs only), install with DESTDIR
# ---------------------------------------------------------------------------
if cmake -S "$SRC" -B "$BUILD" -DCMAKE_INSTALL_PREFIX=/usr >"$TMP/configure.log" 2>&1; then
    pass "configure a fresh build of the source tree with prefix /usr"
else
    fail "configure a fresh build of the source tree with prefix /usr"; tail -n 30 "$TMP/configure.log" | indent; exit 1
fi
if cmake --build "$BUILD" -j2 --target tokend tokenctl >"$TMP/build.log" 2>&1; then
    pass "build tokend and tokenctl"
else
    fail "build tokend and tokenctl"; tail -n 30 "$TMP/build.log" | indent; exit 1
fi
if install_dest "$TMP/install1.log"; then
    pass "DESTDIR=$DEST cmake --install"
else
    fail "DESTDIR=$DEST cmake --install"; tail -n 30 "$TMP/install1.log" | indent; exit 1
fi
check "a fresh install does not say \"Keeping existing\"" \
    bash -c "! grep -q 'Keeping existing' '$TMP/install1.log'"

# ---------------------------------------------------------------------------
# 2. the installed tree
# ---------------------------------------------------------------------------
check "usr/sbin/tokend is an executable file" test -f "$DEST/usr/sbin/tokend" -a -x "$DEST/usr/sbin/tokend"
check "usr/bin/tokenctl is an executable file" test -f "$DEST/usr/bin/tokenctl" -a -x "$DEST/usr/bin/tokenctl"
check "tokend.service in the unit dir ($UNITDIR)" test -f "$D_UNIT/tokend.service"
check "tokend.socket in the unit dir ($UNITDIR)" test -f "$D_UNIT/tokend.socket"
check "tokend.conf in the sysusers dir ($SYSUSERSDIR)" test -f "$DEST$SYSUSERSDIR/tokend.conf"
check "etc/tokend/tokend.conf is conf/tokend.conf" cmp -s "$SRC/conf/tokend.conf" "$DEST/etc/tokend/tokend.conf"
check "etc/tokend/tokend.conf.d is a directory" test -d "$DEST/etc/tokend/tokend.conf.d" -a ! -L "$DEST/etc/tokend/tokend.conf.d"

ls "$SRC"/docs/man/* >/dev/null 2>&1 || note "docs/man/ has no manual pages yet: the manual checks fail until it has"
for page in man8/tokend.8 man8/tokenctl.8 man5/tokend.conf.5; do
    check "manual usr/share/man/$page is installed" test -f "$D_MAN/$page"
done
[ -f "$SRC/client/completion/tokenctl" ] || note "client/completion/tokenctl does not exist yet: the completion checks fail until it does"
COMPLETION=$DEST$COMPLETIONSDIR/tokenctl
check "bash completion $COMPLETIONSDIR/tokenctl is installed" test -f "$COMPLETION"
check "...and, sourced by a plain bash, completes tokenctl" \
    bash --norc --noprofile -c "source '$COMPLETION' >/dev/null 2>&1 && complete -p tokenctl >/dev/null 2>&1"
for doc in README.md LICENSE tokend.conf; do
    check "usr/share/doc/tokend/$doc is installed" test -f "$DEST/usr/share/doc/tokend/$doc"
done

execstart=$(grep '^ExecStart=' "$D_UNIT/tokend.service" 2>/dev/null)
check "the installed unit's ExecStart= is exactly /usr/sbin/tokend (is: ${execstart:-none})" \
    test "$execstart" = "ExecStart=/usr/sbin/tokend"
check "no @VARIABLE@ is left unsubstituted in the installed units" \
    bash -c "! grep -n '@[A-Za-z_]*@' '$D_UNIT/tokend.service' '$D_UNIT/tokend.socket'"

# Nothing outside DESTDIR, (a) as seen: every file system change of the install.
if [ "$HAVE_STRACE" = yes ]; then
    stray=$(stray_writes "$TMP/install1.log.strace" "$DEST")
    check "the install changed nothing outside DESTDIR (strace of every write)" test -z "$stray"
    [ -n "$stray" ] && printf '%s\n' "$stray" | indent
else
    fail "the install changed nothing outside DESTDIR: strace is not installed (scripts/deps.sh installs it)"
fi
# (b) as cmake recorded it. cmake writes install_manifest.txt without the
# DESTDIR prefix: every entry must be an absolute path that exists below
# DESTDIR, and the manifest must account for every file there.
MANIFEST=$BUILD/install_manifest.txt
check "install_manifest.txt is there and not empty" test -s "$MANIFEST"
bad=$(while IFS= read -r f; do
          case $f in "$DEST"/*|"$TMP"/*) echo "$f (DESTDIR prefix not stripped)"; continue ;; /*) ;; *) echo "$f (relative)"; continue ;; esac
          [ -e "$DEST$f" ] || [ -L "$DEST$f" ] || echo "$f (not below DESTDIR)"
      done <"$MANIFEST")
check "every install_manifest.txt entry is installed below DESTDIR" test -z "$bad"
[ -n "$bad" ] && printf '%s\n' "$bad" | indent
unlisted=$(cd "$DEST" && find . ! -type d | sed 's|^\.||' | sort | comm -23 - <(sort "$MANIFEST"))
check "install_manifest.txt lists every file below DESTDIR" test -z "$unlisted"
[ -n "$unlisted" ] && printf '%s\n' "$unlisted" | indent

# The strace check can fail: the real install plus an install step that
# forgets DESTDIR (into $TMP/outside, never the host) must be reported.
if [ "$HAVE_STRACE" = yes ]; then
    mkdir -p "$TMP/outside"
    cat >"$TMP/stray.cmake" <<EOF
include("$BUILD/cmake_install.cmake")
file(WRITE "$TMP/outside/tokend.conf" "written without DESTDIR\n")
EOF
    mkdir -p "$TMP/stray-root"
    # (traced() insists on the test's own DESTDIR, so this run goes by hand.)
    DESTDIR=$TMP/stray-root strace -f -qq --successful-only -e trace="$WRITE_CALLS" \
        -o "$TMP/stray.log.strace" cmake -P "$TMP/stray.cmake" >"$TMP/stray.log" 2>&1
    stray=$(stray_writes "$TMP/stray.log.strace" "$TMP/stray-root")
    check "the strace check catches a write that forgets DESTDIR (names only $TMP/outside/tokend.conf)" \
        test "$stray" = "openat: $TMP/outside/tokend.conf"
    [ "$stray" = "openat: $TMP/outside/tokend.conf" ] || printf '%s\n' "$stray" | indent
    rm -rf "$TMP/outside" "$TMP/stray-root"
fi

# ---------------------------------------------------------------------------
# 3. an upgrade keeps the admin's config
# ---------------------------------------------------------------------------
marker="# admin's line $$ $(date +%s)"
echo "$marker" >>"$DEST/etc/tokend/tokend.conf"
if install_dest "$TMP/install2.log"; then
    pass "install again over the tree (upgrade)"
else
    fail "install again over the tree (upgrade)"; tail -n 30 "$TMP/install2.log" | indent
fi
check "the upgrade kept the admin's line in etc/tokend/tokend.conf" grep -qxF "$marker" "$DEST/etc/tokend/tokend.conf"
check "the upgrade said \"Keeping existing\" for etc/tokend/tokend.conf" \
    grep -q "Keeping existing: $DEST/etc/tokend/tokend.conf" "$TMP/install2.log"
check "the documentation's example config is still the shipped one" \
    cmp -s "$SRC/conf/tokend.conf" "$DEST/usr/share/doc/tokend/tokend.conf"
if [ "$HAVE_STRACE" = yes ]; then
    stray=$(stray_writes "$TMP/install2.log.strace" "$DEST")
    check "the upgrade changed nothing outside DESTDIR" test -z "$stray"
    [ -n "$stray" ] && printf '%s\n' "$stray" | indent
fi

# ---------------------------------------------------------------------------
# 4. systemd-analyze verify inside the root
# ---------------------------------------------------------------------------
# What the units refer to and the tree does not ship: the standard targets
# and slices, and /bin/kill (ExecReload). Copies, not symlinks: /bin is a
# symlink to usr/bin on the host.
if inside_dest "$D_UNIT" && inside_dest "$DEST/bin"; then
    for f in /lib/systemd/system/*.target /lib/systemd/system/*.slice \
             /usr/lib/systemd/system/*.target /usr/lib/systemd/system/*.slice; do
        [ -e "$f" ] || [ -L "$f" ] || continue
        [ -e "$D_UNIT/${f##*/}" ] || [ -L "$D_UNIT/${f##*/}" ] || cp -P "$f" "$D_UNIT/"
    done
    mkdir -p "$DEST/bin" && cp /bin/kill "$DEST/bin/kill"
    check "the root has sysinit.target and an executable bin/kill" \
        test -e "$D_UNIT/sysinit.target" -a -x "$DEST/bin/kill" -a ! -L "$DEST/bin/kill"
else
    fail "the unit dir and bin/ of the tree resolve inside DESTDIR (not copying into the host)"
fi

# verify_units LOG: systemd-analyze verify on both installed units, manual
# pages looked up in the installed manuals only (MANPATH).
verify_units() {
    MANPATH=$D_MAN systemd-analyze verify --root="$DEST" --man=yes \
        "$D_UNIT/tokend.service" "$D_UNIT/tokend.socket" >"$1" 2>&1
}
verify_units "$TMP/verify.log"; rc=$?
note "systemd-analyze verify exit $rc, $(grep -c . "$TMP/verify.log") output lines"
indent "$TMP/verify.log"
check "systemd-analyze verify --root --man=yes exits 0" test $rc -eq 0
check "...and prints no line about tokend" bash -c "! grep -qi tokend '$TMP/verify.log'"

# The Documentation= pages, one by one, in the installed manuals only.
check "MANPATH confines man -w to the tree (the host's systemd(1) is not found)" \
    bash -c "! MANPATH='$D_MAN' man -w 1 systemd >/dev/null 2>&1"
man -w 1 systemd >/dev/null 2>&1 || note "(the host has no systemd(1) page either: that check proves little here)"
for ref in $(sed -n 's/^Documentation=//p' "$D_UNIT/tokend.service" "$D_UNIT/tokend.socket" | tr ' ' '\n' | sort -u); do
    case $ref in man:*\(*\)) ;; *) continue ;; esac
    page=${ref#man:}; name=${page%%(*}; sec=${page#*(}; sec=${sec%)}
    where=$(MANPATH=$D_MAN man -w "$sec" "$name" 2>/dev/null)
    check "Documentation=$ref is an installed page (${where:-none})" \
        bash -c "case '$where' in '$D_MAN'/*) exit 0 ;; *) exit 1 ;; esac"
done

# The check can fail: without ExecStart's program, verify must name it.
mv "$DEST/usr/sbin/tokend" "$TMP/tokend.aside"
verify_units "$TMP/verify-noexec.log"; rc=$?
indent "$TMP/verify-noexec.log"
check "without usr/sbin/tokend, verify fails (exit $rc)" test $rc -ne 0
check "...naming /usr/sbin/tokend" grep -q '/usr/sbin/tokend' "$TMP/verify-noexec.log"
mv "$TMP/tokend.aside" "$DEST/usr/sbin/tokend"
check "usr/sbin/tokend is back" test -x "$DEST/usr/sbin/tokend"
# ...and without a manual page, verify must name the page.
if [ -f "$D_MAN/man8/tokend.8" ]; then
    mv "$D_MAN/man8/tokend.8" "$TMP/tokend.8.aside"
    verify_units "$TMP/verify-noman.log"; rc=$?
    indent "$TMP/verify-noman.log"
    check "without tokend(8) installed, verify fails (exit $rc) naming tokend(8)" \
        bash -c "[ $rc -ne 0 ] && grep -qF 'tokend(8)' '$TMP/verify-noman.log'"
    mv "$TMP/tokend.8.aside" "$D_MAN/man8/tokend.8"
fi

# ---------------------------------------------------------------------------
# 5. systemd-analyze security, offline
# ---------------------------------------------------------------------------
# exposure ROOT UNIT: the overall exposure figure, measured offline.
exposure() {
    systemd-analyze security --offline=yes --root="$1" "$2" 2>&1 |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p'
}
# below A B: A < B;  at_most A B: A <= B (decimal figures).
below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }
at_most() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }

tk_exp=$(exposure "$DEST" tokend.service)
check "systemd-analyze security --offline=yes --root rates tokend.service (${tk_exp:-no figure})" test -n "$tk_exp"
tk_exp=${tk_exp:-99}
summary="tokend $tk_exp"
for ref in systemd-networkd:2.8 systemd-timesyncd:2.3; do
    unit=${ref%%:*} fixed=${ref#*:} fig=
    if [ -f "/lib/systemd/system/$unit.service" ] || [ -f "/usr/lib/systemd/system/$unit.service" ]; then
        fig=$(exposure / "$unit.service")
    fi
    if [ -n "$fig" ]; then
        summary="$summary, $unit $fig"
    else
        fig=$fixed
        summary="$summary, $unit $fig (fixed figure: $unit.service is not installed here)"
    fi
    check "tokend ($tk_exp) is less exposed than $unit ($fig)" below "$tk_exp" "$fig"
done
echo "# exposure: $summary"
check "tokend's exposure ($tk_exp) is at most 1.5" at_most "$tk_exp" 1.5
# The figure can fail the check: the unit without its sandbox rates worse.
mkdir -p "$TMP/weak$UNITDIR"
grep -vE '^(User|Group|CapabilityBoundingSet|AmbientCapabilities|Private[A-Za-z]*|Protect[A-Za-z]*|SystemCall[A-Za-z]*|RestrictAddressFamilies)=' \
    "$D_UNIT/tokend.service" >"$TMP/weak$UNITDIR/tokend.service"
weak=$(exposure "$TMP/weak" tokend.service)
check "the same unit without its sandbox rates above 1.5 (${weak:-no figure})" \
    bash -c "[ -n '$weak' ] && awk -v a='$weak' 'BEGIN { exit !(a + 0 > 1.5) }'"
rm -rf "$TMP/weak"

# ---------------------------------------------------------------------------
# 6. systemd-sysusers inside the root
# ---------------------------------------------------------------------------
if ! command -v systemd-sysusers >/dev/null 2>&1; then
    fail "systemd-sysusers is not installed (the systemd package has it)"
elif ! inside_dest "$DEST/etc"; then
    fail "etc/ of the tree resolves inside DESTDIR (not running systemd-sysusers)"
else
    systemd-sysusers --root="$DEST" >"$TMP/sysusers.log" 2>&1; rc=$?
    indent "$TMP/sysusers.log"
    check "systemd-sysusers --root exits 0" test $rc -eq 0
    check "...with no complaint about $SYSUSERSDIR/tokend.conf" \
        bash -c "! grep -F '$SYSUSERSDIR/tokend.conf:' '$TMP/sysusers.log' >/dev/null"
    check "user tokend in the tree's etc/passwd" grep -qs '^tokend:' "$DEST/etc/passwd"
    check "group tokend in the tree's etc/group" grep -qs '^tokend:' "$DEST/etc/group"
    check "group tokend-admin in the tree's etc/group" grep -qs '^tokend-admin:' "$DEST/etc/group"
    ugid=$(awk -F: '$1 == "tokend" { print $4 }' "$DEST/etc/passwd" 2>/dev/null)
    ggid=$(awk -F: '$1 == "tokend" { print $3 }' "$DEST/etc/group" 2>/dev/null)
    check "user tokend's primary group is group tokend (${ugid:-?} = ${ggid:-?})" \
        test -n "$ugid" -a "$ugid" = "$ggid"
fi
check "the host's /etc/passwd, group, shadow and gshadow are unchanged" test "$(host_sums)" = "$HOST_SUMS"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
