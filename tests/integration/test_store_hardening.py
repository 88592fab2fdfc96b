"""The store server's defences: loopback by default, the idle timeout, the store token (in
fgstore and through fgrun), memory under hostile load, 4,096 connections through fgrun, and
valgrind's memcheck on a representative workload."""
import os
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
import time

import pytest

from conftest import BUILD, SYSTEM_PYTHON, bin_path
from launcher_util import fgrun_env, run
from store_util import Fgstore, sanitized

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.abspath(os.path.join(BUILD, "tests", "drivers", "store_client"))
OPS_SCRIPT = os.path.join(HERE, "scripts", "torch_store_ops.py")
TOKEN = "tok-3f9a1c0e7b"


def u64(n):
    return struct.pack("<Q", n)


def legacy_set(key, value):
    return b"\x00" + u64(len(key)) + key + u64(len(value)) + value


def legacy_get(key):
    return b"\x02" + u64(len(key)) + key


def raw(store):
    return socket.create_connection((store.host, store.port), timeout=10)


def recv_exactly(sock, n, timeout=10):
    sock.settimeout(timeout)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"connection closed after {len(data)} of {n} bytes"
        data += chunk
    return data


def closed_by_server(sock, timeout=10):
    sock.settimeout(timeout)
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def round_trip(sock, key=b"/rt"):
    """A SET and a GET on an open connection; the reply proves the server still serves it."""
    sock.sendall(legacy_set(key, b"ok") + legacy_get(key))
    assert recv_exactly(sock, 10) == u64(2) + b"ok"


def libfg(store, commands, token=None):
    """Runs store_client commands (tab-separated lines); returns its output lines."""
    env = {k: v for k, v in os.environ.items() if k != "FG_STORE_TOKEN"}
    if token is not None:
        env["FG_STORE_TOKEN"] = token
    r = subprocess.run([DRIVER, store.host, str(store.port), "auto", "2000"], env=env,
                       input="".join(c + "\n" for c in commands), capture_output=True,
                       text=True, timeout=60)
    return r.stdout.splitlines()


def stop_cleanly(store):
    rc = store.stop()
    assert rc == 0, f"fgstore exited {rc}:\n{store.log()}"
    assert "Sanitizer" not in store.log(), store.log()


# --- where it listens --------------------------------------------------------------------

def listening_addresses(port):
    """The local addresses of listening sockets on port, from /proc/net/tcp{,6}."""
    found = []
    for name in ("tcp", "tcp6"):
        with open(f"/proc/net/{name}") as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, p = local.split(":")
                if state == "0A" and int(p, 16) == port:  # 0A: LISTEN
                    found.append(addr)
    return found


def test_fgstore_listens_on_loopback_unless_told_otherwise():
    s = Fgstore()
    try:
        assert s.host == "127.0.0.1"
        assert listening_addresses(s.port) == ["0100007F"], "bound to 127.0.0.1 only"
    finally:
        stop_cleanly(s)
    s = Fgstore("--host", "0.0.0.0")
    try:
        assert listening_addresses(s.port) == ["00000000"]
    finally:
        stop_cleanly(s)


# --- the idle timeout --------------------------------------------------------------------

def test_idle_timeout_closes_a_stalled_request_and_nothing_else():
    s = Fgstore("--idle_timeout", "1")
    try:
        stalled = raw(s)
        stalled.sendall(legacy_set(b"/st", b"abc")[:6])  # cut off inside the key's length
        stalled_port = stalled.getsockname()[1]
        silent = raw(s)              # never sends a byte: torch 1.13's second connection
        idle = raw(s)
        round_trip(idle)             # then quiet between requests
        trickle = raw(s)
        request = legacy_set(b"/tr", b"x") + legacy_get(b"/tr")
        for b in request:            # 3 s for one request, but progress every 0.12 s
            trickle.sendall(bytes([b]))
            time.sleep(0.12)
        assert recv_exactly(trickle, 9) == u64(1) + b"x"
        assert closed_by_server(stalled)
        assert s.wait_for_log(rf"closed connection from 127\.0\.0\.1:{stalled_port}: no progress "
                              r"on a request for 1 s \(idle timeout\)")
        for sock in (silent, idle, trickle):
            round_trip(sock)
        assert len(re.findall("idle timeout", s.log())) == 1, s.log()
    finally:
        stop_cleanly(s)


def test_idle_timeout_0_never_closes():
    s = Fgstore("--idle_timeout", "0")
    try:
        c = raw(s)
        request = legacy_set(b"/late", b"v") + legacy_get(b"/late")
        c.sendall(request[:5])
        time.sleep(1.5)
        c.sendall(request[5:])
        assert recv_exactly(c, 9) == u64(1) + b"v"
    finally:
        stop_cleanly(s)


# --- the store token ---------------------------------------------------------------------

