"""scripts/slurm/*.sbatch submitted with `sbatch --wait` to a real Slurm cluster (slurm.py:
slurmctld and one slurmd per node, each node a host of its own with its own name and
address): one fgrun per node (c10d and static), every rank by srun, every rank by mpirun, and
torch 1.13 under srun with the template's TORCH_ENV. The job's exit status is sbatch's."""
import os
import re
import subprocess

import pytest

from conftest import SYSTEM_PYTHON, bin_path, have_mpi
from launcher_util import worker
from slurm import slurm, slurm_session  # noqa: F401  (the fixtures)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SLURM = os.path.join(ROOT, "scripts", "slurm")
PORT_BASE, PORT_SPAN = 15000, 10000  # common/slurm.h, docs/cluster.md
# Under `make asan`: Open MPI's own leaks are suppressed, which needs full malloc stacks.
SAN_ENV = {"ASAN_OPTIONS": "fast_unwind_on_malloc=0",
           "LSAN_OPTIONS": f"suppressions={ROOT}/tests/lsan.supp:print_suppressions=0"}
TWO_NODES = ["--nodes=2"]
TWO_BY_TWO = ["--nodes=2", "--ntasks-per-node=2"]
FAST_RDZV = "join_timeout=60,last_call_timeout=1"


def template(name):
    return os.path.join(SLURM, name)


def read_env(path):
    data = open(path, "rb").read().decode()
    return dict(item.split("=", 1) for item in data.split("\0") if "=" in item)


def test_templates_are_valid_bash():
    for name in sorted(os.listdir(SLURM)):
        cp = subprocess.run(["bash", "-n", template(name)], capture_output=True)
        assert cp.returncode == 0, (name, cp.stderr.decode())


@pytest.mark.slurm
def test_one_fgrun_per_node_c10d(slurm, tmp_path):
    """Two agents meet on n1 at the job's port; four ranks of the dispatcher span both
    nodes; each worker has the job id as its run id."""
    env = slurm.env(NPROC_PER_NODE=2, RDZV_CONF=FAST_RDZV)
    rc, out, job = slurm.sbatch(template("fgrun-per-node.sbatch"), "dataloader-dispatcher",
                                "--dp", "2", "--mp", "2", options=TWO_NODES, out_dir=tmp_path,
                                env=env)
    port = PORT_BASE + job % PORT_SPAN
    assert rc == 0, out
    assert f"job {job}, 2 nodes, c10d rendezvous at n1:{port}" in out, out
    assert f"this node hosts the store on n1:{port}" in out, out
    assert len(re.findall(r"rendezvous round 0: 2 nodes, 4 workers", out)) == 2, out
    assert "ALL CHECKS PASSED" in out and "4 ranks, gloo" in out, out


@pytest.mark.slurm
@pytest.mark.parametrize("backend", ["c10d", "static"])
def test_one_fgrun_per_node_gives_workers_the_job(slurm, tmp_path, backend):
    """What each worker sees: the job id as the run id, the first node's store, and its
    place in the world (node rank from SLURM_NODEID under static)."""
    env = slurm.env(NPROC_PER_NODE=1, RDZV_BACKEND=backend, RDZV_CONF=FAST_RDZV,
                    FG_TEST_DIR=str(tmp_path))
    rc, out, job = slurm.sbatch(template("fgrun-per-node.sbatch"), "--no_python",
                                os.path.join(os.path.dirname(__file__), "scripts",
                                             "slurm_env_dump.sh"),
                                options=TWO_NODES, out_dir=tmp_path, env=env)
    assert rc == 0, out
    assert f"{backend} rendezvous at n1:{PORT_BASE + job % PORT_SPAN}" in out, out
    for rank in range(2):
        e = read_env(tmp_path / f"env.{rank}")
        assert e["TORCHELASTIC_RUN_ID"] == str(job)
        assert e["MASTER_ADDR"] == "n1" and e["MASTER_PORT"] == str(PORT_BASE + job % PORT_SPAN)
        assert (e["WORLD_SIZE"], e["GROUP_RANK"]) == ("2", str(rank))
        assert e["HOSTNAME_SEEN"] == f"n{rank + 1}", e["HOSTNAME_SEEN"]


