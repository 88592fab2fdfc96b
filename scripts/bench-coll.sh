#!/usr/bin/env bash
# bench-coll.sh [BUILD_DIR] - fgcomm's collectives against the libraries they wrap, in the same
# runs (fgbench COLL --side-by-side: our batches and theirs take turns, medians of repeats):
#
#   gloo, 2 and 4 ranks under fgrun   vs gloo's own loop (raw-gloo) and torch 1.13's gloo
#   gloo, 2 and 4 ranks under fgrun   vs torch 2.6's gloo (impl torch-2.6), where the Debian
#                                     trixie root of scripts/torch2-root.sh is (TORCH2_PYTHON)
#   mpi,  2 and 4 ranks under mpirun  vs MPI's own loop (raw-mpi)
#
# Prints each run's nccl-tests table, then a summary of busbw ratios (fgcomm / theirs) per size
# with PASS or MISS against the target: >= 0.95 of the raw library at every size. torch is
# shown for reference (fgcomm does not wrap it). Writes the rows as CSV for plotting: one
# file per run, all of them in coll.csv, the ratios in coll-summary-COLLS.csv.
#
# Environment: OUT (default $BENCH_CSV_DIR, else docs/perf), BENCH_QUICK=1 (a smoke run),
# COLLS (default allreduce; "all" runs every collective in one job), RANKS (default "2 4"),
# BACKENDS (default "gloo mpi"), MINBYTES (4K), MAXBYTES (64M), ITERS (10), WARMUP (2),
# REPEAT (11), TARGET (0.95), TORCH2_PYTHON (default /var/lib/fgrun/torch2-python; "" for no
# torch 2.6 rows). Needs Debian's python3-torch for the torch rows.
set -euo pipefail

BUILD=${1:-build}
BIN=$(cd "$BUILD/bin" 2>/dev/null && pwd) || { echo "bench-coll: $BUILD/bin is missing; run make first" >&2; exit 2; }
for p in fgbench fgrun; do
  [ -x "$BIN/$p" ] || { echo "bench-coll: $BIN/$p is missing; run make first" >&2; exit 2; }
done
OUT=${OUT:-${BENCH_CSV_DIR:-docs/perf}}
COLLS=${COLLS:-allreduce}
RANKS=${RANKS:-2 4}
BACKENDS=${BACKENDS:-gloo mpi}
TARGET=${TARGET:-0.95}
if [ "${BENCH_QUICK:-0}" = 1 ]; then # a smoke run: the numbers mean little
  : "${MAXBYTES:=256K}" "${ITERS:=3}" "${REPEAT:=3}"
fi
# nccl-tests' options (-n iterations, -w warm-up), then fgbench's --repeat.
SWEEP=(-b "${MINBYTES:-4K}" -e "${MAXBYTES:-64M}" -f 2 -n "${ITERS:-10}" -w "${WARMUP:-2}"
       --repeat "${REPEAT:-11}")
mkdir -p "$OUT"
export OMPI_MCA_odls_base_num_threads=0 # Open MPI can hang at exit without it
export FG_TIMEOUT=${FG_TIMEOUT:-600}

csvs=()
for backend in $BACKENDS; do
  for n in $RANKS; do
    for coll in $COLLS; do
      name="coll-$coll-$backend-np$n"
      csv="$OUT/$name.csv"
      rm -f "$csv"
      args=("$BIN/fgbench" "$coll" --backend "$backend" --side-by-side --csv "$csv" "${SWEEP[@]}")
      echo "== $name"
      if [ "$backend" = mpi ]; then
        command -v mpirun >/dev/null || { echo "(no mpirun: skipped)"; continue; }
        timeout 3600 mpirun --allow-run-as-root --oversubscribe -x OMPI_MCA_odls_base_num_threads \
          -x FG_TIMEOUT -np "$n" "${args[@]}" | tee "$OUT/$name.txt"
      else
        timeout 3600 "$BIN/fgrun" --standalone --nproc_per_node="$n" --no_python "${args[@]}" |
          sed 's/^\[rank0\]://' | tee "$OUT/$name.txt"
      fi
      csvs+=("$csv")
    done
  done
done

