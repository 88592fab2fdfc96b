"""The rank a hang report names as holding the others up, for C ranks on libfg (gloo): its
pid, its /proc state (stopped, busy, uninterruptible sleep, sleeping), a mismatch at the same
operation number, the peer a blocked receive waits for; its stack, read without resuming a
stopped rank; each report within --hang_timeout + 2 s of the fault. The ranks are
tests/drivers/fault_worker (see test_faults.py)."""
import os
import re
import signal
import time

import pytest

from conftest import bin_path
from hang_util import REPORT_SLACK, TimedJob, kill_jobs_left, proc_state  # noqa: F401 (autouse fixture)
from launcher_util import fgrun_env, wait_for_files
from test_faults import (SAN_ENV, assert_nothing_left, fault_time, fault_worker, fgrun_job,
                         job_pids)

pytestmark = pytest.mark.fault

TIMEOUT = 2  # --hang_timeout: a loaded machine may take a moment over a healthy operation


def timed_job(d, nproc, *args, fgrun_args=(), env=None):
    argv = [bin_path("fgrun"), "--standalone", f"--nproc_per_node={nproc}",
            f"--hang_timeout={TIMEOUT}", *fgrun_args, "--no_python", fault_worker(),
            "--dir", str(d), *args]
    # Stacks get 12 s, not 5 (within the 15 s the tests wait for them): an ASan build on a
    # loaded machine once read a gloo rank's for over 5 s.
    return TimedJob(argv, fgrun_env(**{"FG_TIMEOUT": "60", "FG_HANG_STACKS_TIMEOUT": "12",
                                       **(env or {})}))


def fault_job(d, victim, fault, op, iters="1000", nproc=4):
    """Rank victim breaks (fault) at iteration 3; --hang_action kill ends the job. Returns
    the job and the workers' pids once the fault happened."""
    job = timed_job(d, nproc, "--victim", str(victim), "--at", "3", "--fault", fault, "--iters",
                    iters, op, fgrun_args=["--hang_action=kill", "--term_grace=1"])
    wait_for_files([d / "fault_at"])
    return job, job_pids(d)[0]


def culprit_line(job, rank, pid, rest, fault_at):
    """Waits for the report's first line; it must name rank (pid) first, then rest (a regex),
    within the timeout + REPORT_SLACK of fault_at (a wall-clock time). (A report before the
    fault is another hang: under make asan, MPI_Init may take longer than the timeout.)"""
    t, line, _ = job.wait_line(r"^fgrun: hang: ", after=fault_at)
    assert re.match(rf"fgrun: hang: rank {rank} \(pid {pid}\) {rest}", line), line
    assert t - fault_at <= TIMEOUT + REPORT_SLACK, f"report {t - fault_at:.2f}s after the fault"
    return line


def stack_text(err, rank):
    """Rank's stack as the report printed it (the lines after its header)."""
    m = re.search(rf"^fgrun:   stack of rank {rank} \(pid \d+\):\n((?:fgrun:     .*\n?)*)",
                  err, re.M)
    assert m, err
    return m.group(1)


@pytest.mark.parametrize("backend", ["gloo", pytest.param("mpi", marks=pytest.mark.mpi)])
def test_a_stopped_rank_inside_the_allreduce_is_named_and_left_stopped(tmp_path, backend):
    """Rank 2 of 4 gets SIGSTOP while the ranks loop over allreduces (so it stops inside one,
    or just between two). The report names rank 2 as stopped (SIGSTOP), the others waiting
    for it; its native stack, read with ptrace, shows where in the allreduce it stopped; and
    it is still stopped afterwards: reading it did not resume it. With mpi, fgrun's PMIx
    server makes the 4 ranks one MPI world (Open MPI's leaks suppressed under make asan)."""
    job = timed_job(tmp_path, 4, "--backend", backend, "--iters", "0", "allreduce",
                    fgrun_args=["--term_grace=1"], env=SAN_ENV)
    wait_for_files([tmp_path / f"ready.{r}" for r in range(4)])
    workers, _ = job_pids(tmp_path)
    time.sleep(0.2)
    stopped_at = time.time()
    os.kill(workers[2], signal.SIGSTOP)
    # all wait for rank 2: in its allreduce, or (the ring let them through it) the next one
    line = culprit_line(job, 2, workers[2], r"is stopped \(SIGSTOP\) (in|and has not arrived "
                        r"at) allreduce #\d+ on world.*; ranks? [0-3,]+ waits? (for it there|"
                        r"further on, in allreduce #\d+ on world) for [\d.]+ s$", stopped_at)
    named = re.findall(r"ranks? ([0-3,]+) waits?", line)
    assert sorted(",".join(named).split(",")) == ["0", "1", "3"], line
    job.wait_line(r"^fgrun:   stack of rank 2 ", timeout=15)
    time.sleep(0.5)  # the stack is one write; let the reader take all of it
    assert proc_state(workers[2]) == "T", "reading the stack resumed the stopped rank"
    job.stop()
    job.finish()
    stack = stack_text(job.err, 2)
    assert "Python" not in stack, stack  # a C rank: no traceback asked for
    assert_nothing_left(tmp_path, timeout=5)
    if backend == "mpi" and "fgrun-stack gave up: still reading after" in stack:
        # an Open MPI rank's many threads and libraries, unwound by an ASan build on a
        # loaded machine, once took over the bound (0.2 s unloaded); the bound held
        return
    assert "native stacks (libdw" in stack, stack
    assert re.search(r"fg_allreduce \(collectives\.c:\d+\)|main \(fault_worker\.c:\d+\)", stack), stack


