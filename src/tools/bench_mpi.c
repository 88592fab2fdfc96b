/* bench_mpi.c - fgbench's raw MPI rows: plain blocking MPI collectives in a loop (see
 * bench_raw.h). Built with MPI's flags; without MPI every call says FG_ENOTBUILT. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fg/fg.h"
#include "tools/bench_raw.h"

#ifndef FG_HAVE_MPI

const char *fg_bench_raw_mpi_coll(int i) {
  (void)i;
  return NULL;
}

int fg_bench_raw_mpi_ready(void) { return 0; }

int fg_bench_raw_mpi(const char *coll, size_t bytes, int iters, int warmup, double *us) {
  (void)coll, (void)bytes, (void)iters, (void)warmup;
  *us = 0;
  return FG_ENOTBUILT;
}

#else
#include <limits.h>
#include <mpi.h>

typedef struct raw {
  MPI_Comm comm;
  int rank, size;
  int count; /* elements per call, per rank or per peer as bench_raw.h says */
  float *send, *recv;
} raw;

static int run_allreduce(const raw *r) {
  return MPI_Allreduce(r->send, r->recv, r->count, MPI_FLOAT, MPI_SUM, r->comm);
}

static int run_broadcast(const raw *r) {
  return MPI_Bcast(r->send, r->count, MPI_FLOAT, 0, r->comm);
}

static int run_reduce(const raw *r) {
  return MPI_Reduce(r->send, r->recv, r->count, MPI_FLOAT, MPI_SUM, 0, r->comm);
}

static int run_allgather(const raw *r) {
  return MPI_Allgather(r->send, r->count, MPI_FLOAT, r->recv, r->count, MPI_FLOAT, r->comm);
}

static int run_reduce_scatter(const raw *r) {
  return MPI_Reduce_scatter_block(r->send, r->recv, r->count, MPI_FLOAT, MPI_SUM, r->comm);
}

static int run_alltoall(const raw *r) {
  return MPI_Alltoall(r->send, r->count, MPI_FLOAT, r->recv, r->count, MPI_FLOAT, r->comm);
}

static int run_sendrecv(const raw *r) {
  int next = (r->rank + 1) % r->size, prev = (r->rank + r->size - 1) % r->size;
  return MPI_Sendrecv(r->send, r->count, MPI_FLOAT, next, 0, r->recv, r->count, MPI_FLOAT,
                      prev, 0, r->comm, MPI_STATUS_IGNORE);
}

static const struct {
  const char *name;
  int (*once)(const raw *r);
  int per_rank; /* the count is a size-th of the buffer */
} colls[] = {
    {"allreduce", run_allreduce, 0},   {"broadcast", run_broadcast, 0},
    {"reduce", run_reduce, 0},         {"allgather", run_allgather, 1},
    {"reduce_scatter", run_reduce_scatter, 1}, {"alltoall", run_alltoall, 1},
    {"sendrecv", run_sendrecv, 0},
};

enum { NCOLLS = sizeof colls / sizeof colls[0] };

const char *fg_bench_raw_mpi_coll(int i) { return i >= 0 && i < NCOLLS ? colls[i].name : NULL; }

int fg_bench_raw_mpi_ready(void) {
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  return inited && !finalized;
}

static int timed_loop(const raw *r, int (*once)(const raw *), int iters, int warmup, double *us) {
  for (int i = 0; i < warmup; i++)
    if (once(r) != MPI_SUCCESS) return FG_EBACKEND;
  if (MPI_Barrier(r->comm) != MPI_SUCCESS) return FG_EBACKEND;
  double t0 = MPI_Wtime();
  for (int i = 0; i < iters; i++)
    if (once(r) != MPI_SUCCESS) return FG_EBACKEND;
  double mine = (MPI_Wtime() - t0) * 1e6 / iters, slowest = 0;
  if (MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, r->comm) != MPI_SUCCESS)
    return FG_EBACKEND;
  *us = slowest;
  return 0;
}

int fg_bench_raw_mpi(const char *coll, size_t bytes, int iters, int warmup, double *us) {
  *us = 0;
  int which = 0, inited = 0;
  while (which < NCOLLS && strcmp(colls[which].name, coll)) which++;
  MPI_Initialized(&inited);
  if (which == NCOLLS || iters < 1 || warmup < 0 || !inited) return -EINVAL;
  raw r = {.comm = MPI_COMM_NULL};
  /* Our own communicator, with errors returned, whatever the application set on its world. */
  if (MPI_Comm_dup(MPI_COMM_WORLD, &r.comm) != MPI_SUCCESS) return FG_EBACKEND;
  MPI_Comm_set_errhandler(r.comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(r.comm, &r.rank);
  MPI_Comm_size(r.comm, &r.size);
  size_t elements = bytes / sizeof(float);
  size_t count = colls[which].per_rank ? elements / (size_t)r.size : elements;
  int rc = count > INT_MAX ? -EINVAL : 0;
  r.count = (int)count;
  /* Every collective here fits in two buffers of `bytes`; calloc(0) may return NULL. */
  r.send = malloc(bytes + sizeof(float));
  r.recv = malloc(bytes + sizeof(float));
  if (rc == 0 && (!r.send || !r.recv)) rc = -ENOMEM;
  /* A rank that cannot run must not leave the others waiting in the loop. */
  int worst = rc;
  if (MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MIN, r.comm) != MPI_SUCCESS) worst = FG_EBACKEND;
  rc = worst;
  if (rc == 0) {
    for (size_t i = 0; i < elements; i++) r.send[i] = (float)((i + (size_t)r.rank) % 7);
    memset(r.recv, 0, bytes);
    rc = timed_loop(&r, colls[which].once, iters, warmup, us);
  }
  free(r.send);
  free(r.recv);
  MPI_Comm_free(&r.comm);
  return rc;
}
#endif
