"""Runs one fixed sequence of torch 1.13 TCPStore client calls against HOST:PORT and
prints the results as JSON, so the same script can be run against torch's server and
ours and the outputs compared."""
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


out = {}
s = client(world_size=2)  # ADDs "init/" like a worker does
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
for text in [" 42", "+7", "12abc", "0x10", "-5"]:
    s.set("num", text)
    out["add_parse"].append(s.add("num", 0))
s.set("big", str(2**63 - 1))
out["add_wrap"] = s.add("big", 1)
out["num_keys"] = s.num_keys()
out["delete"] = [s.delete_key("k1"), s.delete_key("k1")]
out["num_keys_after_delete"] = s.num_keys()
s.wait(["ctr", "newk"])
out["wait_ready"] = True

# A WAIT that times out (on its own client: in 1.13 that connection is spoiled).
w = client()
t0 = time.time()
try:
    w.wait(["never"], T(seconds=1))
    out["wait_timeout"] = "returned"
except RuntimeError as e:
    out["wait_timeout"] = str(e)
out["wait_timeout_s"] = round(time.time() - t0)

# A WAIT released by another client's SET.
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
    got[i] = (c.get("go").decode(), c.get(f"c/{(i + 1) % N}").decode())
threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
out["concurrent"] = [s.get("arrived").decode(), got]
out["num_keys_end"] = s.num_keys()
print(json.dumps(out, sort_keys=True))
