"""Starting and stopping store servers for the tests: ours (fgstore) and torch 1.13's."""
import os
import re
import signal
import subprocess
import sys
import threading
import time

from conftest import SYSTEM_PYTHON, bin_path, free_port


class Fgstore:
    """fgstore on a free port; collects its log; stop() checks it exited cleanly
    (under ASan that includes LeakSanitizer's verdict)."""

    def __init__(self, *args, port=0, env=None, wrapper=(), start_timeout=10):
        self.proc = subprocess.Popen(
            [*wrapper, bin_path("fgstore"), "--port", str(port), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=None if env is None else {**os.environ, **env})
        self.lines = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(start_timeout):
            self.proc.kill()
            raise RuntimeError("fgstore did not start: " + "".join(self.lines))
        m = re.search(r"listening on (\S+):(\d+)", self.log())
        self.host, self.port = m.group(1), int(m.group(2))

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            if "listening on" in line:
                self._ready.set()
        self._ready.set()

    def log(self):
        return "".join(self.lines)

    def wait_for_log(self, pattern, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if re.search(pattern, self.log()):
                return True
            time.sleep(0.05)
        return False

    def rss_kib(self, field="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(30)
        self._reader.join(5)
        return rc


TORCH_SERVER = r"""
import datetime, sys, time
import torch.distributed as dist
s = dist.TCPStore("127.0.0.1", int(sys.argv[1]), 1, True,
                  datetime.timedelta(seconds=120), wait_for_workers=False)
print("ready", flush=True)
sys.stdin.read()
"""


class TorchStore:
    """torch's own TCPStore server (1.13's; python= another, e.g. torch 2.6's), alive until
    stop()."""

    def __init__(self, python=SYSTEM_PYTHON):
        self.port = free_port()
        self.host = "127.0.0.1"
        self.proc = subprocess.Popen([python, "-c", TORCH_SERVER, str(self.port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("torch's TCPStore server did not start")

    def stop(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def sanitized():
    """Whether fgstore was built with ASan, whose shadow memory and quarantine make RSS
    figures meaningless and which valgrind cannot run."""
    with open(bin_path("fgstore"), "rb") as f:
        return b"__asan_init" in f.read()
