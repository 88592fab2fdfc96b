#!/usr/bin/env bash
# gpu-check.sh - the checks a session lent a GPU machine runs as is, from the repository root:
#
#   scripts/gpu-check.sh
#
# On a lent machine (no registry reachable there), through the device tool:
#   run(command="scripts/gpu-check.sh", carry=[".gpu-deps"], timeout_s=600)
# .gpu-deps/ (ignored by git) holds libuv's source for machines without libuv1-dev; to make
# it again: git -C <libuv clone> archive --prefix=libuv-1.48.0/ v1.48.0 | gzip >
# .gpu-deps/libuv-1.48.0.tar.gz
#
# It reports the machine (nvidia-smi, CUDA and NCCL versions), finds CUDA and NCCL (under
# CUDA_HOME, /usr/local/cuda, or a Python wheel's nvidia/nccl), builds what the installed
# libraries allow (libuv from .gpu-deps/libuv-*.tar.gz when the system has none: carry
# .gpu-deps there), then runs the nccl backend at world size 1 directly, as a 1x1 mesh and
# under fgrun, the four scenarios at world size 1 (each with a fault that must bite), its
# failure paths with two ranks on one GPU, latency and fgbench, and the pytest file. Every
# step has a time limit and a failed step does not stop the others; the whole run keeps
# within GPU_CHECK_BUDGET seconds (default 540). It ends with a table of
# PASS / FAIL / SKIP per step and exits 1 if any step failed. The full log goes to
# $OUT/gpu-check.log (build/gpu-check/ without $OUT), the table to $OUT/gpu-check-summary.txt.
# GPU_CHECK_BUILD=DIR builds into DIR instead of build/.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
BUILD=${GPU_CHECK_BUILD:-build} # another build folder, to try this script beside a build
WORK=$ROOT/$BUILD/gpu-check
OUTDIR=${OUT:-$WORK}
mkdir -p "$WORK" "$OUTDIR"
LOG=$OUTDIR/gpu-check.log
SUMMARY=$OUTDIR/gpu-check-summary.txt
exec > >(tee "$LOG") 2>&1
TEE_PID=$!

START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-540}
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
export FG_TIMEOUT=${FG_TIMEOUT:-120}
unset RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE MASTER_ADDR MASTER_PORT FG_BACKEND
BIN=$ROOT/$BUILD/bin
SMOKE=$ROOT/$BUILD/tests/drivers/nccl_smoke
export ROOT BUILD WORK BIN SMOKE

NAMES=() RESULTS=() NOTES=()

record() {
  NAMES+=("$1") RESULTS+=("$2") NOTES+=("$3")
  printf '==> %s  %s  %s\n' "$2" "$1" "$3"
}

left() { echo $((BUDGET - ($(date +%s) - START))); }

# step NAME LIMIT_S COMMAND: runs COMMAND (a bash string; exported functions allowed) under
# timeout and records PASS, or FAIL with the exit status; SKIP when the budget is spent.
step() {
  local name=$1 limit=$2 cmd=$3
  if [ "$(left)" -lt 15 ]; then
    record "$name" SKIP "out of time"
    return 0
  fi
  [ "$limit" -gt "$(left)" ] && limit=$(left)
  echo
  echo "=== $name  [$(date +%T), limit ${limit}s]"
  echo "\$ $cmd"
  local t0 rc
  t0=$(date +%s)
  timeout -k 5 "$limit" bash -c "$cmd"
  rc=$?
  local took=$(($(date +%s) - t0))
  if [ $rc -eq 0 ]; then
    record "$name" PASS "${took}s"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    record "$name" FAIL "killed after ${limit}s (hung?)"
  else
    record "$name" FAIL "exit $rc after ${took}s"
  fi
}

skip() { record "$1" SKIP "$2"; }

