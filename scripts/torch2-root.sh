#!/usr/bin/env bash
# torch2-root.sh - a Debian trixie root with torch 2.6 (python3-torch), the torch 2.x that
# fgrun's tests and benchmarks are measured against, and two wrappers that run its programs.
#
#   scripts/torch2-root.sh            build the root if missing (2-3 minutes, 1.5 GB), patch it,
#                                     mount /proc /sys /dev /dev/shm into it, write the wrappers.
#                                     Idempotent: seconds and no output when all is in place.
#   scripts/torch2-root.sh --check    the same, then run torch 2.6's TCPStore and gloo in it
#   scripts/torch2-root.sh --remove   unmount everything and delete the root and the wrappers
#                                     (never rm -rf a root by hand while its mounts are up)
#
# FG_TORCH2_ROOT   where the root lives (default /var/lib/fgrun/torch2, outside any checkout)
# FG_TORCH2_MIRROR the Debian mirror (default: the machine's own, from its apt sources)
#
# The wrappers, next to the root: $FG_TORCH2_ROOT-python (the root's python3) and
# $FG_TORCH2_ROOT-torchrun (the root's torchrun). Each execs, in a mount namespace of its own,
# the root's program with the caller's working directory, environment and arguments; the host's
# data directories (/tmp, /home, /root, /work, ... every top-level directory that is not part
# of the OS) are bind-mounted at the same paths, so scripts, log dirs and error files keep their
# host paths. The chain wrapper -> unshare -> program is execs only: the program keeps the pid,
# sees every signal and its exit status is the wrapper's. Needs root (mount, chroot).
#
#   fgrun --python /var/lib/fgrun/torch2-python --nproc_per_node=4 train.py
#   /var/lib/fgrun/torch2-torchrun --nproc_per_node=4 train.py
#   chroot /var/lib/fgrun/torch2 torchrun ...       (sees the root's files only)
#
# Debian packaging quirk worked around in the root's copy of torch only: Debian's torch 2.6 is
# built without libuv, yet TCPStore asks for the libuv server by default (use_libuv=True, and
# USE_LIBUV defaults to "1" in env:// and the elastic agent), so torchrun and env:// fail with
# "use_libuv was requested but PyTorch was build without libuv support". The root's torch gets
# use_libuv=False as TCPStore's default and "0" as USE_LIBUV's; USE_LIBUV=1 still asks for it.
set -euo pipefail

ROOT=${FG_TORCH2_ROOT:-/var/lib/fgrun/torch2}
ROOT=${ROOT%/}
SUITE=trixie
PACKAGES=(python3-torch python3-numpy)
MARK='fgrun torch2-root'
me=torch2-root

die() { echo "$me: $*" >&2; exit 1; }
say() { echo "$me: $*" >&2; }

mode=setup
case "${1-}" in
  '') ;;
  --check) mode=check ;;
  --remove) mode=remove ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "$me: unknown argument '$1' (use --check, --remove or --help)" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, mount, chroot); run it with sudo"