@pytest.mark.slurm
def test_one_fgrun_per_node_exit_status_is_the_jobs(slurm, tmp_path):
    """Rank 1 (on n1) exits 3: its agent stops the others and exits 3, srun and the job too."""
    env = slurm.env(NPROC_PER_NODE=2, RDZV_CONF=FAST_RDZV, FG_TEST_DIR=str(tmp_path),
                    FAIL_RANK=1, FAIL_AFTER=0.5, FAIL_CODE=3)
    rc, out, _ = slurm.sbatch(template("fgrun-per-node.sbatch"), "--no_python",
                              worker("sleep_with_child.sh"), options=TWO_NODES,
                              out_dir=tmp_path, env=env)
    assert rc == 3, out
    assert "rank 1 giving up" in out, out
    assert "srun: error: n1: task 0: Exited with exit code 3" in out, out


@pytest.mark.slurm
def test_srun_ranks_run_the_scenarios(slurm, tmp_path):
    rc, out, job = slurm.sbatch(template("srun-ranks.sbatch"), bin_path("fgscenario"), "all",
                                options=TWO_BY_TWO, out_dir=tmp_path)
    assert rc == 0, out
    assert f"job {job}, 4 ranks, store at n1:{PORT_BASE + job % PORT_SPAN}" in out, out
    assert "every scenario passed (4 scenarios, 4 ranks, gloo" in out, out


@pytest.mark.slurm
@pytest.mark.mpi
def test_srun_ranks_with_pmix_run_the_mpi_backend(slurm, tmp_path):
    if not have_mpi():
        pytest.skip("Open MPI is not installed")
    rc, out, _ = slurm.sbatch(template("srun-ranks.sbatch"), bin_path("fgscenario"),
                              "--backend", "mpi", "dataloader-dispatcher", "--dp", "2", "--mp",
                              "2", options=TWO_BY_TWO, out_dir=tmp_path,
                              env=slurm.env(SRUN_ARGS="--mpi=pmix", **SAN_ENV))
    assert rc == 0, out
    assert "ALL CHECKS PASSED" in out and "4 ranks, mpi" in out, out


@pytest.mark.slurm
def test_srun_ranks_exit_status_is_the_jobs(slurm, tmp_path):
    rc, out, _ = slurm.sbatch(template("srun-ranks.sbatch"), os.path.abspath(os.path.join(
        os.path.dirname(bin_path("fgrun")), "..", "tests", "drivers", "fault_worker")),
        "--victim", "2", "--at", "2", "--fault", "exit3", "--iters", "0", "--pause-ms", "10",
        "allreduce", options=TWO_BY_TWO, out_dir=tmp_path)
    assert rc == 3, out
    assert "srun: error: n2: task 2: Exited with exit code 3" in out, out


@pytest.mark.slurm
@pytest.mark.torch
def test_srun_ranks_torch_env_runs_a_torch_gloo_probe(slurm, tmp_path):
    """TORCH_ENV=1: torch 1.13's own env:// (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT from
    the template), gloo all_reduce over both nodes."""
    rc, out, job = slurm.sbatch(template("srun-ranks.sbatch"), SYSTEM_PYTHON,
                                worker("torch_srun_probe.py"), options=TWO_BY_TWO,
                                out_dir=tmp_path, env=slurm.env(TORCH_ENV=1))
    assert rc == 0, out
    assert f"store at n1:{PORT_BASE + job % PORT_SPAN}" in out, out
    assert sorted(re.findall(r"torch probe: rank (\d) of 4 ok, sum 10", out)) == list("0123"), out
    assert "torch probe: hosts n1 n1 n2 n2" in out, out


