"""fgbench's collective benchmarks (bench_coll*.c): every collective runs and checks out under
fgrun (gloo) and under mpirun (mpi); a corrupted contribution shows as #wrong and exit 1; bad
options exit 2 with one line; the table has nccl-tests' columns, and busbw is algbw times
nccl-tests' factor. Behaviour only: no timing is asserted.

Every job runs in a session of its own with a deadline (Open MPI has been seen to hang when
ranks exit), and the sizes are tiny: the point is the driver, not the numbers."""
import csv
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import bin_path, have_torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]
SAN_ENV = {
    "ASAN_OPTIONS": "fast_unwind_on_malloc=0",
    "LSAN_OPTIONS": f"suppressions={ROOT}/tests/lsan.supp:print_suppressions=0",
    "OMPI_MCA_odls_base_num_threads": "0",
    "FG_TIMEOUT": "30",
}
COLLECTIVES = ["allreduce", "allgather", "reduce_scatter", "alltoall", "broadcast", "reduce",
               "gather", "scatter", "sendrecv"]
COLUMNS = ["size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong"]
SMALL = ["-b", "1K", "-e", "4K", "-f", "4", "-i", "2", "-w", "1"]


def factor(coll, n):
    """nccl-tests' bus-bandwidth factors."""
    if coll == "allreduce":
        return 2 * (n - 1) / n
    if coll in ("allgather", "reduce_scatter", "alltoall", "gather", "scatter"):
        return (n - 1) / n
    return 1.0


class Job:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err

    def __str__(self):
        return f"exit {self.rc}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PET_", "OMPI_", "PMIX_", "FG_", "TORCHELASTIC_"))
           and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                         "MASTER_ADDR", "MASTER_PORT")}
    env.update(SAN_ENV)
    env.update(extra or {})
    return env


def kill_session(sid):
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[3]) == sid:
                        os.kill(int(entry), signal.SIGKILL)
            except (OSError, IndexError, ValueError):
                pass


