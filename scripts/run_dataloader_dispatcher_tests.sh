#!/bin/bash
# run_dataloader_dispatcher_tests.sh - the dataloader-dispatcher matrix (Forgather's
# tests/run_dataloader_dispatcher_tests.sh), natively: 1D pure DP and pure MP, a single
# rank, and 2D hybrid meshes with either dimension as DP.
#
#   scripts/run_dataloader_dispatcher_tests.sh [gloo|nccl|mpi]   (default gloo)
#
# gloo and nccl run under fgrun, mpi under mpirun. nccl needs a GPU per rank: cases with
# more ranks than GPUs are skipped. FG_BUILD picks the build (default build/); CASE_TIMEOUT
# bounds each case in seconds (default 120). Exits non-zero if any case failed.
set -u

BACKEND="${1:-gloo}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${FG_BUILD:-$ROOT/build}"
FGRUN="$BUILD/bin/fgrun"
FGSCENARIO="$BUILD/bin/fgscenario"
CASE_TIMEOUT="${CASE_TIMEOUT:-120}"

case "$BACKEND" in
  gloo|nccl|mpi) ;;
  *) echo "usage: $0 [gloo|nccl|mpi]" >&2; exit 2 ;;
esac
for bin in "$FGSCENARIO" $([ "$BACKEND" = mpi ] || echo "$FGRUN"); do
  [ -x "$bin" ] || { echo "$0: $bin is missing: run make first" >&2; exit 2; }
done
if [ "$BACKEND" = mpi ] && ! command -v mpirun >/dev/null; then
  echo "$0: mpirun not found (apt-get install openmpi-bin)" >&2; exit 2
fi

GPUS=0
if [ "$BACKEND" = nccl ]; then
  GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
fi

passed=0 failed=0 skipped=0
failures=()

# run_case NPROC DP MP DESCRIPTION [EXTRA ARGS...]
run_case() {
  local nproc=$1 dp=$2 mp=$3 desc=$4
  shift 4
  local label
  label=$(printf "%-28s nproc=%d dp=%d mp=%d %s" "$desc" "$nproc" "$dp" "$mp" "$*")
  if [ "$BACKEND" = nccl ] && [ "$nproc" -gt "$GPUS" ]; then
    printf "SKIP  %s (needs %d GPUs, %d here)\n" "$label" "$nproc" "$GPUS"
    skipped=$((skipped + 1))
    return
  fi
  local args=(--backend "$BACKEND" dataloader-dispatcher --dp "$dp" --mp "$mp" "$@")
  local cmd
  if [ "$BACKEND" = mpi ]; then
    cmd=(mpirun --allow-run-as-root --oversubscribe -np "$nproc" "$FGSCENARIO" "${args[@]}")
  else
    cmd=("$FGRUN" --standalone --nproc_per_node="$nproc" --no_python "$FGSCENARIO" "${args[@]}")
  fi
  local start end out rc
  start=$(date +%s.%N)
  # -k: Open MPI has been seen to hang while many ranks exit at once; never wait forever.
  out=$(timeout -k 10 "$CASE_TIMEOUT" "${cmd[@]}" 2>&1)
  rc=$?
  end=$(date +%s.%N)
  local secs
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
  if [ $rc -eq 0 ] && grep -q "ALL CHECKS PASSED" <<<"$out"; then
    printf "PASS  %s  %ss\n" "$label" "$secs"
    passed=$((passed + 1))
  else
    local why="exit $rc"
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && why="timed out after ${CASE_TIMEOUT}s"
    printf "FAIL  %s  %ss (%s)\n" "$label" "$secs" "$why"
    sed 's/^/      | /' <<<"$out" | grep -v "OMP_NUM_THREADS" | tail -25
    failed=$((failed + 1))
    failures+=("$desc")
  fi
}

echo "dataloader-dispatcher matrix, backend $BACKEND ($BUILD)"
echo "--- 1D meshes"
run_case 2 2 1 "1D pure DP (2 ranks)"
run_case 4 4 1 "1D pure DP (4 ranks)"
run_case 2 1 2 "1D pure MP (2 ranks)"
run_case 4 1 4 "1D pure MP (4 ranks)"
run_case 1 1 1 "single rank (dp=1, mp=1)"
echo "--- 2D meshes"
run_case 4 2 2 "2D hybrid 2x2 (dp-dim 0)" --dp-dim 0
run_case 6 2 3 "2D hybrid 2x3 (dp-dim 0)" --dp-dim 0
run_case 6 3 2 "2D hybrid 3x2 (dp-dim 0)" --dp-dim 0
run_case 4 2 2 "2D hybrid 2x2 (dp-dim 1)" --dp-dim 1
run_case 6 2 3 "2D hybrid 2x3 (dp-dim 1)" --dp-dim 1

echo "--- $passed passed, $failed failed, $skipped skipped (backend $BACKEND)"
if [ $failed -gt 0 ]; then
  printf "failed: %s\n" "${failures[@]}"
  exit 1
fi
exit 0
