#!/bin/sh
# deps.sh - makes sure the build and test dependencies are installed.
#
#   scripts/deps.sh          install what is missing (apt-get as root, else print the command)
#   scripts/deps.sh --check  exit 1 if anything is missing, install nothing
#
# Packages: libunwind-dev (backtraces), libcriterion-dev and libjansson-dev
# (tests), libdw-dev and libelf-dev (symbolization), libbpf-dev, clang and
# bpftool (the bpf recorder: its kernel programs, their skeleton, vmlinux.h),
# pkg-config, gcc, make.
set -eu

PACKAGES="build-essential pkg-config libunwind-dev libcriterion-dev libjansson-dev libdw-dev libelf-dev libbpf-dev clang bpftool zlib1g-dev"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done

[ -z "$missing" ] && exit 0
[ "${1:-}" = "--check" ] && exit 1

if [ "$(id -u)" -eq 0 ]; then
    echo "closewatch: installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq --no-install-recommends $missing >&2
else
    echo "closewatch: missing packages:$missing" >&2
    echo "closewatch: run:  sudo apt-get install -y$missing" >&2
    exit 1
fi
