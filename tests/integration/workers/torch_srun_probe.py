"""torch 1.13's gloo from env:// in a rank srun started (srun-ranks.sbatch with TORCH_ENV=1):
all_reduce of the ranks' numbers, then every rank's host name gathered, so the test sees the
ranks spanned the nodes. Prints one line per rank; rank 0 also prints where each rank ran."""
import os
import socket

import torch
import torch.distributed as dist

dist.init_process_group("gloo", init_method="env://")
rank, world = dist.get_rank(), dist.get_world_size()
assert rank == int(os.environ["SLURM_PROCID"]) and world == int(os.environ["SLURM_NTASKS"])
t = torch.tensor([float(rank + 1)])
dist.all_reduce(t)
assert t.item() == world * (world + 1) / 2, t
hosts = [None] * world
dist.all_gather_object(hosts, socket.gethostname())
dist.barrier()
dist.destroy_process_group()
print(f"torch probe: rank {rank} of {world} ok, sum {t.item():g}", flush=True)
if rank == 0:
    print(f"torch probe: hosts {' '.join(hosts)}", flush=True)
