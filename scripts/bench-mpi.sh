#!/usr/bin/env bash
# bench-mpi.sh [BUILD_DIR] - fgrun as an MPI launcher, side by side with mpirun, in one run.
# The launchers take turns (round 1: fgrun, mpirun; round 2: mpirun, fgrun; ...), so load
# from elsewhere falls on both alike; every figure is the median over the rounds.
#
#   launch     RANKS ranks of a program that only calls MPI_Init and MPI_Finalize
#              (scripts/bench/mpi_launch.c, built here with mpicc): wall time and CPU time
#              (the launcher and its ranks) per job, and the wall time split into the ranks'
#              own (first rank's start to last rank's MPI_Finalize) and the launcher's (the
#              rest). Target: fgrun <= 0.5x. Measured twice: with Open MPI as installed, and
#              with OMPI_MCA_pml=ob1 for both launchers, because as installed every rank's
#              MPI_Init opens the cm PML's PSM and PSM2 MTLs, whose libraries wait about
#              100 ms each for an Omni-Path/TrueScale device that is not there. Under
#              mpirun the ranks pay that wait; fgrun, seeing no such device on the node,
#              gives its ranks OMPI_MCA_mtl=^psm,psm2,ofi (src/launcher/pmix_env.c). With
#              ob1 forced for both, the figures compare the launchers alone.
#   allreduce  fgbench allreduce --backend mpi on 2 ranks: time at 4 KB and busbw at 16 MB,
#              under fgrun and under mpirun. Target: 0.9x to 1.1x (the same Open MPI).
#              mpirun binds 2 ranks to cores and fgrun binds nothing, so mpirun --bind-to
#              none, and fgrun with each rank under taskset -c <local rank>, are measured
#              too.
#   gloo       the same fgbench under fgrun with --backend gloo: what picking mpi buys.
#
# Writes mpi.csv (bench,launcher,ranks,bytes,metric,value: the medians) and mpi.txt.
# Environment: OUT (default $BENCH_CSV_DIR, else docs/perf), ROUNDS (default 9; BENCH_QUICK=1:
# 3), RANKS (default 4), MPI_ENV (extra NAME=value for both launchers' ranks, e.g.
# OMPI_MCA_btl=self,vader), LAUNCH_NICE (e.g. -20: both launchers and their ranks run at that
# nice value in the launch part, so that other work on the machine takes less of its time).
set -euo pipefail

BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "$BUILD/bin" 2>/dev/null && pwd) || { echo "bench-mpi: $BUILD/bin is missing; run make first" >&2; exit 2; }
OUT=${OUT:-${BENCH_CSV_DIR:-docs/perf}}
mkdir -p "$OUT"
for tool in mpicc mpirun; do
  command -v $tool >/dev/null || { echo "bench-mpi: $tool is missing (apt-get install libopenmpi-dev openmpi-bin)" >&2; exit 2; }
done
ROUNDS=${ROUNDS:-$([ "${BENCH_QUICK:-0}" = 1 ] && echo 3 || echo 9)}
WORK=$(mktemp -d /tmp/fgbench-mpi.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mpicc -O2 "$ROOT/scripts/bench/mpi_launch.c" -o "$WORK/mpi_launch"

exec /usr/bin/python3 - "$BIN" "$WORK" "$OUT" "$ROUNDS" "${RANKS:-4}" "${MPI_ENV:-}" \
  "${LAUNCH_NICE:-}" <<'EOF'
import csv, glob, os, resource, shutil, statistics, subprocess, sys, time

BIN, WORK, OUT, ROUNDS, RANKS, EXTRA, NICE = sys.argv[1:8]
ROUNDS, RANKS = int(ROUNDS), int(RANKS)
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           FG_TIMEOUT="600")
env.update(kv.split("=", 1) for kv in EXTRA.split() if "=" in kv)
FGRUN = [f"{BIN}/fgrun", "--standalone"]
MPIRUN = ["mpirun", "--oversubscribe"] + [a for kv in EXTRA.split() for a in ("-x", kv)]
rows, report = [], []

def say(line=""):
    print(line, flush=True)
    report.append(line)

