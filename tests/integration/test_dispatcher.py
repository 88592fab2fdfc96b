"""dataloader-dispatcher: rank 0 loads batches and hands them out across a dp x mp mesh.

The seed's matrix under fgrun on gloo, a subset under mpirun on both CPU backends, every
fault (each must fail its check, by name, without hanging), and bad input."""
import subprocess

import pytest

from conftest import bin_path
from scenario_util import assert_passed, fgrun_job, mpirun_job, run_job

# (ranks, dp, mp, extra options): the seed's run_dataloader_dispatcher_tests.sh.
MATRIX = [
    pytest.param(2, 2, 1, [], id="1d-pure-dp-2"),
    pytest.param(4, 4, 1, [], id="1d-pure-dp-4"),
    pytest.param(2, 1, 2, [], id="1d-pure-mp-2"),
    pytest.param(4, 1, 4, [], id="1d-pure-mp-4"),
    pytest.param(1, 1, 1, [], id="single-rank"),
    pytest.param(4, 2, 2, ["--dp-dim", "0"], id="2d-2x2-dpdim0"),
    pytest.param(6, 2, 3, ["--dp-dim", "0"], id="2d-2x3-dpdim0"),
    pytest.param(6, 3, 2, ["--dp-dim", "0"], id="2d-3x2-dpdim0"),
    pytest.param(4, 2, 2, ["--dp-dim", "1"], id="2d-2x2-dpdim1"),
    pytest.param(6, 2, 3, ["--dp-dim", "1"], id="2d-2x3-dpdim1"),
]


def dispatcher_args(dp, mp, extra=(), backend="gloo"):
    return ["--backend", backend, "dataloader-dispatcher", "--dp", str(dp), "--mp", str(mp),
            *extra]


@pytest.mark.smoke
@pytest.mark.parametrize("nproc,dp,mp,extra", MATRIX)
def test_matrix_gloo(nproc, dp, mp, extra):
    rc, out = fgrun_job(nproc, *dispatcher_args(dp, mp, extra))
    assert_passed(rc, out)
    checks = out.count("[PASS]")
    assert checks == (5 if mp > 1 else 4), f"expected every check on rank 0:\n{out}"


def test_identical_and_disjoint_batches_are_shown():
    """2x2: the MP groups hold the same batches, the DP groups alternate batches."""
    rc, out = fgrun_job(4, *dispatcher_args(2, 2))
    assert_passed(rc, out)
    assert "ranks 0,1: [0 2000 4000 6000 8000]; ranks 2,3: [1000 3000 5000 7000 9000]" in out
    assert "every rank received exactly 5 batches (per rank: 5 5 5 5)" in out


@pytest.mark.parametrize("nproc,dp,mp", [(4, 4, 1), (4, 1, 4)], ids=["dp", "mp"])
def test_1d_cases_on_a_2d_mesh(nproc, dp, mp):
    """A 1D case on a 2D mesh with a dimension of size 1 works as on a 1D mesh."""
    rc, out = fgrun_job(nproc, *dispatcher_args(dp, mp, ["--mesh-dims", "2"]))
    assert_passed(rc, out)
    assert "2D mesh" in out


def test_empty_dataset_ends_with_empty_metadata():
    rc, out = fgrun_job(4, *dispatcher_args(2, 2, ["--num-batches", "0"]))
    assert_passed(rc, out)
    assert "per rank: 0 0 0 0" in out


def test_other_batch_shapes():
    rc, out = fgrun_job(6, *dispatcher_args(3, 2, ["--dp-dim", "1", "--num-batches", "3",
                                                   "--batch-size", "5", "--seq-len", "3"]))
    assert_passed(rc, out)


@pytest.mark.parametrize("nproc,expect", [(4, "hybrid DP x MP: dp=2 mp=2"),
                                          (3, "pure DP: dp=3 mp=1")])
def test_defaults_follow_the_world_size(nproc, expect):
    """As in `all` mode: only the scenario's name."""
    rc, out = fgrun_job(nproc, "dataloader-dispatcher")
    assert_passed(rc, out)
    assert expect in out


