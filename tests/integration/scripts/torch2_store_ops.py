"""Runs one fixed sequence of torch 2.x TCPStore client calls against HOST:PORT and prints
the results as JSON, so the same script run against torch's own server and against fgstore
can be compared. (torch2 counterpart of torch_store_ops.py, which is torch 1.13's; the calls
both share are store_ops_common.py's.)"""
import json
import time

from store_ops_common import (T, client, concurrent_clients, count_and_delete,
                              set_get_add_cas, wait_released_by_another_client)


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
set_get_add_cas(s, out, [" 42", "+7", "0x10", "-5"])
out["check"] = [s.check(["k1", "ctr"]), s.check(["k1", "nokey"])]
count_and_delete(s, out)
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

wait_released_by_another_client(s, out)
concurrent_clients(s, out, after_go=lambda c, i: c.append("roll", f"{i},".encode()))
out["concurrent"].append(sorted(int(x) for x in s.get("roll").decode().split(",") if x))
out["num_keys_end"] = s.num_keys()
print(json.dumps(out, sort_keys=True))
