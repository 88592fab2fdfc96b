/* bench_raw.h - the plain library loops fgbench sets beside ours: the same collective
 * called straight on the communication library, so a report shows what fgcomm's layer
 * costs on top of it.
 *
 * Sizes follow nccl-tests: `bytes` is the size of the larger buffer on one rank, in
 * float32 elements (bytes / 4, rounded down):
 *
 *   allreduce, broadcast, reduce   count = bytes / 4 (sum; root 0)
 *   allgather                      each rank gives bytes / 4 / size, receives all of it
 *   reduce_scatter                 each rank gives bytes / 4, receives bytes / 4 / size
 *   alltoall                       bytes / 4 / size elements to and from each rank
 *   sendrecv                       bytes / 4 to the next rank, from the previous one
 *
 * Every rank of the world calls it with the same arguments. */
#ifndef FG_TOOLS_BENCH_RAW_H
#define FG_TOOLS_BENCH_RAW_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The i-th collective fg_bench_raw_mpi knows, from 0; NULL past the last (at once
 * without MPI). */
const char *fg_bench_raw_mpi_coll(int i);
/* 1 if MPI is initialised (by fg_comm_init under mpirun), so the loops can run. */
int fg_bench_raw_mpi_ready(void);

/* Times `iters` back-to-back calls of MPI's blocking `coll` on a duplicate of
 * MPI_COMM_WORLD, after `warmup` untimed ones. *us gets the microseconds per call, the
 * slowest rank's (the same on every rank). MPI must be initialised already (fg_comm_init
 * with the mpi backend, or gloo under mpirun, does that); the calls have no timeout.
 * Returns 0, -EINVAL (unknown coll, iters < 1, a count over INT_MAX, MPI not initialised),
 * -ENOMEM (on any rank: the ranks agree before timing), FG_EBACKEND (MPI failed) or
 * FG_ENOTBUILT (no MPI in this build). */
int fg_bench_raw_mpi(const char *coll, size_t bytes, int iters, int warmup, double *us);

/* The same loops on gloo alone (bench_gloo_raw.cc): a TCP device and a context of their own,
 * meeting through gloo's FileStore, float32 and gloo::sum as a plain gloo program (or
 * torch's ProcessGroupGloo) uses them; new options and buffers every call, as torch makes
 * them. reduce_scatter is not among them: gloo has none. */
typedef struct fg_bench_gloo fg_bench_gloo;

/* Connects rank to every other rank of a world of `size`: listens on host (an address or
 * a name) and meets the others under dir, a directory every rank can reach (emptied by the
 * caller afterwards). Collective over the ranks. Returns 0, FG_EBACKEND (err says why) or
 * FG_ENOTBUILT (no gloo in this build). */
int fg_bench_raw_gloo_open(int rank, int size, const char *dir, const char *host, int timeout_ms,
                           fg_bench_gloo **out, char *err, size_t errlen);
void fg_bench_raw_gloo_close(fg_bench_gloo *g);
/* The i-th collective fg_bench_raw_gloo knows, from 0; NULL past the last. */
const char *fg_bench_raw_gloo_coll(int i);
/* As fg_bench_raw_mpi; returns 0, -EINVAL, -ENOMEM or FG_EBACKEND. */
int fg_bench_raw_gloo(fg_bench_gloo *g, const char *coll, size_t bytes, int iters, int warmup,
                      double *us);

#ifdef __cplusplus
}
#endif
#endif