def test_fgrun_runs_the_scenario_by_name():
    rc, out = run_job([bin_path("fgrun"), "--standalone", "--nproc_per_node=2",
                       "dataloader-dispatcher", "--dp", "2", "--mp", "1"])
    assert_passed(rc, out)


def gpu_count():
    try:
        r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in r.stdout.splitlines())


@pytest.mark.gpu
@pytest.mark.parametrize("nproc,dp,mp,extra", MATRIX)
def test_matrix_nccl(nproc, dp, mp, extra):
    """NCCL puts one rank on each GPU: cases beyond the machine's GPUs are skipped."""
    gpus = gpu_count()
    if nproc > gpus:
        pytest.skip(f"needs {nproc} GPU(s), this machine has {gpus}")
    rc, out = fgrun_job(nproc, *dispatcher_args(dp, mp, extra, backend="nccl"))
    assert_passed(rc, out)


@pytest.mark.mpi
@pytest.mark.parametrize("backend", ["mpi", "gloo"])
@pytest.mark.parametrize("dp_dim", ["0", "1"])
def test_mpirun_2x2(backend, dp_dim):
    rc, out = mpirun_job(4, *dispatcher_args(2, 2, ["--dp-dim", dp_dim], backend=backend))
    assert_passed(rc, out)
    assert f"4 ranks, {backend}" in out


@pytest.mark.mpi
def test_mpirun_pure_mp_mpi():
    rc, out = mpirun_job(4, *dispatcher_args(1, 4, backend="mpi"))
    assert_passed(rc, out)


# fault, mesh (ranks, dp, mp), the check that must fail.
FAULTS = [
    ("duplicate-batch", (4, 2, 2), "no batch shared between DP groups"),
    ("duplicate-batch", (4, 4, 1), "every rank got different batches"),
    ("duplicate-batch", (2, 1, 2), "no batch dispatched twice"),
    ("mp-diverge", (4, 2, 2), "batches identical within each MP group"),
    ("mp-diverge", (4, 1, 4), "batches identical within each MP group"),
    ("corrupt-token", (4, 2, 2), "every token of every batch received"),
    ("corrupt-token", (2, 2, 1), "every token of every batch received"),
    ("extra-batch", (4, 2, 2), "every rank received exactly 5 batches"),
    ("extra-batch", (4, 1, 4), "every rank received exactly 5 batches"),
    ("no-end-of-data", (4, 2, 2), "end of data reached on every rank"),
]


@pytest.mark.fault
@pytest.mark.parametrize("fault,mesh,check", FAULTS,
                         ids=[f"{f}-{m[1]}x{m[2]}" for f, m, _ in FAULTS])
def test_fault_fails_its_check(fault, mesh, check):
    nproc, dp, mp = mesh
    rc, out = fgrun_job(nproc, "--fault", fault, *dispatcher_args(dp, mp))
    assert rc != 0, f"--fault {fault} passed:\n{out}"
    assert f"[FAIL] {check}" in out, f"--fault {fault} did not fail '{check}':\n{out}"
    assert "SOME CHECKS FAILED" in out


@pytest.mark.fault
@pytest.mark.mpi
def test_fault_under_mpirun():
    rc, out = mpirun_job(4, "--fault", "extra-batch", *dispatcher_args(2, 2, backend="mpi"))
    assert rc != 0 and "[FAIL] every rank received exactly 5 batches" in out, out


def test_world_size_mismatch_is_a_usage_error():
    rc, out = fgrun_job(4, *dispatcher_args(3, 1))
    assert rc == 2, f"exit {rc}:\n{out}"
    line = "dataloader-dispatcher: error: --dp 3 --mp 1 needs 3 ranks, the world has 4"
    said = [l for l in out.splitlines() if l.endswith(line) and not l.lstrip().startswith("|")]
    assert len(said) == 1, out  # rank 0 alone says it (fgrun's "| ..." echo aside)
    assert "[PASS]" not in out and "[FAIL]" not in out


def test_bad_option_is_a_usage_error():
    rc, out = run_job([bin_path("fgscenario"), "dataloader-dispatcher", "--dp-dim", "2"])
    assert rc == 2
    assert "bad value '2' for --dp-dim" in out