# torch 2.6's gloo beside fgcomm: the same sweep, its own run (fgbench has one torch peer),
# the rows relabelled torch-2.6 so they sit beside torch 1.13's in coll.csv and the plot.
TORCH2_PYTHON=${TORCH2_PYTHON-/var/lib/fgrun/torch2-python}
if [[ " $BACKENDS " == *" gloo "* ]] && [ -n "$TORCH2_PYTHON" ]; then
  if [ -x "$TORCH2_PYTHON" ]; then
    for n in $RANKS; do
      for coll in $COLLS; do
        name="coll-$coll-gloo-torch2-np$n"
        csv="$OUT/$name.csv"
        rm -f "$csv" "$csv.tmp"
        echo "== $name (torch 2.6: $TORCH2_PYTHON)"
        timeout 3600 "$BIN/fgrun" --standalone --nproc_per_node="$n" --no_python "$BIN/fgbench" \
          "$coll" --backend gloo --side-by-side --peers torch --python "$TORCH2_PYTHON" \
          --csv "$csv.tmp" "${SWEEP[@]}" | sed 's/^\[rank0\]://' | tee "$OUT/$name.txt"
        awk -F, -v OFS=, 'NR > 1 && $8 == "torch" { $8 = "torch-2.6" } 1' "$csv.tmp" >"$csv"
        rm -f "$csv.tmp"
        csvs+=("$csv")
      done
    done
  else
    echo "== torch 2.6 rows skipped: $TORCH2_PYTHON is missing (scripts/torch2-root.sh makes it)"
  fi
fi

[ ${#csvs[@]} -gt 0 ] || exit 0
exec python3 - "$TARGET" "$OUT/coll-summary-${COLLS// /-}.csv" "$OUT/coll.csv" "${csvs[@]}" <<'EOF'
"""The summary: fgcomm / peer busbw per size, and the verdict against the target; and every
run's rows in one file (coll.csv, which scripts/bench.sh plots)."""
import csv
import sys

target, summary_path, all_path, paths = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
with open(all_path, "w", newline="") as out:
    for i, path in enumerate(paths):
        lines = open(path).read().splitlines(keepends=True)
        out.writelines(lines if i == 0 else lines[1:])
RAW = {"raw-gloo", "raw-mpi"}
lines, status = [], 0
with open(summary_path, "w", newline="") as out:
    w = csv.writer(out)
    w.writerow(["collective", "backend", "ranks", "peer", "bytes", "fgcomm_busbw_gbs",
                "peer_busbw_gbs", "ratio", "verdict"])
    runs = []
    for path in paths:
        # The peers run out of place only: the ratios compare those rows.
        rows = [r for r in csv.DictReader(open(path))
                if r.get("placement", "out-of-place") == "out-of-place"]
        for coll in dict.fromkeys(r["collective"] for r in rows):  # `fgbench all`: several
            runs.append([r for r in rows if r["collective"] == coll])
    for rows in runs:
        ours = {int(r["bytes"]): r for r in rows if r["impl"] == "fgcomm"}
        peers = sorted({r["impl"] for r in rows} - {"fgcomm"})
        for peer in peers:
            theirs = {int(r["bytes"]): r for r in rows if r["impl"] == peer}
            sizes = sorted(set(ours) & set(theirs))
            if not sizes:
                continue
            head = ours[sizes[0]]
            ratios = []
            for b in sizes:
                ratio = float(theirs[b]["ratio"])
                ratios.append(ratio)
                verdict = ("PASS" if ratio >= target else "MISS") if peer in RAW else "info"
                w.writerow([head["collective"], head["backend"], head["ranks"], peer, b,
                            ours[b]["busbw_gbs"], theirs[b]["busbw_gbs"], f"{ratio:.4f}", verdict])
            misses = [(b, r) for b, r in zip(sizes, ratios) if r < target]
            if peer not in RAW:
                verdict = "info (not wrapped)"
            elif misses:
                verdict = f"MISS at {len(misses)} of {len(sizes)} sizes"
                status = 1
            else:
                verdict = "PASS"
            lines.append((f"{head['collective']} {head['backend']} np={head['ranks']}", peer,
                          sizes, ratios, verdict))

def size_label(b):
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if b >= 1 << shift and b % (1 << shift) == 0:
            return f"{b >> shift}{unit}"
    return str(b)

print(f"\nbench-coll: busbw ratio fgcomm / theirs (target >= {target} of the raw library "
      f"at every size)")
for label, peer, sizes, ratios, verdict in lines:
    print(f"\n{label:26} {peer:9} min {min(ratios):.2f} median "
          f"{sorted(ratios)[len(ratios) // 2]:.2f}  {verdict}")
    print("  " + " ".join(f"{size_label(b):>5}" for b in sizes))
    print("  " + " ".join(f"{r:5.2f}" for r in ratios))
print(f"\nrows: {all_path} ({' '.join(paths)})\nsummary: {summary_path}")
sys.exit(status)
EOF
