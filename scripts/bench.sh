#!/usr/bin/env bash
# bench.sh [BUILD_DIR] - every side-by-side benchmark in one go (`make bench`), results in
# docs/perf/ (BENCH_OUT overrides), plots rendered with gnuplot:
#
#   machine.txt        the machine and the versions of everything compared
#   memcpy.csv         the collectives' floor: one core's memcpy bandwidth, 8 B to 64 MiB
#   tcp-rtt.csv        the store's floor: a 1-byte loopback TCP round trip (median, p10, p90)
#   launch.csv         scripts/bench-launch.sh: N workers running `true` under the bare
#   launch-failure.csv   fork/exec floor, fgrun, mpirun and torchrun (2.6's where
#                        /var/lib/fgrun/torch2-torchrun is; TORCHRUN overrides); a rank's
#                        failure to the exit
#   store.csv          scripts/bench-store.sh: fgstore vs torch 1.13's TCPStore server
#   mpi.csv            scripts/bench-mpi.sh: fgrun as an MPI launcher next to mpirun (launch
#                        of MPI_Init/MPI_Finalize ranks, allreduce 4 KB and 16 MB)
#   coll.csv           scripts/bench-coll.sh (when present): fgbench's allreduce vs the
#                        raw libraries, torch 1.13 and torch 2.6; coll-all/ every collective
#   matrix.csv         fgmatrix configs/*.yaml, MATRIX_RUNS rounds of fgrun+gloo,
#   matrix-summary.csv   mpirun+gloo and mpirun+mpi in turn; per case seconds and medians
#   *.txt              each benchmark's own report;  *.png  the plots
#
# Each benchmark measures its pairs in one run (the same load, back to back, on the same
# machine) and reports medians of repeated runs. BENCH_CSV_DIR is exported to the benchmark
# scripts: a script that honours it writes its CSV there. A benchmark that fails does not
# stop the others; the script exits 1 if any failed.
#
#   BENCH_QUICK=1   a smoke run: few repetitions, small sizes (the numbers mean little)
#   BENCH_ONLY=".." only these steps, of: memcpy tcp_rtt launch store coll mpi matrix plots
#   MATRIX_RUNS=N   rounds of the scenario matrix (default 3)
set -uo pipefail

BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=$(cd "$BUILD/bin" 2>/dev/null && pwd) || { echo "bench: $BUILD/bin is missing; run make first" >&2; exit 2; }
OUT=${BENCH_OUT:-docs/perf}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
export BENCH_CSV_DIR=$OUT
PY=${PYTHON:-/usr/bin/python3}
MATRIX_RUNS=${MATRIX_RUNS:-3}
STORE_ARGS=()
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  export SIZES=${SIZES:-"1 4"} RUNS=${RUNS:-3} RUNS_FAIL=${RUNS_FAIL:-2}
  MATRIX_RUNS=1
  STORE_ARGS=(--threads 1,4 --duration 0.3 --repeat 1 --conns 64,256 --rounds 1)
