"""torch 2.6 programs as users write them, run unchanged under fgrun (and torchrun 2.6):
torch2_probe.py MODE [ARGS]. Each mode checks its own results and prints one line per rank;
a failed check raises, so the launcher's exit status and summary say so."""
import datetime
import json
import os
import signal
import sys
import time

T = datetime.timedelta
torch = dist = None


def load_torch():
    """torch 2.x, imported only by the modes that use it: the launcher-only modes (lines, and
    die/term without "torch") start in a tenth of the time."""
    global torch, dist
    import torch as torch_
    import torch.distributed as dist_
    torch, dist = torch_, dist_


def say(*args):
    print(*args, flush=True)


# keep_tensors_past_destroy: torch 2.6 destroys a ProcessGroup holding the GIL (pybind11
# binding without a GIL-releasing destructor; fixed in torch 2.8 by pytorch#154976). The
# destructor joins gloo's worker threads; a worker that still has to drop the last reference to
# a tensor Python created (its input, once the Python object is gone) waits for the GIL: both
# wait for good. On a loaded machine, a worker starved between finishing an op and dropping it
# made about 1 run in 20 of `collectives` hang. So the modes name every tensor they pass to a
# collective (no temporaries) and destroy the groups while those names still hold them.


def collectives():
    """all_reduce, broadcast_object_list, new_group, all_gather, barrier over gloo from env://,
    then the rank's own gloo keys read back through the agent's store."""
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    assert world == int(os.environ["WORLD_SIZE"]), (world, os.environ["WORLD_SIZE"])
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    assert t.item() == world * (world + 1) / 2, t
    objs = [{"from": 0, "payload": list(range(5))}] if rank == 0 else [None]
    dist.broadcast_object_list(objs, src=0)
    assert objs[0] == {"from": 0, "payload": list(range(5))}, objs
    evens = list(range(0, world, 2))
    group = dist.new_group(evens)  # every rank calls it
    if rank in evens:
        g = torch.tensor([1.0])
        dist.all_reduce(g, group=group)
        assert g.item() == len(evens), g
    parts = [torch.zeros(2) for _ in range(world)]
    mine = torch.tensor([rank, 10.0 * rank])
    dist.all_gather(parts, mine)
    assert [p.tolist() for p in parts] == [[r, 10.0 * r] for r in range(world)], parts
    dist.barrier()
    assert os.environ["TORCHELASTIC_USE_AGENT_STORE"] == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                          is_master=False, timeout=T(seconds=30))
    # torch 2.x's layout: the default group's gloo keys, one per rank, with no attempt prefix
    # (torch 1.13 had /worker/attempt_N/default_pg/0/0/rank_N).
    assert store.check([f"default_pg/0//cpu//0/{r}" for r in range(world)])
    dist.barrier()
    dist.destroy_process_group()
    del group  # while g lives: see keep_tensors_past_destroy
    say(f"rank {rank}/{world} ok torch {torch.__version__}")


