#!/usr/bin/env bash
# bench-launch.sh [--csv DIR] [BUILD_DIR] - how fast fgrun starts and stops a job, next to
# mpirun, torchrun and the floor (fork/exec/wait of N processes and nothing else).
#
#   1. launch: N = 1, 4, 16, 64 workers running `true` under
#        floors forkexec N /bin/true   (scripts/bench/floors.c: fork+exec N, wait for all)
#        fgrun --standalone --no_python --nproc_per_node N true
#        mpirun --allow-run-as-root --oversubscribe -np N true
#        torchrun --standalone --nproc_per_node N --no_python true   (when it runs here)
#      every command RUNS times, taking turns (floors interleave: the order rotates each
#      round, so a spell of load elsewhere on the machine hits all alike); per command the
#      median wall time, the median CPU time of the launcher and everything it waited for
#      (user + system, from wait4: what a shared machine's noise disturbs least) and the
#      peak RSS; the ratios fgrun/floor (wall and CPU), fgrun/mpirun and torchrun/fgrun.
#   2. failure propagation: 4 ranks, rank 1 exits 3 after 0.3 s while the others sleep;
#      the time from that exit to the launcher's own exit (median of RUNS_FAIL runs), under
#      fgrun, mpirun and torchrun.
#
# Targets (issue 17): fgrun <= 1.3x the floor at every N, <= 0.25x mpirun, >= 100x faster
# than torchrun at N=4; fgrun's peak RSS <= 8 MiB at N=64; failure propagation <= 50 ms.
# Each is printed with PASS or MISS next to the figures it compares. The load average
# before and after is printed too: wall times on a busy machine say little.
#
# With --csv DIR (or BENCH_CSV_DIR=DIR, as scripts/bench.sh sets it) the results also go to
# DIR/launch.csv (n,launcher,median_ms,mean_ms,stddev_ms,min_ms,max_ms,runs,cpu_median_ms,
# maxrss_kb) and DIR/launch-failure.csv (launcher,ranks,median_ms,min_ms,max_ms,runs,
# exit_status). TORCHRUN (default: torchrun on PATH) names the torchrun to compare with;
# FGRUN_ARGS adds fgrun options to the launch rows (FGRUN_ARGS="--pmix off": without the PMIx
# server).
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
HAVE_MPI=1
command -v mpirun >/dev/null || HAVE_MPI=0
TORCHRUN=${TORCHRUN:-$(command -v torchrun || true)}

# Open MPI 4.1 here hangs at exit in most runs of 64 short-lived local ranks when it
# spawns them from its thread pool; spawning from the main thread avoids that.
export OMPI_MCA_odls_base_num_threads=${OMPI_MCA_odls_base_num_threads:-0}
export OMP_NUM_THREADS=1

