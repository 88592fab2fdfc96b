"""fgbench's collective benchmarks (bench_coll*.c): every collective runs and checks out,
out of place and in place, under fgrun (gloo) and under mpirun (mpi); a corrupted
contribution shows as #wrong and exit 1; bad options exit 2 with one line; nccl-tests'
options mean what they mean there; the output is nccl-tests' (a reader written from its
format, nccl_tests_format.py, reads it), and so is the JSON of -J; busbw is algbw times
nccl-tests' factor. Behaviour only: no timing is asserted.

Every job runs in a session of its own with a deadline (Open MPI has been seen to hang when
ranks exit), and the sizes are tiny: the point is the driver, not the numbers."""
import csv
import json
import os
import re
import subprocess

import pytest

import nccl_tests_format as nt
from conftest import bin_path, have_torch
from launcher_util import run_in_session

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
PROGRAMS = {"allreduce": "all_reduce_perf", "allgather": "all_gather_perf",
            "reduce_scatter": "reduce_scatter_perf", "alltoall": "alltoall_perf",
            "broadcast": "broadcast_perf", "reduce": "reduce_perf", "gather": "gather_perf",
            "scatter": "scatter_perf", "sendrecv": "sendrecv_perf"}
COLL_OF = {v: k for k, v in PROGRAMS.items()}
# nccl-tests leaves these unchecked in place: #wrong says N/A.
NO_IN_PLACE_CHECK = {"alltoall", "sendrecv"}
SMALL = ["-b", "1K", "-e", "4K", "-f", "4", "-n", "2", "-w", "1"]


def factor(coll, n):
    """nccl-tests' bus-bandwidth factors."""
    if coll == "allreduce":
        return 2 * (n - 1) / n
    if coll in ("allgather", "reduce_scatter", "alltoall", "gather", "scatter"):
        return (n - 1) / n
    return 1.0


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PET_", "OMPI_", "PMIX_", "FG_", "TORCHELASTIC_"))
           and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                         "MASTER_ADDR", "MASTER_PORT")}
    env.update(SAN_ENV)
    env.update(extra or {})
    return env


def run_job(argv, timeout=60):
    return run_in_session(argv, clean_env(), timeout)


def fgbench(*args):
    return bin_path("fgbench"), *args


def under_fgrun(n, *args, timeout=60):
    return run_job([bin_path("fgrun"), "--standalone", f"--nproc_per_node={n}", "--no_python",
                    *fgbench(*args)], timeout=timeout)


def under_mpirun(n, *args, timeout=60):
    forwarded = [x for name in SAN_ENV for x in ("-x", name)]
    return run_job(MPIRUN + forwarded + ["-np", str(n), *fgbench(*args)], timeout=timeout)


def rank0(out):
    """Rank 0's lines (fgrun prefixes them with [rank0]:)."""
    return "\n".join(re.sub(r"^\[rank0\]:", "", line) for line in out.splitlines())


def tables(out):
    """{collective: [row]} from rank 0's output, read as nccl-tests' output."""
    return {COLL_OF[t["program"]]: t["rows"] for t in nt.parse(rank0(out))}


def check_all_collectives(job, n):
    tests = nt.parse(rank0(job.out))
    assert sorted(COLL_OF[t["program"]] for t in tests) == sorted(COLLECTIVES), str(job)
    for t in tests:
        coll = COLL_OF[t["program"]]
        assert t["rows"], f"{coll}: no rows\n{job}"
        assert len(t["devices"]) == n and t["params"]["nthreads"] == 1, str(job)
        for row in t["rows"]:
            assert row["out_of_place"]["wrong"] == 0, f"{coll}: {row}\n{job}"
            in_place = row["in_place"]["wrong"]
            assert in_place is None if coll in NO_IN_PLACE_CHECK else in_place == 0, \
                f"{coll}: {row}\n{job}"
            assert row["out_of_place"]["time"] > 0 and row["in_place"]["time"] > 0, row
        assert t["out_of_bounds"] == 0 and t["ok"], str(job)


def test_every_collective_under_fgrun_gloo():
    job = under_fgrun(2, "all", *SMALL)
    assert job.rc == 0, str(job)
    check_all_collectives(job, 2)
    assert "backend gloo launcher fgrun/torchrun" in job.out, str(job)


