"""Runs one fixed sequence of torch 2.x TCPStore client calls against HOST:PORT and prints
the results as JSON, so the same script run against torch's own server and against fgstore
can be compared. (torch2 counterpart of torch_store_ops.py, which is torch 1.13's.)"""
import datetime
import json
import sys
import threading
import time

import torch.distributed as dist

host, port = sys.argv[1], int(sys.argv[2])
T = datetime.timedelta


def client(timeout=10, world_size=None):
    return dist.TCPStore(host, port, world_size, False, T(seconds=timeout))


def error(call):
    """A call that must fail: the exception's type, and its message without addresses."""
    try:
        call()
        return "returned"
    except Exception as e:  # noqa: BLE001 - the type is the result
        return type(e).__name__


out = {}
s = client(world_size=2)  # ADDs "init/" like a worker does
out["libuv"] = s.libuvBackend
out["extended_api"] = s.has_extended_api()
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
for text in [" 42", "+7", "0x10", "-5"]:
    s.set("num", text)
    out["add_parse"].append(s.add("num", 0))
out["check"] = [s.check(["k1", "ctr"]), s.check(["k1", "nokey"])]
out["num_keys"] = s.num_keys()
out["delete"] = [s.delete_key("k1"), s.delete_key("k1")]
out["num_keys_after_delete"] = s.num_keys()
s.multi_set(["m/a", "m/b", "m/c"], [b"A", b"", b"C" * 1000])
out["multi_get"] = [v.decode()[:3] for v in s.multi_get(["m/c", "m/a", "m/b"])]
s.append("ap", b"one")
s.append("ap", b"-two")
out["append"] = s.get("ap").decode()
s.wait(["ctr", "newk"])
out["wait_ready"] = True

# A WAIT and a GET that time out; the same connection is used afterwards (torch 2.x clients
# keep it in step).
w = client()
t0 = time.time()
out["wait_timeout"] = error(lambda: w.wait(["never"], T(seconds=1)))
out["wait_timeout_s"] = round(time.time() - t0)
w.set_timeout(T(seconds=1))
out["get_timeout"] = error(lambda: w.get("never2"))
w.set_timeout(T(seconds=10))
w.set("after_timeout", b"ok")
out["after_timeout"] = w.get("after_timeout").decode()
out["multi_get_timeout"] = error(lambda: client(1).multi_get(["m/a", "never3"]))


def later():
    time.sleep(0.3)
    client().set("late", b"L")


threading.Thread(target=later).start()
s.wait(["late"], T(seconds=10))
out["wait_released"] = s.get("late").decode()

# 64 concurrent clients: each counts itself in, then all wait for the last one's "go".
N = 64
got = [None] * N


def worker(i):
    c = client(30)
    c.set(f"c/{i}", str(i))
    if c.add("arrived", 1) == N:
        c.set("go", b"yes")
    c.wait(["go"])
    c.append("roll", f"{i},".encode())
    got[i] = (c.get("go").decode(), c.get(f"c/{(i + 1) % N}").decode())


threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
out["concurrent"] = [s.get("arrived").decode(), got,
                     sorted(int(x) for x in s.get("roll").decode().split(",") if x)]
out["num_keys_end"] = s.num_keys()
print(json.dumps(out, sort_keys=True))
