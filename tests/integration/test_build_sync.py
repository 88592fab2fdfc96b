"""build_sync: one process builds a target while the others wait, then all continue together.

Global and --local mode at 4 ranks under fgrun, --local on two nodes of two (each rank given
the environment torchrun gives it on its node), a subset under mpirun, the single-process
file-lock mode, and every fault (each must fail its own check, by its text)."""
import os
import signal
import subprocess

import pytest

from conftest import bin_path, free_port
from scenario_util import (TIMEOUT, assert_check_failed, assert_passed, fgrun_job,
                           listed_faults, mpirun_job, process_job)

GROUP_CHECKS = ["exactly one builder per {unit}: {builders} builder(s) for {builders} {units}",
                "the target exists and holds the builder's text ('built by rank 0')",
                "waiters were held: the earliest (rank ",
                "all continued together: exit times spread "]
LOCK_CHECKS = ["exactly one of two processes built the target (1 built)",
               "the target exists", "the lock file was removed"]


def assert_group_passed(rc, out, nproc, local=False, nodes=1, backend="gloo"):
    assert_passed(rc, out)
    unit, units = ("node", "node(s)") if local else ("group", "group")
    for check in GROUP_CHECKS:
        assert "[PASS] " + check.format(unit=unit, units=units, builders=nodes) in out, out
    assert f"(4 checks on rank 0, {nproc} ranks, {backend}," in out, out


def assert_lock_passed(rc, out):
    assert_passed(rc, out)
    assert "single process: file-lock mode on " in out, out
    for check in LOCK_CHECKS:
        assert "[PASS] " + check in out, out


@pytest.mark.smoke
@pytest.mark.parametrize("local", [False, True], ids=["global", "local"])
def test_four_ranks_under_fgrun(local):
    rc, out = fgrun_job(4, "build_sync", *(["--local"] if local else []))
    assert_group_passed(rc, out, 4, local)
    assert f"{'local' if local else 'global'} mode: 1 node(s)" in out


def two_nodes_of_two(*args, timeout=TIMEOUT):
    """Four ranks with the environment torchrun gives them on two nodes of two: the same
    store, LOCAL_RANK 0-1 and LOCAL_WORLD_SIZE 2 on each 'node'. Returns each rank's
    (exit status, output)."""
    port = free_port()
    procs = []
    for rank in range(4):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="4", LOCAL_RANK=str(rank % 2),
                   LOCAL_WORLD_SIZE="2", GROUP_RANK=str(rank // 2), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port))
        procs.append(subprocess.Popen([bin_path("fgscenario"), *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      start_new_session=True))
    results = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=timeout)
            results.append((p.returncode, out.decode(errors="replace")))
    except subprocess.TimeoutExpired:
        pytest.fail(f"build_sync on two nodes hung for {timeout}s")
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    return results


def test_local_mode_on_two_nodes_has_a_builder_per_node():
    """Both nodes' builders write into the one output directory (a shared filesystem): each
    node builds its own target, and every rank finds its own node's builder's text."""
    results = two_nodes_of_two("build_sync", "--local")
    for rank, (rc, out) in enumerate(results):
        assert rc == 0 and "[FAIL]" not in out, f"rank {rank}: exit {rc}:\n{out}"
    rc, out = results[0]
    assert_group_passed(rc, out, 4, local=True, nodes=2)
    assert "local mode: 2 node(s), builder is rank 0 of each node" in out


@pytest.mark.mpi
@pytest.mark.parametrize("backend,local", [("mpi", False), ("mpi", True), ("gloo", False)])
def test_four_ranks_under_mpirun(backend, local):
    rc, out = mpirun_job(4, "--backend", backend, "build_sync", *(["--local"] if local else []))
    assert_group_passed(rc, out, 4, local, backend=backend)


def test_one_process_uses_the_file_lock():
    rc, out = process_job("build_sync")
    assert_lock_passed(rc, out)


def test_one_rank_under_fgrun_uses_the_file_lock():
    rc, out = fgrun_job(1, "build_sync")
    assert_lock_passed(rc, out)


# --- faults ---------------------------------------------------------------------------------

# fault -> (ranks, the check that must fail)
FAULTS = {
    "two-builders": (2, "exactly one builder per group: 2 builder(s) for 1 group (rank mismatch)"),
    "no-wait": (2, "waiters were held: the earliest (rank 1) was let through 0.0"),
    "straggler": (2, "all continued together: exit times spread "),
    "rebuild": (1, "exactly one of two processes built the target (2 built)"),
}


def test_every_fault_has_a_test():
    assert sorted(listed_faults("build_sync")) == sorted(FAULTS)


@pytest.mark.fault
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_fails_its_check(fault):
    nproc, check = FAULTS[fault]
    rc, out = fgrun_job(nproc, "--fault", fault, "build_sync")
    assert_check_failed(rc, out, check)


@pytest.mark.fault
def test_local_fault_on_two_nodes():
    """two-builders in local mode: each node's rank 1 builds too."""
    results = two_nodes_of_two("--fault", "two-builders", "build_sync", "--local")
    assert all(rc == 1 for rc, _ in results), results
    assert_check_failed(*results[0], "exactly one builder per node: 4 builder(s) for 2 node(s)")


def test_bad_option_is_a_usage_error():
    rc, out = fgrun_job(2, "build_sync", "--global")
    assert rc == 2, f"exit {rc}:\n{out}"
    said = [l for l in out.splitlines()
            if "build_sync: error: unknown option '--global'" in l and "|" not in l]
    assert len(said) == 1, out
