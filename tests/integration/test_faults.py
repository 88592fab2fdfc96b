"""Fault injection: a rank killed, leaving early, ignoring SIGTERM; fgrun itself killed;
a log or checkpoint directory that cannot be written. Each case states what must happen
and checks it, including that no process of the job (workers and their children) is left
and that no log line or checkpoint is lost or corrupted.

The ranks are tests/drivers/fault_worker (C, on libfg): each runs one operation in a loop,
writes its pid (and its child's) into a directory, prints one numbered line per iteration,
and the victim breaks at iteration --at. Every job runs in a session of its own with a
deadline that kills the session, so a hang fails the test instead of stalling it."""
import glob
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import BUILD, bin_path
from launcher_util import (fgrun_env, kill_all, processes_in_groups, wait_for_files,
                           wait_until_gone)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEADLINE = 60  # seconds any job may take before it counts as hung
SAN_ENV = {  # Open MPI's own leaks, under `make asan` (see tests/lsan.supp)
    "ASAN_OPTIONS": "fast_unwind_on_malloc=0",
    "LSAN_OPTIONS": f"suppressions={ROOT}/tests/lsan.supp:print_suppressions=0",
}

pytestmark = pytest.mark.fault


def fault_worker():
    path = os.path.abspath(os.path.join(BUILD, "tests", "drivers", "fault_worker"))
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: run make first")
    return path


class Job:
    def __init__(self, p, out, err, ended):
        self.rc, self.out, self.err, self.ended = p.returncode, out, err, ended

    def __repr__(self):
        return f"exit {self.rc}\n--- stdout\n{self.out[-3000:]}\n--- stderr\n{self.err[-6000:]}"


def start_job(argv, env):
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", start_new_session=True)


def finish(p, timeout=DEADLINE):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"still running after {timeout}s (killed)\n{out[-2000:]}\n{err[-4000:]}")
    return Job(p, out, err, time.time())


def fgrun_job(d, nproc, *args, fgrun_args=(), env=None, timeout=DEADLINE):
    """fgrun --standalone running fault_worker --dir d ARGS on nproc ranks."""
    argv = [bin_path("fgrun"), "--standalone", f"--nproc_per_node={nproc}", *fgrun_args,
            "--no_python", fault_worker(), "--dir", str(d), *args]
    return finish(start_job(argv, fgrun_env(**(env or {}))), timeout)


def fault_time(d):
    return float(open(os.path.join(d, "fault_at")).read())


def job_pids(d):
    """The workers' pids and their children's, as they wrote them."""
    read = lambda pattern: [int(open(p).read()) for p in sorted(glob.glob(str(d / pattern)))]
    return read("pid.*"), read("child.*")


def assert_nothing_left(d, timeout=1.0):
    workers, children = job_pids(d)
    everything = set(workers) | set(children) | set(processes_in_groups(set(workers)))
    left = wait_until_gone(sorted(everything), timeout)
    left += [p for p in processes_in_groups(set(workers)) if p not in left]
    kill_all(left)
    assert left == [], f"processes of the job left {timeout}s after it ended: {left}"


def assert_logs_are_whole(log_dir, rank, op, at_least, exactly=None):
    """A rank's stdout log holds "rank R iter I ok" for I = 0, 1, ... with nothing missing,
    repeated, cut or garbled; when its stderr log says which iteration failed, the stdout log
    reaches exactly up to it."""
    runs = glob.glob(str(log_dir / "*"))
    assert len(runs) == 1, runs
    path = os.path.join(runs[0], "attempt_0", str(rank), "stdout.log")
    lines = open(path).read().split("\n")
    assert lines[-1] == "", f"{path} ends in the middle of a line: {lines[-1]!r}"
    want = [f"rank {rank} iter {i} ok" for i in range(len(lines) - 1)]
    assert lines[:-1] == want, f"{path} is not the rank's output:\n{lines[:20]}"
    assert len(want) >= at_least, f"{path}: {len(want)} lines, want at least {at_least}"
    if exactly is not None:
        assert len(want) == exactly, f"{path}: {len(want)} lines, want {exactly}"
    failed = re.search(rf"rank {rank}: {op} #(\d+) failed",
                       open(os.path.join(os.path.dirname(path), "stderr.log")).read())
    if failed:
        assert int(failed.group(1)) == len(want), f"{path}: lines before the failure missing"