def run_job(argv, timeout=60):
    p = subprocess.Popen(argv, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(p.pid)
        out, err = p.communicate()
        pytest.fail(f"{' '.join(argv)} still ran after {timeout}s\n{out}\n{err}")
    return Job(p.returncode, out, err)


def fgbench(*args):
    return bin_path("fgbench"), *args


def under_fgrun(n, *args, timeout=60):
    return run_job([bin_path("fgrun"), "--standalone", f"--nproc_per_node={n}", "--no_python",
                    *fgbench(*args)], timeout=timeout)


def under_mpirun(n, *args, timeout=60):
    forwarded = [x for name in SAN_ENV for x in ("-x", name)]
    return run_job(MPIRUN + forwarded + ["-np", str(n), *fgbench(*args)], timeout=timeout)


def tables(out):
    """{collective: [row dict]} from rank 0's tables (fgrun prefixes lines with [rank0]:)."""
    found, coll, header = {}, None, None
    for line in out.splitlines():
        line = re.sub(r"^\[rank0\]:", "", line)
        if re.fullmatch(r"# (\w+)", line.strip()) and line.strip()[2:] in COLLECTIVES:
            coll = line.strip()[2:]
            found[coll] = []
        elif line.startswith("#") and "#wrong" in line:
            header = line.lstrip("#").split()
        elif coll and header and re.match(r"\s+\d", line):
            found[coll].append(dict(zip(header, line.split())))
    return found, header


def check_all_collectives(job, n):
    found, header = tables(job.out)
    assert header[:len(COLUMNS)] == COLUMNS, str(job)
    assert sorted(found) == sorted(COLLECTIVES), str(job)
    for coll, rows in found.items():
        assert rows, f"{coll}: no rows\n{job}"
        for row in rows:
            assert row["#wrong"] == "0", f"{coll}: {row}\n{job}"
            assert float(row["time"]) > 0, f"{coll}: {row}"
    assert job.out.count("# Out of bounds values : 0 OK") == len(COLLECTIVES), str(job)


def test_every_collective_under_fgrun_gloo():
    job = under_fgrun(2, "all", *SMALL)
    assert job.rc == 0, str(job)
    check_all_collectives(job, 2)
    assert "backend gloo" in job.out and "launcher fgrun/torchrun" in job.out, str(job)


@pytest.mark.mpi
def test_every_collective_under_mpirun_mpi():
    job = under_mpirun(2, "all", "--backend", "mpi", *SMALL)
    assert job.rc == 0, str(job)
    check_all_collectives(job, 2)
    assert "backend mpi" in job.out and "launcher mpirun" in job.out, str(job)


@pytest.mark.fault
def test_corrupt_contribution_is_counted_and_fails():
    job = under_fgrun(2, "all", "--corrupt", *SMALL)
    assert job.rc == 1, str(job)
    found, _ = tables(job.out)
    for coll in COLLECTIVES:
        assert found.get(coll) and all(int(r["#wrong"]) > 0 for r in found[coll]), \
            f"{coll}\n{job}"
    assert "FAILED" in job.out, str(job)


@pytest.mark.parametrize("dtype,op", [("float16", "max"), ("bfloat16", "avg"),
                                      ("int8", "prod"), ("int64", "min")])
def test_other_types_and_reductions_check_out(dtype, op):
    job = under_fgrun(2, "allreduce", "-d", dtype, "-o", op, "-b", "16", "-e", "4K", "-f", "16",
                      "-i", "1", "-w", "0")
    assert job.rc == 0, str(job)
    rows = tables(job.out)[0]["allreduce"]
    assert rows and all(r["#wrong"] == "0" and r["type"] == dtype and r["redop"] == op
                        for r in rows), str(job)


def test_busbw_is_algbw_times_the_factor(tmp_path):
    out = tmp_path / "rows.csv"
    job = under_fgrun(2, "all", "-b", "4K", "-e", "64K", "-f", "16", "-i", "2", "-w", "0",
                      "-r", "1", "--csv", str(out))
    assert job.rc == 0, str(job)
    rows = list(csv.DictReader(open(out)))
    assert {r["collective"] for r in rows} == set(COLLECTIVES)
    for r in rows:
        bytes_, us = int(r["bytes"]), float(r["time_us"])
        algbw, busbw = float(r["algbw_gbs"]), float(r["busbw_gbs"])
        # The CSV keeps 6 decimals (GB/s): a slow run's algbw has few significant digits.
        assert algbw == pytest.approx(bytes_ / (us * 1e3), rel=1e-3, abs=1e-6), r
        assert busbw == pytest.approx(algbw * factor(r["collective"], 2), rel=1e-4, abs=1e-6), r
        assert r["impl"] == "fgcomm" and r["wrong"] == "0" and r["ranks"] == "2", r
        # nccl-tests' sizes: a block per rank where the buffer holds one per rank.
        per_rank = r["collective"] in ("allgather", "reduce_scatter", "alltoall", "gather",
                                       "scatter")
        assert bytes_ == int(r["count"]) * 4 * (2 if per_rank else 1), r
        if r["collective"] in ("broadcast", "reduce", "gather", "scatter"):
            assert r["root"] == "1", r


def test_one_rank_without_a_launcher():
    job = run_job(list(fgbench("allreduce", "-b", "8", "-e", "64", "-i", "1", "-w", "0")))
    assert job.rc == 0, str(job)
    assert "1 ranks" in job.out and "launcher none" in job.out, str(job)


@pytest.mark.parametrize("args,names", [
    (["-b", "1X"], "-b"),
    (["-e", "lots"], "-e"),
    (["-b", "64", "-e", "8"], "-b"),
    (["-f", "1"], "-f"),
    (["-i", "0"], "-i"),
    (["-d", "float128"], "-d"),
    (["-o", "xor"], "-o"),
    (["-c", "2"], "-c"),
    (["--bogus"], "--bogus"),
    (["-b"], "-b"),
    (["extra"], "extra"),
])
def test_bad_options_exit_2_with_one_line(args, names):
    job = run_job(list(fgbench("allreduce", *args)), timeout=20)
    lines = job.err.strip().splitlines()
    assert job.rc == 2 and len(lines) == 1, str(job)
    assert lines[0].startswith("fgbench allreduce: ") and names in lines[0], str(job)
    assert job.out == "", str(job)


def test_root_outside_the_world_exits_2():
    job = run_job(list(fgbench("broadcast", "-r", "3", "-b", "8", "-e", "8")), timeout=20)
    assert job.rc == 2 and "the world has 1 ranks" in job.err, str(job)


def test_help_lists_every_option():
    job = run_job(list(fgbench("allreduce", "--help")), timeout=20)
    assert job.rc == 0, str(job)
    for opt in ("--minbytes", "--maxbytes", "--stepfactor", "--iters", "--warmup_iters",
                "--datatype", "--op", "--root", "--check", "--backend", "--side-by-side",
                "--csv"):
        assert opt in job.out, opt


def test_side_by_side_with_raw_gloo():
    job = under_fgrun(2, "all", "--side-by-side", "--peers", "raw-gloo", "-R", "1", *SMALL)
    assert job.rc == 0, str(job)
    assert "side by side: raw-gloo" in job.out, str(job)
    found, header = tables(job.out)
    assert header[len(COLUMNS):] == ["raw-gloo", "busbw", "ratio"], str(job)
    for row in found["allreduce"]:
        assert float(row["raw-gloo"]) > 0 and float(row["ratio"]) > 0, str(job)
    # gloo has no reduce_scatter of its own: no raw row to compare with.
    assert all(r["raw-gloo"] == "-" for r in found["reduce_scatter"]), str(job)


@pytest.mark.mpi
def test_side_by_side_with_raw_mpi():
    job = under_mpirun(2, "allreduce", "--backend", "mpi", "--side-by-side", *SMALL)
    assert job.rc == 0, str(job)
    assert "side by side: raw-mpi" in job.out, str(job)
    rows = tables(job.out)[0]["allreduce"]
    assert rows and all(float(r["raw-mpi"]) > 0 for r in rows), str(job)


@pytest.mark.torch
def test_side_by_side_with_torch(tmp_path):
    if not have_torch():
        pytest.skip("no torch")
    out = tmp_path / "rows.csv"
    job = under_fgrun(2, "allreduce", "--side-by-side", "--peers", "torch", "-b", "4K", "-e",
                      "4K", "-i", "2", "-w", "1", "-R", "1", "--csv", str(out), timeout=120)
    assert job.rc == 0, str(job)
    assert "side by side: torch" in job.out, str(job)
    impls = {r["impl"] for r in csv.DictReader(open(out))}
    assert impls == {"fgcomm", "torch"}, impls
