#!/usr/bin/env bash
# bench-store.sh [BUILD_DIR] [fgbench store options...] - our store server (fgstore) next to
# torch 1.13's TCPStore server, under the same C-client load:
#
#   1. throughput: 1, 16 and 64 client threads doing SET+GET pairs for 2 s per run;
#      pairs/s and the ratio ours/torch. Target: >= 2x at 16 and 64 clients.
#   2. rendezvous: 1,024 and 4,096 connections ADD a counter, then WAIT for the key the last
#      one sets; seconds until all are released, the ratio torch/ours and each server's peak
#      RSS. Target: >= 3x at 4,096.
#
# Medians of repeated runs; `fgbench store --help` lists the options (--server HOST:PORT
# measures one running server instead). Needs Debian's python3-torch for the torch side.
set -euo pipefail

BUILD=${1:-build}
[ $# -gt 0 ] && shift
BIN=$(cd "$BUILD/bin" 2>/dev/null && pwd) || { echo "bench-store: $BUILD/bin is missing; run make first" >&2; exit 2; }
for p in fgbench fgstore; do
  [ -x "$BIN/$p" ] || { echo "bench-store: $BIN/$p is missing; run make first" >&2; exit 2; }
done
exec "$BIN/fgbench" store --fgstore "$BIN/fgstore" "$@"