case "$ROOT" in /*) ;; *) die "FG_TORCH2_ROOT must be an absolute path, not '$ROOT'" ;; esac

# The mounts this script keeps up on the host (the wrappers add the data directories in their
# own namespace only, so nothing on the host reaches /tmp or /home through the root).
SYSTEM_MOUNTS=(proc sys dev dev/shm)

mounted() { # mounted PATH: is PATH a mount point on the host?
  awk -v p="$1" '$5 == p { found = 1 } END { exit !found }' /proc/self/mountinfo
}

mounts_under_root() {
  awk -v r="$ROOT/" 'index($5, r) == 1 { print $5 }' /proc/self/mountinfo
}

unmount_all() {
  local m i
  for ((i = ${#SYSTEM_MOUNTS[@]} - 1; i >= 0; i--)); do
    m=$ROOT/${SYSTEM_MOUNTS[i]}
    if mounted "$m"; then umount -R "$m" || umount -R -l "$m"; fi
  done
  [ -z "$(mounts_under_root)" ] || die "still mounted under $ROOT: $(mounts_under_root | tr '\n' ' ')"
}

mkdir -p "$(dirname "$ROOT")"
if [ "$mode" = remove ]; then
  exec 9>"$ROOT.lock"; flock 9
  [ -d "$ROOT" ] && unmount_all
  rm -rf --one-file-system "$ROOT" "$ROOT.partial"
  rm -f "$ROOT-python" "$ROOT-torchrun" "$ROOT.lock"
  say "removed $ROOT and its wrappers"
  exit 0
fi

# The mirror the machine already uses for Debian itself: the first URI of an apt source whose
# suite is the host's own codename (deb822 *.sources or one-line *.list).
host_mirror() {
  local codename
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME-}")
  [ -n "$codename" ] || return 1
  {
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] && awk -v want="$codename" '
        function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " want " ") && uri != "") print uri;
                           types = suites = uri = "" }
        /^[ \t]*$/ { flush(); next }
        /^[ \t]*#/ { next }
        tolower($1) == "types:"  { $1 = ""; types = $0 }
        tolower($1) == "suites:" { $1 = ""; suites = $0 }
        tolower($1) == "uris:"   { uri = $2 }
        END { flush() }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] && awk -v want="$codename" '
        $1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                      if ($(i + 1) == want) print $i }' "$f"
    done
  } | head -n 1
}

exec 9>"$ROOT.lock"
flock 9

have_packages() {
  chroot "$ROOT" dpkg-query -W -f='${Status}\n' "${PACKAGES[@]}" 2>/dev/null |
    grep -c 'install ok installed' | grep -qx "${#PACKAGES[@]}"
}

mount_system() {
  local m
  for m in "${SYSTEM_MOUNTS[@]}"; do
    mounted "$ROOT/$m" && continue
    mkdir -p "$ROOT/$m"
    # /dev is bound alone and /dev/shm after it: a recursive /dev would bring the host's
    # /dev/shm along with a propagation the root cannot rely on.
    case "$m" in dev|dev/shm) mount --bind "/$m" "$ROOT/$m" ;; *) mount --rbind "/$m" "$ROOT/$m" ;; esac
    mount --make-rslave "$ROOT/$m"
  done
}

created=
if [ ! -x "$ROOT/usr/bin/python3" ]; then
  command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
  mirror=${FG_TORCH2_MIRROR:-$(host_mirror || true)}
  [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources*; set FG_TORCH2_MIRROR"
  say "building a Debian $SUITE root with ${PACKAGES[*]} in $ROOT from $mirror (2-3 minutes)"
  part=$ROOT.partial
  if [ -d "$part" ]; then
    awk -v r="$part/" 'index($5, r) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
      while read -r m; do umount -l "$m"; done
    rm -rf --one-file-system "$part"
  fi
  # --include pulls Depends only, never Recommends (debootstrap's --no-install-recommends).
  if ! debootstrap --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" \
      "$SUITE" "$part" "$mirror" >"$part.log" 2>&1; then
    tail -n 20 "$part.log" >&2
    die "debootstrap failed (whole log: $part.log)"
  fi
  rm -f "$part.log"
  mv "$part" "$ROOT"
  created=1
fi

mount_system
# Name resolution as on the host, so both launchers see the same host names.
for f in hosts resolv.conf; do
  [ -f "/etc/$f" ] && ! cmp -s "/etc/$f" "$ROOT/etc/$f" && cp "/etc/$f" "$ROOT/etc/$f"
done
if ! have_packages; then
  say "installing ${PACKAGES[*]} into $ROOT"
  chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
fi

# --- the libuv workaround (see the top of this file) -------------------------------------------
dist=$(ls -d "$ROOT"/usr/lib/python3/dist-packages/torch/distributed 2>/dev/null) ||
  die "no torch/distributed in $ROOT's python3 dist-packages"
if ! grep -q "$MARK" "$dist/__init__.py"; then
  cat >>"$dist/__init__.py" <<EOF

# --- $MARK: Debian's torch is built without libuv, yet TCPStore asks for the libuv
# server by default and fails ("use_libuv was requested but PyTorch was build without libuv
# support"). Here TCPStore defaults to the classic server; use_libuv=True still asks for libuv.
if is_available():
    def _fgrun_tcpstore_init(init):
        def __init__(self, *args, use_libuv=False, **kwargs):
            init(self, *args, use_libuv=use_libuv, **kwargs)
        __init__.__doc__ = init.__doc__
        return __init__

    TCPStore.__init__ = _fgrun_tcpstore_init(TCPStore.__init__)
EOF
fi
for f in "$dist/rendezvous.py" "$dist/elastic/utils/distributed.py"; do
  # env:// and the elastic agent read USE_LIBUV (default "1") and pass it on explicitly.
  grep -q 'environ.get("USE_LIBUV", "1")' "$f" &&
    sed -i 's/\(environ.get("USE_LIBUV", \)"1"\(.*\)$/\1"0"\2  # '"$MARK"'/' "$f"
done
grep -q 'environ.get("USE_LIBUV", "0")' "$dist/rendezvous.py" ||
  die "$dist/rendezvous.py does not read USE_LIBUV as expected; the workaround needs updating"

# --- the wrappers ---------------------------------------------------------------------------------
write_wrapper() { # write_wrapper NAME PROGRAM-IN-ROOT
  local out=$ROOT-$1 tmp
  tmp=$(mktemp "$out.XXXXXX")
  cat >"$tmp" <<EOF
#!/bin/sh
# $1 of the Debian trixie torch 2.6 root $ROOT, written by fgrun's scripts/torch2-root.sh.
# Runs $2 there in a mount namespace of its own, with this process's working directory,
# environment, arguments and pid (execs only, no shell left in between); the host's data
# directories appear at their own paths inside.
root='$ROOT'
prog='$2'
self='$out'
if [ "\${1-}" != --fgrun-torch2-ns ]; then
  exec unshare --mount --propagation private -- "\$self" --fgrun-torch2-ns "\$@"
fi
shift
mounts=' '
while read -r _ _ _ _ mp _; do mounts="\$mounts\$mp "; done </proc/self/mountinfo
bind() { # bind SOURCE TARGET [--bind]: a private mount, unless TARGET is already a mount
  case "\$mounts" in *" \$2 "*) return 0 ;; esac
  mount "\${3:---rbind}" "\$1" "\$2" || exit 127
}
# After a reboot the host's system mounts are gone: make them here (torch2-root.sh restores them).
for m in proc sys; do bind "/\$m" "\$root/\$m"; done
bind /dev "\$root/dev" --bind
bind /dev/shm "\$root/dev/shm" --bind
for d in /*; do
  [ -d "\$d" ] && [ ! -L "\$d" ] || continue
  case "\$d" in
    /bin|/boot|/dev|/etc|/lib|/lib32|/lib64|/libx32|/lost+found|/proc|/run|/sbin|/sys|/usr|/var) continue ;;
  esac
  case "\$root/" in "\$d"/*) continue ;; esac   # never the directory that holds the root
  # -p: wrappers started side by side (pytest -n) may all find it missing; one makes it.
  [ -d "\$root\$d" ] || mkdir -p "\$root\$d" || exit 127
  bind "\$d" "\$root\$d"
done
wd=\$(pwd -P)
if [ ! -d "\$root\$wd" ]; then
  echo "$1: the working directory \$wd is not visible in \$root (only the host's /tmp, /home, /root, ... are); cd elsewhere" >&2
  exit 127
fi
exec unshare --root="\$root" --wd="\$wd" -- "\$prog" "\$@"
EOF
  chmod 755 "$tmp"
  mv -f "$tmp" "$out"
}
write_wrapper python /usr/bin/python3
write_wrapper torchrun /usr/bin/torchrun

if [ -n "$created" ] || [ "$mode" = check ]; then
  # The root is usable when torch 2.6's TCPStore and env:// gloo work in it out of the box.
  check=$(cd / && "$ROOT-python" -c '
import datetime, os, torch, torch.distributed as dist
s = dist.TCPStore("127.0.0.1", 0, is_master=True, timeout=datetime.timedelta(seconds=30))
c = dist.TCPStore("127.0.0.1", s.port, timeout=datetime.timedelta(seconds=30))
c.set("k", "v"); assert s.get("k") == b"v"
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="0", RANK="0", WORLD_SIZE="1")
dist.init_process_group("gloo")  # env://: reads USE_LIBUV
t = torch.ones(2); dist.all_reduce(t); dist.destroy_process_group()
print(torch.__version__, dist.is_gloo_available(), dist.is_mpi_available())' 2>&1) ||
    die "torch 2.6 does not work in $ROOT: $check"
  say "ready: torch $check (version, gloo, mpi); wrappers $ROOT-python and $ROOT-torchrun"
fi
