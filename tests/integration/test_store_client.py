"""libfg's store client (driven through tests/drivers/store_client) against torch 1.13's and
torch 2.6's own TCPStore servers and against ours (fgstore), in each dialect they speak, plus interop with
torch's Python client through the same key layout."""
import json
import os
import select
import signal
import subprocess
import threading
import time

import pytest

from conftest import BUILD, SYSTEM_PYTHON, free_port
from store_util import Fgstore, TorchStore

DRIVER = os.path.abspath(os.path.join(BUILD, "tests", "drivers", "store_client"))
SAFE = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-:[]")
REPLY_TIMEOUT = 30


def encode(field):
    data = field.encode() if isinstance(field, str) else bytes(field)
    return "".join(chr(b) if b in SAFE else f"%{b:02X}" for b in data)


def decode(text):
    out, i = bytearray(), 0
    while i < len(text):
        if text[i] == "%":
            out.append(int(text[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(ord(text[i]))
            i += 1
    return bytes(out)


class StoreError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class Client:
    """One store_client process: one libfg connection, commands in, one reply line out."""

    def __init__(self, host, port, dialect="auto", connect_timeout_ms=None):
        if not os.path.exists(DRIVER):
            pytest.fail(f"{DRIVER} is missing: run make first")
        args = [DRIVER, host, str(port), dialect]
        if connect_timeout_ms is not None:
            args.append(str(connect_timeout_ms))
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.buf = b""
        self.dialect = self.recv()[0].decode()
        self("timeout", "20000")  # a broken call fails the test in seconds, not torch's 300

    def send(self, *fields):
        line = "\t".join(encode(f) for f in fields) + "\n"
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()

    def ready(self, timeout):
        """Whether a reply line arrives within timeout seconds (without consuming it)."""
        if b"\n" in self.buf:
            return True
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if r:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            assert chunk, "store_client exited: " + self.proc.stderr.read().decode()
            self.buf += chunk
        return b"\n" in self.buf

    def recv(self, timeout=REPLY_TIMEOUT):
        deadline = time.time() + timeout
        while not self.ready(max(0, deadline - time.time())):
            assert time.time() < deadline, "no reply from store_client"
        line, self.buf = self.buf.split(b"\n", 1)
        status, *fields = line.decode().split("\t")
        if status == "err":
            raise StoreError(fields[0], fields[1])
        assert status == "ok", line
        return [decode(f) for f in fields]

    def __call__(self, *fields):
        self.send(*fields)
        return self.recv()

    def one(self, *fields):
        return self(*fields)[0]

    def fails(self, *fields):
        with pytest.raises(StoreError) as e:
            self(*fields)
        return e.value

    def close(self):
        self.proc.stdin.close()
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        err = self.proc.stderr.read().decode()
        assert "Sanitizer" not in err and "runtime error" not in err, err
        assert rc == 0, err


# --- servers: torch 1.13's (legacy only) and ours (both dialects) ---------------------------

@pytest.fixture(scope="module")
def torch_server():
    s = TorchStore()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def torch2_server():
    """torch 2.6's server (the root of scripts/torch2-root.sh): the 2.x dialect's reference."""
    from torch2_util import PYTHON, require_torch2
    require_torch2()
    s = TorchStore(python=PYTHON)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def our_server():
    s = Fgstore()
    yield s
    assert s.stop() == 0, s.log()
    assert "Sanitizer" not in s.log(), s.log()


TARGETS = [
    pytest.param(("torch", "auto", "legacy"), id="torch-auto", marks=pytest.mark.torch),
    pytest.param(("torch2", "auto", "v2"), id="torch2-auto", marks=pytest.mark.torch2),
    pytest.param(("fgstore", "auto", "v2"), id="fgstore-auto"),
    pytest.param(("fgstore", "legacy", "legacy"), id="fgstore-legacy"),
]


class Target:
    def __init__(self, server, dialect, expected):
        self.server, self.dialect, self.expected = server, dialect, expected
        self.python = SYSTEM_PYTHON  # torch's Python client for the interop checks
        self.clients = []

    def client(self, **kw):
        c = Client(self.server.host, self.server.port, kw.pop("dialect", self.dialect), **kw)
        self.clients.append(c)
        return c


@pytest.fixture(params=TARGETS)
def target(request):
    name, dialect, expected = request.param
    server = request.getfixturevalue("our_server" if name == "fgstore" else f"{name}_server")
    t = Target(server, dialect, expected)
    if name == "torch2":  # its clients too are torch 2.6's (1.13's cannot talk to it)
        from torch2_util import PYTHON
        t.python = PYTHON
    yield t
    for c in t.clients:
        c.close()


@pytest.fixture
def c(target):
    return target.client()


@pytest.fixture
def key(request):
    """Keys unique to the test, so tests can share a server."""
    return lambda k: f"{request.node.name}/{k}"


TORCH_CLIENT = r"""
import datetime, json, sys
import torch.distributed as dist
host, port, ops = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
base = dist.TCPStore(host, port, is_master=False, wait_for_workers=False,
                     timeout=datetime.timedelta(seconds=30))
out = []
for op, prefixes, *args in ops:
    s = base
    for p in prefixes:
        s = dist.PrefixStore(p, s)
    if op == "set":
        s.set(args[0], args[1])
        out.append(None)
    elif op == "get":
        out.append(s.get(args[0]).decode())
    elif op == "add":
        out.append(s.add(args[0], args[1]))
print(json.dumps(out))
"""


def torch_client(server, *ops, python=SYSTEM_PYTHON):
    """Runs [op, [prefix, ...], args...] with torch's Python client (1.13's unless python names
    another); returns the results."""
    r = subprocess.run([python, "-c", TORCH_CLIENT, server.host, str(server.port),
                        json.dumps(ops)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# --- connecting -------------------------------------------------------------------------------

def test_connect_settles_the_servers_dialect(target, c):
    assert c.dialect == target.expected
    assert c.one("dialect") == target.expected.encode()


@pytest.mark.torch
def test_v2_dialect_against_torch_1_13_fails_with_a_hint(torch_server):
    with pytest.raises(StoreError) as e:
        Client(torch_server.host, torch_server.port, "v2")
    assert e.value.code in ("FG_ECLOSED", "ECONNRESET"), e.value
    assert f"{torch_server.host}:{torch_server.port}" in e.value.message
    assert "legacy" in e.value.message


def test_connect_gives_up_after_the_connect_timeout():
    port = free_port()
    t0 = time.time()
    with pytest.raises(StoreError) as e:
        Client("127.0.0.1", port, "auto", connect_timeout_ms=300)
    assert e.value.code == "ECONNREFUSED"
    assert f"connect to 127.0.0.1:{port}" in e.value.message
    assert "gave up after" in e.value.message
    assert time.time() - t0 < 10


def test_connect_retries_until_the_server_starts():
    port = free_port()
    pending = {}
    starter = threading.Thread(target=lambda: pending.setdefault(
        "c", Client("127.0.0.1", port, "auto", connect_timeout_ms=20000)))
    starter.start()
    time.sleep(0.5)
    server = Fgstore(port=port)
    try:
        starter.join(30)
        c = pending["c"]
        assert c.dialect == "v2"
        c("set", "k", "v")
        assert c.one("get", "k") == b"v"
        c.close()
    finally:
        assert server.stop() == 0


def test_connects_over_ipv6():
    server = Fgstore("--host", "::1")
    try:
        c = Client("::1", server.port)
        c("set", "k", "v6")
        c("timeout", "100")
        assert f"on [::1]:{server.port}:" in c.fails("get", "absent").message
        c.close()
    finally:
        assert server.stop() == 0


def test_connects_by_host_name(our_server):
    c = Client("localhost", our_server.port)
    assert c.dialect == "v2"
    c.close()


def test_next_call_reconnects_after_the_server_restarts():
    port = free_port()
    server = Fgstore(port=port)
    c = Client("127.0.0.1", port)
    c("set", "k", "v")
    server.stop()
    server = Fgstore(port=port)
    try:
        # The first call may or may not notice the dead connection; by the next it is new.
        try:
            c("add", "n", "1")
        except StoreError as e:
            assert e.code in ("FG_ECLOSED", "ECONNRESET", "EPIPE"), e
        assert c.one("add", "n", "1") in (b"1", b"2")
        c.close()
    finally:
        assert server.stop() == 0


# --- operations, on every server and dialect --------------------------------------------------

def test_set_then_get_round_trips_any_bytes(c, key):
    every_byte = bytes(range(256))
    c("set", key("bin"), every_byte)
    assert c.one("get", key("bin")) == every_byte
    c("set", key("empty"), b"")
    assert c.one("get", key("empty")) == b""
    big = os.urandom(1 << 20)
    c("set", key("big"), big)
    assert c.one("get", key("big")) == big
    c("set", key("bin"), "overwritten")
    assert c.one("get", key("bin")) == b"overwritten"


def test_get_waits_for_the_key(target, c, key):
    setter = target.client()
    c.send("get", key("late"))
    assert not c.ready(0.3)
    setter("set", key("late"), "L")
    assert c.recv() == [b"L"]


def test_get_timeout_names_op_key_and_server(target, c, key):
    c("timeout", "200")
    e = c.fails("get", key("never"))
    assert e.code == "ETIMEDOUT"
    s = target.server
    assert e.message == (f"GET '/{key('never')}' on {s.host}:{s.port}: timed out after 200 ms")


def test_add_counts_from_zero_and_stores_decimal_text(c, key):
    assert c.one("add", key("ctr"), "5") == b"5"
    assert c.one("add", key("ctr"), "-2") == b"3"
    assert c.one("get", key("ctr")) == b"3"
    assert c.one("add", key("ctr"), "0") == b"3"


def test_check_says_whether_every_key_exists(c, key):
    c("set", key("a"), "1")
    assert c.one("check", key("a")) == b"1"
    assert c.one("check", key("a"), key("absent")) == b"0"
    assert c.one("check") == b"1"


def test_wait_returns_at_once_for_existing_keys(c, key):
    c("set", key("a"), "1")
    c("set", key("b"), "2")
    t0 = time.time()
    c("wait", "10000", key("a"), key("b"))
    assert time.time() - t0 < 5


def test_wait_is_released_by_another_clients_set(target, c, key):
    c.send("wait", "20000", key("x"), key("y"))
    other = target.client()
    other("set", key("x"), "1")
    assert not c.ready(0.3)
    other("add", key("y"), "1")
    assert c.recv() == []


def test_wait_timeout_leaves_the_connection_in_step(target, c, key):
    t0 = time.time()
    e = c.fails("wait", "300", key("later"))
    assert e.code == "ETIMEDOUT"
    assert time.time() - t0 >= 0.25
    # The key appears after the timeout: torch 1.13 then answers the abandoned WAIT with a
    # stray 00, which must never be read as the reply to a later call (wire spec §2.3).
    target.client()("set", key("later"), "L")
    time.sleep(0.3)
    assert c.one("add", key("ctr"), "7") == b"7"
    assert c.one("get", key("later")) == b"L"
    assert c.one("check", key("later")) == b"1"
    assert c.dialect == c.one("dialect").decode()


def test_compare_set_four_cases(c, key):
    c("set", key("k1"), "v1")
    assert c.one("cas", key("k1"), "v1", "v2") == b"v2"  # match: stored
    assert c.one("get", key("k1")) == b"v2"
    assert c.one("cas", key("k1"), "zz", "v3") == b"v2"  # mismatch: current value
    assert c.one("get", key("k1")) == b"v2"
    assert c.one("cas", key("new"), "", "fresh") == b"fresh"  # absent, empty expected: created
    assert c.one("get", key("new")) == b"fresh"
    assert c.one("cas", key("new2"), "x", "y") == b"x"  # absent, expected given: echoed
    assert c.one("check", key("new2")) == b"0"


def test_delete_says_whether_the_key_existed(c, key):
    c("set", key("k"), "v")
    assert c.one("delete", key("k")) == b"1"
    assert c.one("delete", key("k")) == b"0"
    assert c.one("check", key("k")) == b"0"


def test_num_keys_counts_every_key_of_every_scope(c, key):
    before = int(c.one("numkeys"))
    c("set", key("a"), "1")
    c("scope", "s", key("scope"))
    c("use", "s")
    c("set", "b", "2")
    c("scope", "t", "inner")
    c("use", "t")
    c("add", "c", "1")
    assert int(c.one("numkeys")) == before + 3


def test_multi_set_then_multi_get(c, key):
    c("mset", key("m1"), "one", key("m2"), "", key("m3"), bytes(range(256)))
    assert c("mget", key("m3"), key("m1"), key("m2")) == [bytes(range(256)), b"one", b""]


def test_multi_get_waits_for_every_key(target, c, key):
    c("set", key("have"), "1")
    c.send("mget", key("have"), key("later"))
    assert not c.ready(0.3)
    target.client()("set", key("later"), "2")
    assert c.recv() == [b"1", b"2"]


def test_multi_get_timeout_leaves_the_connection_in_step(target, c, key):
    c("timeout", "200")
    c("set", key("have"), "1")
    assert c.fails("mget", key("have"), key("missing")).code == "ETIMEDOUT"
    target.client()("set", key("missing"), "2")
    time.sleep(0.3)
    assert c("mget", key("have"), key("missing")) == [b"1", b"2"]


def test_append_creates_then_extends(c, key):
    c("append", key("log"), "a")
    c("append", key("log"), "bc")
    c("append", key("log"), "")
    assert c.one("get", key("log")) == b"abc"
    c("set", key("same"), "x")
    c("append", key("same"), "x")  # the new value equals what a stale read would expect
    assert c.one("get", key("same")) == b"xx"
    c("append", key("empty"), "")
    assert c.one("check", key("empty")) == b"1"


def test_appends_from_many_clients_all_land(target, key):
    clients = [target.client() for _ in range(4)]
    for i, cl in enumerate(clients):
        for j in range(20):
            cl.send("append", key("log"), f"<{i}.{j}>")
    for cl in clients:
        for _ in range(20):
            cl.recv()
        # APPEND has no reply on the wire: one round trip on each connection makes its appends
        # land before the read (a server serves one connection in order, not one against another)
        cl("check", key("log"))
    log = clients[0].one("get", key("log")).decode()
    assert sorted(log.split(">")[:-1]) == sorted(f"<{i}.{j}" for i in range(4) for j in range(20))


def test_scopes_prefix_keys_like_torch_prefix_store(c, key):
    c("scope", "w", "/worker/attempt_0")
    c("use", "w")
    c("set", key("x"), "scoped")
    c("use", "root")
    assert c.one("get", f"/worker/attempt_0/{key('x')}") == b"scoped"


def test_threads_sharing_a_handle_each_get_their_own_replies(c, key):
    c("threads", "8", "200", key("hammer"))
    assert c.one("add", key("hammer/count"), "0") == b"1600"


# --- barrier ----------------------------------------------------------------------------------

def test_barrier_releases_every_rank_once_the_last_arrives(target, key):
    ranks = [target.client() for _ in range(4)]
    for r in range(3):
        ranks[r].send("barrier", key("b"), str(r), "4", "20000")
    assert not any(cl.ready(0.3) for cl in ranks[:3])
    ranks[3].send("barrier", key("b"), "3", "4", "20000")
    for cl in ranks:
        assert cl.recv() == []


def test_barrier_timeout_names_the_missing_ranks(target, key):
    ranks = [target.client() for _ in range(2)]
    for cl, r in zip(ranks, (0, 2)):
        cl.send("barrier", key("b"), str(r), "4", "500")
    for cl in ranks:
        with pytest.raises(StoreError) as e:
            cl.recv()
        assert e.value.code == "ETIMEDOUT"
        assert e.value.message == (f"barrier '{key('b')}' timed out after 500 ms: "
                                   "ranks 1, 3 of 4 have not arrived")


def test_barrier_ends_by_its_deadline_when_the_store_host_is_gone(key):
    # SIGSTOP: the host neither answers nor resets, as when its machine dies. Listing the
    # missing ranks used to reconnect for the whole connect timeout (20 s here).
    server = Fgstore()
    rank = Client(server.host, server.port, "auto", connect_timeout_ms=20000)
    try:
        rank.send("barrier", key("b"), "0", "3", "1500")
        time.sleep(0.3)
        os.kill(server.proc.pid, signal.SIGSTOP)
        t0 = time.time()
        with pytest.raises(StoreError) as e:
            rank.recv()
        assert time.time() - t0 < 10, "the barrier outlived its 1.5 s timeout by far"
        assert e.value.code == "ETIMEDOUT"
        assert e.value.message.startswith(f"barrier '{key('b')}' timed out after 1500 ms: ")
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        rank.close()
        assert server.stop() == 0


def test_barrier_name_used_twice_is_a_mismatch(c, key):
    c("barrier", key("once"), "0", "1", "1000")
    e = c.fails("barrier", key("once"), "0", "1", "1000")
    assert e.code == "FG_EMISMATCH"
    assert f"barrier '{key('once')}': 2 arrivals for a world of 1" in e.message


def test_barrier_rejects_a_rank_outside_the_world(c, key):
    assert c.fails("barrier", key("b"), "4", "4", "100").code == "EINVAL"


# --- interop with torch's Python client -------------------------------------------------------

@pytest.mark.torch
def test_torch_python_client_sees_the_same_keys(target, c, key):
    c("set", key("k"), "from C")
    c("add", key("n"), "2")
    c("scope", "w", "/worker/attempt_0")
    c("use", "w")
    c("scope", "pg", "default_pg")
    c("use", "w")
    c("set", key("x"), "scoped from C")
    got = torch_client(
        target.server,
        ["get", [], key("k")],
        ["add", [], key("n"), 3],
        ["get", ["/worker/attempt_0"], key("x")],
        ["get", [], f"/worker/attempt_0/{key('x')}"],
        ["set", ["/worker/attempt_0", "default_pg"], key("y"), "from Python"],
        python=target.python,
    )
    assert got == ["from C", 5, "scoped from C", "scoped from C", None]
    c("use", "pg")
    assert c.one("get", key("y")) == b"from Python"
    c("use", "root")
    assert c.one("add", key("n"), "0") == b"5"
