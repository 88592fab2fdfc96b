#!/usr/bin/env bash
# bench-launch.sh [--csv DIR] [BUILD_DIR] - how fast fgrun starts and stops a job, next to
# mpirun and the floor (fork/exec/wait of N processes and nothing else).
#
#   1. launch: N = 1, 4, 16, 64 workers running `true` under
#        fgrun --standalone --no_python --nproc_per_node N true
#        mpirun --allow-run-as-root --oversubscribe -np N true
#        forkexec N /bin/true   (a tiny C loop: fork+exec N, then wait for all)
#      medians from hyperfine, and the ratios fgrun/mpirun and fgrun/floor.
#   2. failure propagation: 4 ranks, rank 1 exits 3 after 0.3 s while the others sleep;
#      the time from that exit to the launcher's own exit (median of RUNS_FAIL runs).
#
# torchrun is tried too and reported as skipped when it does not run (torch 1.13's
# torchrun crashes on Python 3.11). Targets: fgrun <= 0.25x mpirun at N=4, <= 0.5x at
# N=64; failure propagation <= 50 ms.
#
# With --csv DIR (or BENCH_CSV_DIR=DIR, as scripts/bench.sh sets it) the results also go to
# DIR/launch.csv (n,launcher,median_ms,mean_ms,stddev_ms,min_ms,max_ms,runs) and
# DIR/launch-failure.csv (launcher,ranks,median_ms,min_ms,max_ms,runs,exit_status).
set -euo pipefail

