"""Debian's torch 1.13 scripts run unchanged under fgrun, against the agent's store."""
import pytest

from launcher_util import fgrun_env, run, worker

pytestmark = pytest.mark.torch


def test_a_gloo_script_runs_unchanged_on_the_agents_store(fgrun):
    """Item 2: init_process_group from env, all_reduce, broadcast_object_list, new_group,
    barrier, destroy_process_group; the script reads its own keys back from the agent's
    store, which fails if the workers rendezvoused anywhere else."""
    cp = run(fgrun, "--standalone", "--nproc_per_node=4", worker("torch_ddp.py"),
             env=fgrun_env())  # PYTHON_EXEC=/usr/bin/python3
    assert cp.returncode == 0, cp.stderr.decode()
    assert sorted(cp.stdout.decode().splitlines()) == [f"[rank{r}]:rank {r} ok"
                                                       for r in range(4)]


def test_a_static_rendezvous_on_master_port(fgrun):
    from conftest import free_port
    port = free_port()
    cp = run(fgrun, "--nproc_per_node=4", f"--master_port={port}", worker("torch_ddp.py"))
    assert cp.returncode == 0, cp.stderr.decode()


def test_a_restart_erases_the_old_attempts_keys(fgrun):
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", "--max_restarts=1",
             worker("torch_restart.py"))
    assert cp.returncode == 0, cp.stderr.decode()
    out = cp.stdout.decode()
    assert "[rank0]:rank 0: attempt 0 keys erased" in out
    assert "[rank1]:rank 1: attempt 0 keys erased" in out
