"""Helpers for the fgrun tests: running fgrun, worker scripts, and finding every process
a job left behind."""
import os
import signal
import subprocess
import time

import pytest

from conftest import BIN, SYSTEM_PYTHON

WORKERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers")
TIMEOUT = 120  # generous: these are correctness tests, not benchmarks


def worker(name):
    return os.path.join(WORKERS, name)


def fgrun_env(**extra):
    env = dict(os.environ)
    env["PYTHON_EXEC"] = SYSTEM_PYTHON
    for k in [k for k in env if k.startswith("PET_")]:
        del env[k]
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(fgrun, *args, env=None, timeout=TIMEOUT, **kw):
    """Runs fgrun to completion; returns the CompletedProcess (bytes output)."""
    return subprocess.run([fgrun, *args], env=env or fgrun_env(), capture_output=True,
                          timeout=timeout, **kw)


def proc_stats():
    """(pid, fields) of every process: fields are /proc/PID/stat's after the command name,
    fields[0] its state (field 3 of proc(5)); processes that end meanwhile are left out."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        yield int(entry), fields


def descendants(pid):
    """Every live process below pid, parents first."""
    children = {}
    for child, fields in proc_stats():
        children.setdefault(int(fields[1]), []).append(child)
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(0), [])
        out += kids
        todo += kids
    return out


def stacks_below(pid):
    """What a hung launcher's processes are doing: state, command line, and the native and
    Python stacks fgrun-stack reads from outside (a test that times out shows where)."""
    from conftest import bin_path
    report = []
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{p}/wchan") as f:
                wchan = f.read()
        except OSError:
            continue
        report.append(f"pid {p} ({wchan}): {cmd}")
        if "python" in cmd:
            r = subprocess.run([bin_path("fgrun-stack"), str(p)], capture_output=True,
                               text=True, timeout=60)
            report.append(r.stdout + r.stderr)
    return "\n".join(report)


def run_or_stacks(argv, env, timeout, **kw):
    """subprocess.run(argv, capture_output=True, text=True) that, when timeout passes, fails
    the test with the stacks of every process below the launcher and its output so far."""
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stacks = stacks_below(p.pid)
        pids = descendants(p.pid)
        p.kill()
        kill_all(pids)
        out, err = p.communicate()
        pytest.fail(f"{' '.join(argv)}: still running after {timeout} s\n--- processes\n"
                    f"{stacks}\n--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}")
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def start(fgrun, *args, env=None, **kw):
    return subprocess.Popen([fgrun, *args], env=env or fgrun_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def wait_for_files(paths, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(os.path.exists(p) and os.path.getsize(p) > 0 for p in paths):
            return
        time.sleep(0.02)
    missing = [p for p in paths if not os.path.exists(p)]
    raise AssertionError(f"workers did not write {missing} within {timeout}s")


def read_pids(paths):
    return [int(open(p).read().split()[0]) for p in paths]


def alive(pid):
    """True for a process that exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def processes_in_groups(pgids):
    """Live processes whose process group is one of pgids (a worker and its children)."""
    return [pid for pid, fields in proc_stats() if int(fields[2]) in pgids and fields[0] != "Z"]


def wait_until_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.02)
    return [p for p in pids if alive(p)]


def kill_all(pids):
    """Cleanup for a failed test: leave nothing running."""
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_session(sid):
    """SIGKILLs every process of session sid: mpirun gives each rank a process group of its
    own, so killing mpirun's group would leave the ranks behind."""
    for pid, fields in proc_stats():
        if int(fields[3]) == sid:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class Job:
    """A finished run_in_session: exit status, stdout, stderr, and how long it took."""

    def __init__(self, rc, out, err, seconds):
        self.rc, self.out, self.err, self.seconds = rc, out, err, seconds

    def __str__(self):
        return (f"exit {self.rc} after {self.seconds:.1f}s\n--- stdout\n{self.out}\n"
                f"--- stderr\n{self.err}")


def run_in_session(argv, env, timeout):
    """Runs argv (text output) in a session of its own to its end; a test whose job outlives
    timeout fails, and every process of the session is killed (a hang is a failed test, never
    a stuck run or a rank left behind for the next test)."""
    start = time.monotonic()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(p.pid)
        out, err = p.communicate()
        pytest.fail(f"{' '.join(argv)} still ran after {timeout}s (killed)\n"
                    f"--- stdout\n{out}\n--- stderr\n{err}")
    return Job(p.returncode, out, err, time.monotonic() - start)


def stderr_lines(cp):
    return cp.stderr.decode(errors="replace").splitlines()


def error_lines(cp):
    return [l for l in stderr_lines(cp) if l.startswith("fgrun: error:")]


def finish_agent(p, timeout=TIMEOUT):
    """(exit status, stdout, stderr) of an agent started with Popen, killed if it hangs."""
    import pytest
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"agent hung for {timeout}s; stderr:\n{err.decode(errors='replace')}")
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")
