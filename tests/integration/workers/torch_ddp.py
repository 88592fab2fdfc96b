"""A plain torch 1.13 DDP-style script, run unchanged under fgrun: gloo from env://,
all_reduce, broadcast_object_list, new_group, barrier, destroy_process_group. It also
proves that it used the agent's store: its own keys are there under /worker/attempt_0."""
import datetime
import os

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
assert world == int(os.environ["WORLD_SIZE"]) == 4

t = torch.tensor([float(rank + 1)])
dist.all_reduce(t)
assert t.item() == world * (world + 1) / 2, t

objs = [{"from": 0, "payload": list(range(5))}] if rank == 0 else [None]
dist.broadcast_object_list(objs, src=0)
assert objs[0] == {"from": 0, "payload": list(range(5))}, objs

group = dist.new_group([0, 2])  # every rank must call it
if rank in (0, 2):
    g = torch.tensor([1.0])
    dist.all_reduce(g, group=group)
    assert g.item() == 2.0, g
dist.barrier()

assert os.environ["TORCHELASTIC_USE_AGENT_STORE"] == "True"
store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                      is_master=False, timeout=datetime.timedelta(seconds=30))
attempt = dist.PrefixStore("/worker/attempt_0", store)
# the key this rank's gloo setup wrote, read back through the agent's store
assert attempt.get(f"default_pg/0/0/rank_{rank}")
dist.barrier()
dist.destroy_process_group()
print(f"rank {rank} ok", flush=True)