def test_token_admits_only_clients_that_present_it():
    s = Fgstore("--idle_timeout", "1", env={"FG_STORE_TOKEN": TOKEN})
    try:
        assert "clients must present the store token" in s.log()
        assert libfg(s, ["set\tk\tv", "get\tk"], token=TOKEN) == ["ok\tv2", "ok", "ok\tv"]
        wrong = libfg(s, ["get\tk"], token=TOKEN + "x")
        assert wrong[0].startswith("err\tEACCES\t") and "refused the store token" in wrong[0]
        none = libfg(s, ["get\tk"])
        assert none[0].startswith("err\tEACCES\t") and "requires a store token" in none[0]
        with raw(s) as c:  # a torch 1.13 client's first request
            c.sendall(legacy_get(b"/k"))
            assert recv_exactly(c, 4) == b"FGTR"
            assert closed_by_server(c)
        with raw(s) as c:  # says nothing: with a token required, that is a stall too
            assert closed_by_server(c, timeout=15)
        assert s.wait_for_log(r"no store token for 1 s \(idle timeout\)")
        assert len(re.findall("bad or missing store token", s.log())) == 3, s.log()
    finally:
        stop_cleanly(s)
    assert TOKEN not in s.log()


def test_token_given_as_a_flag_is_blanked_from_the_command_line():
    s = Fgstore("--store_token", TOKEN)
    try:
        with open(f"/proc/{s.proc.pid}/cmdline", "rb") as f:
            assert TOKEN.encode() not in f.read()
        assert libfg(s, ["add\tn\t2"], token=TOKEN) == ["ok\tv2", "ok\t2"]
    finally:
        stop_cleanly(s)
    assert TOKEN not in s.log()


def test_a_token_is_harmless_to_a_server_that_asks_none():
    s = Fgstore()
    try:
        assert libfg(s, ["add\tn\t2"], token=TOKEN) == ["ok\tv2", "ok\t2"]
    finally:
        stop_cleanly(s)


@pytest.mark.torch
def test_torch_clients_are_refused_while_a_token_is_set():
    s = Fgstore(env={"FG_STORE_TOKEN": TOKEN})
    try:
        code = ("import datetime, torch.distributed as d\n"
                f"s = d.TCPStore('127.0.0.1', {s.port}, None, False, "
                "datetime.timedelta(seconds=5))\n"
                "s.set('k', 'v'); print(s.get('k'))\n")
        r = subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode != 0, r.stdout
        assert s.wait_for_log("bad or missing store token")
    finally:
        stop_cleanly(s)


def test_fgrun_store_token_reaches_workers_and_guards_the_store(fgrun, tmp_path):
    # Each worker adds 1 through libfg (which reads FG_STORE_TOKEN), and proves a client
    # without the token is refused.
    script = tmp_path / "worker.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"printf 'add\\tjoined\\t1\\n' | {DRIVER} $MASTER_ADDR $MASTER_PORT auto 5000 "
        "> \"$OUT/with.$RANK\"\n"
        f"printf 'add\\tjoined\\t1\\n' | env -u FG_STORE_TOKEN {DRIVER} $MASTER_ADDR "
        "$MASTER_PORT auto 5000 > \"$OUT/without.$RANK\"\n"
        "test \"$FG_STORE_TOKEN\" = " + TOKEN + " && echo same > \"$OUT/env.$RANK\"\n")
    script.chmod(0o755)
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", "--store_token", TOKEN,
             "--no_python", str(script), env=fgrun_env(OUT=tmp_path))
    out = cp.stdout.decode() + cp.stderr.decode()
    assert cp.returncode == 0, out
    for rank in (0, 1):
        assert (tmp_path / f"env.{rank}").read_text() == "same\n"
        assert (tmp_path / f"with.{rank}").read_text().splitlines()[0] == "ok\tv2"
        assert "EACCES" in (tmp_path / f"without.{rank}").read_text()
    counts = sorted((tmp_path / f"with.{r}").read_text().splitlines()[1] for r in (0, 1))
    assert counts == ["ok\t1", "ok\t2"]
    assert TOKEN not in out


# --- memory under hostile load -----------------------------------------------------------

MIB = 1 << 20


