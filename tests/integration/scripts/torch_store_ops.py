"""Runs one fixed sequence of torch 1.13 TCPStore client calls against HOST:PORT and
prints the results as JSON, so the same script can be run against torch's server and
ours and the outputs compared. (The calls torch 2.x answers alike: store_ops_common.py.)"""
import json
import time

from store_ops_common import (T, client, concurrent_clients, count_and_delete,
                              set_get_add_cas, wait_released_by_another_client)

out = {}
s = client(world_size=2)  # ADDs "init/" like a worker does
set_get_add_cas(s, out, [" 42", "+7", "12abc", "0x10", "-5"])
s.set("big", str(2**63 - 1))
out["add_wrap"] = s.add("big", 1)
count_and_delete(s, out)
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

wait_released_by_another_client(s, out)
concurrent_clients(s, out)
out["num_keys_end"] = s.num_keys()
print(json.dumps(out, sort_keys=True))