def timed(argv, extra_env=None):
    """(wall seconds, CPU seconds of argv and everything it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(argv, env=dict(env, **(extra_env or {})), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=600)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"bench-mpi: {' '.join(argv)} failed ({r.returncode}):\n{r.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu

def alternate(variants, run_one):
    """Runs each variant once per round, rotating who goes first; medians per variant."""
    got = {name: [] for name in variants}
    names = list(variants)
    for r in range(ROUNDS):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            got[name].append(run_one(variants[name]))
    return got

def med(xs):
    return statistics.median(xs)

def verdict(ok):
    return "PASS" if ok else "MISS"

say(f"# bench-mpi: {ROUNDS} rounds, launchers in turn; load average at start "
    f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; extra rank env: {EXTRA or '-'}")

# --- launch ---------------------------------------------------------------------------------
STAMPS = f"{WORK}/stamps"

def one_launch(argv_env):
    """(wall, cpu, the ranks' span): the span from the ranks' own clock (mpi_launch.c)."""
    argv, extra = argv_env
    shutil.rmtree(STAMPS, ignore_errors=True)
    os.mkdir(STAMPS)
    wall, cpu = timed(argv, dict(extra, FG_BENCH_STAMPS=STAMPS))
    stamps = [tuple(map(float, open(p).read().split())) for p in glob.glob(f"{STAMPS}/*")]
    if len(stamps) != RANKS:
        sys.exit(f"bench-mpi: {' '.join(argv)}: {len(stamps)} of {RANKS} ranks reported")
    return wall, cpu, max(e for _, e in stamps) - min(b for b, _ in stamps)

prog = f"{WORK}/mpi_launch"
nice = ["nice", "-n", NICE] if NICE else []
cases = {"as installed": {}, "OMPI_MCA_pml=ob1": {"OMPI_MCA_pml": "ob1"}}
variants = {}
for case, extra in cases.items():
    variants[("fgrun", case)] = (nice + FGRUN + [f"--nproc_per_node={RANKS}", "--no_python", prog],
                                 extra)
    variants[("mpirun", case)] = (nice + MPIRUN + ["-np", str(RANKS), prog], extra)
launch = alternate(variants, one_launch)
say()
say(f"launch: {RANKS} ranks of MPI_Init + MPI_Finalize, median of {ROUNDS} jobs"
    + (f", nice {NICE}" if NICE else ""))
say(f"  {'launcher':8} {'Open MPI':18} {'wall ms':>9} {'cpu ms':>9} {'ranks ms':>9} "
    f"{'launcher ms':>12}")
m = {}
for (name, case), xs in launch.items():
    wall, cpu, span = (med([x[i] for x in xs]) for i in range(3))
    own = med([x[0] - x[2] for x in xs])
    m[name, case] = wall, cpu, own
    tag = "" if case == "as installed" else "-ob1"
    rows += [("launch" + tag, name, RANKS, 0, "wall_s", wall),
             ("launch" + tag, name, RANKS, 0, "cpu_s", cpu),
             ("launch" + tag, name, RANKS, 0, "ranks_s", span),
             ("launch" + tag, name, RANKS, 0, "launcher_s", own)]
    say(f"  {name:8} {case:18} {wall * 1e3:9.1f} {cpu * 1e3:9.1f} {span * 1e3:9.1f} "
        f"{own * 1e3:12.1f}")
for case in cases:
    (fw, fc, fo), (mw, mc, mo) = m["fgrun", case], m["mpirun", case]
    say(f"  fgrun / mpirun, {case}: wall {fw / mw:.2f}x (target <= 0.5x: "
        f"{verdict(fw / mw <= 0.5)}), cpu {fc / mc:.2f}x, the launcher's own time "
        f"{fo / mo:.2f}x")

# --- allreduce ------------------------------------------------------------------------------
def fgbench(backend):
    return [f"{BIN}/fgbench", "allreduce", "--backend", backend, "-b", "4K", "-e", "16M",
            "-f", "4096", "-n", "20", "-w", "5", "--repeat", "5"]

def one_bench(argv):
    path = f"{WORK}/coll.csv"
    if os.path.exists(path):
        os.unlink(path)
    timed(argv + ["--csv", path])
    got = {}
    for r in csv.DictReader(open(path)):
        if r["impl"] == "fgcomm" and r.get("placement", "out-of-place") == "out-of-place":
            got[int(r["bytes"])] = (float(r["time_us"]), float(r["busbw_gbs"]))
    return got

coll = alternate({
    "fgrun": FGRUN + ["--nproc_per_node=2", "--no_python"] + fgbench("mpi"),
    "fgrun, taskset per rank": FGRUN + ["--nproc_per_node=2", "--no_python", "taskset", "-c",
                                        "${local_rank}"] + fgbench("mpi"),
    "mpirun": MPIRUN + ["-np", "2"] + fgbench("mpi"),
    "mpirun --bind-to none": MPIRUN + ["--bind-to", "none", "-np", "2"] + fgbench("mpi"),
    "fgrun gloo": FGRUN + ["--nproc_per_node=2", "--no_python"] + fgbench("gloo"),
}, one_bench)
say()
say(f"allreduce, float32 sum, out of place, 2 ranks: medians of {ROUNDS} jobs (each the "
    "median of 5 batches of 20)")
say(f"  {'launcher':32} {'4 KB us':>9} {'16 MB busbw GB/s':>17}")
small, big = {}, {}
for name, runs in coll.items():
    small[name] = med([r[4096][0] for r in runs])
    big[name] = med([r[16 << 20][1] for r in runs])
    backend = "gloo" if "gloo" in name else "mpi"
    launcher = name.replace(" gloo", "")
    rows += [("allreduce-" + backend, launcher, 2, 4096, "time_us", small[name]),
             ("allreduce-" + backend, launcher, 2, 16 << 20, "busbw_gbs", big[name])]
    say(f"  {name + (' (' + backend + ')'):32} {small[name]:9.1f} {big[name]:17.3f}")
for ours, peer in (("fgrun", "mpirun"), ("fgrun", "mpirun --bind-to none"),
                   ("fgrun, taskset per rank", "mpirun")):
    t, b = small[ours] / small[peer], big[ours] / big[peer]
    say(f"  {ours} / {peer}: 4 KB time {t:.2f}x, 16 MB busbw {b:.2f}x  (target 0.9-1.1x: "
        f"{verdict(0.9 <= t <= 1.1)} {verdict(0.9 <= b <= 1.1)})")
say(f"  under fgrun, mpi vs gloo: 4 KB {small['fgrun gloo'] / small['fgrun']:.0f}x faster, "
    f"16 MB busbw {big['fgrun'] / big['fgrun gloo']:.1f}x")

with open(f"{OUT}/mpi.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["bench", "launcher", "ranks", "bytes", "metric", "value"])
    w.writerows(rows)
with open(f"{OUT}/mpi.txt", "w") as f:
    f.write("\n".join(report) + "\n")
EOF
