#!/usr/bin/env python3
"""torch_allreduce.py - torch's ProcessGroupGloo (1.13's, or 2.6's with fgbench --python
/var/lib/fgrun/torch2-python), timed as fgbench times fgcomm: nccl-tests'
sizes, a barrier before each batch, the slowest rank's time, nccl-tests' bus bandwidth.

On its own, every rank runs it under a launcher:

    fgrun --standalone --nproc_per_node=4 --no_python /usr/bin/python3 \\
        scripts/bench/torch_allreduce.py -b 4K -e 64M

As `fgbench --side-by-side`'s torch peer (--serve, with --init-method, --rank and
--world-size): it prints `imported`, waits for `connect`, joins the group, prints `ready`,
then answers each `COLL BYTES ITERS WARMUP` line on stdin with the microseconds per call of
the slowest rank, until `quit`. float32 and sum only, root 0, as fgbench's raw loops."""
import argparse
import sys
import time

# Sizes as bench_raw.h: BYTES is the larger buffer of one rank; these split it per rank.
PER_RANK = {"allgather", "alltoall"}
FACTORS = {"allreduce": lambda n: 2 * (n - 1) / n, "allgather": lambda n: (n - 1) / n,
           "alltoall": lambda n: (n - 1) / n, "broadcast": lambda n: 1.0,
           "reduce": lambda n: 1.0}


def parse_size(text):
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.upper().rstrip("B").rstrip("I")
    unit = t[-1] if t and t[-1] in units else ""
    return int(t[:-1] if unit else t) * units[unit]


def one_call(dist, torch, coll, count, world):
    """The tensors for a collective of `count` elements (per rank where split), and a call."""
    send = (torch.arange(count * (world if coll == "alltoall" else 1)) % 7).float()
    if coll == "allreduce":
        return lambda: dist.all_reduce(send)
    if coll == "broadcast":
        return lambda: dist.broadcast(send, 0)
    if coll == "reduce":
        return lambda: dist.reduce(send, 0)
    if coll == "allgather":
        outs = [torch.empty(count) for _ in range(world)]
        return lambda: dist.all_gather(outs, send)
    if coll == "alltoall":
        recv = torch.empty_like(send)
        return lambda: dist.all_to_all_single(recv, send)
    raise ValueError(f"unknown collective {coll}")


def time_batch(dist, torch, coll, nbytes, iters, warmup):
    world = dist.get_world_size()
    count = nbytes // 4 // (world if coll in PER_RANK else 1)
    if count == 0:
        raise ValueError(f"{nbytes} B is too small for {coll} on {world} ranks")
    call = one_call(dist, torch, coll, count, world)
    for _ in range(warmup):
        call()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(iters):
        call()
    us = torch.tensor([(time.perf_counter() - t0) * 1e6 / iters], dtype=torch.float64)
    dist.all_reduce(us, op=dist.ReduceOp.MAX)
    return us.item()


def serve(dist, torch, args):
    print("imported", flush=True)
    if sys.stdin.readline().strip() != "connect":
        return 0
    dist.init_process_group("gloo", init_method=args.init_method, rank=args.rank,
                            world_size=args.world_size)
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        try:
            coll, nbytes, iters, warmup = words[0], int(words[1]), int(words[2]), int(words[3])
            print(f"{time_batch(dist, torch, coll, nbytes, iters, warmup):.3f}", flush=True)
        except Exception as e:  # one line back to fgbench, which reports it
            print(f"error: {type(e).__name__}: {e}", flush=True)
    return 0


def sweep(dist, torch, args):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    factor = FACTORS[args.coll](world)
    if rank == 0:
        print(f"# torch {torch.__version__} gloo {args.coll}: {world} ranks, float32 sum")
        print(f"#{'size':>12}  {'count':>12}  {'time':>9}  {'algbw':>7}  {'busbw':>7}")
        print(f"#{'(B)':>12}  {'(elements)':>12}  {'(us)':>9}  {'(GB/s)':>7}  {'(GB/s)':>7}")
    nbytes = args.minbytes
    while nbytes <= args.maxbytes:
        count = nbytes // 4 // (world if args.coll in PER_RANK else 1)
        if count:
            size = count * 4 * (world if args.coll in PER_RANK else 1)
            runs = sorted(time_batch(dist, torch, args.coll, nbytes, args.iters,
                                     args.warmup if i == 0 else 1) for i in range(args.repeat))
            us = runs[len(runs) // 2]
            algbw = size / (us * 1e3)
            if rank == 0:
                print(f"{size:13d}  {count:12d}  {us:9.1f}  {algbw:7.3f}  {algbw * factor:7.3f}",
                      flush=True)
        nbytes = int(nbytes * args.stepfactor)
    dist.destroy_process_group()
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-b", "--minbytes", type=parse_size, default=parse_size("4K"))
    p.add_argument("-e", "--maxbytes", type=parse_size, default=parse_size("64M"))
    p.add_argument("-f", "--stepfactor", type=float, default=2)
    p.add_argument("-i", "--iters", type=int, default=20)
    p.add_argument("-w", "--warmup_iters", dest="warmup", type=int, default=5)
    p.add_argument("-R", "--repeat", type=int, default=1)
    p.add_argument("--coll", choices=sorted(FACTORS), default="allreduce")
    p.add_argument("--serve", action="store_true", help="fgbench's peer: commands on stdin")
    p.add_argument("--init-method")
    p.add_argument("--rank", type=int)
    p.add_argument("--world-size", type=int)
    args = p.parse_args()
    try:
        import torch
        import torch.distributed as dist
    except ImportError as e:
        print(f"error: torch is not importable by {sys.executable}: {e}", flush=True)
        return 1
    torch.set_num_threads(1)
    return serve(dist, torch, args) if args.serve else sweep(dist, torch, args)


if __name__ == "__main__":
    sys.exit(main())
