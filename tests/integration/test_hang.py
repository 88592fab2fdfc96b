"""Hang attribution: the library marks which operation each rank is in (the progress file
fgrun gives every worker); with --hang_timeout fgrun names the ranks that wait, where, and
the ranks that have not arrived, then goes on (--hang_action report) or ends the attempt
(kill). The hanging rank is tests/drivers/fault_worker with --fault hang: at iteration
--at it stops before entering the operation and sleeps until killed."""
import mmap
import os
import re
import signal
import sys
import time

import pytest

from test_faults import (SAN_ENV, assert_nothing_left, fault_time, fault_worker, fgrun_job,
                         finish, job_pids, start_job)

pytestmark = pytest.mark.fault

NOT_ARRIVED = r"rank 2 has not arrived \(last: {last}, left [\d.]+ s ago\)"


def where_line(err):
    lines = [l for l in err.splitlines() if l.startswith("fgrun:   where: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("op,culprit,waiting,last", [
    ("allreduce", r"is sleeping and has not arrived at allreduce #4 on world \(last: allreduce "
     r"#3 on world, left [\d.]+ s ago\); ranks 0,1,3 wait for it there",
     r"ranks 0,1,3 have been in allreduce #4 on world", "allreduce #3 on world"),
    ("barrier", r"is sleeping and has not arrived at barrier #4 on world \(last: barrier #3 on "
     r"world, left [\d.]+ s ago\); ranks 0,1,3 wait for it there",
     r"ranks 0,1,3 have been in barrier #4 on world", "barrier #3 on world"),
    # in the ring, rank 3 receives from rank 2; rank 0 may be a step further on
    ("p2p", r"is sleeping outside any operation \(last: batch #3 on world, left [\d.]+ s ago\); "
     r"rank 3 waits for a message from it in batch #4 on world",
     r"ranks? [\d,]+ ha(s|ve) been in batch #4 on world", "batch #3 on world"),
    ("store-barrier", r"is sleeping and has not arrived at store_barrier on fault-3 \(last: "
     r"store_barrier on fault-2, left [\d.]+ s ago\); ranks 0,1,3 wait for it there",
     r"ranks 0,1,3 have been in store_barrier on fault-3", "store_barrier on fault-2"),
])
def test_a_hang_is_reported_and_with_kill_ends_the_job(tmp_path, op, culprit, waiting, last):
    """Rank 2 of 4 never enters operation #4. Expected, 2 s after (FG_HANG_TIMEOUT here):
    one report whose first line names rank 2 (its pid, its state, where it was last) and the
    ranks waiting for it, then where every rank is; then --hang_action kill stops the job,
    after reading rank 2's stack: exit 124 soon after the timeout, nothing left. The
    library's timeout (60 s) is far. (2 s, not less: on a loaded machine a healthy operation
    may take a moment.)"""
    job = fgrun_job(tmp_path, 4, "--victim", "2", "--at", "3", "--fault", "hang",
                    "--iters", "1000", op, fgrun_args=["--hang_action=kill", "--term_grace=2"],
                    env={"FG_HANG_TIMEOUT": "2", "FG_TIMEOUT": "60"})
    took = job.ended - fault_time(tmp_path)
    workers, _ = job_pids(tmp_path)
    assert job.rc == 124, job
    reports = [l for l in job.err.splitlines() if l.startswith("fgrun: hang:")]
    assert len(reports) == 1, job
    assert re.match(rf"fgrun: hang: rank 2 \(pid {workers[2]}\) {culprit} for [\d.]+ s$",
                    reports[0]), reports[0]
    assert re.search(waiting + r" for [\d.]+ s", where_line(job.err)), job
    assert re.search(NOT_ARRIVED.format(last=last), where_line(job.err)), job
    assert f"fgrun:   stack of rank 2 (pid {workers[2]}):" in job.err, job
    assert "stopping attempt 0: hang (--hang_timeout 2 s, --hang_action kill)" in job.err
    assert f"rank 2 (local_rank 2, pid {workers[2]}) held the others up" in job.err, job
    assert 2 <= took < 6, f"fgrun exited {took:.2f}s after rank 2 stopped"
    assert_nothing_left(tmp_path)


def test_by_default_a_hang_is_reported_and_the_library_timeout_ends_it(tmp_path):
    """--hang_action report (the default): the report comes at --hang_timeout, the job goes
    on until the library's own timeout (FG_TIMEOUT=5) fails the waiting ranks. --log_level
    debug says how late after the timeout the report came."""
    job = fgrun_job(tmp_path, 3, "--victim", "1", "--at", "2", "--fault", "hang", "--iters",
                    "1000", "barrier", fgrun_args=["--hang_timeout=2", "--log_level=debug"],
                    env={"FG_TIMEOUT": "5"})
    took = job.ended - fault_time(tmp_path)
    workers, _ = job_pids(tmp_path)
    assert job.rc == 1, job
    assert re.search(rf"fgrun: hang: rank 1 \(pid {workers[1]}\) is sleeping and has not "
                     r"arrived at barrier #3 on world \(last: barrier #2 on world, left [\d.]+ s "
                     r"ago\); ranks 0,2 wait for it there for [\d.]+ s", job.err), job
    assert re.search(r"fgrun:   where: ranks 0,2 have been in barrier #3 on world for [\d.]+ s; "
                     r"rank 1 has not arrived \(last: barrier #2 on world, left", job.err), job
    # the library's timeout fails ranks 0 and 2; the summary blames the rank that held them up
    assert re.search(rf"fgrun: error: job failed: rank 1 \(local_rank 1, pid {workers[1]}\) held "
                     r"the others up: it never arrived at barrier #3 on world; it was sleeping",
                     job.err), job
    assert re.search(r"fgrun: what followed: ranks? [02,]+ failed", job.err), job
    assert re.search(r"rank 1 \(local_rank 1, pid \d+\): killed by SIGTERM .*<- root cause$",
                     job.err, re.M), job
    assert "stopping attempt" not in job.err, job
    assert took >= 5, f"the job ended {took:.2f}s after the hang: fgrun should not end it"
    late = re.search(r"hang reported ([\d.]+) ms after --hang_timeout passed", job.err)
    assert late and float(late.group(1)) < 2000, job  # generous: the check runs every 50 ms
    assert_nothing_left(tmp_path)