def ddp():
    """A few DistributedDataParallel steps on rank-dependent data: every rank ends with the
    same parameters, which differ from the initial ones."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(1234 + rank)  # DDP broadcasts rank 0's initial parameters
    model = DDP(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)))
    start = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(5):
        x = torch.randn(32, 8)
        loss = ((model(x) - x.sum(dim=1, keepdim=True)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    every = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(every, flat)
    assert all(torch.equal(every[0], e) for e in every), "parameters differ between ranks"
    assert not torch.equal(flat, start), "training did not change the parameters"
    dist.destroy_process_group()
    say(f"rank {rank} ddp params {flat.sum().item():.6f}")


def dcp(path):
    """torch.distributed.checkpoint: a tensor sharded over every rank (DTensor) and a replicated
    one, saved, then loaded into zeros."""
    import torch.distributed.checkpoint as dcp_
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    full = torch.arange(world * 4 * 3, dtype=torch.float32).reshape(world * 4, 3)
    state = {"sharded": distribute_tensor(full, mesh, [Shard(0)]), "step": torch.tensor([42])}
    dcp_.save(state, checkpoint_id=path)
    back = {"sharded": distribute_tensor(torch.zeros_like(full), mesh, [Shard(0)]),
            "step": torch.tensor([0])}
    dcp_.load(back, checkpoint_id=path)
    assert torch.equal(back["sharded"].to_local(), full[rank * 4:(rank + 1) * 4]), back
    assert torch.equal(back["sharded"].full_tensor(), full)
    assert back["step"].item() == 42
    dist.barrier()
    # No destroy_process_group here: after DCP, torch 2.6's destroy sometimes hangs on rank 0
    # for good once the others have exited, under torchrun 2.6 as under fgrun (gloo).
    say(f"rank {rank} dcp ok")


def mesh():
    """init_device_mesh("cpu", (2, 2)): sums over each dimension's groups."""
    from torch.distributed.device_mesh import init_device_mesh
    m = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    rank = dist.get_rank()
    sums, used = {}, []  # used: see keep_tensors_past_destroy
    for dim in ("dp", "tp"):
        t = torch.tensor([float(rank)])
        used.append(t)
        dist.all_reduce(t, group=m.get_group(dim))
        sums[dim] = t.item()
    assert sums == {"dp": 2 * (rank % 2) + 2, "tp": 4 * (rank // 2) + 1}, (rank, sums)
    dist.destroy_process_group()
    del m
    say(f"rank {rank} mesh {json.dumps(sums, sort_keys=True)}")


def mpi():
    """torch's mpi backend: the world comes from MPI itself."""
    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    assert t.item() == world * (world + 1) / 2, t
    dist.destroy_process_group()
    say(f"rank {rank}/{world} mpi ok (launcher RANK {os.environ.get('RANK')}, WORLD_SIZE "
        f"{os.environ.get('WORLD_SIZE')})")


def restart():
    """Under --max_restarts=1: rank 1 fails in attempt 0; attempt 1 passes. torch 2.x keeps
    the default group's keys under default_pg/ whatever the attempt, so attempt 1 only works
    when the launcher erased attempt 0's: a key each rank leaves there shows whether it did."""
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                          is_master=False, timeout=T(seconds=30))
    left = dist.PrefixStore("default_pg", store)
    attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    rank = int(os.environ["RANK"])
    if attempt > 0 and left.check([f"left_by_attempt_0/{rank}"]):
        say(f"rank {rank} attempt {attempt}: attempt 0's default_pg keys are still there")
        sys.exit(3)
    dist.init_process_group("gloo")
    left.set(f"left_by_attempt_{attempt}/{rank}", "x")
    dist.barrier()
    if attempt == 0 and rank == 1:
        say(f"rank {rank} attempt {attempt} failing")
        sys.exit(7)
    if attempt == 0:
        dist.barrier()  # never completes: the launcher stops this attempt
    dist.destroy_process_group()
    say(f"rank {rank} attempt {attempt} ok")


def record():
    """Rank 1 raises inside @record: the error file carries the exception and traceback."""
    from torch.distributed.elastic.multiprocessing.errors import record as rec

    @rec
    def main():
        if os.environ["RANK"] == "1":
            raise ValueError("boom from rank 1 under torch " + torch.__version__)
        time.sleep(100)
    main()


def die(signame, with_torch=""):
    """Rank 1 kills itself with a signal; the others wait to be stopped."""
    if with_torch:
        load_torch()
    if os.environ["RANK"] == "1":
        time.sleep(0.5)
        os.kill(os.getpid(), getattr(signal, signame))
    time.sleep(100)


def term(marker_dir, with_torch=""):
    """Waits for SIGTERM, writes that it saw it, and exits 143 as a default handler would."""
    if with_torch:
        load_torch()
    def on_term(signum, frame):
        with open(os.path.join(marker_dir, f"term.{os.environ['RANK']}"), "w") as f:
            f.write(str(signum))
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    with open(os.path.join(marker_dir, f"ready.{os.environ['RANK']}"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(100)


def env_dump(path):
    """The worker's environment and what torch sees of it, as JSON in path.RANK."""
    dist.init_process_group("gloo")
    out = {"env": dict(os.environ), "rank": dist.get_rank(), "world": dist.get_world_size(),
           "cwd": os.getcwd(), "argv": sys.argv}
    dist.destroy_process_group()
    with open(f"{path}.{os.environ['RANK']}", "w") as f:
        json.dump(out, f, sort_keys=True)


def lines(n):
    """n lines on stdout and on stderr per rank, for the log and filter checks."""
    for i in range(int(n)):
        print(f"out {os.environ['RANK']} {i}", flush=True)
        print(f"err {os.environ['RANK']} {i}", file=sys.stderr, flush=True)
    sys.exit(int(os.environ.get("PROBE_EXIT", "0")) if os.environ["RANK"] == "1" else 0)


MODES = {f.__name__: f for f in (collectives, ddp, dcp, mesh, mpi, restart, record, die, term,
                                 env_dump, lines)}

if __name__ == "__main__":
    if sys.argv[1] not in ("lines", "die", "term"):
        load_torch()
    MODES[sys.argv[1]](*sys.argv[2:])
