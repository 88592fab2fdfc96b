"""Running a job whose hang report is timed: fgrun's stderr lines as they arrive, each with
the wall-clock time it came (time.time(), as the workers' fault_at files), so a test can
check that the report came within --hang_timeout + 2 s of the fault.

A job cannot outlive its test: fgrun gets SIGKILL (and its workers, by their own death
signal, with it) when its deadline passes, when the test ends however it ends (the autouse
fixture kill_jobs_left; a test module imports it), and when the pytest process that
started it dies (setpriv --pdeathsig). Some of these jobs never end by themselves (ranks
looping over allreduces until killed)."""
import os
import re
import signal
import subprocess
import threading
import time

import pytest

REPORT_SLACK = 2.0  # seconds a report may come after the timeout passed (the bound)

_running = []  # the TimedJobs started by the current test


class TimedJob:
    def __init__(self, argv, env, deadline=90):
        self.p = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, errors="replace", start_new_session=True)
        self.lines = []  # (time, line)
        self.out = []
        self.cond = threading.Condition()
        self.deadline = time.monotonic() + deadline
        self.readers = [threading.Thread(target=self._read, args=(self.p.stderr, True), daemon=True),
                        threading.Thread(target=self._read, args=(self.p.stdout, False), daemon=True)]
        for t in self.readers:
            t.start()
        _running.append(self)
        self.watchdog = threading.Timer(deadline, self.kill)
        self.watchdog.daemon = True
        self.watchdog.start()

    def _read(self, stream, is_err):
        for line in stream:
            with self.cond:
                (self.lines if is_err else self.out).append((time.time(), line.rstrip("\n")))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    @property
    def err(self):
        with self.cond:
            return "\n".join(l for _, l in self.lines)

    def wait_line(self, pattern, timeout=60, after=0.0):
        """The first stderr line matching pattern (regex) that came at or after the time
        after (time.time()), as (time, line, match)."""
        end = min(time.monotonic() + timeout, self.deadline)
        rx = re.compile(pattern)
        with self.cond:
            while True:
                for t, line in self.lines:
                    m = rx.search(line) if t >= after else None
                    if m:
                        return t, line, m
                left = end - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not any(r.is_alive() for r in self.readers)):
                    self.kill()
                    pytest.fail(f"no line matching {pattern!r} on fgrun's stderr:\n{self.err[-6000:]}")
                self.cond.wait(min(left, 0.2))

    def finish(self, timeout=60):
        try:
            rc = self.p.wait(timeout=max(1, min(timeout, self.deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"fgrun still running after {timeout}s (killed)\n{self.err[-6000:]}")
        self.watchdog.cancel()
        for t in self.readers:
            t.join(5)
        return rc

    def stop(self, sig=signal.SIGTERM):
        try:
            os.kill(self.p.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self):
        """SIGKILL to fgrun's group; its workers (own sessions) follow by their death signal."""
        if self.p.returncode is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def report_block(self, first_pattern):
        """The report whose first line matches: it and the "fgrun:   " lines after it."""
        with self.cond:
            lines = [l for _, l in self.lines]
        for i, line in enumerate(lines):
            if re.search(first_pattern, line):
                block = [line]
                for more in lines[i + 1:]:
                    if not more.startswith("fgrun:   "):
                        break
                    block.append(more)
                return "\n".join(block)
        return ""


@pytest.fixture(autouse=True)
def kill_jobs_left():
    """Whatever the test did, no job it started runs on after it."""
    yield
    while _running:
        job = _running.pop()
        job.watchdog.cancel()
        job.kill()
        try:
            job.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


def proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
