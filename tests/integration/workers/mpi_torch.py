"""torch's mpi backend: init_process_group("mpi"), one allreduce, one line per rank."""
import os

import torch
import torch.distributed as dist

dist.init_process_group("mpi")
rank, size = dist.get_rank(), dist.get_world_size()
t = torch.tensor([float(rank + 1)])
dist.all_reduce(t)
print(f"torch {torch.__version__} mpi rank {rank} of {size}: allreduce {t.item():g} "
      f"(RANK={os.environ.get('RANK')})", flush=True)
dist.destroy_process_group()