# --- a rank dies in the middle of an operation ------------------------------------------------


@pytest.mark.parametrize("op", ["allreduce", "barrier", "p2p"])
def test_a_rank_sigkilled_mid_operation_ends_the_job_at_once(tmp_path, op):
    """Rank 2 of 4 SIGKILLs itself at iteration 3 while the others are in the operation.
    Expected: fgrun exits 137 (the victim's status) within 1 s, naming rank 2 as the root
    cause; every worker and child is gone; every rank's log holds each line it printed."""
    logs = tmp_path / "logs"
    job = fgrun_job(tmp_path, 4, "--child", "--victim", "2", "--at", "3", "--fault", "kill",
                    "--iters", "1000", op, fgrun_args=[f"--log_dir={logs}", "--tee=3"])
    took = job.ended - fault_time(tmp_path)
    workers, _ = job_pids(tmp_path)
    assert job.rc == 137, job
    assert f"rank 2 (local_rank 2, pid {workers[2]}) killed by SIGKILL" in job.err, job
    assert took < 3.0, f"fgrun exited {took:.2f}s after the kill"
    assert_nothing_left(tmp_path)
    for r in range(4):  # the others may be behind: rings let ranks drift an iteration or two
        assert_logs_are_whole(logs, r, op, at_least=0 if r != 2 else 3,
                              exactly=3 if r == 2 else None)


@pytest.mark.mpi
def test_a_rank_sigkilled_mid_allreduce_under_mpirun(tmp_path):
    """The same with the mpi backend under mpirun: mpirun ends the job with a non-zero status
    well within the deadline and no rank survives. (The ranks start no children here: Open
    MPI kills the ranks it started, not their process groups, so a child of the killed rank
    would outlive mpirun - fgrun kills every worker's group.)"""
    argv = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-x", "FG_TIMEOUT",
            "-x", "ASAN_OPTIONS", "-x", "LSAN_OPTIONS", "-np", "3", fault_worker(),
            "--backend", "mpi", "--dir", str(tmp_path), "--victim", "1", "--at", "3",
            "--fault", "kill", "--iters", "1000", "allreduce"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "FG_"))}
    env.update(SAN_ENV, FG_TIMEOUT="30")
    job = finish(start_job(argv, env), timeout=90)
    took = job.ended - fault_time(tmp_path)
    assert job.rc != 0, job
    assert took < 30, f"mpirun took {took:.1f}s to end the job"
    assert_nothing_left(tmp_path, timeout=5)


@pytest.mark.parametrize("how,n", [("exit0", 2), ("exit0", 4), ("leave", 4)])
def test_a_rank_that_exits_0_early_fails_its_peers_and_is_named(tmp_path, how, n):
    """The last rank exits 0 at iteration 3 - without a word (exit0), or after destroying
    its communicator (leave) - while the others enter the allreduce it never joins.
    Expected: they fail within seconds (tens of milliseconds here; a leaving rank waits at
    most 0.3 s for goodbyes) instead of waiting for the library timeout, fgrun exits 1 and
    names the rank that left early, and nothing is left. With two ranks the
    survivor's own error names it too (with more, gloo blames the neighbour that passed the
    failure on, and fgrun stops the others before they say more)."""
    v = n - 1
    job = fgrun_job(tmp_path, n, "--victim", str(v), "--at", "3", "--fault", how,
                    "--iters", "1000", "allreduce", env={"FG_TIMEOUT": "60"})
    took = job.ended - fault_time(tmp_path)
    assert job.rc == 1, job
    assert took < 3.0, f"fgrun exited {took:.2f}s after rank {v} left"
    note = re.search(rf"fgrun: rank {v} exited with code 0 [\d.]+ s before rank \d failed, "
                     r"while its peers still needed it \(its last operation: "
                     r"(allreduce #3|destroy) on world; "
                     r"ranks? [\d,-]+ (was|were) last in allreduce #[34] on world", job.err)
    assert note, job
    if n == 2 and how == "exit0":
        assert "allreduce #3 failed: allreduce on world: peer rank 1: " in job.err, job
    assert_nothing_left(tmp_path)


