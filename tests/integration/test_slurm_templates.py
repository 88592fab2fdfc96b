"""scripts/slurm/*.sbatch without Slurm: a fake scontrol and srun (fake_slurm/) stand in,
srun running each node's tasks in a network namespace of its own (netns.py), so the
templates' logic (the first host of the node list, the rendezvous id, the variables each
rank reads) runs as it would in an allocation."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BIN, bin_path, free_port, have_mpi
from launcher_util import fgrun_env, worker
from netns import cluster  # noqa: F401  (the fixture)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SLURM = os.path.join(ROOT, "scripts", "slurm")
FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_slurm")
TIMEOUT = 60
# Under `make asan`: Open MPI's own leaks are suppressed, which needs full malloc stacks.
SAN_ENV = {"ASAN_OPTIONS": "fast_unwind_on_malloc=0",
           "LSAN_OPTIONS": f"suppressions={ROOT}/tests/lsan.supp:print_suppressions=0"}


def slurm_env(c, nnodes, per_node, path_dir=FAKE, **extra):
    """What sbatch gives the batch script, on a node list of the cluster's addresses."""
    assert c.addrs[:nnodes] == [c.addrs[0][:-1] + str(i + 1) for i in range(nnodes)]
    nodelist = f"{c.addrs[0][:-1]}[1-{nnodes}]"  # 10.213.K.[1-N]: names that resolve
    env = fgrun_env(
        PATH=f"{path_dir}:{BIN}:{os.environ['PATH']}", SLURM_JOB_ID="4242",
        SLURM_JOB_NODELIST=nodelist, SLURM_JOB_NUM_NODES=nnodes,
        SLURM_NTASKS_PER_NODE=per_node, SLURM_NTASKS=nnodes * per_node,
        FAKE_SLURM_NETNS=",".join(f"{a}={h}" for a, h in zip(c.addrs, c.hosts)),
        GLOO_SOCKET_IFNAME="eth0", FG_BACKEND="gloo", **extra)
    return env


def sbatch(template, *args, env):
    cp = subprocess.run(["bash", os.path.join(SLURM, template), *args], env=env,
                        capture_output=True, timeout=TIMEOUT)
    return cp.returncode, cp.stdout.decode(errors="replace"), cp.stderr.decode(errors="replace")


def read_env(path):
    data = open(path, "rb").read().decode()
    return dict(item.split("=", 1) for item in data.split("\0") if "=" in item)


def test_templates_are_valid_bash():
    for name in sorted(os.listdir(SLURM)):
        cp = subprocess.run(["bash", "-n", os.path.join(SLURM, name)], capture_output=True)
        assert cp.returncode == 0, (name, cp.stderr.decode())


def test_one_fgrun_per_node_runs_the_dispatcher_across_hosts(cluster):
    c = cluster(2)
    env = slurm_env(c, 2, 1, NPROC_PER_NODE=2, RDZV_CONF="join_timeout=30")
    rc, out, err = sbatch("fgrun-per-node.sbatch", "dataloader-dispatcher", "--dp", "2",
                          "--mp", "2", env=env)
    assert rc == 0, err + out
    assert f"rendezvous at {c.addrs[0]}:29400" in err
    assert f"this node hosts the store on {c.addrs[0]}:29400" in err
    assert "ALL CHECKS PASSED" in out and "4 ranks, gloo" in out, out
    assert len(re.findall(r"rendezvous round 0: 2 nodes, 4 workers", err)) == 2, err


def test_without_scontrol_the_node_list_is_parsed(cluster, tmp_path):
    c = cluster(2)
    only_srun = tmp_path / "bin"
    only_srun.mkdir()
    os.symlink(os.path.join(FAKE, "srun"), only_srun / "srun")
    env = slurm_env(c, 2, 1, path_dir=str(only_srun), NPROC_PER_NODE=1,
                    FG_TEST_DIR=str(tmp_path))
    assert shutil.which("scontrol", path=env["PATH"]) is None
    rc, out, err = sbatch("fgrun-per-node.sbatch", "--no_python", worker("env_dump.sh"),
                          env=env)
    assert rc == 0, err + out
    for rank in range(2):
        e = read_env(tmp_path / f"env.{rank}")
        assert e["TORCHELASTIC_RUN_ID"] == "4242"  # the rendezvous id is the job id
        assert e["MASTER_ADDR"] == c.addrs[0] and e["MASTER_PORT"] == "29400"
        assert e["WORLD_SIZE"] == "2" and e["GROUP_RANK"] == str(rank)


def test_srun_started_ranks_read_the_slurm_variables(cluster):
    """No agent: each rank reads SLURM_PROCID and friends, rank 0 serves the store."""
    c = cluster(2)
    env = slurm_env(c, 2, 2, MASTER_PORT=free_port())
    rc, out, err = sbatch("srun-ranks.sbatch", bin_path("fgscenario"), "dataloader-dispatcher",
                          "--dp", "2", "--mp", "2", env=env)
    assert rc == 0, err + out
    assert f"store at {c.addrs[0]}:{env['MASTER_PORT']}" in err
    assert "ALL CHECKS PASSED" in out and "4 ranks, gloo" in out, out


def test_srun_template_gives_torch_its_variables(cluster, tmp_path):
    c = cluster(2)
    env = slurm_env(c, 2, 2, TORCH_ENV=1, FG_TEST_DIR=str(tmp_path))
    rc, out, err = sbatch("srun-ranks.sbatch", worker("env_dump.sh"), env=env)
    assert rc == 0, err + out
    for rank in range(4):
        e = read_env(tmp_path / f"env.{rank}")
        assert (e["RANK"], e["WORLD_SIZE"], e["LOCAL_RANK"], e["LOCAL_WORLD_SIZE"]) == (
            str(rank), "4", str(rank % 2), "2")
        assert e["MASTER_ADDR"] == c.addrs[0] and e["MASTER_PORT"] == "29500"


@pytest.mark.mpi
@pytest.mark.parametrize("backend", ["gloo", "mpi"])
def test_mpirun_template_with_both_backends(cluster, backend):
    """The allocation is faked, so Open MPI is told not to read it (ras, plm) and starts
    every rank here; what is tested is the template's command line and the ranks'
    bootstrap under mpirun."""
    if not have_mpi():
        pytest.skip("Open MPI is not installed")
    c = cluster(1)
    env = slurm_env(c, 1, 4, OMPI_MCA_ras="^slurm", OMPI_MCA_plm="^slurm",
                    OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                    MPIRUN_ARGS="--oversubscribe", **SAN_ENV)
    rc, out, err = sbatch("mpirun-ranks.sbatch", bin_path("fgscenario"), "--backend", backend,
                          "dataloader-dispatcher", "--dp", "2", "--mp", "2", env=env)
    assert rc == 0, err + out
    assert "mpirun-ranks: job 4242, 4 ranks, 4 per node" in err
    assert "ALL CHECKS PASSED" in out and f"4 ranks, {backend}" in out, out