def test_memory_stays_under_the_stated_cap_under_hostile_load():
    """Stated cap: the heap stays under max_total x 1.5 + max_buffered + what each client
    that does not read its replies can have built (1 MiB of batch + one value), plus 12 MiB
    for the program and up to 65 KiB per connection (~100 here). With a 16M store, 16M of
    partial requests, 1M values and 16 non-readers: 24 + 16 + 32 + 12 = 84 MiB."""
    total, buffered, value, readers, partial = 16, 16, 1, 16, 64
    cap_mib = total * 1.5 + buffered + readers * (1 + value) + 12
    s = Fgstore("--max_total_size", f"{total}M", "--max_buffered_size", f"{buffered}M",
                "--max_value_size", f"{value}M", "--max_request_size", f"{2 * value}M")
    socks = []
    try:
        # 1. Fill the store to its limit with 1 MiB values.
        with raw(s) as c:
            try:
                for i in range(total + 2):
                    c.sendall(legacy_set(b"/fill/%d" % i, b"f" * (value * MIB - 64)))
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert closed_by_server(c)
        assert s.wait_for_log("the store is full")
        # 2. Clients that start a big value and never finish it: 64 x 1 MiB held back
        #    would be 64 MiB; the budget closes the ones past 16 MiB.
        for i in range(partial):
            c = raw(s)
            socks.append(c)
            try:
                c.sendall(legacy_set(b"/p/%d" % i, b"")[:-8] + u64(value * MIB - 64)
                          + b"p" * (MIB - 4096))
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed while sending: over the budget
        assert s.wait_for_log("partial requests of all clients over the limit")
        # 3. Clients that pipeline GETs of a 1 MiB value and never read the replies. They
        #    break no rule: the server stops reading from them, and closes none.
        non_readers = []
        for i in range(readers):
            c = raw(s)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.sendall(legacy_get(b"/fill/0") * 400)
            socks.append(c)
            non_readers.append(c.getsockname()[1])
        # 4. Garbage, unknown opcodes and absurd lengths from many more.
        for payload in (b"\x09", b"\x00" + u64(2**63), b"\x04" + u64(2**40)) * 50:
            with raw(s) as c:
                try:
                    c.sendall(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass
        time.sleep(1)
        with raw(s) as c:  # a well-behaved client is still served throughout
            round_trip(c)
        for port in non_readers:
            assert f"127.0.0.1:{port}:" not in s.log(), s.log()
        peak = s.rss_kib("VmHWM") / 1024
        if not sanitized():  # ASan's shadow memory and quarantine are not the server's
            assert peak < cap_mib, f"peak RSS {peak:.1f} MiB over the stated {cap_mib} MiB"
    finally:
        for c in socks:
            c.close()
        stop_cleanly(s)


# --- 4,096 connections through fgrun's agent ---------------------------------------------

HOLD_4096 = r"""
import os, socket, struct
host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
add = b"\x03" + struct.pack("<Q", 5) + b"/held" + struct.pack("<Q", 1)
socks = [socket.create_connection((host, port), timeout=30) for _ in range(4096)]
for s in socks:
    s.sendall(add)
counts = []
for s in socks:
    data = b""
    while len(data) < 8:
        chunk = s.recv(8 - len(data))
        assert chunk, "the store closed a connection"
        data += chunk
    counts.append(struct.unpack("<q", data)[0])
assert sorted(counts) == list(range(1, 4097)), counts[:5]
print("held 4096", flush=True)
"""


def test_fgrun_agent_store_holds_4096_connections(fgrun):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096 + 256:
        pytest.skip(f"the open-file hard limit is {hard}")
    # Started with a soft limit of 1024, as a login shell gives: fgrun must raise it for its
    # store (and its workers inherit the raised limit).
    cp = run(fgrun, "--standalone", "--nproc_per_node=1", "--no_python", SYSTEM_PYTHON, "-c",
             HOLD_4096, preexec_fn=lambda: resource.setrlimit(
                 resource.RLIMIT_NOFILE, (min(1024, soft), hard)))
    out = cp.stdout.decode() + cp.stderr.decode()
    assert cp.returncode == 0, out
    assert "held 4096" in out


# --- valgrind ----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.torch
def test_valgrind_memcheck_is_clean_under_a_representative_workload(tmp_path):
    if sanitized():
        pytest.skip("valgrind cannot run an ASan build")
    if not shutil.which("valgrind"):
        pytest.skip("valgrind is not installed")
    vlog = tmp_path / "valgrind.log"
    s = Fgstore("--idle_timeout", "2", start_timeout=60,
                wrapper=("valgrind", "--leak-check=full", "--show-leak-kinds=all",
                         "--errors-for-leak-kinds=all", "--error-exitcode=99",
                         f"--log-file={vlog}"))
    try:
        r = subprocess.run([SYSTEM_PYTHON, OPS_SCRIPT, s.host, str(s.port)],
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        out = libfg(s, ["set\tk\tv", "mget\tk\tk", "append\tk\tw", "barrier\tb\t0\t1\t5000",
                        "wait\t100\tnever"], token=TOKEN)
        assert out[:5] == ["ok\tv2", "ok", "ok\tv\tv", "ok", "ok"], out
        assert out[5].startswith("err\tETIMEDOUT"), out
        for payload in (b"\x09", b"\x00" + u64(2**63) + b"k", b"\x05" + u64(3),
                        b"\x00" + u64(4) + b"/big" + u64(1 << 20) + b"x" * 1000,
                        b"\x00\xce\xf7\x85\x3c\x0c\x06" + u64(1) + u64(2) + b"/w"):
            with raw(s) as c:
                c.sendall(payload)
        stalled = raw(s)
        stalled.sendall(b"\x00" + u64(5))
        assert closed_by_server(stalled, timeout=30)
        with raw(s) as c:
            round_trip(c)
    finally:
        rc = s.stop()
    report = vlog.read_text()
    assert rc == 0, f"exit {rc}:\n{report[-3000:]}"
    assert "ERROR SUMMARY: 0 errors" in report, report[-3000:]
    assert "All heap blocks were freed -- no leaks are possible" in report, report[-3000:]