WORK=$(mktemp -d /tmp/bench-launch.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ROOT=$(cd "$(dirname "$0")/.." && pwd)
${CC:-cc} -O2 -pthread -o "$WORK/floors" "$ROOT/scripts/bench/floors.c" -lm
TRUE=$(command -v true)
MPIRUN=$(command -v mpirun || true)
TIMEOUT=$(command -v timeout)

HAVE_TORCHRUN=0
TORCHRUN_NOTE="torchrun: not installed"
if [ -n "$TORCHRUN" ]; then
  if "$TORCHRUN" --standalone --nproc_per_node 1 --no_python "$TRUE" >"$WORK/torchrun.log" 2>&1; then
    HAVE_TORCHRUN=1
    TORCHRUN_NOTE="torchrun: $TORCHRUN"
  else
    TORCHRUN_NOTE="torchrun: skipped, $TORCHRUN fails here ($( (grep -E 'Error|not found|No such' "$WORK/torchrun.log" || tail -1 "$WORK/torchrun.log") | tail -1))"
  fi
fi

# --- 1. launch -------------------------------------------------------------------------------
echo "== launch: N workers running true (medians of $RUNS interleaved runs; load: $(cut -d' ' -f1-3 /proc/loadavg))"
for n in $SIZES; do
  cmds=(floor "$WORK/floors forkexec $n $TRUE"
        fgrun "$FGRUN --standalone --no_python --nproc_per_node $n ${FGRUN_ARGS:-} $TRUE")
  # bound each run, should Open MPI hang anyway
  [ "$HAVE_MPI" = 1 ] && cmds+=(mpirun "$TIMEOUT 60 $MPIRUN --allow-run-as-root --oversubscribe -np $n $TRUE")
  [ "$HAVE_TORCHRUN" = 1 ] &&
    cmds+=(torchrun "$TIMEOUT 120 $TORCHRUN --standalone --nproc_per_node $n --no_python $TRUE")
  "$WORK/floors" interleave "$RUNS" 3 "${cmds[@]}" >"$WORK/launch-$n.csv"
done
echo "   (load after: $(cut -d' ' -f1-3 /proc/loadavg))"

"$PY" - "$WORK" "$CSV_DIR" $SIZES <<'EOF'
import csv, sys
work, csv_dir, sizes = sys.argv[1], sys.argv[2], sys.argv[3:]
out = open(f"{csv_dir}/launch.csv", "w") if csv_dir else None
if out:
    out.write("n,launcher,median_ms,mean_ms,stddev_ms,min_ms,max_ms,runs,cpu_median_ms,"
              "maxrss_kb\n")
print(f"{'N':>4} {'floor ms':>9} {'fgrun ms':>9} {'mpirun ms':>10} {'torchrun ms':>12}"
      f" {'fgrun/floor':>12} {'(cpu)':>6} {'fgrun/mpirun':>13} {'torchrun/fgrun':>15}"
      f" {'fgrun rss':>10}")
verdicts = []
verdict = lambda ok: "PASS" if ok else "MISS"
for n in sizes:
    rows = {r["command"]: r for r in csv.DictReader(open(f"{work}/launch-{n}.csv"))}
    for name, r in rows.items() if out else []:
        out.write(f"{n},{name},{r['median_ms']},{r['mean_ms']},{r['stddev_ms']},{r['min_ms']},"
                  f"{r['max_ms']},{r['runs']},{r['cpu_median_ms']},{r['maxrss_kb']}\n")
    wall = {k: float(r["median_ms"]) for k, r in rows.items()}
    cpu = {k: float(r["cpu_median_ms"]) for k, r in rows.items()}
    f, g, m, t = wall["floor"], wall["fgrun"], wall.get("mpirun"), wall.get("torchrun")
    rss = int(rows["fgrun"]["maxrss_kb"])
    cell = lambda v, w: f"{v:{w}.1f}" if v is not None else f"{'-':>{w}}"
    ratio = lambda a, b, w: f"{a / b:{w}.2f}" if a and b else f"{'-':>{w}}"
    print(f"{n:>4} {f:9.2f} {g:9.2f} {cell(m, 10)} {cell(t, 12)} {g / f:12.2f}"
          f" {cpu['fgrun'] / cpu['floor']:6.2f} {ratio(g, m, 13)} {ratio(t, g, 15)}"
          f" {rss / 1024:6.1f} MiB")
    c = cpu["fgrun"] / cpu["floor"]
    verdicts.append(f"N={n}: fgrun/floor {g / f:.2f} wall, {c:.2f} CPU (target <= 1.3): "
                    f"{verdict(g / f <= 1.3)} wall, {verdict(c <= 1.3)} CPU")
    if m:
        verdicts.append(f"N={n}: fgrun/mpirun {g / m:.3f} (target <= 0.25): {verdict(g / m <= 0.25)}")
    if t and n == "4":
        verdicts.append(f"N=4: torchrun/fgrun {t / g:.0f}x (target >= 100x): {verdict(t / g >= 100)}")
    if n == sizes[-1]:
        verdicts.append(f"N={n}: fgrun peak RSS {rss / 1024:.1f} MiB (the launcher or its largest "
                        f"child; target <= 8 at N=64): {verdict(rss <= 8192)}")
        others = [f"{k} {int(rows[k]['maxrss_kb']) / 1024:.1f} MiB" for k in ("mpirun", "torchrun")
                  if k in rows]
        if others:
            verdicts.append(f"N={n}: peak RSS of the others: {', '.join(others)}")
print()
print("\n".join(verdicts))
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
"$PY" - "$WORK" "$FGRUN" "$HAVE_MPI" "$RUNS_FAIL" "$CSV_DIR" "$([ "$HAVE_TORCHRUN" = 1 ] && echo "$TORCHRUN")" <<'EOF'
import os, statistics, subprocess, sys, threading, time
work, fgrun, have_mpi, runs = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
torchrun = sys.argv[6]
csv = open(f"{sys.argv[5]}/launch-failure.csv", "w") if sys.argv[5] else None
if csv:
    csv.write("launcher,ranks,median_ms,min_ms,max_ms,runs,exit_status\n")
script, fail_file = f"{work}/fail.sh", f"{work}/failed_at"
launchers = {"fgrun": [fgrun, "--standalone", "--no_python", "--nproc_per_node", "4", script]}
if have_mpi:
    launchers["mpirun"] = ["timeout", "60", "mpirun", "--allow-run-as-root", "--oversubscribe",
                           "-np", "4", script]
if torchrun:
    launchers["torchrun"] = ["timeout", "120", torchrun, "--standalone", "--nproc_per_node", "4",
                             "--no_python", script]
for name, cmd in launchers.items():
    delays, codes = [], set()
    for _ in range(runs):
        if os.path.exists(fail_file):
            os.unlink(fail_file)
        env = dict(os.environ, FAIL_FILE=fail_file, OMP_NUM_THREADS="1")
        # A blocking wait: wait(timeout=...) polls, backing off to 50 ms, which would be
        # measured too. A timer kills a launcher that hangs.
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        guard = threading.Timer(120, p.kill)
        guard.start()
        p.wait()
        ended = time.time_ns()
        guard.cancel()
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
