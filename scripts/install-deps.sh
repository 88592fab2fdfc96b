#!/usr/bin/env bash
# Installs every Debian package fgrun's build, tests and benchmarks need.
# Idempotent: prints nothing and touches nothing when everything is present.
# Then sets up the Debian trixie root with torch 2.6 (scripts/torch2-root.sh, 2-3 minutes the
# first time); --no-torch2 or FG_SKIP_TORCH2=1 skips that.
# libpmix-dev (below, with Slurm's): also fgrun's PMIx server (Open MPI 4.1's PMIx).
# libmpich-dev: the tests' program built against another MPI (its mpicc/mpirun alternatives
# rank below Open MPI's).
set -euo pipefail

torch2=1
for a in "$@"; do
  case "$a" in
    --no-torch2) torch2= ;;
    *) echo "install-deps: unknown argument '$a' (known: --no-torch2)" >&2; exit 2 ;;
  esac
done
[ "${FG_SKIP_TORCH2:-0}" = 1 ] && torch2=
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo env FG_TORCH2_ROOT=${FG_TORCH2_ROOT-} FG_TORCH2_MIRROR=${FG_TORCH2_MIRROR-}"
else
  SUDO=
fi
torch2_root() { [ -z "$torch2" ] || $SUDO "$(dirname "$0")/torch2-root.sh"; }

PACKAGES=(
  build-essential pkg-config clang libclang-rt-14-dev
  libuv1-dev libyaml-dev libcmocka-dev libdw-dev
  libgloo-dev libopenmpi-dev openmpi-bin
  libmpich-dev
  python3 python3-pytest python3-pytest-xdist python3-torch
  gnuplot-nox hyperfine valgrind iproute2 procps psmisc
  debootstrap util-linux
  # the Slurm tests' cluster (make test-slurm); Slurm's PMIx plugin dlopens libpmix.so, which
  # only libpmix-dev ships
  slurmctld slurmd slurm-client munge libpmix-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then torch2_root; exit 0; fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# munge's and Slurm's postinst start their daemons where a service manager would (the system
# munged on /etc/munge's key). The tests start daemons of their own, so for the time of the
# install a policy-rc.d of ours (101: action forbidden) starts none, unless the machine has one.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  $SUDO sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
  trap '$SUDO rm -f "$policy"' EXIT
fi
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
torch2_root
