"""Failures, signals, restarts and teardown: the first failing worker decides, the others
are stopped, nothing of the job survives fgrun, however fgrun ends."""
import os
import signal
import time

import pytest

from launcher_util import (alive, fgrun_env, kill_all, processes_in_groups, read_pids, run,
                           start, wait_for_files, wait_until_gone, worker, TIMEOUT)


def job_pids(tmp_path, n):
    workers = read_pids([tmp_path / f"worker.{r}" for r in range(n)])
    children = read_pids([tmp_path / f"child.{r}" for r in range(n)])
    return workers, children


@pytest.mark.fault
def test_first_failure_stops_the_job_fast_and_leaves_nothing(fgrun, tmp_path):
    """Item 3: rank 2 exits 3 after 0.2 s, the others sleep 30 s."""
    env = fgrun_env(FG_TEST_DIR=tmp_path, FAIL_RANK=2, FAIL_AFTER=0.2, FAIL_CODE=3)
    p = start(fgrun, "--standalone", "--nproc_per_node=4", worker("sleep_with_child.sh"),
              env=env)
    try:
        wait_for_files([tmp_path / f"{w}.{r}" for r in range(4) for w in ("child", "worker")])
        workers, children = job_pids(tmp_path, 4)
        in_groups = processes_in_groups(set(workers))
        assert len(in_groups) >= 8, "each worker and its child should be running"
        out, err = p.communicate(timeout=TIMEOUT)
        exited_at = time.time()
    finally:
        p.kill()
    err = err.decode()
    failed_at = float(open(tmp_path / "failed_at").read())
    assert p.returncode == 3, err
    assert exited_at - failed_at < 1.0, f"fgrun took {exited_at - failed_at:.2f}s to exit"
    assert "rank 2 (local_rank 2, pid %d) exited with code 3" % workers[2] in err, err
    assert "root cause" in err
    assert "  | rank 2 giving up" in err  # the root cause's stderr tail, in the summary
    for r in (0, 1, 3):
        assert f"rank {r} (local_rank {r}, pid {workers[r]}): killed by SIGTERM" in err, err
    left = wait_until_gone(workers + children + in_groups, timeout=0.5)
    assert left == [], f"processes left behind: {left}"


@pytest.mark.fault
def test_sigkill_of_fgrun_takes_workers_and_their_children_down(fgrun, tmp_path):
    """Item 4: kill -9 fgrun while 4 workers, each with a child, sleep."""
    p = start(fgrun, "--standalone", "--nproc_per_node=4", worker("sleep_with_child.sh"),
              env=fgrun_env(FG_TEST_DIR=tmp_path))
    workers = []
    try:
        wait_for_files([tmp_path / f"{w}.{r}" for r in range(4) for w in ("child", "worker")])
        workers, children = job_pids(tmp_path, 4)
        everything = set(processes_in_groups(set(workers))) | set(workers) | set(children)
        assert len(everything) >= 8
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=TIMEOUT)
        time.sleep(1.0)
        left = [pid for pid in everything if alive(pid)]
        left += processes_in_groups(set(workers))
        assert left == [], f"alive 1 s after fgrun was killed: {sorted(set(left))}"
    finally:
        p.kill()
        kill_all(processes_in_groups(set(workers)))


def test_restarts_rerun_the_whole_group(fgrun, tmp_path):
    """Item 5: --max_restarts=2, rank 1 fails in attempts 0 and 1, succeeds in 2."""
    cp = run(fgrun, "--standalone", "--nproc_per_node=3", "--max_restarts=2",
             worker("restart.sh"), env=fgrun_env(FG_TEST_DIR=tmp_path))
    assert cp.returncode == 0, cp.stderr.decode()
    for r in range(3):
        assert open(tmp_path / f"attempts.{r}").read().split() == ["0", "1", "2"], r
    err = cp.stderr.decode()
    assert "restart 1 of 2" in err and "restart 2 of 2" in err


def test_restarts_run_out(fgrun, tmp_path):
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", "--max_restarts=1",
             worker("restart.sh"), env=fgrun_env(FG_TEST_DIR=tmp_path))
    assert cp.returncode == 9, cp.stderr.decode()
    assert open(tmp_path / "attempts.0").read().split() == ["0", "1"]
    assert "rank 1 (local_rank 1, pid" in cp.stderr.decode()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_reaches_every_worker_and_sets_the_exit_status(fgrun, tmp_path, sig):
    """Item 6 (SIGINT, and the other default signals)."""
    p = start(fgrun, "--standalone", "--nproc_per_node=4", "--max_restarts=3",
              worker("trap_signals.sh"), env=fgrun_env(FG_TEST_DIR=tmp_path))
    try:
        wait_for_files([tmp_path / f"ready.{r}" for r in range(4)])
        p.send_signal(sig)
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        p.kill()
    name = signal.Signals(sig).name[3:]
    for r in range(4):
        assert open(tmp_path / f"got.{r}").read().strip() == name, r
    assert p.returncode == 128 + sig, err.decode()
    assert f"stopped by SIG{name}" in err.decode()


def test_signals_to_handle_picks_the_signals(fgrun, tmp_path):
    p = start(fgrun, "--standalone", "--nproc_per_node=2", "--signals_to_handle=SIGUSR1",
              worker("trap_signals.sh"), env=fgrun_env(FG_TEST_DIR=tmp_path))
    try:
        wait_for_files([tmp_path / f"ready.{r}" for r in range(2)])
        p.send_signal(signal.SIGUSR1)
        p.communicate(timeout=TIMEOUT)
    finally:
        p.kill()
    assert p.returncode == 128 + signal.SIGUSR1
    assert open(tmp_path / "got.1").read().strip() == "USR1"


