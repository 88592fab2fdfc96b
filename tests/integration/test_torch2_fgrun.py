"""Real torch 2.6 programs (the Debian trixie root of scripts/torch2-root.sh) under the real
fgrun: gloo from env://, DDP, torch.distributed.checkpoint, a 2x2 DeviceMesh, torch's mpi
backend, restarts, c10d between two agents, @record error files, signals."""
import os
import signal
import subprocess

import pytest

from conftest import free_port
from launcher_util import kill_all, run_or_stacks, worker
from torch2_util import TIMEOUT, sigterm_when_ready, torch2_env

pytestmark = pytest.mark.torch2
PROBE = worker("torch2_probe.py")


def fgrun2(fgrun, *args, env=None, **kw):
    """fgrun running torch2_probe.py's workers with the root's python (PYTHON_EXEC)."""
    return run_or_stacks([fgrun, *args], env or torch2_env(), TIMEOUT, **kw)


def rank_lines(cp, prefix="[rank"):
    return sorted(l for l in cp.stdout.splitlines() if l.startswith(prefix))


@pytest.mark.parametrize("n", [1, 2, 4])
def test_gloo_collectives_from_env(fgrun, torch2, n):
    """all_reduce, broadcast_object_list, new_group, all_gather, barrier, and every rank's
    gloo keys found in the agent's store (so they rendezvoused there, nowhere else)."""
    cp = fgrun2(fgrun, "--standalone", f"--nproc_per_node={n}", PROBE, "collectives")
    assert cp.returncode == 0, cp.stderr
    assert rank_lines(cp) == [f"[rank{r}]:rank {r}/{n} ok torch {torch2}" for r in range(n)]


def test_ddp_training_ends_with_equal_parameters(fgrun, torch2):
    cp = fgrun2(fgrun, "--standalone", "--nproc_per_node=2", PROBE, "ddp")
    assert cp.returncode == 0, cp.stderr
    lines = rank_lines(cp)
    assert len(lines) == 2 and len({l.split("params")[1] for l in lines}) == 1, lines


def test_distributed_checkpoint_save_then_load_on_4_ranks(fgrun, torch2, tmp_path):
    ck = tmp_path / "ck"
    cp = fgrun2(fgrun, "--standalone", "--nproc_per_node=4", PROBE, "dcp", str(ck))
    assert cp.returncode == 0, cp.stderr
    assert rank_lines(cp) == [f"[rank{r}]:rank {r} dcp ok" for r in range(4)]
    # One shard file per rank plus the metadata: each rank wrote its own part.
    assert sorted(os.listdir(ck)) == [".metadata"] + [f"__{r}_0.distcp" for r in range(4)]


def test_device_mesh_2x2_sums_over_each_dimension(fgrun, torch2):
    cp = fgrun2(fgrun, "--standalone", "--nproc_per_node=4", PROBE, "mesh")
    assert cp.returncode == 0, cp.stderr
    want = {0: (2, 1), 1: (4, 1), 2: (2, 5), 3: (4, 5)}
    assert rank_lines(cp) == [
        f'[rank{r}]:rank {r} mesh {{"dp": {dp:.1f}, "tp": {tp:.1f}}}'
        for r, (dp, tp) in want.items()]


def test_mpi_backend_works_on_one_rank(fgrun, torch2):
    """torch's mpi backend takes its world from MPI, not from the launcher: under fgrun (as
    under torchrun, see test_torch2_torchrun) each worker is an MPI singleton, so it works
    where the job is one rank; more ranks need an MPI launcher (mpirun)."""
    cp = fgrun2(fgrun, "--standalone", "--nproc_per_node=1", PROBE, "mpi")
    assert cp.returncode == 0, cp.stderr
    assert rank_lines(cp) == ["[rank0]:rank 0/1 mpi ok (launcher RANK 0, WORLD_SIZE 1)"]


def test_a_rank_failing_in_attempt_0_passes_in_attempt_1(fgrun, torch2):
    cp = fgrun2(fgrun, "--standalone", "--nproc_per_node=2", "--max_restarts=1", PROBE,
                "restart")
    assert cp.returncode == 0, cp.stderr
    assert "[rank1]:rank 1 attempt 0 failing" in cp.stdout
    assert rank_lines(cp, "[rank0]:rank 0 attempt") == ["[rank0]:rank 0 attempt 1 ok"]
    assert "[rank1]:rank 1 attempt 1 ok" in cp.stdout
    assert "restarting the worker group (restart 1 of 1)" in cp.stderr


def test_c10d_rendezvous_between_two_agents(fgrun, torch2):
    port = free_port()
    agents = [subprocess.Popen(
        [fgrun, "--nnodes=2", "--nproc_per_node=2", "--rdzv_backend=c10d",
         f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=torch2-c10d", PROBE, "collectives"],
        env=torch2_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)]
    outs = []
    try:
        outs = [a.communicate(timeout=TIMEOUT) for a in agents]
    finally:
        kill_all([a.pid for a in agents])
    assert [a.returncode for a in agents] == [0, 0], [o[1] for o in outs]
    lines = sorted(l for out, _ in outs for l in out.splitlines())
    assert lines == sorted(f"[node{r // 2} rank{r}]:rank {r}/4 ok torch {torch2}"
                           for r in range(4)), lines


def test_record_error_file_shows_in_the_summary(fgrun, torch2):
    cp = fgrun2(fgrun, "--standalone", "--nproc_per_node=2", PROBE, "record")
    assert cp.returncode == 1, cp.stderr
    summary = cp.stderr[cp.stderr.index("fgrun: error: job failed"):]
    assert "rank 1 (local_rank 1" in summary and "root cause" in summary, summary
    assert "error file" in summary, summary
    assert f"ValueError: boom from rank 1 under torch {torch2}" in summary, summary
    assert "Traceback (most recent call last)" in summary
    assert 'torch2_probe.py", line' in summary


def test_a_rank_killed_by_a_signal_is_named(fgrun, torch2):
    cp = fgrun2(fgrun, "--standalone", "--nproc_per_node=2", PROBE, "die", "SIGKILL", "torch")
    assert cp.returncode == 137, cp.stderr
    assert "rank 1 (local_rank 1, pid" in cp.stderr
    assert "killed by SIGKILL (signal 9)" in cp.stderr, cp.stderr


def test_sigterm_to_fgrun_reaches_the_workers_and_exits_143(fgrun, torch2, tmp_path):
    rc, err = sigterm_when_ready([fgrun, "--standalone", "--nproc_per_node=2", PROBE, "term",
                          str(tmp_path), "torch"], torch2_env(), tmp_path)
    assert rc == 143, err
    for r in range(2):  # each worker's own handler ran: the signal reached torch's process
        assert (tmp_path / f"term.{r}").read_text() == str(int(signal.SIGTERM)), r