def test_a_worker_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path):
    """Rank 1 of 3 exits 3; the others fail in their allreduce but ignore SIGTERM and stay.
    Expected: SIGKILL after --term_grace (1 s), fgrun exits 3, nothing left."""
    job = fgrun_job(tmp_path, 3, "--child", "--ignore-term", "--victim", "1", "--at", "3",
                    "--fault", "exit3", "--iters", "1000", "allreduce",
                    fgrun_args=["--term_grace=1"])
    took = job.ended - fault_time(tmp_path)
    assert job.rc == 3, job
    assert 1.0 <= took < 10, f"fgrun exited {took:.2f}s after the failure"
    assert "still running 1 s after being told to stop; sending SIGKILL" in job.err, job
    assert job.err.count("killed by SIGKILL") == 2, job
    assert_nothing_left(tmp_path)


# --- fgrun itself is killed -----------------------------------------------------------------


@pytest.mark.parametrize("sig,handle,rc", [
    (signal.SIGKILL, None, -signal.SIGKILL),
    (signal.SIGTERM, "SIGTERM,SIGINT,SIGHUP,SIGQUIT", 128 + signal.SIGTERM),
    (signal.SIGHUP, "SIGTERM", -signal.SIGHUP),
], ids=["SIGKILL", "SIGTERM-handled", "SIGHUP-not-handled"])
def test_fgrun_killed_takes_every_worker_and_child_down(tmp_path, sig, handle, rc):
    """fgrun gets sig while 3 ranks, each with a child, run allreduces. A handled signal is
    passed on and fgrun exits 128+sig; SIGKILL, or a signal not in --signals_to_handle, kills
    fgrun itself (its default action) and the workers die through the parent-death signal
    and the watchdog. Either way nothing of the job survives it by more than a second."""
    args = ["--signals_to_handle=" + handle] if handle else []
    argv = [bin_path("fgrun"), "--standalone", "--nproc_per_node=3", *args, "--no_python",
            fault_worker(), "--dir", str(tmp_path), "--child", "--iters", "0", "--pause-ms", "5",
            "allreduce"]
    p = start_job(argv, fgrun_env())
    try:
        wait_for_files([tmp_path / f"ready.{r}" for r in range(3)] +
                       [tmp_path / f"child.{r}" for r in range(3)])
        p.send_signal(sig)
        job = finish(p)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert job.rc == rc, job
    name = signal.Signals(sig).name
    if handle and name in handle.split(","):
        assert f"stopped by {name}" in job.err, job
        assert job.err.count("killed by SIGTERM") == 3, job
    assert_nothing_left(tmp_path)


# --- directories that cannot be written --------------------------------------------------------


def mount_tmpfs(path, options):
    """A tmpfs of our own (needs root); skips the test when it cannot be mounted."""
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {path} (needs root): {r.stderr.strip()}")


