"""A torch program without libfg where one rank holds the others up: rank HANG_RANK (3) sleeps
before its third all_reduce, writing DIR/fault_at (wall-clock seconds) first. gloo's timeout
is TIMEOUT seconds (default 60)."""
import datetime
import os
import time

import torch
import torch.distributed as dist

d = os.environ["FG_TEST_DIR"]
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=float(os.environ.get("TIMEOUT", "60"))))
rank = dist.get_rank()
t = torch.ones(4)
for i in range(5):
    if rank == int(os.environ.get("HANG_RANK", "3")) and i == 2:
        with open(os.path.join(d, "fault_at.tmp"), "w") as f:
            f.write(f"{time.time():.6f}\n")
        os.rename(os.path.join(d, "fault_at.tmp"), os.path.join(d, "fault_at"))
        time.sleep(600)
    dist.all_reduce(t)
print("rank", rank, "done", flush=True)