def test_a_rank_that_never_reaches_the_rendezvous_is_named(tmp_path):
    job = fgrun_job(tmp_path, 3, "--victim", "2", "--at", "-1", "--fault", "hang",
                    "allreduce", fgrun_args=["--hang_timeout=2", "--hang_action=kill"])
    assert job.rc == 124, job
    assert re.search(r"fgrun: hang: rank 2 \(pid \d+\) is sleeping and has not arrived at init "
                     r"on world \(no operation yet\); ranks 0,1 wait for it there", job.err), job
    assert re.search(r"fgrun:   where: ranks 0,1 have been in init on world for [\d.]+ s; "
                     r"rank 2 has not arrived \(no operation yet\)", job.err), job
    assert_nothing_left(tmp_path)


def test_a_killed_hang_restarts_and_the_next_attempt_starts_clean(tmp_path):
    """With --max_restarts=1 a hang in attempt 0 is a failed attempt: the group restarts,
    attempt 1 (no hang) succeeds and is not reported - though its ranks take 3 s to reach
    the rendezvous, longer than the timeout, while attempt 0's ranks were last seen waiting:
    the slots are cleared between attempts."""
    job = fgrun_job(tmp_path, 3, "--victim", "0", "--at", "2", "--fault", "hang", "--attempt",
                    "0", "--iters", "5", "--start-ms", "3000", "allreduce",
                    fgrun_args=["--hang_timeout=2", "--hang_action=kill", "--max_restarts=1"])
    assert job.rc == 0, job
    assert job.err.count("fgrun: hang:") == 1, job
    assert "attempt 0 failed: hang (--hang_action kill); restarting" in job.err, job


def test_ranks_busy_outside_operations_are_not_a_hang(tmp_path):
    """Every rank spends 2.5 s between operations (computing): nobody waits in one, so a
    1 s --hang_timeout reports nothing."""
    start = time.monotonic()
    job = fgrun_job(tmp_path, 2, "--iters", "2", "--pause-ms", "2500", "barrier",
                    fgrun_args=["--hang_timeout=1", "--hang_action=kill"])
    assert job.rc == 0 and "hang" not in job.err, job
    assert time.monotonic() - start >= 5


@pytest.mark.parametrize("args,error", [
    (["--hang_action=kill"], "--hang_action kill needs --hang_timeout SECONDS"),
    (["--hang_timeout=soon"], "--hang_timeout: expected a number of seconds (0: off), got 'soon'"),
    (["--hang_action=panic", "--hang_timeout=1"], "--hang_action: expected report or kill"),
])
def test_bad_hang_options_are_usage_errors(tmp_path, args, error):
    job = fgrun_job(tmp_path, 1, "barrier", fgrun_args=args)
    assert job.rc == 2 and f"fgrun: error: {error}" in job.err, job


# The progress file's layout (src/common/progress_slot.h), as fgrun's Python hook writes it.
HOOK = os.path.join(os.path.dirname(__file__), "..", "..", "src", "launcher", "pyhook")
sys.path.insert(0, HOOK)
import _fgrun_hook as layout  # noqa: E402
sys.path.remove(HOOK)


@pytest.mark.mpi
def test_the_mpi_backend_marks_its_operations_too(tmp_path):
    """The marks live in the generic layer, so every backend writes them. fgrun cannot run
    the mpi backend, so this test plays fgrun: it makes the progress file, runs 3 ranks under
    mpirun with rank 2 stopping before allreduce #4, and reads the slots."""
    path = tmp_path / "progress"
    with open(path, "wb") as f:
        f.write(layout.HEADER.pack(layout.MAGIC, layout.VERSION, layout.SLOT_SIZE, 3)
                .ljust(4 * layout.SLOT_SIZE, b"\0"))
    argv = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-x", "FG_PROGRESS_FILE",
            "-x", "FG_TIMEOUT", "-x", "ASAN_OPTIONS", "-x", "LSAN_OPTIONS", "-np", "3",
            fault_worker(), "--backend", "mpi", "--dir", str(tmp_path), "--victim", "2",
            "--at", "3", "--fault", "hang", "--iters", "1000", "allreduce"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "FG_"))}
    env.update(SAN_ENV, FG_PROGRESS_FILE=str(path), FG_TIMEOUT="60")
    p = start_job(argv, env)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "fault_at").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        with open(path, "rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            slots = [layout.SLOT.unpack_from(data, layout.SLOT_SIZE * (r + 1)) for r in range(3)]
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        finish(p)
    # gen state seq t_ns pid rank count root peer flags dtype op group
    text = lambda b: b.rstrip(b"\0").decode()
    where = {s[5]: (s[1], text(s[11]), s[2], text(s[12]), s[6], text(s[10])) for s in slots}
    assert where == {0: (1, "allreduce", 4, "world", 1024, "float32"),
                     1: (1, "allreduce", 4, "world", 1024, "float32"),
                     2: (2, "allreduce", 3, "world", 1024, "float32")}, where
    assert_nothing_left(tmp_path, timeout=5)