def test_a_rank_busy_before_the_barrier_is_named_busy(tmp_path):
    """Rank 2 spins on the CPU instead of entering barrier #4: the report calls it busy, with
    the CPU time it burnt while the others slept, and its stack shows the spinning code."""
    job, workers = fault_job(tmp_path, 2, "busy", "barrier")
    culprit_line(job, 2, workers[2], r"is busy \((running|sleeping), [\d.]+ s CPU in [\d.]+ s(, [\d.]+ s more waiting for a "
                 r"CPU)?\) and "
                 r"has not arrived at barrier #4 on world \(last: barrier #3 on world, left [\d.]+ "
                 r"s ago\); ranks 0,1,3 wait for it there", fault_time(tmp_path))
    assert job.finish() == 124, job.err
    assert re.search(r"fgrun:   rank 0 \(pid \d+\): sleeping, [\d.]+ s CPU", job.err), job.err
    assert "fault_worker.c:" in stack_text(job.err, 2)
    assert_nothing_left(tmp_path)


def test_a_rank_in_uninterruptible_sleep_is_named_with_its_kernel_stack(tmp_path):
    """D state, simulated: rank 2 vforks a child that neither execs nor exits, so the kernel
    holds rank 2 in uninterruptible sleep. It cannot be stopped to unwind; the report says
    so and shows the kernel's stack of the waiting thread instead (root may read it)."""
    job, workers = fault_job(tmp_path, 2, "dstate", "allreduce")
    culprit_line(job, 2, workers[2], r"is in uninterruptible sleep \(D\) and has not arrived at "
                 r"allreduce #4 on world", fault_time(tmp_path))
    assert job.finish() == 124, job.err
    stack = stack_text(job.err, 2)
    assert "main: in uninterruptible sleep (D), cannot be stopped; in the kernel:" in stack, stack
    if os.geteuid() == 0:
        assert re.search(r"#0 +\S*vfork\S* \(kernel\)|#\d+ +\S*vfork\S* \(kernel\)", stack), stack
    assert_nothing_left(tmp_path)


def test_a_different_operation_at_the_same_number_is_a_mismatch(tmp_path):
    """Rank 2 calls a barrier where the others call allreduce #4: gloo waits forever. The
    report names the mismatch at that number and rank 2 as the odd one."""
    job, workers = fault_job(tmp_path, 2, "barrier", "allreduce")
    culprit_line(job, 2, workers[2], r"called barrier #4 on world, ranks 0,1,3 allreduce: a "
                 r"mismatch at the same number; all wait there for [\d.]+ s$", fault_time(tmp_path))
    assert job.finish() == 124, job.err
    assert (f"rank 2 (local_rank 2, pid {workers[2]}) called barrier #4 on world where ranks "
            "0,1,3 called allreduce") in job.err, job.err
    assert_nothing_left(tmp_path)


def test_mismatched_counts_at_the_same_number_are_named_when_gloo_aborts(tmp_path):
    """Rank 2 passes half the count to allreduce #4. gloo does not hang on that: a receiver
    aborts on the size (which rank depends on the ring), and the others' calls fail with
    it, or they had not arrived yet (which of them depends on the scheduler). Whoever aborts,
    fgrun names the mismatch its slots show and blames rank 2 in the summary."""
    job = fgrun_job(tmp_path, 4, "--victim", "2", "--at", "3", "--fault", "count", "--iters",
                    "1000", "allreduce", fgrun_args=["--hang_timeout=2"])
    workers, _ = job_pids(tmp_path)
    assert job.rc != 0, job
    m = re.search(rf"^fgrun: before rank \d failed: rank 2 \(pid {workers[2]}\) called allreduce "
                  r"#4 on world with count 512, ranks? ([013,]+) with count 1024: a mismatch at "
                  r"the same number$", job.err, re.M)
    assert m, job
    assert (f"fgrun: error: job failed: rank 2 (local_rank 2, pid {workers[2]}) called allreduce "
            f"#4 on world with count 512 where {'rank' if len(m.group(1)) == 1 else 'ranks'} "
            f"{m.group(1)} passed count 1024") in job.err, job
    assert_nothing_left(tmp_path)


