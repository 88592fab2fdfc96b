"""Under --max_restarts=1: attempt 0 rendezvouses, then rank 1 fails. In attempt 1 every
rank checks that the agent erased attempt 0's keys, and the job succeeds."""
import datetime
import os
import sys

import torch.distributed as dist

dist.init_process_group("gloo")
attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
rank = dist.get_rank()
dist.barrier()
if attempt == 0:
    if rank == 1:
        sys.exit(7)
    dist.barrier()  # never completes: the agent stops this attempt
    sys.exit(0)

store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                      is_master=False, timeout=datetime.timedelta(seconds=30))
current = dist.PrefixStore("/worker/attempt_1", store)
assert current.get(f"default_pg/0/0/rank_{rank}")
old = dist.PrefixStore("/worker/attempt_0", store)
try:
    old.wait([f"default_pg/0/0/rank_{rank}"], datetime.timedelta(seconds=0.5))
except RuntimeError:
    print(f"rank {rank}: attempt 0 keys erased", flush=True)
else:
    print(f"rank {rank}: attempt 0 keys still there", flush=True)
    sys.exit(1)
dist.destroy_process_group()
