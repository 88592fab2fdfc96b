#!/usr/bin/env bash
# Installs every Debian package fgrun's build, tests and benchmarks need.
# Idempotent: prints nothing and touches nothing when everything is present.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config clang libclang-rt-14-dev
  libuv1-dev libyaml-dev libcmocka-dev
  libgloo-dev libopenmpi-dev openmpi-bin
  python3 python3-pytest python3-pytest-xdist python3-torch
  gnuplot-nox hyperfine valgrind iproute2 procps psmisc
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
