#!/usr/bin/env bash
# store-syscalls.sh [BUILD_DIR] [CLIENTS] [SECONDS] - system calls per SET+GET pair of each
# store server under fgbench store's lean load: fgstore, torch 1.13's TCPStore server and torch
# 2.6's (where scripts/torch2-root.sh made its root). Each server runs alone, pinned to CPU 0,
# with `strace -c -f` attached; the driver runs on CPU 1. strace slows the server, so the
# pairs it managed are counted from the run itself, and the figure is calls per pair.
set -euo pipefail
BUILD=${1:-build}
CLIENTS=${2:-16}
SECONDS_=${3:-2}
BIN=$(cd "$BUILD/bin" && pwd)
TORCH2_PY=${FG_TORCH2_ROOT:-/var/lib/fgrun/torch2}-python
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"; kill $(jobs -p) 2>/dev/null || true' EXIT

torch_server() { # torch_server PYTHON: prints "PID PORT" of a TCPStore master
  "$1" -c 'import datetime, sys, os
import torch.distributed as dist
s = dist.TCPStore("127.0.0.1", 0, 1, True, datetime.timedelta(seconds=600), wait_for_workers=False)
print(os.getpid(), s.port, flush=True)
sys.stdin.read()' <"$WORK/fifo" >"$WORK/port" &
}

measure() { # measure LABEL PID PORT
  local label=$1 pid=$2 port=$3
  taskset -a -p -c 0 "$pid" >/dev/null
  strace -c -f -q -o "$WORK/strace.$label" -p "$pid" &
  local st=$!
  sleep 0.5
  taskset -c 1 "$BIN/fgbench" store --server "127.0.0.1:$port" --server-pid "$pid" --no-pin \
    --only throughput --threads "$CLIENTS" --duration "$SECONDS_" --repeat 1 >"$WORK/out.$label"
  kill -INT "$st"; wait "$st" 2>/dev/null || true
  local rate calls
  rate=$(awk '/^  [0-9]/ {gsub(",", "", $2); print $2; exit}' "$WORK/out.$label")
  # strace -c's rows: % time, seconds, usecs/call, calls, [errors,] syscall
  calls=$(awk '$1 ~ /^[0-9.]+$/ && $NF != "total" {n += $4} END {print n}' "$WORK/strace.$label")
  printf '%-10s %7s pairs/s under strace, %8s calls: %5.2f per pair:' "$label" "$rate" \
    "$calls" "$(echo "$calls / ($rate * $SECONDS_)" | bc -l)"
  awk -v pairs="$rate * $SECONDS_" 'BEGIN {split(pairs, p, " * "); n = p[1] * p[3]}
    $1 ~ /^[0-9.]+$/ && $NF != "total" && $4 / n >= 0.05 {printf " %s %.2f", $NF, $4 / n}' \
    "$WORK/strace.$label"
  echo
}

"$BIN/fgstore" --port 0 --log_level info 2>"$WORK/fgstore.log" &
fg=$!
for _ in $(seq 50); do grep -q "listening on" "$WORK/fgstore.log" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on [^:]*:\([0-9]*\).*/\1/p' "$WORK/fgstore.log" | head -1)
measure fgstore "$fg" "$port"
kill "$fg"; wait "$fg" 2>/dev/null || true

for py in /usr/bin/python3 "$TORCH2_PY"; do
  [ -x "$py" ] || continue
  label=torch-1.13; [ "$py" = "$TORCH2_PY" ] && label=torch-2.6
  rm -f "$WORK/fifo"; mkfifo "$WORK/fifo"
  torch_server "$py"
  exec 9>"$WORK/fifo"
  for _ in $(seq 600); do [ -s "$WORK/port" ] && break; sleep 0.1; done
  read -r pid port <"$WORK/port"
  measure "$label" "$pid" "$port"
  exec 9>&-
  wait 2>/dev/null || true
  rm -f "$WORK/port"
done
