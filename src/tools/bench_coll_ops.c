/* bench_coll_ops.c - the collectives `fgbench` knows, one small struct each (see
 * bench_coll.h), and the values ranks contribute (pattern.h's), tabulated. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tools/bench_coll.h"
#include "tools/pattern.h"

/* --- values ------------------------------------------------------------------------------ */

/* pattern.h's exact values, whose periods (100, 5, 20, 11) divide BC_PERIOD; only the first
 * 16 ranks give twos to a product, so products are at most 16 on any world. */
int bc_values_make(bc_values *v, int size, fg_dtype dt, fg_redop op, int reduces) {
  v->size = size;
  v->input = malloc(sizeof *v->input * BC_PERIOD * (size_t)size);
  v->folded = malloc(sizeof *v->folded * BC_PERIOD);
  if (!v->input || !v->folded) {
    bc_values_free(v);
    return -ENOMEM;
  }
  pattern p = {.kind = PATTERN_EXACT, .dt = dt, .op = op, .reduces = reduces, .twos_ranks = 16};
  for (size_t j = 0; j < BC_PERIOD; j++) {
    for (int r = 0; r < size; r++) v->input[(size_t)r * BC_PERIOD + j] = pattern_value(&p, r, j);
    /* AVG is SUM divided by the ranks: integer types truncate, as C division does. */
    double all = pattern_fold(&p, size, j);
    v->folded[j] = op == FG_REDOP_AVG && dt < FG_FLOAT16 ? trunc(all) : all;
  }
  return 0;
}

void bc_values_free(bc_values *v) {
  free(v->input);
  free(v->folded);
  v->input = v->folded = NULL;
}

double bc_input(const bc_call *k, int r, size_t j) {
  return k->v->input[(size_t)r * BC_PERIOD + (j + k->shift) % BC_PERIOD];
}

static double folded(const bc_call *k, size_t j) {
  return k->v->folded[(j + k->shift) % BC_PERIOD];
}

/* Block j / count of a buffer with a block per rank, and the index within it. */
static int block_of(const bc_call *k, size_t j) { return (int)(j / k->count); }
static size_t within(const bc_call *k, size_t j) { return j % k->count; }

/* --- bus-bandwidth factors (nccl-tests' PERFORMANCE.md) ---------------------------------- */

static double factor_allreduce(int n) { return 2.0 * (n - 1) / n; }
static double factor_ring(int n) { return (double)(n - 1) / n; }
static double factor_one(int n) {
  (void)n;
  return 1.0;
}

/* --- the collectives --------------------------------------------------------------------- */

static int run_allreduce(const bc_call *k) {
  return fg_allreduce(k->comm, k->send, k->recv, k->count, k->dt, k->op);
}
static double expect_allreduce(const bc_call *k, size_t j) { return folded(k, j); }

static int run_allgather(const bc_call *k) {
  return fg_allgather(k->comm, k->send, k->recv, k->count, k->dt);
}
static double expect_allgather(const bc_call *k, size_t j) {
  return bc_input(k, block_of(k, j), within(k, j));
}

static int run_reduce_scatter(const bc_call *k) {
  return fg_reduce_scatter(k->comm, k->send, k->recv, k->count, k->dt, k->op);
}
static double expect_reduce_scatter(const bc_call *k, size_t j) {
  return folded(k, (size_t)k->rank * k->count + j);
}

static int run_alltoall(const bc_call *k) {
  return fg_alltoall(k->comm, k->send, k->recv, k->count, k->dt);
}
/* Block b came from rank b, which sent it its block number `rank`. */
static double expect_alltoall(const bc_call *k, size_t j) {
  return bc_input(k, block_of(k, j), (size_t)k->rank * k->count + within(k, j));
}

static int run_broadcast(const bc_call *k) {
  return fg_broadcast(k->comm, k->recv, k->count, k->dt, k->root);
}
static double expect_broadcast(const bc_call *k, size_t j) { return bc_input(k, k->root, j); }

static int run_reduce(const bc_call *k) {
  return fg_reduce(k->comm, k->send, k->recv, k->count, k->dt, k->op, k->root);
}
static double expect_reduce(const bc_call *k, size_t j) {
  return k->rank == k->root ? folded(k, j) : NAN;
}

static int run_gather(const bc_call *k) {
  return fg_gather(k->comm, k->send, k->recv, k->count, k->dt, k->root);
}
static double expect_gather(const bc_call *k, size_t j) {
  return k->rank == k->root ? expect_allgather(k, j) : NAN;
}

static int run_scatter(const bc_call *k) {
  return fg_scatter(k->comm, k->send, k->recv, k->count, k->dt, k->root);
}
static double expect_scatter(const bc_call *k, size_t j) {
  return bc_input(k, k->root, (size_t)k->rank * k->count + j);
}

/* A ring: send to rank + 1, receive from rank - 1. */
static int run_sendrecv(const bc_call *k) {
  int next = (k->rank + 1) % k->size, prev = (k->rank + k->size - 1) % k->size;
  fg_p2p_op ops[2] = {{1, k->send, k->count, k->dt, next}, {0, k->recv, k->count, k->dt, prev}};
  if (k->size == 1) return 0; /* nobody to talk to: nothing moves */
  fg_batch *b = NULL;
  int rc = fg_batch_start(k->comm, ops, 2, &b);
  return rc ? rc : fg_batch_wait(b);
}
static double expect_sendrecv(const bc_call *k, size_t j) {
  return k->size == 1 ? NAN : bc_input(k, (k->rank + k->size - 1) % k->size, j);
}

/* nccl-tests' buffers (blocks of count: 1, or 0 for one per rank) and in-place offsets (in
 * blocks, times the rank): in place, allgather and gather send from their own block of the
 * receive buffer, reduce_scatter and scatter receive into their block of the send buffer. */
#define COLL(name, flags, sb, rb, send_in_place, recv_in_place, factor)                        \
  static const bc_coll coll_##name = {#name,         flags,          sb, rb, send_in_place, \
                                      recv_in_place, run_##name, expect_##name, factor}

COLL(allreduce, BC_REDUCES, 1, 1, 0, 0, factor_allreduce);
COLL(allgather, BC_PER_RANK, 1, 0, 1, 0, factor_ring);
COLL(reduce_scatter, BC_REDUCES | BC_PER_RANK, 0, 1, 0, 1, factor_ring);
COLL(alltoall, BC_PER_RANK | BC_NO_IN_PLACE_CHECK, 0, 0, 0, 0, factor_ring);
COLL(broadcast, BC_ROOTED | BC_ONE_BUFFER | BC_FROM_ROOT, 1, 1, 0, 0, factor_one);
COLL(reduce, BC_REDUCES | BC_ROOTED, 1, 1, 0, 0, factor_one);
COLL(gather, BC_ROOTED | BC_PER_RANK, 1, 0, 1, 0, factor_ring);
COLL(scatter, BC_ROOTED | BC_PER_RANK | BC_FROM_ROOT, 0, 1, 0, 1, factor_ring);
COLL(sendrecv, BC_NO_IN_PLACE_CHECK, 1, 1, 0, 0, factor_one);

const bc_coll *const bc_colls[] = {&coll_allreduce, &coll_allgather, &coll_reduce_scatter,
                                   &coll_alltoall,  &coll_broadcast, &coll_reduce,
                                   &coll_gather,    &coll_scatter,   &coll_sendrecv,
                                   NULL};

const bc_coll *bc_find(const char *name) {
  for (int i = 0; bc_colls[i]; i++)
    if (!strcmp(bc_colls[i]->name, name)) return bc_colls[i];
  return NULL;
}