@pytest.mark.fault
def test_a_worker_ignoring_sigterm_gets_sigkill_after_the_grace_period(fgrun, tmp_path):
    p = start(fgrun, "--standalone", "--nproc_per_node=3", "--term_grace=1.5",
              worker("ignore_term.sh"), env=fgrun_env(FG_TEST_DIR=tmp_path))
    try:
        out, err = p.communicate(timeout=TIMEOUT)
        exited_at = time.time()
    finally:
        p.kill()
    err = err.decode()
    waited = exited_at - float(open(tmp_path / "failed_at").read())
    assert p.returncode == 1, err
    assert 1.5 <= waited < 30, f"SIGKILL came {waited:.2f}s after the failure"
    assert "killed by SIGKILL" in err and "sending SIGKILL" in err, err
    workers = read_pids([tmp_path / f"worker.{r}" for r in range(3)])
    assert wait_until_gone(workers, 1) == []


@pytest.mark.fault
def test_death_by_signal_is_reported_as_128_plus_signal(fgrun):
    cp = run(fgrun, "--standalone", "--nproc_per_node=3", worker("segv.sh"))
    assert cp.returncode == 139, cp.stderr.decode()
    assert "rank 1 (local_rank 1, pid" in cp.stderr.decode()
    assert "killed by SIGSEGV" in cp.stderr.decode()


@pytest.mark.torch
@pytest.mark.fault
def test_the_summary_shows_the_root_causes_error_file(fgrun):
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", "--local_ranks_filter=0",
             worker("torch_record.py"))
    err = cp.stderr.decode()
    assert cp.returncode == 1, err
    summary = err[err.index("fgrun: error: job failed"):]
    assert "rank 1 (local_rank 1" in summary
    assert "error file" in summary, summary
    assert "ValueError: boom from rank 1 of the record test" in summary
    assert "Traceback (most recent call last)" in summary
    assert 'torch_record.py", line' in summary


def test_normal_exit_leaves_no_grandchildren(fgrun, tmp_path):
    """A worker that succeeds but leaves a child behind: fgrun kills the group at the end."""
    script = tmp_path / "daemonish.sh"
    script.write_text("#!/bin/sh\nsleep 100 &\necho $! > \"$FG_TEST_DIR/child.$RANK\"\n"
                      "exec >/dev/null 2>&1\nexit 0\n")
    script.chmod(0o755)
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", str(script),
             env=fgrun_env(FG_TEST_DIR=tmp_path))
    assert cp.returncode == 0, cp.stderr.decode()
    children = read_pids([tmp_path / "child.0", tmp_path / "child.1"])
    assert wait_until_gone(children, 1) == []


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
                comm = open(f"/proc/{entry}/comm").read().strip()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append((int(entry), comm))
    return found


def watchdog_of(fgrun_pid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, comm in children_of(fgrun_pid):
            if comm == "fgrun-watchdog":
                return pid
        time.sleep(0.02)
    raise AssertionError("fgrun has no watchdog")


@pytest.mark.fault
def test_a_lost_watchdog_is_replaced_and_still_cleans_up(fgrun, tmp_path):
    p = start(fgrun, "--standalone", "--nproc_per_node=2", worker("sleep_with_child.sh"),
              env=fgrun_env(FG_TEST_DIR=tmp_path))
    workers = []
    try:
        wait_for_files([tmp_path / f"{w}.{r}" for r in range(2) for w in ("child", "worker")])
        workers, children = job_pids(tmp_path, 2)
        first = watchdog_of(p.pid)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (second := watchdog_of(p.pid)) == first and time.monotonic() < deadline:
            time.sleep(0.02)
        assert second != first
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=TIMEOUT)
        time.sleep(1.0)
        assert processes_in_groups(set(workers)) == []
        assert [c for c in children if alive(c)] == []
    finally:
        p.kill()
        kill_all(processes_in_groups(set(workers)))
    assert b"watchdog exited unexpectedly" in p.stderr.read()


@pytest.mark.fault
def test_a_stopped_worker_is_continued_to_act_on_sigterm(fgrun, tmp_path):
    """A SIGSTOPped rank acts on SIGTERM only once it runs again: fgrun continues it, so the
    job ends on SIGTERM at once, not on SIGKILL after --term_grace."""
    p = start(fgrun, "--standalone", "--nproc_per_node=2", "--term_grace=60",
              worker("trap_signals.sh"), env=fgrun_env(FG_TEST_DIR=tmp_path))
    try:
        wait_for_files([tmp_path / f"ready.{r}" for r in range(2)])
        stopped = read_pids([tmp_path / "ready.1"])[0]
        os.kill(stopped, signal.SIGSTOP)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=TIMEOUT)
        took = time.monotonic() - t0
    finally:
        p.kill()
    assert p.returncode == 128 + signal.SIGTERM, err.decode()
    assert open(tmp_path / "got.1").read().strip() == "TERM"
    assert took < 30, f"the stopped rank held the job {took:.1f} s (SIGKILL after the grace)"
    assert "sending SIGKILL" not in err.decode(), err.decode()