@pytest.mark.slurm
def test_srun_ranks_torch_env_variables(slurm, tmp_path):
    env = slurm.env(TORCH_ENV=1, FG_TEST_DIR=str(tmp_path))
    rc, out, job = slurm.sbatch(template("srun-ranks.sbatch"),
                                os.path.join(os.path.dirname(__file__), "scripts",
                                             "slurm_env_dump.sh"),
                                options=TWO_BY_TWO, out_dir=tmp_path, env=env)
    assert rc == 0, out
    for rank in range(4):
        e = read_env(tmp_path / f"env.{rank}")
        assert (e["RANK"], e["WORLD_SIZE"], e["LOCAL_RANK"], e["LOCAL_WORLD_SIZE"]) == (
            str(rank), "4", str(rank % 2), "2")
        assert e["MASTER_ADDR"] == "n1" and e["MASTER_PORT"] == str(PORT_BASE + job % PORT_SPAN)
        assert e["HOSTNAME_SEEN"] == f"n{rank // 2 + 1}"


@pytest.mark.slurm
@pytest.mark.mpi
@pytest.mark.parametrize("backend", ["gloo", "mpi"])
def test_mpirun_ranks_with_both_backends(slurm, tmp_path, backend):
    """Open MPI's mpirun inside the allocation: it reads the nodes from Slurm and starts its
    daemons on them with srun; four ranks, two per node."""
    if not have_mpi():
        pytest.skip("Open MPI is not installed")
    env = slurm.env(OMPI_ALLOW_RUN_AS_ROOT=1, OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1, **SAN_ENV)
    rc, out, job = slurm.sbatch(template("mpirun-ranks.sbatch"), bin_path("fgscenario"),
                                "--backend", backend, "dataloader-dispatcher", "--dp", "2",
                                "--mp", "2", options=TWO_BY_TWO, out_dir=tmp_path, env=env)
    assert rc == 0, out
    assert f"mpirun-ranks: job {job}, 4 ranks, 2 per node" in out, out
    assert "ALL CHECKS PASSED" in out and f"4 ranks, {backend}" in out, out


@pytest.mark.slurm
@pytest.mark.mpi
def test_mpirun_ranks_span_the_nodes(slurm, tmp_path):
    if not have_mpi():
        pytest.skip("Open MPI is not installed")
    env = slurm.env(OMPI_ALLOW_RUN_AS_ROOT=1, OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1,
                    FG_TEST_DIR=str(tmp_path))
    rc, out, _ = slurm.sbatch(template("mpirun-ranks.sbatch"),
                              os.path.join(os.path.dirname(__file__), "scripts",
                                           "slurm_env_dump.sh"),
                              options=TWO_BY_TWO, out_dir=tmp_path, env=env)
    assert rc == 0, out
    hosts = [read_env(tmp_path / f"env.{r}")["HOSTNAME_SEEN"] for r in range(4)]
    assert hosts == ["n1", "n1", "n2", "n2"], hosts


@pytest.mark.slurm
@pytest.mark.mpi
@pytest.mark.parametrize("backend", ["c10d", "static"])
def test_one_fgrun_per_node_makes_one_mpi_world(slurm, tmp_path, backend):
    """An Open MPI program (mpicc, no mpirun) under one fgrun per node: the agents' PMIx
    servers make its ranks one world of 4 across the two nodes, fences through the store."""
    if not have_mpi():
        pytest.skip("Open MPI is not installed")
    prog = str(tmp_path / "mpi_hello")
    subprocess.run(["mpicc", "-O1", "-o", prog,
                    os.path.join(os.path.dirname(__file__), "mpi_programs", "mpi_hello.c")],
                   check=True, capture_output=True, timeout=120)
    env = slurm.env(NPROC_PER_NODE=2, RDZV_BACKEND=backend, RDZV_CONF=FAST_RDZV, **SAN_ENV)
    rc, out, _ = slurm.sbatch(template("fgrun-per-node.sbatch"), "--no_python", prog,
                              options=TWO_NODES, out_dir=tmp_path, env=env)
    assert rc == 0, out
    ranks = re.findall(r"rank (\d) of (\d): .*namespace (\S+): ok", out)
    assert sorted(r for r, _, _ in ranks) == ["0", "1", "2", "3"], out
    assert {size for _, size, _ in ranks} == {"4"}, out
    assert len({ns for _, _, ns in ranks}) == 1, out