fi
WORK=$(mktemp -d /tmp/fgbench-all.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

declare -A STATUS
step() { # step NAME COMMAND...: runs it, its output to the console and OUT/NAME.txt
  local name=$1
  shift
  if [ -n "${BENCH_ONLY:-}" ] && [[ " $BENCH_ONLY " != *" $name "* ]]; then
    STATUS[$name]="not run (BENCH_ONLY)"
    return 0
  fi
  echo
  echo "=========== $name: $*"
  "$@" 2>&1 | tee "$OUT/$name.txt"
  local rc=${PIPESTATUS[0]}
  STATUS[$name]=$([ "$rc" = 0 ] && echo ok || echo "FAILED (exit $rc)")
  return 0
}

# --- the machine ----------------------------------------------------------------------------
machine() {
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
  echo "kernel: $(uname -srm)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) online"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "compiler: $(${CC:-cc} --version | head -1)"
  echo "backends: $("$BIN/fgconform" --help 2>/dev/null | sed -n 's/^backends in this build: //p')"
  for p in libuv1 libgloo0 libgloo-dev libopenmpi3 openmpi-bin python3-torch hyperfine; do
    v=$(dpkg-query -W -f '${Version}' "$p" 2>/dev/null) && echo "package $p: $v"
  done
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  return 0
}
if [ -z "${BENCH_ONLY:-}" ]; then # a partial run keeps the full run's machine.txt
  machine >"$OUT/machine.txt"
fi
cat "$OUT/machine.txt" 2>/dev/null

# --- the floors (scripts/bench/floors.c): memcpy bandwidth of one core, a loopback round trip
# (built here with the system's compiler)
${CC:-cc} -O2 -pthread -o "$WORK/floors" scripts/bench/floors.c -lm || echo "bench: floors.c did not build"
memcpy_floor() {
  "$WORK/floors" memcpy 8 $((64 << 20)) "$([ "${BENCH_QUICK:-0}" = 1 ] && echo 3 || echo 11)" \
      >"$OUT/memcpy.csv" && cat "$OUT/memcpy.csv"
}
step memcpy memcpy_floor

# --- the store's floor: a loopback TCP round trip -------------------------------------------
tcp_rtt_floor() {
  "$WORK/floors" tcp-rtt "$([ "${BENCH_QUICK:-0}" = 1 ] && echo 0.3 || echo 3)" \
      >"$OUT/tcp-rtt.csv" && cat "$OUT/tcp-rtt.csv"
}
step tcp_rtt tcp_rtt_floor

# --- launch ---------------------------------------------------------------------------------
# torchrun 2.6 (the trixie root of scripts/torch2-root.sh) where it is, else torchrun on PATH
TORCH2_TORCHRUN=/var/lib/fgrun/torch2-torchrun
if [ -z "${TORCHRUN:-}" ] && [ -x "$TORCH2_TORCHRUN" ]; then export TORCHRUN=$TORCH2_TORCHRUN; fi
step launch scripts/bench-launch.sh --csv "$OUT" "$BUILD"

# --- store ----------------------------------------------------------------------------------
store() {
  rm -f "$OUT/store.csv"
  if "$BIN/fgbench" store --help 2>/dev/null | grep -q -- '--csv'; then
    STORE_ARGS+=(--csv "$OUT/store.csv")
  fi
  scripts/bench-store.sh "$BUILD" "${STORE_ARGS[@]}" | tee "$WORK/store.txt"
  local rc=${PIPESTATUS[0]}
  if [ ! -s "$OUT/store.csv" ] && [ -s "$WORK/store.txt" ]; then
    store_csv_from_text "$WORK/store.txt"
  fi
  return "$rc"
}
store_csv_from_text() {
  # fgbench store prints tables only: turn them into rows (section,x,metric,server,value,unit).
  # Each table: an optional line of metric names per |-separated group, a line of column
  # names (the x label, the servers, "better"), then a row per x.
  "$PY" - "$1" "$OUT/store.csv" <<'EOF'
import re, sys
UNITS = ("us", "ms", "s", "MiB")
rows, section, metrics, columns = [], None, [], []
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if re.match(r"^(throughput|rendezvous):", line):
        section, metrics, columns = line.split(":")[0], [], []
    elif not section or "|" not in line:
        continue
    elif re.match(r"^\s+(clients|conns)\s", line):
        columns = [g.split() for g in line.split("|")]
        columns[0] = columns[0][1:]
    elif not re.match(r"^\s+\d", line):
        metrics = [g.strip() for g in line.split("|")]
    elif columns:
        groups = line.split("|")
        x = groups[0].split()[0]
        for g, text in enumerate(groups):
            words = text.split()[1 if g == 0 else 0:]
            cells = []  # a value and, in older output, its unit
            for w in words:
                if w.startswith("+"):  # "2.6 +0.7": peak RSS, then its growth
                    continue
                if w in UNITS and cells:
                    cells[-1] = (cells[-1][0], w)
                else:
                    cells.append((w, ""))
            names = columns[g] if g < len(columns) else []
            metric = metrics[g] if g < len(metrics) else ""
            for name, (value, unit) in zip(names, cells):
                if value == "-":
                    continue
                if name == "better":
                    name, value, unit = "ratio", value.rstrip("x"), "x"
                m = metric or f"{section} ({unit or cells[0][1] or 'value'})"
                rows.append(f"{section},{x},\"{m}\",{name},{value.replace(',', '')},{unit}")
with open(sys.argv[2], "w") as f:
    f.write("section,x,metric,server,value,unit\n" + "\n".join(rows) + "\n")
EOF
}
step store store

# --- collectives ----------------------------------------------------------------------------
coll() {
  rm -f "$OUT/coll.csv" # fgbench --csv appends
  local rc=0
  scripts/bench-coll.sh "$BUILD" || rc=$?
  # Every other collective too, shorter (4 ranks, 3 repeats, up to 16 MiB), in coll-all/.
  [ "${BENCH_QUICK:-0}" = 1 ] ||
    TORCH2_PYTHON= OUT="$OUT/coll-all" COLLS=all RANKS=4 REPEAT=3 MAXBYTES=16M \
      scripts/bench-coll.sh "$BUILD" ||
    rc=$?
  return $rc
}
if [ -x scripts/bench-coll.sh ]; then
  step coll coll
else
  STATUS[coll]="skipped: scripts/bench-coll.sh is not there"
fi

# --- fgrun as an MPI launcher: launch and allreduce next to mpirun (mpi.csv, mpi.txt) -------
step mpi scripts/bench-mpi.sh "$BUILD"

# --- the scenario matrix --------------------------------------------------------------------
matrix() {
  local variants=("fgrun gloo")
  command -v mpirun >/dev/null && variants+=("mpirun gloo" "mpirun mpi")
  local rc=0
  for run in $(seq 1 "$MATRIX_RUNS"); do
    for v in "${variants[@]}"; do
      set -- $v
      echo "--- round $run: --launcher $1 --backend $2"
      "$BIN/fgmatrix" --launcher "$1" --backend "$2" --json "$WORK/matrix-$run-$1-$2.json" \
        configs/*.yaml | tail -1 || rc=1
    done
  done
  "$PY" - "$WORK" "$OUT" <<'EOF' || rc=1
import glob, json, os, statistics, sys
work, out = sys.argv[1], sys.argv[2]
runs, order = {}, []
with open(f"{out}/matrix.csv", "w") as f:
    f.write("case,processes,launcher,backend,round,seconds,result\n")
    for path in sorted(glob.glob(f"{work}/matrix-*.json")):
        rnd = os.path.basename(path).split("-")[1]
        for c in json.load(open(path))["cases"]:
            f.write(f"{c['name']},{c['processes']},{c['launcher']},{c['backend']},{rnd},"
                    f"{c['seconds']:.3f},{c['result']}\n")
            key = (c["launcher"], c["backend"])
            if key not in order:
                order.append(key)
            if c["result"] == "PASS":
                runs.setdefault(c["name"], {"p": c["processes"]}).setdefault(key, []).append(
                    c["seconds"])
with open(f"{out}/matrix-summary.csv", "w") as f:
    f.write("case,processes," + ",".join(f"{l}_{b}_median_s" for l, b in order) + "\n")
    for name, v in runs.items():
        med = [f"{statistics.median(v[k]):.3f}" if k in v else "" for k in order]
        f.write(f"{name},{v['p']}," + ",".join(med) + "\n")
    total = {k: sum(statistics.median(v[k]) for v in runs.values() if k in v) for k in order}
    f.write("total,," + ",".join(f"{total[k]:.3f}" for k in order) + "\n")
print(open(f"{out}/matrix-summary.csv").read())
EOF
  return $rc
}
step matrix matrix

# --- plots ----------------------------------------------------------------------------------
plots() {
  command -v gnuplot >/dev/null || { echo "gnuplot is not installed: no plots"; return 0; }
  rm -f "$OUT"/*.png
  "$PY" - "$OUT" >"$WORK/plots.gp" <<'EOF' || return 1
import csv, os, sys
out = sys.argv[1]

def rows(name):
    path = f"{out}/{name}"
    return list(csv.DictReader(open(path))) if os.path.exists(path) and os.path.getsize(path) else []

def block(name, points):
    print(f"${name} << EOD")
    for p in points:
        print(" ".join(str(v) for v in p))
    print("EOD")

def figure(png, title, xlabel, ylabel, series, logx=True, logy=True):
    """series: [(label, [(x, y), ...])]"""
    series = [(l, p) for l, p in series if p]
    if not series:
        return
    names = []
    for i, (label, points) in enumerate(series):
        names.append((f"{png.replace('.', '_').replace('-', '_')}_{i}", label))
        block(names[-1][0], points)
    print(f"set output '{out}/{png}'")
    print(f"set title '{title}'; set xlabel '{xlabel}'; set ylabel '{ylabel}'")
    print(("set logscale x 2" if logx else "unset logscale x") + "; " +
          ("set logscale y" if logy else "unset logscale y"))
    print("set format y '%g'; " + ("set format x '%.0b %BB'" if xlabel == "bytes"
                                   else "set format x '%g'"))
    print("plot " + ", ".join(f"${n} using 1:2 with linespoints title '{l}'" for n, l in names))

print("set terminal pngcairo size 900,560 font 'sans,10'")
print("set grid; set key left top")

launch = rows("launch.csv")
figure("launch.png", "Launch: N workers running true (median)", "workers", "ms",
       [(l, [(r["n"], r["median_ms"]) for r in launch if r["launcher"] == l])
        for l in ("floor", "fgrun", "mpirun", "torchrun")])

store = rows("store.csv")
for section, png in (("throughput", "store-throughput.png"),
                     ("rendezvous", "store-rendezvous.png")):
    mine = [r for r in store if r["section"] == section]
    if not mine:
        continue
    metric = mine[0]["metric"]  # the table's first group: pairs/s, or a round's seconds
    servers = sorted({r["server"] for r in mine} - {"ratio"})
    figure(png, f"Store {section} (median)", "clients" if section == "throughput" else
           "connections", metric,
           [(s, [(r["x"], r["value"]) for r in mine
                 if r["metric"] == metric and r["server"] == s]) for s in servers])

coll, memcpy = rows("coll.csv"), rows("memcpy.csv")
coll = [r for r in coll if r.get("placement", "out-of-place") == "out-of-place"]
for c in sorted({r["collective"] for r in coll}) if coll and "collective" in coll[0] else []:
    impls = []
    for r in coll:
        key = (r["impl"], r["backend"], r["ranks"])
        if r["collective"] == c and key not in impls:
            impls.append(key)
    series = [(f"{i} ({b}, {n} ranks)", [(r["bytes"], r["busbw_gbs"]) for r in coll
              if r["collective"] == c and (r["impl"], r["backend"], r["ranks"]) == (i, b, n)])
              for i, b, n in impls]
    series.append(("memcpy, one core (floor)", [(r["bytes"], r["GBps"]) for r in memcpy]))
    figure(f"coll-{c}.png", f"{c}: bus bandwidth (median)", "bytes", "GB/s", series)
if memcpy and not coll:
    figure("memcpy.png", "memcpy bandwidth, one core", "bytes", "GB/s",
           [("memcpy", [(r["bytes"], r["GBps"]) for r in memcpy])])

summary = [r for r in rows("matrix-summary.csv") if r["case"] != "total"]
if summary:
    cols = [k for k in summary[0] if k.endswith("_median_s")]
    print("$matrix << EOD")
    for r in summary:
        print(r["case"] + " " + " ".join(r[k] or "NaN" for k in cols))
    print("EOD")
    print(f"set output '{out}/matrix.png'")
    print("set terminal pngcairo size 1200,600 font 'sans,9'")
    print("set title 'Scenario matrix: seconds per case (median)'; set ylabel 's'; set xlabel ''")
    print("unset logscale x; unset logscale y; set style data histogram")
    print("set style histogram clustered gap 1; set style fill solid 0.8 border -1")
    print("set xtics rotate by -45 scale 0; set key right top")
    print("plot " + ", ".join(f"$matrix using {i + 2}:xtic(1) title '{c[:-9].replace('_', ' ')}'"
                              for i, c in enumerate(cols)))
EOF
  gnuplot "$WORK/plots.gp" && ls "$OUT"/*.png
}
step plots plots

echo
echo "=========== summary (results in $OUT)"
failed=0
for name in memcpy tcp_rtt launch store coll mpi matrix plots; do
  printf '  %-8s %s\n' "$name" "${STATUS[$name]:-not run}"
  case "${STATUS[$name]:-}" in FAILED*) failed=1 ;; esac
done
exit $failed