def umount(path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_an_unwritable_log_dir_is_a_usage_error_before_any_worker_starts(tmp_path):
    """--log_dir on a read-only file system: fgrun exits 2 naming the path; no worker ran."""
    ro = tmp_path / "ro"
    mount_tmpfs(ro, "ro,size=64k")
    try:
        log_dir = ro / "logs"
        job = fgrun_job(tmp_path, 2, "--iters", "1", "barrier",
                        fgrun_args=[f"--log_dir={log_dir}"])
    finally:
        umount(ro)
    assert job.rc == 2, job
    errors = [l for l in job.err.splitlines() if l.startswith("fgrun: error:")]
    assert len(errors) == 1 and str(log_dir) in errors[0], job
    assert "Read-only file system" in errors[0], job
    assert glob.glob(str(tmp_path / "pid.*")) == [], "a worker started"


def test_a_full_log_dir_loses_no_console_output_and_keeps_a_clean_prefix(tmp_path):
    """A 256 KiB --log_dir and a rank that writes 1 MB with --tee: fgrun says the log could
    not be written (ENOSPC), the job still succeeds, the console gets every byte, and the
    log file holds an exact prefix of the stream - never a torn or garbled line."""
    full = tmp_path / "full"
    mount_tmpfs(full, "size=256k")
    try:
        job = fgrun_job(tmp_path, 1, "--bytes", "1000000", "spew",
                        fgrun_args=[f"--log_dir={full}", "--tee=1"])
        logs = glob.glob(str(full / "*" / "attempt_0" / "0" / "stdout.log"))
        log = open(logs[0]).read() if logs else None
    finally:
        umount(full)
    assert job.rc == 0, job
    assert "No space left on device" in job.err, job
    console = "".join(line[len("[rank0]:"):] + "\n" for line in job.out.splitlines())
    assert len(console) >= 1000000 and re.fullmatch(r"(spew line \d{9} [a-z0-9]+\n)+", console)
    numbers = [int(n) for n in re.findall(r"spew line (\d{9})", console)]
    assert numbers == list(range(len(numbers))), "console lines missing or out of order"
    assert log is not None and 0 < len(log) < len(console), "the log should be cut short"
    assert console.startswith(log), "the log is not a prefix of what the rank wrote"


def verify_checkpoint(path):
    """The checkpoint's manifest lists each file with its size and FNV-1a 64 checksum."""
    def fnv1a(data):
        h = 0xcbf29ce484222325
        for b in data:
            h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        return h
    lines = open(os.path.join(path, "manifest")).read().split("\n")
    assert lines[-1] == "" and len(lines) > 1, f"{path}: truncated manifest"
    for line in lines[:-1]:
        name, size, checksum = line.split()
        data = open(os.path.join(path, name), "rb").read()
        assert len(data) == int(size) and fnv1a(data) == int(checksum, 16), f"{path}/{name}"


def test_a_full_checkpoint_dir_fails_clearly_and_leaves_no_partial_checkpoint(tmp_path):
    """checkpoint-integration writing into a tmpfs with 8 KiB free (a checkpoint needs 16):
    it fails naming the checkpoint and ENOSPC; every checkpoint-<step> on disk is complete
    and no temporary directory is left behind."""
    full = tmp_path / "full"
    mount_tmpfs(full, "size=256k")
    try:
        st = os.statvfs(full)
        with open(full / "filler", "wb") as f:
            f.write(b"\0" * (st.f_bavail * st.f_frsize - 8192))
        argv = [bin_path("fgrun"), "--standalone", "--nproc_per_node=2",
                "checkpoint-integration", "--scenario", "basic", "--output-dir", str(full / "out"),
                "--keep-outputs"]
        job = finish(start_job(argv, fgrun_env(FG_TIMEOUT="30")))
        entries = [os.path.join(dp, n) for dp, dns, fns in os.walk(full / "out") for n in dns]
        for path in entries:
            name = os.path.basename(path)
            assert not name.startswith(".tmp"), f"temporary checkpoint left: {path}"
            if name.startswith("checkpoint-"):
                verify_checkpoint(path)
    finally:
        umount(full)
    assert job.rc != 0, job
    assert re.search(r"checkpoint-25\b.*No space left on device", job.out + job.err), job
