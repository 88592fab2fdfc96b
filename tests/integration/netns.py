"""Separate hosts for multi-node tests: network namespaces on a private bridge.

Each host is a network namespace with one interface, eth0, and its own IPv4 address on a
/24 of its own; a further namespace holds the bridge that joins them. Nothing is added to
the machine's own network, so traffic stays on these namespaces and their loopbacks.
Names carry the pid and a counter, so concurrent runs never collide; everything is
removed when the cluster is closed (the `cluster` fixture does it even when a test fails).

Needs root and iproute2's `ip`; where a namespace cannot be made, tests skip and say why.
"""
import functools
import itertools
import os
import signal
import subprocess

import pytest

_counter = itertools.count()


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          check=check)


@functools.lru_cache(maxsize=None)
def namespaces_unavailable():
    """None when namespaces can be made here, else the reason."""
    name = f"fgprobe{os.getpid()}"
    try:
        r = _ip("netns", "add", name, check=False)
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        return f"iproute2's ip cannot run: {e}"
    if r.returncode != 0:
        return f"cannot create a network namespace (needs root): {r.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


class Cluster:
    """n hosts: hosts[i] is a namespace name, addrs[i] its address (10.213.<k>.<i+1>)."""

    def __init__(self, n):
        k = next(_counter)
        self.tag = f"fg{os.getpid() % 100000}x{k}"
        self.switch = f"{self.tag}sw"
        subnet = 1 + (os.getpid() + k) % 250
        self.hosts = [f"{self.tag}h{i}" for i in range(n)]
        self.addrs = [f"10.213.{subnet}.{i + 1}" for i in range(n)]
        self.spare_addr = f"10.213.{subnet}.200"  # on the subnet, but nobody has it
        self.procs = []
        self._made = []
        try:
            self._build()
        except Exception:
            self.close()
            raise

    def _netns(self, name):
        _ip("netns", "add", name)
        self._made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _build(self):
        self._netns(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for i, (host, addr) in enumerate(zip(self.hosts, self.addrs)):
            self._netns(host)
            port = f"p{i}"
            # Both ends are made inside namespaces: the machine's own network never sees them.
            _ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                "netns", host)
            _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
            _ip("-n", host, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", host, "link", "set", "eth0", "up")

    def cmd(self, i, argv):
        return ["ip", "netns", "exec", self.hosts[i], *argv]

    def start(self, i, argv, **kw):
        """Starts argv on host i (ip netns exec execs it: the pid is argv's)."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = subprocess.Popen(self.cmd(i, argv), **kw)
        self.procs.append(p)
        return p

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=30)
        for name in reversed(self._made):
            _ip("netns", "del", name, check=False)
        self._made = []


@pytest.fixture
def cluster(request):
    """cluster(n) makes n hosts; they are removed after the test, pass or fail."""
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(f"multi-host tests need network namespaces: {reason}")
    made = []

    def make(n):
        c = Cluster(n)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
