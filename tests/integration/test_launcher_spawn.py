"""How fgrun starts a worker (spawn.c: one clone, the setup in the child, one exec): what the
worker finds when it starts - its own session and process group, death with fgrun, fgrun's
raised open-files limit, default signal dispositions, nothing of fgrun's open - and a clear
error when the exec itself fails. The same again with the SIGCHLD way of watching children
(FG_NO_PIDFD=1, what a kernel without pidfds gets), including that nothing outlives a
SIGKILLed fgrun."""
import os
import resource
import signal
import time

import pytest

from launcher_util import (alive, fgrun_env, kill_all, processes_in_groups, read_pids, run,
                           start, wait_for_files, worker, TIMEOUT)

# What a worker reports about itself: its ids, its parent's NOFILE limit (fgrun raised its
# own), its own, the death signal fgrun asked for and its open fds. (Python sets signals of
# its own; the shell that execs it reports what the worker got: blocked and ignored ones.)
REPORT = r"""
import ctypes, os, sys
def soft_nofile(pid):
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max open files"):
            return int(line.split()[3])
sig = ctypes.c_int(0)
ctypes.CDLL(None).prctl(2, ctypes.byref(sig))  # PR_GET_PDEATHSIG
print(os.getpid(), os.getpgrp(), os.getsid(0), soft_nofile(os.getppid()), soft_nofile("self"),
      os.environ["SIGS"], sig.value, sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
      flush=True)
"""
SHELL = ('SIGS=$(grep -E "^Sig(Blk|Ign)" /proc/$$/status | tr -d "\\t" | tr "\\n" ,) '
         'exec /usr/bin/python3 -c "$REPORT"')


def lowered_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("the hard NOFILE limit leaves no room to lower the soft one")
    low = 256
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard)), low, hard


@pytest.mark.parametrize("no_pidfd", ["0", "1"])
def test_a_worker_starts_clean(fgrun, no_pidfd):
    lower, low, hard = lowered_nofile()
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", "--no_prefix", "--no_python",
             "/bin/sh", "-c", SHELL, env=fgrun_env(FG_NO_PIDFD=no_pidfd, REPORT=REPORT),
             preexec_fn=lower)
    assert cp.returncode == 0, cp.stderr.decode()
    lines = cp.stdout.decode().splitlines()
    assert len(lines) == 2, cp.stdout
    for line in lines:
        pid, pgrp, sid, parent_soft, soft, sigs, death, fds = line.split(" ", 7)
        assert pid == pgrp == sid, line  # its own session and process group
        # fgrun raised its NOFILE from the lowered one to the hard limit (its store holds a
        # connection per worker); the worker inherits that (test_store_hardening relies on it).
        assert int(parent_soft) == int(soft) == hard != low, line
        # fgrun ignores SIGPIPE and handles SIGTERM, SIGINT, ...: the worker starts with
        # default dispositions and nothing blocked. (Signals 32 and 33 are glibc's own, out of
        # reach of its sigaction: whatever the caller of fgrun left there passes through.)
        blocked, ignored = (int(s.split(":")[1], 16) for s in sigs.rstrip(",").split(","))
        assert blocked == 0 and ignored & ~(3 << 31) == 0, line
        assert int(death) == signal.SIGKILL, line
        assert eval(fds) == [0, 1, 2, 3], line  # stdio, and the listing's own fd


def test_a_failing_exec_is_named_and_the_job_fails(fgrun, tmp_path):
    program = tmp_path / "not-a-program"
    program.write_bytes(b"\x00\x01 neither an ELF file nor a script\n")
    program.chmod(0o755)
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", "--no_python", str(program))
    err = cp.stderr.decode()
    assert cp.returncode == 1, err
    assert f"cannot start rank 0: cannot run {program}: Exec format error" in err, err


@pytest.mark.fault
def test_sigkill_of_fgrun_leaves_nothing_the_sigchld_way(fgrun, tmp_path):
    """The other watch of children (and of the watchdog): nothing survives kill -9."""
    p = start(fgrun, "--standalone", "--nproc_per_node=3", worker("sleep_with_child.sh"),
              env=fgrun_env(FG_TEST_DIR=tmp_path, FG_NO_PIDFD=1))
    workers = []
    try:
        wait_for_files([tmp_path / f"{w}.{r}" for r in range(3) for w in ("child", "worker")])
        workers = read_pids([tmp_path / f"worker.{r}" for r in range(3)])
        children = read_pids([tmp_path / f"child.{r}" for r in range(3)])
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=TIMEOUT)
        time.sleep(1.0)
        left = [pid for pid in workers + children if alive(pid)]
        left += processes_in_groups(set(workers))
        assert left == [], f"alive 1 s after fgrun was killed: {sorted(set(left))}"
    finally:
        p.kill()
        kill_all(processes_in_groups(set(workers)))


def test_a_failing_worker_still_ends_the_job_the_sigchld_way(fgrun, tmp_path):
    env = fgrun_env(FG_TEST_DIR=tmp_path, FAIL_RANK=1, FAIL_AFTER=0.2, FAIL_CODE=3,
                    FG_NO_PIDFD=1)
    cp = run(fgrun, "--standalone", "--nproc_per_node=3", worker("sleep_with_child.sh"),
             env=env)
    assert cp.returncode == 3, cp.stderr.decode()
    assert "rank 1 (local_rank 1" in cp.stderr.decode()