# Appends to the note of the last step.
note() { NOTES[${#NOTES[@]} - 1]="${NOTES[${#NOTES[@]} - 1]}; $1"; }

# --- the machine --------------------------------------------------------------------------

machine() {
  uname -a
  grep PRETTY_NAME /etc/os-release 2>/dev/null
  echo "cores: $(nproc)  memory: $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  gcc --version | head -1
  echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>}"
  nvidia-smi -L && nvidia-smi
}
export -f machine

# --- CUDA and NCCL ------------------------------------------------------------------------

find_cuda() {
  local d
  for d in "${CUDA_HOME:-}" /usr/local/cuda /usr/local/cuda-13* /usr/local/cuda-12* /opt/cuda; do
    [ -n "$d" ] && [ -f "$d/include/cuda_runtime.h" ] && [ -d "$d/lib64" ] && {
      echo "$d"
      return 0
    }
  done
  return 1
}

# The folder above include/nccl.h and lib/libnccl.so*: CUDA itself, the system, or a wheel.
find_nccl() {
  local d py
  for d in "$1" /usr /usr/local; do
    [ -f "$d/include/nccl.h" ] && { compgen -G "$d/lib*/libnccl.so*" || compgen -G "$d/lib/*/libnccl.so*"; } >/dev/null && {
      echo "$d"
      return 0
    }
  done
  for py in python3 /usr/bin/python3; do
    d=$($py -c 'import nvidia.nccl, os; print(list(nvidia.nccl.__path__)[0])' 2>/dev/null) &&
      [ -f "$d/include/nccl.h" ] && {
      echo "$d"
      return 0
    }
  done
  for d in /opt/*/.venv/lib/python3*/site-packages/nvidia/nccl /usr/local/lib/python3*/dist-packages/nvidia/nccl \
    /usr/lib/python3/dist-packages/nvidia/nccl; do
    [ -f "$d/include/nccl.h" ] && {
      echo "$d"
      return 0
    }
  done
  return 1
}

# A CUDA_HOME for the Makefile that holds NCCL too: links to every part of CUDA, with NCCL's
# headers and libraries beside CUDA's (and the libnccl.so that -lnccl needs).
make_shim() {
  local cuda=$1 nccl=$2 shim=$WORK/cuda e f
  rm -rf "$shim" && mkdir -p "$shim/include" "$shim/lib64"
  for e in "$cuda"/*; do
    case ${e##*/} in include | lib | lib64) ;; *) ln -s "$e" "$shim/${e##*/}" ;; esac
  done
  for f in "$cuda"/include/* "$nccl"/include/nccl*; do ln -sf "$f" "$shim/include/"; done
  for f in "$cuda"/lib64/* "$nccl"/lib*/libnccl* "$nccl"/lib/*/libnccl*; do
    [ -e "$f" ] && ln -sf "$f" "$shim/lib64/"
  done
  [ -e "$shim/lib64/libnccl.so" ] || ln -s "$(ls "$shim"/lib64/libnccl.so.* | head -1)" "$shim/lib64/libnccl.so"
  echo "$shim"
}

locate() {
  CUDA_DIR=$(find_cuda) || {
    echo "no CUDA toolkit (include/cuda_runtime.h) under \$CUDA_HOME, /usr/local/cuda*, /opt/cuda"
    return 1
  }
  NCCL_DIR=$(find_nccl "$CUDA_DIR") || {
    echo "CUDA is at $CUDA_DIR but NCCL (nccl.h, libnccl.so) is nowhere"
    return 1
  }
  echo "CUDA: $CUDA_DIR ($("$CUDA_DIR/bin/nvcc" --version 2>/dev/null | tail -2 | head -1))"
  echo "NCCL: $NCCL_DIR ($(grep -m3 -E '#define NCCL_(MAJOR|MINOR|PATCH)' "$NCCL_DIR/include/nccl.h" | awk '{printf "%s ", $3}'))"
  if [ "$NCCL_DIR" = "$CUDA_DIR" ]; then
    BUILD_CUDA=$CUDA_DIR
  else
    BUILD_CUDA=$(make_shim "$CUDA_DIR" "$NCCL_DIR")
    echo "NCCL is outside CUDA: building with CUDA_HOME=$BUILD_CUDA (links to both)"
  fi
}

sanity_program() {
  cat >"$WORK/cuda_sanity.c" <<'EOF'
/* Is there a GPU that CUDA and NCCL can use? Versions, devices, one copy there and back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cuda_runtime.h>
#include <nccl.h>

int main(void) {
  int driver = 0, runtime = 0, nccl = 0, n = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  ncclGetVersion(&nccl);
  printf("CUDA driver supports %d.%d, runtime %d.%d; NCCL library %d, header %d.%d.%d\n",
         driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10, nccl,
         NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH);
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    printf("cudaGetDeviceCount: %s\n", cudaGetErrorString(e));
    return 1;
  }
  printf("%d CUDA device(s)\n", n);
  for (int i = 0; i < n; i++) {
    struct cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) == cudaSuccess)
      printf("  %d: %s, compute %d.%d, %.1f GiB\n", i, p.name, p.major, p.minor,
             p.totalGlobalMem / 1073741824.0);
  }
  if (n == 0) return 1;
  size_t bytes = 1 << 20;
  char *host = malloc(bytes), *back = calloc(1, bytes);
  void *dev = NULL;
  for (size_t i = 0; i < bytes; i++) host[i] = (char)(i * 7);
  if ((e = cudaMalloc(&dev, bytes)) != cudaSuccess ||
      (e = cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice)) != cudaSuccess ||
      (e = cudaMemcpy(back, dev, bytes, cudaMemcpyDeviceToHost)) != cudaSuccess) {
    printf("device copy: %s\n", cudaGetErrorString(e));
    return 1;
  }
  printf("1 MiB to GPU 0 and back: %s\n", memcmp(host, back, bytes) ? "WRONG" : "ok");
  return memcmp(host, back, bytes) != 0;
}
EOF
  gcc -std=gnu11 -O2 -Wall -I"$BUILD_CUDA/include" "$WORK/cuda_sanity.c" -o "$WORK/cuda_sanity" \
    -L"$BUILD_CUDA/lib64" -Wl,-rpath,"$BUILD_CUDA/lib64" -lnccl -lcudart && "$WORK/cuda_sanity"
}
export -f sanity_program

# --- build dependencies -------------------------------------------------------------------

have_header() { echo "#include <$1>" | gcc $CPPFLAGS -E -x c - >/dev/null 2>&1; }
have_lib() { echo 'int main(void){return 0;}' | gcc -x c - $LDFLAGS -l"$1" -o /dev/null >/dev/null 2>&1; }

apt_install() {
  command -v apt-get >/dev/null || return 1
  echo "trying apt-get for: $*"
  timeout 60 apt-get update -qq >/dev/null 2>&1 || {
    echo "apt-get cannot reach a mirror"
    return 1
  }
  DEBIAN_FRONTEND=noninteractive timeout 240 apt-get install -y -qq --no-install-recommends "$@"
}

# libuv from the tarball carried in .gpu-deps (no registry is reachable from a lent machine).
build_libuv() {
  local tarball
  tarball=$(ls "$ROOT"/.gpu-deps/libuv-*.tar.gz 2>/dev/null | tail -1)
  [ -n "$tarball" ] || return 1
  command -v cmake >/dev/null || return 1
  echo "building $(basename "$tarball") into $WORK/libuv"
  rm -rf "$WORK/libuv-src" "$WORK/libuv" && mkdir -p "$WORK/libuv-src" &&
    tar xzf "$tarball" -C "$WORK/libuv-src" --strip-components=1 &&
    cmake -S "$WORK/libuv-src" -B "$WORK/libuv-src/b" -DCMAKE_BUILD_TYPE=Release \
      -DLIBUV_BUILD_SHARED=OFF -DBUILD_TESTING=OFF -DLIBUV_BUILD_TESTS=OFF \
      -DLIBUV_BUILD_BENCH=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
      -DCMAKE_INSTALL_PREFIX="$WORK/libuv" -DCMAKE_INSTALL_LIBDIR=lib >/dev/null &&
    cmake --build "$WORK/libuv-src/b" -j16 >/dev/null && cmake --install "$WORK/libuv-src/b" >/dev/null
}

have_cmocka() {
  printf '#include <stdarg.h>\n#include <stddef.h>\n#include <setjmp.h>\n#include <cmocka.h>\n' |
    gcc $CPPFLAGS -E -x c - >/dev/null 2>&1
}

deps() {
  local missing=()
  have_header uv.h || missing+=(libuv1-dev)
  have_cmocka || missing+=(libcmocka-dev)
  have_header yaml.h || missing+=(libyaml-dev)
  if [ ${#missing[@]} -eq 0 ]; then
    echo "libuv, cmocka and libyaml are installed"
  else
    echo "missing: ${missing[*]}"
    # scripts/install-deps.sh would also pull python3-torch and the benchmark tools, more
    # than this check has time for: only the build's own libraries are asked for.
    [ "$(id -u)" -eq 0 ] && apt_install "${missing[@]}"
  fi
  # GPU_CHECK_VENDORED_UV=1 takes this path even where libuv is installed (to try it).
  if ! have_header uv.h || [ -n "${GPU_CHECK_VENDORED_UV:-}" ]; then
    build_libuv || {
      echo "no libuv: apt-get failed and there is no .gpu-deps/libuv-*.tar.gz (carry .gpu-deps)"
      return 1
    }
    CPPFLAGS="-I$WORK/libuv/include $CPPFLAGS"
    LDFLAGS="-L$WORK/libuv/lib $LDFLAGS"
    have_header uv.h && have_lib uv || return 1
    echo "libuv built from source (linked statically)"
  fi
  have_cmocka || echo "no cmocka: the unit tests are left out"
  have_header yaml.h || echo "no libyaml: fgmatrix is left out"
}

# The targets this machine's libraries allow: all of them, less the unit tests without
# cmocka and fgmatrix without libyaml.
targets() {
  local t=() f
  for f in src/tools/fg*.c; do
    f=${f##*/}
    f=${f%.c}
    [ "$f" = fgmatrix ] && ! have_header yaml.h && continue
    t+=("$BUILD/bin/$f")
  done
  for f in tests/drivers/*.c; do
    f=${f##*/}
    t+=("$BUILD/tests/drivers/${f%.c}")
  done
  t+=("$BUILD/lib/libfg.a" "$BUILD/lib/libfg.so")
  if have_cmocka; then
    for f in tests/unit/*/test_*.c; do
      [ -e "$f" ] || continue
      f=${f#tests/unit/}
      t+=("$BUILD/tests/unit/${f%.c}")
    done
  fi
  echo "${t[@]}"
}

# --- checks -------------------------------------------------------------------------------

# expect FILE PATTERN...: every (extended) pattern must appear in FILE.
expect() {
  local file=$1 p
  shift
  for p in "$@"; do
    grep -Eq "$p" "$file" || {
      echo "MISSING from the output: /$p/"
      return 1
    }
  done
}
export -f expect

# two_ranks LOCAL_RANK0 LOCAL_RANK1 TIMEOUT_S ARGS...: ranks 0 and 1 of nccl_smoke on this
# machine, with MASTER_ADDR/PORT as torchrun sets them; outputs in $WORK/rank{0,1}.out, exit
# statuses in $WORK/rank{0,1}.rc.
two_ranks() {
  local lr0=$1 lr1=$2 limit=$3 port=$((20000 + RANDOM % 20000)) r lr
  shift 3
  for r in 0 1; do
    [ $r -eq 0 ] && lr=$lr0 || lr=$lr1
    (
      env RANK=$r WORLD_SIZE=2 LOCAL_RANK=$lr LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 \
        MASTER_PORT=$port FG_TIMEOUT=$limit "$SMOKE" "$@" >"$WORK/rank$r.out" 2>&1
      echo $? >"$WORK/rank$r.rc"
    ) &
  done
  wait
  for r in 0 1; do
    echo "--- rank $r (exit $(cat "$WORK/rank$r.rc"))"
    cat "$WORK/rank$r.out"
  done
}
export -f two_ranks

same_gpu_refused() {
  two_ranks 0 0 30 init
  [ "$(cat "$WORK/rank0.rc")" = 2 ] && [ "$(cat "$WORK/rank1.rc")" = 2 ] &&
    expect "$WORK/rank0.out" "init failed: " && expect "$WORK/rank1.out" "init failed: "
}
export -f same_gpu_refused

missing_gpu_times_out() {
  two_ranks 0 1 10 init
  [ "$(cat "$WORK/rank0.rc")" = 2 ] && [ "$(cat "$WORK/rank1.rc")" = 2 ] &&
    expect "$WORK/rank1.out" "FG_ENODEV" "needs GPU 1 but this machine has 1" &&
    expect "$WORK/rank0.out" "ETIMEDOUT" "nccl init on world: timed out"
}
export -f missing_gpu_times_out

two_gpus() {
  two_ranks 0 1 120 all && [ "$(cat "$WORK/rank0.rc")$(cat "$WORK/rank1.rc")" = 00 ] &&
    two_ranks 0 1 5 --timeout-ms 2000 timeout &&
    expect "$WORK/rank0.out" "err ETIMEDOUT.*timed out" "only fg_comm_destroy is allowed now"
}
export -f two_gpus

latency() {
  "$SMOKE" --iters 2000 latency | tee "$WORK/latency.out" &&
    FG_NCCL_BLOCKING=1 "$SMOKE" --iters 2000 latency | sed 's/^latency:/latency (blocking):/' |
    tee -a "$WORK/latency.out"
}
export -f latency

# fails_check COMMAND...: a fault that bites: exit 1 with a [FAIL] line.
fails_check() {
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  echo "$out"
  [ $rc -eq 1 ] && grep -q '\[FAIL\]' <<<"$out" && return 0
  echo "expected exit 1 with a failed check, got exit $rc"
  return 1
}
export -f fails_check

# The four scenarios on nccl at world size 1 (every one that runs on one rank), each with a
# fault that must fail its check.
scenarios() {
  local scn="\"$BIN/fgscenario\" --backend nccl" sched dtype
  step "scenario checkpoint-integration (nccl)" 120 "$scn checkpoint-integration"
  step "scenario dataloader-dispatcher 1x1 (nccl)" 120 "$scn dataloader-dispatcher --dp 1 --mp 1"
  for sched in gpipe 1f1b; do
    for dtype in float64 float32; do
      step "scenario pipeline-split $sched $dtype (nccl)" 120 \
        "$scn pipeline-split --stages 1 --schedule $sched --dtype $dtype"
    done
  done
  step "scenario build_sync, file lock (nccl)" 120 "$scn build_sync"
  step "fault checkpoint non-atomic bites (nccl)" 120 "fails_check $scn --fault non-atomic checkpoint-integration"
  step "fault dispatcher duplicate-batch bites (nccl)" 120 "fails_check $scn --fault duplicate-batch dataloader-dispatcher"
  step "fault pipeline corrupt-grad bites (nccl)" 120 "fails_check $scn --fault corrupt-grad pipeline-split --stages 1"
  step "fault build_sync rebuild bites (nccl)" 120 "fails_check $scn --fault rebuild build_sync"
  [ -x "$BIN/fgrun" ] &&
    step "fgrun --nproc_per_node=1 all (nccl)" 180 "\"$BIN/fgrun\" --standalone --nproc_per_node=1 all --backend nccl"
  [ -x "$BIN/fgmatrix" ] &&
    step "fgmatrix --backend nccl (1-rank cases run)" 240 "\"$BIN/fgmatrix\" --backend nccl configs/*.yaml"
  return 0
}

pytest_file() {
  local py
  for py in python3 /usr/bin/python3; do
    if $py -m pytest --version >/dev/null 2>&1; then
      FG_BUILD=$ROOT/$BUILD CUDA_HOME=$BUILD_CUDA $py -m pytest -c tests/pytest.ini \
        tests/integration/test_comm_nccl.py -rs
      return
    fi
  done
  echo "no python with pytest"
  return 3
}
export -f pytest_file

# --- the run ------------------------------------------------------------------------------

echo "gpu-check: $(date -u +%FT%TZ) on $(hostname), repository $ROOT ($(git -C "$ROOT" log -1 --format=%h 2>/dev/null || echo '?'))"

step "machine: nvidia-smi" 60 machine

echo
echo "=== locate CUDA and NCCL"
BUILD_CUDA=
if locate; then
  record "locate CUDA and NCCL" PASS "CUDA_HOME=$BUILD_CUDA"
else
  record "locate CUDA and NCCL" FAIL "see log"
fi
export BUILD_CUDA

if [ -n "$BUILD_CUDA" ]; then
  step "CUDA sanity: devices, one copy" 120 sanity_program
else
  skip "CUDA sanity: devices, one copy" "no CUDA/NCCL found"
fi

echo
echo "=== build dependencies"
export CPPFLAGS=${CPPFLAGS:-} LDFLAGS=${LDFLAGS:-}
if deps; then
  record "build dependencies" PASS "$(have_cmocka || echo 'no cmocka: unit tests left out; ')$(have_header yaml.h || echo 'no libyaml: fgmatrix left out')"
else
  record "build dependencies" FAIL "no libuv"
fi
# mpicc that is not Open MPI's would give the Makefile flags it cannot use.
if command -v mpicc >/dev/null && ! mpicc --showme:compile >/dev/null 2>&1; then
  echo "hiding $(command -v mpicc) from make: not Open MPI's"
  PATH=$(echo "$PATH" | tr : '\n' | grep -vx "$(dirname "$(command -v mpicc)")" | paste -sd:)
fi

MAKEVARS="BUILD=$BUILD CUDA_HOME=${BUILD_CUDA:-/nonexistent}"
step "make -j16 $(targets | wc -w) targets" 300 "make -j16 -k $MAKEVARS $(targets)"
step "nccl backend compiled in" 30 "\"$SMOKE\" backends | tee $WORK/backends.out && expect $WORK/backends.out 'backends:.* nccl'"

step "nccl init and destroy (world 1)" 120 "\"$SMOKE\" init > $WORK/init.out 2>&1; cat $WORK/init.out; expect $WORK/init.out '^ok init'"
if [ "${RESULTS[${#RESULTS[@]} - 1]}" = PASS ]; then
  NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  step "smoke: every op, dtype, group (world 1)" 180 \
    "NCCL_CHECK_POINTERS=1 \"$SMOKE\" all"
  step "smoke: the same, blocking NCCL" 180 "FG_NCCL_BLOCKING=1 \"$SMOKE\" all"
  step "smoke: bad dtype refused, comm usable" 60 "\"$SMOKE\" refused"
  step "smoke: rank without its GPU refused" 60 \
    "\"$SMOKE\" --local-rank $NGPU init > $WORK/nogpu.out 2>&1; cat $WORK/nogpu.out; expect $WORK/nogpu.out 'FG_ENODEV' 'needs GPU $NGPU but this machine has $NGPU'"
  if [ -x "$BIN/fgconform" ]; then
    step "fgconform --backend nccl (world 1)" 180 "\"$BIN/fgconform\" --backend nccl"
    step "fgconform --backend nccl --mesh 1x1" 180 "\"$BIN/fgconform\" --backend nccl --mesh 1x1"
  else
    skip "fgconform (world 1, mesh 1x1)" "build/bin/fgconform not built"
  fi
  if [ -x "$BIN/fgrun" ] && [ -x "$BIN/fgconform" ]; then
    step "fgrun --nproc_per_node=1 fgconform nccl" 180 \
      "\"$BIN/fgrun\" --standalone --nproc_per_node=1 --no_python \"$BIN/fgconform\" --backend nccl"
    step "fgrun --nproc_per_node=1 nccl_smoke" 180 \
      "\"$BIN/fgrun\" --standalone --nproc_per_node=1 --no_python \"$SMOKE\" all"
  else
    skip "under fgrun" "build/bin/fgrun or fgconform not built"
  fi
  if [ -x "$BIN/fgscenario" ]; then
    scenarios
  else
    skip "scenarios on nccl" "build/bin/fgscenario not built"
  fi
  if [ "$NGPU" -ge 2 ]; then
    step "2 ranks on 2 GPUs: all ops, then a timeout" 240 two_gpus
  else
    step "2 ranks on 1 GPU: both refused, no hang" 90 same_gpu_refused
    step "rank 1 has no GPU: rank 0 times out" 90 missing_gpu_times_out
  fi
  step "latency and bandwidth (world 1)" 120 latency
  [ -s "$WORK/latency.out" ] && note "$(sed -n -e 's/^latency\(.*\): allreduce 8 B: \([0-9.]* us\).*/8 B \2\1/p' \
    -e 's/^latency\(.*\): allreduce 64 MiB: \([0-9.]* GB\/s\).*/64 MiB \2\1/p' "$WORK/latency.out" | paste -sd, -)"
  if [ -x "$BIN/fgbench" ] && "$BIN/fgbench" --help 2>&1 | grep -q nccl; then
    step "fgbench allreduce nccl 8 B..64 MiB" 180 \
      "\"$BIN/fgbench\" allreduce -b 8 -e 64M -f 2 --backend nccl"
  else
    skip "fgbench allreduce nccl" "fgbench not built or without nccl"
  fi
else
  skip "nccl runs (smoke, fgconform, fgrun, latency)" "the nccl backend did not start"
fi
step "pytest tests/integration/test_comm_nccl.py" 240 pytest_file

# --- summary ------------------------------------------------------------------------------

pass=0 fail=0 skipped=0
for r in "${RESULTS[@]}"; do
  case $r in PASS) pass=$((pass + 1)) ;; FAIL) fail=$((fail + 1)) ;; *) skipped=$((skipped + 1)) ;; esac
done
{
  echo
  echo "================ gpu-check summary: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), $(($(date +%s) - START)) s ================"
  for i in "${!NAMES[@]}"; do
    printf '%-5s %-44s %s\n' "${RESULTS[$i]}" "${NAMES[$i]}" "${NOTES[$i]}"
  done
  echo "================ $pass passed, $fail failed, $skipped skipped; log: $LOG ================"
} | tee "$SUMMARY"

exec 1>&- 2>&-
wait "$TEE_PID" 2>/dev/null
[ "$fail" -eq 0 ]
