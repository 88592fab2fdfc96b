"""Running the scenarios as jobs: under fgrun, under mpirun, or as one plain process.

Every job runs in its own session, and a timeout kills the whole session, so a hang is a
failed test, never a stuck run (or a rank left behind for the next test)."""
import os
import re
import signal
import subprocess

import pytest

from conftest import bin_path

TIMEOUT = 90  # per job; a healthy one takes a second or two
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# Under `make asan`: Open MPI's own leaks are suppressed, which needs full malloc stacks.
MPI_SAN_ENV = {
    "ASAN_OPTIONS": "fast_unwind_on_malloc=0",
    "LSAN_OPTIONS": f"suppressions={ROOT}/tests/lsan.supp:print_suppressions=0",
}
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]


def run_job(cmd, timeout=TIMEOUT, env=None):
    """Runs cmd to completion; returns (exit status, stdout and stderr together)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True, env=dict(os.environ, **(env or {})))
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        pytest.fail(f"{' '.join(cmd)} hung for {timeout}s; output:\n{out.decode(errors='replace')}")
    return p.returncode, out.decode(errors="replace")


def fgrun_job(nproc, *args, timeout=TIMEOUT):
    return run_job([bin_path("fgrun"), "--standalone", f"--nproc_per_node={nproc}",
                    "--no_python", bin_path("fgscenario"), *args], timeout=timeout)


def mpirun_job(nproc, *args, timeout=TIMEOUT):
    return run_job([*MPIRUN, "-np", str(nproc), bin_path("fgscenario"), *args],
                   timeout=timeout, env=MPI_SAN_ENV)


def process_job(*args, timeout=TIMEOUT):
    """fgscenario as one process, no launcher: a world of one."""
    return run_job([bin_path("fgscenario"), *args], timeout=timeout)


def assert_passed(rc, out):
    assert rc == 0 and "ALL CHECKS PASSED" in out, f"exit {rc}; output:\n{out}"
    assert "[FAIL]" not in out, out


def assert_check_failed(rc, out, check):
    """A fault's run: exit 1, the named check failed (by its text), and the verdict says so."""
    assert rc == 1, f"exit {rc} (expected 1, a failed check); output:\n{out}"
    assert f"[FAIL] {check}" in out, f"'[FAIL] {check}' is not in the output:\n{out}"
    assert "SOME CHECKS FAILED" in out, out


def processes_with(marker):
    """Live processes whose command line holds marker (a job's unique path)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry))
    return found


def listed_faults(scenario):
    """The faults SCENARIO --help lists (the line "faults (--fault NAME): a b c")."""
    rc, out = process_job(scenario, "--help")
    assert rc == 0, out
    return re.search(r"faults \(--fault NAME\): (.*)", out).group(1).split()