@pytest.mark.mpi
def test_every_collective_under_mpirun_mpi():
    job = under_mpirun(2, "all", "--backend", "mpi", *SMALL)
    assert job.rc == 0, str(job)
    check_all_collectives(job, 2)
    assert "backend mpi launcher mpirun" in job.out, str(job)


@pytest.mark.fault
def test_corrupt_contribution_is_counted_and_fails():
    job = under_fgrun(2, "all", "--corrupt", *SMALL)
    assert job.rc == 1, str(job)
    found = tables(job.out)
    for coll in COLLECTIVES:
        assert found.get(coll), f"{coll}\n{job}"
        for r in found[coll]:
            assert r["out_of_place"]["wrong"] > 0, f"{coll}: {r}\n{job}"
            if coll not in NO_IN_PLACE_CHECK:
                assert r["in_place"]["wrong"] > 0, f"{coll}: {r}\n{job}"
    assert all(not t["ok"] and t["out_of_bounds"] > 0 for t in nt.parse(rank0(job.out))), \
        str(job)


@pytest.mark.parametrize("dtype,name,op", [("half", "half", "max"),
                                           ("bfloat16", "bfloat16", "avg"),
                                           ("int8", "int8", "prod"), ("float64", "double", "min")])
def test_other_types_and_reductions_check_out(dtype, name, op):
    """nccl-tests' type names, and fgcomm's as aliases; the table says nccl-tests'."""
    job = under_fgrun(2, "allreduce", "-d", dtype, "-o", op, "-b", "16", "-e", "4K", "-f", "16",
                      "-n", "1", "-w", "0")
    assert job.rc == 0, str(job)
    rows = tables(job.out)["allreduce"]
    assert rows and all(r["out_of_place"]["wrong"] == 0 and r["in_place"]["wrong"] == 0 and
                        r["type"] == name and r["redop"] == op for r in rows), str(job)


def test_every_type_every_reduction_every_root():
    """-d all -o all loop as nccl-tests' runTest does (its types fgcomm has, in its order),
    and -r -1 runs every root; all in one table."""
    job = under_fgrun(2, "all", "-d", "all", "-o", "all", "-r", "-1", "-b", "64", "-e", "64",
                      "-n", "1", "-w", "0", timeout=120)
    assert job.rc == 0, str(job)
    found = tables(job.out)
    types = ["int8", "uint8", "int32", "int64", "half", "float", "double", "bfloat16"]
    assert [r["type"] for r in found["allreduce"]] == [t for t in types for _ in range(5)]
    assert [r["redop"] for r in found["allreduce"][:5]] == ["sum", "prod", "max", "min", "avg"]
    assert [r["root"] for r in found["broadcast"]] == [0, 1] * len(types), str(job)
    assert {r["root"] for r in found["allgather"]} == {-1}, str(job)
    for coll, rows in found.items():
        assert all(r["out_of_place"]["wrong"] == 0 for r in rows), f"{coll}\n{job}"


def test_busbw_is_algbw_times_the_factor(tmp_path):
    out = tmp_path / "rows.csv"
    job = under_fgrun(2, "all", "-b", "4K", "-e", "64K", "-f", "16", "-n", "2", "-w", "0",
                      "-r", "1", "--csv", str(out))
    assert job.rc == 0, str(job)
    rows = list(csv.DictReader(open(out)))
    assert {r["collective"] for r in rows} == set(COLLECTIVES)
    assert {r["placement"] for r in rows} == {"out-of-place", "in-place"}, rows[0]
    for r in rows:
        bytes_, us = int(r["bytes"]), float(r["time_us"])
        algbw, busbw = float(r["algbw_gbs"]), float(r["busbw_gbs"])
        # The CSV keeps 6 decimals (GB/s): a slow run's algbw has few significant digits.
        assert algbw == pytest.approx(bytes_ / (us * 1e3), rel=1e-3, abs=1e-6), r
        assert busbw == pytest.approx(algbw * factor(r["collective"], 2), rel=1e-4, abs=1e-6), r
        unchecked = r["placement"] == "in-place" and r["collective"] in NO_IN_PLACE_CHECK
        assert r["impl"] == "fgcomm" and r["ranks"] == "2", r
        assert r["wrong"] == ("" if unchecked else "0"), r
        # nccl-tests' sizes: a block per rank where the buffer holds one per rank.
        per_rank = r["collective"] in ("allgather", "reduce_scatter", "alltoall", "gather",
                                       "scatter")
        assert bytes_ == int(r["count"]) * 4 * (2 if per_rank else 1), r
        if r["collective"] in ("broadcast", "reduce", "gather", "scatter"):
            assert r["root"] == "1", r


