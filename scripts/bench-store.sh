#!/usr/bin/env bash
# bench-store.sh [BUILD_DIR] [fgbench store options...] - our store server (fgstore) next to
# torch's TCPStore servers, 1.13's (python3-torch) and 2.6's (the root of scripts/torch2-root.sh,
# where it is), under the same client load, the servers taking turns run by run. With two CPUs
# or more the servers run on one and the load driver on another (--no-pin: neither pinned).
#
#   1. throughput: 1, 16 and 64 clients doing SET+GET pairs (GET = WAIT then GET, as torch's
#      get) for 2 s per run; pairs/s, the ratio ours / the better torch server's, each
#      server's CPU time per pair (from /proc) and the load driver's. Target: >= 2x at 16 and 64 clients. The default load is lean:
#      the clients are connections on one epoll thread, one request in flight each, so the
#      driver takes little of a 2-core machine; --client library runs a thread per client
#      on libfg's blocking fg_store client instead.
#   2. rendezvous: 1,024 and 4,096 connections ADD a counter, then WAIT for the key the last
#      one sets; seconds from the first ADD sent to the last release received, and from the
#      last arrival to the last release; each server's CPU per round and peak RSS (VmHWM).
#      Target: >= 3x faster at 4,096.
#
# Medians of repeated runs; `fgbench store --help` lists the options (--server HOST:PORT
# measures one running server instead, --server-pid its CPU). Needs Debian's python3-torch
# for torch 1.13 (--python none leaves it out).
# Run it on an otherwise idle machine: the figures are wall-clock rates on shared CPUs.
set -euo pipefail

BUILD=${1:-build}
[ $# -gt 0 ] && shift
BIN=$(cd "$BUILD/bin" 2>/dev/null && pwd) || { echo "bench-store: $BUILD/bin is missing; run make first" >&2; exit 2; }
for p in fgbench fgstore; do
  [ -x "$BIN/$p" ] || { echo "bench-store: $BIN/$p is missing; run make first" >&2; exit 2; }
done
exec "$BIN/fgbench" store --fgstore "$BIN/fgstore" "$@"
