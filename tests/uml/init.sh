#!/bin/bash
# PID 1 inside User-Mode Linux, started by run.sh (init=.../init.sh). Not for
# use on the host.
#
# Sets up the lab (proc, sys, tmpfs on /run and /tmp, modules and the
# on-demand module loader), runs the scenario named in $UML_WORK/job.sh and
# writes its stdout, stderr and exit status to $UML_WORK/results on hostfs,
# then powers UML off. It must never exit on its own: PID 1 exiting panics
# the kernel.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LANG=C.UTF-8 LC_ALL=C.UTF-8
umask 022

# Modules every scenario gets. Built-in ones (aes_generic, sha256_generic,
# cryptomgr in this kernel) are accepted by modprobe as they are.
UML_MODULES_STD="cryptomgr xfrm_user esp4 esp6 aes_generic gcm ghash_generic ctr seqiv cbc hmac sha256_generic authenc echainiv veth"

RUN=/run/uml                      # harness state inside UML (tmpfs)
W=$RUN/work                       # the host work directory, bind-mounted
R=$W/results

log() { echo "UML-HARNESS: $*"; [ -d "$R" ] && echo "$*" >> "$R/setup.log"; }

power_off() {
    sync
    poweroff -f >/dev/null 2>&1
    echo o > /proc/sysrq-trigger 2>/dev/null
    sleep 10
    echo "UML-HARNESS: could not power off" >&2
}

# Setup failed: say why in the results, then stop.
die() {
    log "SETUP ERROR: $*"
    if [ -d "$R" ]; then
        echo "$*" > "$R/setup-error"
    fi
    power_off
    while :; do sleep 1000; done
}

uptime_s() { cut -d' ' -f1 /proc/uptime; }

mount -t proc proc /proc || die "cannot mount proc"
T_BOOT=$(uptime_s)
mount -t sysfs sysfs /sys || die "cannot mount sysfs"
# /run first: everything the lab writes (netns, the modprobe tree) lives in
# UML's own memory, and the host's /run is never touched.
mount -t tmpfs -o mode=755 tmpfs /run || die "cannot mount tmpfs on /run"
mkdir -p "$W" "$RUN/hosttmp" "$RUN/home" "$RUN/modroot/lib" "$RUN/modprobe.d"

[ -n "${UML_WORK:-}" ] && [ -d "$UML_WORK" ] || die "no work directory (UML_WORK='${UML_WORK:-}')"
mount --bind "$UML_WORK" "$W" || die "cannot bind-mount $UML_WORK"
[ -f "$W/job.sh" ] || die "no $UML_WORK/job.sh"
echo "UML-HARNESS: booted in ${T_BOOT}s; work directory $UML_WORK"
: > "$R/setup.log"

UML_ARGS=()
UML_HOST_TMP_PATHS=()
# shellcheck disable=SC1091
. "$W/job.sh" || die "cannot read job.sh"