def test_one_rank_without_a_launcher():
    job = run_job(list(fgbench("allreduce", "-b", "8", "-e", "64", "-f", "2", "-n", "1")))
    assert job.rc == 0, str(job)
    assert "launcher none ranks 1" in job.out, str(job)
    [t] = nt.parse(job.out)
    assert [r["size"] for r in t["rows"]] == [8, 16, 32, 64], str(job)


@pytest.mark.parametrize("args,names", [
    (["-b", "1X"], "-b"),
    (["-e", "lots"], "-e"),
    (["-b", "64", "-e", "8"], "-b"),
    (["-f", "1.5"], "-f"),
    (["-n", "0"], "-n"),
    (["-b", "8", "-e", "64", "-i", "0"], "-i"),
    (["-d", "float128"], "-d"),
    (["-d", "uint32"], "-d"),
    (["-o", "xor"], "-o"),
    (["-o", "mulsum"], "-o"),
    (["-c", "-1"], "-c"),
    (["-a", "4"], "-a"),
    (["-z", "4"], "-z"),
    (["-t", "2"], "-t"),
    (["-g", "8"], "-g"),
    (["-R", "1"], "-R"),
    (["-G", "10"], "-G"),
    (["-I", "1"], "-I"),
    (["-J", "out.csv"], "-J"),
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
    # nccl-tests' (src/common.cu's longopts), then fgbench's own.
    for opt in ("--nthreads", "--ngpus", "--minbytes", "--maxbytes", "--stepbytes",
                "--stepfactor", "--iters", "--agg_iters", "--warmup_iters", "--run_cycles",
                "--parallel_init", "--check", "--op", "--datatype", "--root", "--blocking",
                "--stream_null", "--timeout", "--cudagraph", "--report_cputime",
                "--report_timestamps", "--output_file", "--average", "--local_register",
                "--cta_policy", "--device_implementation", "--device_cta_count", "--memory",
                "--unalign", "--per_iter_timing", "--per_iter_skip",
                "--backend", "--repeat", "--side-by-side", "--peers", "--csv"):
        assert opt in job.out, opt


def peer_lines(out):
    """{collective: {size: {peer: (time, busbw, ratio)}}}: the comment lines fgbench prints
    under a row with --side-by-side (a reader of nccl-tests' output skips them)."""
    found, coll, size = {}, None, None
    for line in rank0(out).splitlines():
        if m := nt.START.match(line):
            coll = COLL_OF[m.group(1)]
            found[coll] = {}
        elif coll and not line.startswith("#") and line.strip():
            size = int(line.split()[0])
        elif coll and size is not None and (m := re.match(
                r"^#\s+(raw-gloo|raw-mpi|torch)\s+(\S+)\s+(\S+)\s+(\S+)\s+x\s*(\S+)$", line)):
            found[coll].setdefault(size, {})[m.group(1)] = (
                float(m.group(2)), float(m.group(4)), float(m.group(5)))
    return found


def test_side_by_side_with_raw_gloo():
    job = under_fgrun(2, "all", "--side-by-side", "--peers", "raw-gloo", "--repeat", "1",
                      *SMALL)
    assert job.rc == 0, str(job)
    assert "side by side: raw-gloo" in job.out, str(job)
    check_all_collectives(job, 2)  # the table is still nccl-tests'
    peers = peer_lines(job.out)
    sizes = [r["size"] for r in tables(job.out)["allreduce"]]
    assert sorted(peers["allreduce"]) == sizes, str(job)
    for by_peer in peers["allreduce"].values():
        time, _, ratio = by_peer["raw-gloo"]
        assert time > 0 and ratio > 0, str(job)
    # gloo has no reduce_scatter of its own: no raw row to compare with.
    assert peers["reduce_scatter"] == {}, str(job)


@pytest.mark.mpi
def test_side_by_side_with_raw_mpi():
    job = under_mpirun(2, "allreduce", "--backend", "mpi", "--side-by-side", *SMALL)
    assert job.rc == 0, str(job)
    assert "side by side: raw-mpi" in job.out, str(job)
    peers = peer_lines(job.out)["allreduce"]
    assert peers and all(p["raw-mpi"][0] > 0 for p in peers.values()), str(job)


@pytest.mark.torch
def test_side_by_side_with_torch(tmp_path):
    if not have_torch():
        pytest.skip("no torch")
    out = tmp_path / "rows.csv"
    job = under_fgrun(2, "allreduce", "--side-by-side", "--peers", "torch", "-b", "4K", "-e",
                      "4K", "-n", "2", "-w", "1", "--repeat", "1", "--csv", str(out),
                      timeout=120)
    assert job.rc == 0, str(job)
    assert "side by side: torch" in job.out, str(job)
    rows = list(csv.DictReader(open(out)))
    assert {r["impl"] for r in rows} == {"fgcomm", "torch"}, rows
    assert {r["placement"] for r in rows if r["impl"] == "torch"} == {"out-of-place"}, rows


# --- nccl-tests' format, options and JSON ------------------------------------------------------


def test_a_reader_of_nccl_tests_output_reads_every_collective():
    """The whole output read by a parser written from nccl-tests' printf formats: header
    lines, a device line per rank, the column groups, a row per size, the footer; the
    figures agree with each other as nccl-tests computes them."""
    job = under_fgrun(2, "all", "-b", "4K", "-e", "64K", "-f", "4", "-n", "2", "-w", "1")
    assert job.rc == 0, str(job)
    tests = nt.parse(rank0(job.out))
    assert [t["program"] for t in tests] == [PROGRAMS[c] for c in COLLECTIVES], str(job)
    for t in tests:
        coll = COLL_OF[t["program"]]
        assert t["params"] == {"nthreads": 1, "ngpus": 1, "minbytes": 4096, "maxbytes": 65536,
                               "step": 4, "step_kind": "factor", "warmup": 1, "iters": 2,
                               "agg": 1, "check": 1}, t["params"]
        assert [d["rank"] for d in t["devices"]] == [0, 1] and t["time_label"] == "time"
        assert [r["size"] for r in t["rows"]] == [4096, 16384, 65536], t["rows"]
        busbws = []
        for r in t["rows"]:
            per_rank = coll in ("allgather", "reduce_scatter", "alltoall", "gather", "scatter")
            assert r["count"] * 4 * (2 if per_rank else 1) == r["size"], r
            assert r["type"] == "float", r
            assert r["redop"] == ("sum" if coll in ("allreduce", "reduce_scatter", "reduce")
                                  else "none"), r
            assert r["root"] == (0 if coll in ("broadcast", "reduce", "gather", "scatter")
                                 else -1), r
            for group in (r["out_of_place"], r["in_place"]):
                # Two decimals on screen: algbw and busbw agree to that.
                assert group["algbw"] == pytest.approx(r["size"] / group["time"] / 1e3,
                                                       abs=0.006), r
                assert group["busbw"] == pytest.approx(group["algbw"] * factor(coll, 2),
                                                       abs=0.011), r
                busbws.append(group["busbw"])
        assert t["out_of_bounds"] == 0 and t["ok"], t
        assert t["avg_busbw"] == pytest.approx(sum(busbws) / len(busbws), abs=0.006), t


def test_the_reader_refuses_what_is_not_nccl_tests_format():
    """The reader bites: a row with a field missing, a renamed column, an unknown type."""
    job = run_job(list(fgbench("allreduce", "-b", "8", "-e", "8", "-n", "1")))
    assert job.rc == 0, str(job)
    assert nt.parse(job.out)[0]["rows"]
    row = next(line for line in job.out.splitlines() if line.strip() and line[0] != "#")
    for broken in (job.out.replace(row, row.rsplit(None, 1)[0]),
                   job.out.replace("#wrong", "#bad  ", 1),
                   job.out.replace(row, row.replace("float", "fp32 ", 1))):
        with pytest.raises(nt.FormatError):
            nt.parse(broken)


def test_nccl_tests_options_mean_what_they_mean_there(tmp_path):
    """-i steps by bytes (-f 1), -N repeats the sweep, -C relabels the time column, -S adds
    a timestamp, -c 0 says N/A, -m -z -a -u -p are accepted, sizes like nccl-tests'."""
    job = run_job(list(fgbench("allreduce", "-b", "1K", "-e", "3K", "-i", "1K", "-n", "2",
                               "-N", "2", "-C", "1", "-S", "1", "-c", "0", "-m", "2", "-z", "3",
                               "-a", "3", "-u", "1", "-p", "1", "-t", "1", "-g", "1", "-R", "0")))
    assert job.rc == 0, str(job)
    [t] = nt.parse(job.out)
    assert [r["size"] for r in t["rows"]] == [1024, 2048, 3072] * 2, str(job)
    assert t["time_label"] == "cputime" and t["params"]["step_kind"] == "bytes", str(job)
    assert t["params"]["agg"] == 2 and t["params"]["check"] == 0, str(job)
    assert all(r["timestamp"] and r["out_of_place"]["wrong"] is None for r in t["rows"])
    assert "# Blocking Enabled: wait and barrier after each outer iteration" in job.out
    assert "# Parallel Init Enabled" in job.out and "unalign: 1" in job.out, str(job)


def test_json_output_is_nccl_tests_json(tmp_path):
    """-J writes nccl-tests' JSON (version 3): config with the devices, a result per row with
    both placements, the footer's figures; a second run does not overwrite (FILE.0); a
    secret in the environment is not written."""
    path = tmp_path / "run.json"
    env_job = subprocess.run(
        [bin_path("fgrun"), "--standalone", "--nproc_per_node=2", "--no_python",
         bin_path("fgbench"), "reduce", "-b", "1K", "-e", "4K", "-f", "2", "-n", "1", "-r", "1",
         "-J", str(path)], env=clean_env({"FG_STORE_TOKEN": "hunter2-secret"}),
        capture_output=True, text=True, timeout=60)
    assert env_job.returncode == 0, env_job.stderr
    doc = json.load(open(path))
    assert doc["version"] == 3 and doc["args"][:2] == ["fgbench", "reduce"], doc["args"]
    cfg = doc["config"]
    assert cfg["minimum_bytes"] == 1024 and cfg["step_factor"] == 2 and cfg["iterations"] == 1
    assert [d["rank"] for d in cfg["devices"]] == [0, 1], cfg["devices"]
    assert [r["size"] for r in doc["results"]] == [1024, 2048, 4096], doc["results"]
    for r in doc["results"]:
        assert r["type"] == "float" and r["redop"] == "sum" and int(r["root"]) == 1, r
        for key in ("out_of_place", "in_place"):
            assert r[key]["time"] > 0 and r[key]["nwrong"] == 0, r
            assert set(r[key]) == {"time", "alg_bw", "bus_bw", "nwrong"}, r
    assert doc["out_of_bounds"] == {"count": 0, "okay": True}, doc["out_of_bounds"]
    assert doc["average_bus_bandwidth"]["okay"] == "unchecked"
    assert "hunter2-secret" not in path.read_text()
    job = under_fgrun(1, "reduce", "-b", "8", "-e", "8", "-n", "1", "-J", str(path))
    assert job.rc == 0 and f"Writing JSON output to {path}.0" in job.out, str(job)
    assert json.load(open(f"{path}.0"))["results"], str(job)


def test_min_bw_below_nccl_tests_threshold_fails():
    """NCCL_TESTS_MIN_BW, as nccl-tests reads it: below 0.9 of it, FAILED and exit 1."""
    env = clean_env({"NCCL_TESTS_MIN_BW": "1000000"})
    p = subprocess.run([bin_path("fgbench"), "allreduce", "-b", "8", "-e", "8", "-n", "1"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and re.search(r"Avg bus bandwidth    : \S+ FAILED", p.stdout), p