CSV_DIR=${BENCH_CSV_DIR:-}
if [ "${1:-}" = "--csv" ]; then
  [ $# -ge 2 ] || { echo "bench-launch: --csv needs a directory" >&2; exit 2; }
  CSV_DIR=$2
  shift 2
fi
[ -z "$CSV_DIR" ] || { mkdir -p "$CSV_DIR" && CSV_DIR=$(cd "$CSV_DIR" && pwd); }
BUILD=${1:-build}
FGRUN=$(cd "$BUILD/bin" && pwd)/fgrun
SIZES=${SIZES:-"1 4 16 64"}
RUNS=${RUNS:-30}
RUNS_FAIL=${RUNS_FAIL:-7}
PY=${PYTHON:-python3}

[ -x "$FGRUN" ] || { echo "bench-launch: $FGRUN is missing; run make first" >&2; exit 2; }
command -v hyperfine >/dev/null || { echo "bench-launch: hyperfine is not installed" >&2; exit 2; }
HAVE_MPI=1
command -v mpirun >/dev/null || HAVE_MPI=0

# Open MPI 4.1 here hangs at exit in most runs of 64 short-lived local ranks when it
# spawns them from its thread pool; spawning from the main thread avoids that.
export OMPI_MCA_odls_base_num_threads=${OMPI_MCA_odls_base_num_threads:-0}

WORK=$(mktemp -d /tmp/bench-launch.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# --- the floor -------------------------------------------------------------------------------
cat >"$WORK/forkexec.c" <<'EOF'
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int n = atoi(argv[1]);
  for (int i = 0; i < n; i++)
    if (fork() == 0) {
      execv(argv[2], argv + 2);
      _exit(127);
    }
  while (wait(NULL) > 0) {
  }
  return 0;
}
EOF
${CC:-cc} -O2 -o "$WORK/forkexec" "$WORK/forkexec.c"
TRUE=$(command -v true)

HAVE_TORCHRUN=0
TORCHRUN_NOTE="torchrun: not installed"
if command -v torchrun >/dev/null; then
  if torchrun --standalone --nproc_per_node 1 --no_python "$TRUE" >"$WORK/torchrun.log" 2>&1; then
    HAVE_TORCHRUN=1
  else
    TORCHRUN_NOTE="torchrun: skipped, it fails here ($(grep -E 'Error' "$WORK/torchrun.log" | tail -1))"
  fi
fi

# --- 1. launch -------------------------------------------------------------------------------
echo "== launch: N workers running true (medians of $RUNS runs, hyperfine)"
for n in $SIZES; do
  cmds=(-n floor "$WORK/forkexec $n $TRUE"
        -n fgrun "$FGRUN --standalone --no_python --nproc_per_node $n $TRUE")
  # bound each run, should Open MPI hang anyway
  [ "$HAVE_MPI" = 1 ] && cmds+=(-n mpirun "timeout 60 mpirun --allow-run-as-root --oversubscribe -np $n $TRUE")
  [ "$HAVE_TORCHRUN" = 1 ] && cmds+=(-n torchrun "torchrun --standalone --nproc_per_node $n --no_python $TRUE")
  OMP_NUM_THREADS=1 hyperfine -N -i --warmup 3 --runs "$RUNS" --style none \
    --export-json "$WORK/launch-$n.json" "${cmds[@]}" >/dev/null
done

"$PY" - "$WORK" "$CSV_DIR" $SIZES <<'EOF'
import json, sys
work, csv_dir, sizes = sys.argv[1], sys.argv[2], sys.argv[3:]
csv = open(f"{csv_dir}/launch.csv", "w") if csv_dir else None
if csv:
    csv.write("n,launcher,median_ms,mean_ms,stddev_ms,min_ms,max_ms,runs\n")
print(f"{'N':>4} {'floor ms':>9} {'fgrun ms':>9} {'mpirun ms':>10} {'torchrun ms':>12}"
      f" {'fgrun/mpirun':>13} {'fgrun/floor':>12}")
for n in sizes:
    results = json.load(open(f"{work}/launch-{n}.json"))["results"]
    res = {r["command"]: r["median"] * 1e3 for r in results}
    for r in results if csv else []:
        csv.write(f"{n},{r['command']},{r['median'] * 1e3:.3f},{r['mean'] * 1e3:.3f},"
                  f"{(r['stddev'] or 0) * 1e3:.3f},{r['min'] * 1e3:.3f},{r['max'] * 1e3:.3f},"
                  f"{len(r['times'])}\n")
    f, g = res["floor"], res["fgrun"]
    m, t = res.get("mpirun"), res.get("torchrun")
    cell = lambda v, w: f"{v:{w}.1f}" if v is not None else f"{'-':>{w}}"
    ratio = f"{g / m:13.2f}" if m else f"{'-':>13}"
    print(f"{n:>4} {f:9.1f} {g:9.1f} {cell(m, 10)} {cell(t, 12)} {ratio} {g / f:12.2f}")
EOF

# --- 2. failure propagation --------------------------------------------------------------------
cat >"$WORK/fail.sh" <<'EOF'
#!/bin/sh
r=${RANK:-$OMPI_COMM_WORLD_RANK}
if [ "$r" = 1 ]; then
  sleep 0.3
  date +%s%N > "$FAIL_FILE"
  exit 3
fi
exec sleep 30
EOF
chmod +x "$WORK/fail.sh"

echo
echo "== failure propagation: rank 1 of 4 exits 3; time from its exit to the launcher's exit"
"$PY" - "$WORK" "$FGRUN" "$HAVE_MPI" "$RUNS_FAIL" "$CSV_DIR" <<'EOF'
import os, statistics, subprocess, sys, time
work, fgrun, have_mpi, runs = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
csv = open(f"{sys.argv[5]}/launch-failure.csv", "w") if sys.argv[5] else None
if csv:
    csv.write("launcher,ranks,median_ms,min_ms,max_ms,runs,exit_status\n")
script, fail_file = f"{work}/fail.sh", f"{work}/failed_at"
launchers = {"fgrun": [fgrun, "--standalone", "--no_python", "--nproc_per_node", "4", script]}
if have_mpi:
    launchers["mpirun"] = ["timeout", "60", "mpirun", "--allow-run-as-root", "--oversubscribe",
                           "-np", "4", script]
for name, cmd in launchers.items():
    delays, codes = [], set()
    for _ in range(runs):
        if os.path.exists(fail_file):
            os.unlink(fail_file)
        env = dict(os.environ, FAIL_FILE=fail_file, OMP_NUM_THREADS="1")
        p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=120)
        ended = time.time_ns()
        codes.add(p.returncode)
        delays.append((ended - int(open(fail_file).read())) / 1e6)
    print(f"{name:>7}: median {statistics.median(delays):7.1f} ms  (min {min(delays):.1f}, "
          f"max {max(delays):.1f}; exit status {sorted(codes)})")
    if csv:
        csv.write(f"{name},4,{statistics.median(delays):.3f},{min(delays):.3f},"
                  f"{max(delays):.3f},{runs},{'/'.join(map(str, sorted(codes)))}\n")
EOF
echo
echo "$TORCHRUN_NOTE"
