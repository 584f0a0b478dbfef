#!/bin/bash
# Install what building and testing tokend needs, from Debian's packages.
# Only what is missing is installed; run as root.
set -eu

PACKAGES=(
    gcc make cmake pkg-config clang
    libsystemd-dev libmnl-dev libjson-c-dev libinih-dev libssl-dev check
    iproute2 python3 util-linux procps
    radvd strace valgrind
    user-mode-linux kmod iputils-ping mount
    systemd man-db groff-base acl bash-completion
    libclang-rt-14-dev llvm-14
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages: ${missing[*]}; run as root to install them" >&2
    exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