def test_a_blocked_receive_names_the_rank_it_waits_for(tmp_path):
    """Even ranks receive from the next rank. Rank 1 stops sending at iteration 3 and sleeps
    outside any operation: rank 0's receive waits for it; ranks 2 and 3 finish."""
    job, workers = fault_job(tmp_path, 1, "hang", "pingpong", iters="200")
    culprit_line(job, 1, workers[1], r"is sleeping outside any operation \(last: send #3 on "
                 r"world, left [\d.]+ s ago\); rank 0 waits for a message from it in recv #4 on "
                 r"world for [\d.]+ s$", fault_time(tmp_path))
    assert job.finish() == 124, job.err
    assert re.search(r"fgrun:   rank 0 \(pid \d+\): .*in recv #4 on world \(count 1 float32, "
                     r"from rank 1\)", job.err), job.err
    assert f"rank 1 (local_rank 1, pid {workers[1]}) held the others up: it never sent what " \
           "rank 0 waited for in recv #4 on world" in job.err, job.err
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize("stacks,ranks", [("all", [0, 1, 2]), ("none", [])])
def test_hang_stacks_picks_whose_stacks_are_read(tmp_path, stacks, ranks):
    job = fgrun_job(tmp_path, 3, "--victim", "1", "--at", "2", "--fault", "hang", "--iters",
                    "1000", "barrier", fgrun_args=["--hang_timeout=2", "--hang_action=kill",
                                                   f"--hang_stacks={stacks}"])
    assert job.rc == 124, job
    assert re.findall(r"^fgrun:   stack of rank (\d)", job.err, re.M) == [str(r) for r in ranks], job


def test_a_bad_hang_stacks_value_is_a_usage_error(tmp_path):
    job = fgrun_job(tmp_path, 1, "barrier", fgrun_args=["--hang_stacks=some"])
    assert job.rc == 2, job
    assert "fgrun: error: --hang_stacks: expected none, culprit or all, got 'some'" in job.err, job


def test_fgrun_stack_by_hand(tmp_path):
    """fgrun-stack is a tool too: PID in, native frames out; bad arguments exit 2; a process
    that is gone exits 1 with a line that says so."""
    import subprocess
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.2)
        cp = subprocess.run([bin_path("fgrun-stack"), str(sleeper.pid)], capture_output=True,
                            text=True, timeout=30)
        assert cp.returncode == 0, cp
        assert re.search(r"thread \d+ \(sleep\), main:\n +#0 +\S*(nanosleep|sleep)", cp.stdout), cp.stdout
        assert proc_state(sleeper.pid) == "S"
    finally:
        sleeper.kill()
        sleeper.wait()
    cp = subprocess.run([bin_path("fgrun-stack"), "nope"], capture_output=True, text=True)
    assert cp.returncode == 2 and "PID: expected a process id, got 'nope'" in cp.stderr, cp
    cp = subprocess.run([bin_path("fgrun-stack"), str(sleeper.pid)], capture_output=True,
                        text=True)
    assert cp.returncode == 1 and "cannot list its threads" in cp.stdout, cp


def test_the_stack_reading_bound_comes_from_fg_hang_stacks_timeout(tmp_path):
    """FG_HANG_STACKS_TIMEOUT bounds the stack reading: at a millisecond fgrun-stack is cut
    off, and the report says so with the bound."""
    job = timed_job(tmp_path, 2, "--iters", "0", "allreduce", fgrun_args=["--term_grace=1"],
                    env={**SAN_ENV, "FG_HANG_STACKS_TIMEOUT": "0.001"})
    wait_for_files([tmp_path / f"ready.{r}" for r in range(2)])
    workers, _ = job_pids(tmp_path)
    time.sleep(0.2)
    os.kill(workers[1], signal.SIGSTOP)
    job.wait_line(r"^fgrun:   stack of rank 1 ", timeout=15)
    time.sleep(0.5)
    job.stop()
    job.finish()
    assert "fgrun-stack gave up: still reading after 0 s" in stack_text(job.err, 1), job.err
