"""What torch_store_ops.py (torch 1.13) and torch2_store_ops.py (torch 2.x) share: the client
of HOST:PORT (their argv) and the sequences of TCPStore calls both torch versions answer alike.
Each script imports it from its own directory (sys.path[0]), under the host's python or the
torch 2.6 root's, which sees the host's files at the same paths. Every function records its
results in out, as the scripts print them."""
import datetime
import sys
import threading
import time

import torch.distributed as dist

HOST, PORT = sys.argv[1], int(sys.argv[2])
T = datetime.timedelta
CONCURRENT = 64


def client(timeout=10, world_size=None):
    return dist.TCPStore(HOST, PORT, world_size, False, T(seconds=timeout))


def set_get_add_cas(s, out, add_texts):
    """SET and GET, ADD, COMPARE_SET's four cases, a 1 MiB binary value, and ADD on each of
    add_texts (what the server makes of numbers written as text)."""
    s.set("k1", b"v1")
    out["get"] = s.get("k1").hex()
    out["add"] = [s.add("ctr", 5), s.add("ctr", -2), s.get("ctr").decode()]
    out["cas"] = [s.compare_set("k1", b"v1", b"v2").decode(),
                  s.compare_set("k1", b"zz", b"v3").decode(),
                  s.compare_set("newk", b"", b"fresh").decode(),
                  s.compare_set("newk2", b"x", b"y").decode()]
    s.set("binary", bytes(range(256)) * 4096)
    out["binary"] = s.get("binary") == bytes(range(256)) * 4096
    out["add_parse"] = []
    for text in add_texts:
        s.set("num", text)
        out["add_parse"].append(s.add("num", 0))


def count_and_delete(s, out):
    out["num_keys"] = s.num_keys()
    out["delete"] = [s.delete_key("k1"), s.delete_key("k1")]
    out["num_keys_after_delete"] = s.num_keys()


def wait_released_by_another_client(s, out):
    """A WAIT released by another client's SET."""
    def later():
        time.sleep(0.3)
        client().set("late", b"L")

    threading.Thread(target=later).start()
    s.wait(["late"], T(seconds=10))
    out["wait_released"] = s.get("late").decode()


def concurrent_clients(s, out, after_go=None):
    """CONCURRENT clients: each counts itself in, then all wait for the last one's "go";
    after_go(c, i), where given, is each client's next call."""
    got = [None] * CONCURRENT

    def worker(i):
        c = client(30)
        c.set(f"c/{i}", str(i))
        if c.add("arrived", 1) == CONCURRENT:
            c.set("go", b"yes")
        c.wait(["go"])
        if after_go:
            after_go(c, i)
        got[i] = (c.get("go").decode(), c.get(f"c/{(i + 1) % CONCURRENT}").decode())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CONCURRENT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    out["concurrent"] = [s.get("arrived").decode(), got]