# /tmp: a tmpfs for scratch files. Host paths under /tmp that the run needs
# (the work directory, and the repository if it was cloned under /tmp) are
# bind-mounted back in at the same path.
mount --bind /tmp "$RUN/hosttmp" || die "cannot bind the host's /tmp"
mount -t tmpfs -o mode=1777 tmpfs /tmp || die "cannot mount tmpfs on /tmp"
declare -A bound=()
for p in "${UML_HOST_TMP_PATHS[@]}"; do
    top=${p#/tmp/}
    top=${top%%/*}
    [ -n "$top" ] && [ -z "${bound[$top]:-}" ] || continue
    bound[$top]=1
    if [ -d "$RUN/hosttmp/$top" ]; then
        mkdir -p "/tmp/$top" && mount --bind "$RUN/hosttmp/$top" "/tmp/$top" \
            || die "cannot bind /tmp/$top"
    elif [ -e "$RUN/hosttmp/$top" ]; then
        touch "/tmp/$top" && mount --bind "$RUN/hosttmp/$top" "/tmp/$top" \
            || die "cannot bind /tmp/$top"
    fi
    log "host path /tmp/$top kept visible"
done

mkdir -p /dev/shm /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm || die "cannot mount /dev/shm"
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts 2>/dev/null || log "devpts not mounted"
# Kernel parameters that UML also hands to init as variables.
unset mem uml_dir umid
export HOME=$RUN/home TMPDIR=/tmp
# For scenarios: proof that they run in this lab, and a host directory for
# files worth keeping (it is removed with the work directory on success).
export UML_INSIDE=1 UML_RESULTS=$UML_WORK/results
hostname uml 2>/dev/null

# Modules. modprobe looks in DIR/lib/modules/$(uname -r) with -d DIR, and
# -C points it away from the host's /etc/modprobe.d.
ln -s /usr/lib/uml/modules "$RUN/modroot/lib/modules"
KVER=$(uname -r)
[ -d "$RUN/modroot/lib/modules/$KVER" ] \
    || die "no modules for kernel $KVER in /usr/lib/uml/modules (package user-mode-linux)"
MODPROBE=$(command -v modprobe) || die "modprobe not found (package kmod)"
cat > "$RUN/modprobe" <<EOF
#!/bin/sh
# The kernel's on-demand module loader (/proc/sys/kernel/modprobe).
echo "\$*" >> $RUN/modprobe.log
exec $MODPROBE -C $RUN/modprobe.d -d $RUN/modroot "\$@"
EOF
chmod 755 "$RUN/modprobe"
echo "$RUN/modprobe" > /proc/sys/kernel/modprobe || die "cannot set /proc/sys/kernel/modprobe"

loaded=() builtin=()
MODS="$UML_MODULES_STD ${UML_MODULES_EXTRA:-}"
# One modprobe for all (each one costs a fork and an index read); when it
# fails, one at a time to name the culprit.
# shellcheck disable=SC2086
if ! "$RUN/modprobe" -a $MODS 2> "$RUN/modprobe.err"; then
    for m in $MODS; do
        "$RUN/modprobe" "$m" 2> "$RUN/modprobe.err" \
            || die "modprobe $m failed: $(cat "$RUN/modprobe.err")"
    done
fi
for m in $MODS; do
    if grep -qE "/${m//_/[-_]}\.ko" "$RUN/modroot/lib/modules/$KVER/modules.builtin"; then
        builtin+=("$m")
    elif [ -d "/sys/module/$m" ]; then
        loaded+=("$m")
    else
        die "module $m is neither loaded nor built in after modprobe"
    fi
done
log "modules loaded: ${loaded[*]}"
log "modules built in: ${builtin[*]}"
# The wrapper's log so far is only our own loads; later lines are the
# kernel's on-demand requests.
: > "$RUN/modprobe.log"

ip link set lo up || die "cannot set lo up"

T_SETUP=$(uptime_s)
cd "$UML_CWD" 2>/dev/null || cd / || die "cannot cd"
log "running ${UML_SCENARIO} ${UML_ARGS[*]} in $PWD"
: > "$R/started"
# The scenario gets what is left of UML_TIMEOUT less a few seconds, so a
# hung one is stopped in here, its output and a process list reach the host,
# and run.sh's hard kill at UML_TIMEOUT is only the last resort.
limit=$(awk -v t="${UML_TIMEOUT_S:-300}" -v u="$(uptime_s)" 'BEGIN { l = int(t - u - 5); print (l < 1 ? 1 : l) }')
if [ -x "$UML_SCENARIO" ]; then
    set -- "$UML_SCENARIO" "${UML_ARGS[@]}"
else
    set -- bash "$UML_SCENARIO" "${UML_ARGS[@]}"
fi
setsid "$@" > "$R/stdout" 2> "$R/stderr" < /dev/null &
spid=$!   # setsid made it a process group leader: its group is $spid
(
    sleep "$limit"
    echo "$limit" > "$R/timeout"
    ps --ppid 2 -p 2 --deselect -o pid,ppid,pgid,stat,etime,wchan:24,args > "$R/ps.txt" 2>&1
    kill -TERM -- "-$spid" 2>/dev/null
    sleep 3
    kill -KILL -- "-$spid" 2>/dev/null
) &
wpid=$!
wait "$spid"
rc=$?
kill "$wpid" 2>/dev/null
if [ -f "$R/timeout" ]; then
    log "scenario timed out after $limit s (status $rc)"
fi
T_END=$(uptime_s)
cd /
log "scenario exit status $rc"
cp "$RUN/modprobe.log" "$R/modprobe.log" 2>/dev/null
cat > "$R/timing" <<EOF
boot=$T_BOOT
setup=$(awk -v a="$T_BOOT" -v b="$T_SETUP" 'BEGIN { printf "%.1f", b - a }')
scenario=$(awk -v a="$T_SETUP" -v b="$T_END" 'BEGIN { printf "%.1f", b - a }')
EOF
# The status last, atomically, after everything else is on the host.
sync
echo "$rc" > "$R/status.tmp" && mv "$R/status.tmp" "$R/status"
power_off
while :; do sleep 1000; done
