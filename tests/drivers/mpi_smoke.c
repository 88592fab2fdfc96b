/* mpi_smoke - drives every operation of one backend under mpirun for the integration tests.
 *
 *   mpirun -np N mpi_smoke [--backend B] [--timeout-ms MS] CASE
 *
 * Cases (each prints "ok CASE" on success; on failure "rank R: ..." and exits 1):
 *   all          every collective, dtype and reduction (in and out of place), point-to-point
 *                and blobs on the world, on split groups, a new_group and, for an even world,
 *                a 2 x N/2 mesh; results checked against the reduction kernels
 *   init         init and destroy only (prints the init error and exits 2 on failure)
 *   mismatch     rank 1 passes a larger count to allreduce; prints every rank's error
 *   timeout      the last rank skips a barrier; the others must give up with -ETIMEDOUT
 *   group-timeout  the same on a group of every rank
 *   p2p-timeout  rank 0 waits for a message nobody sends
 * After a timeout the next call on the communicator must be refused at once.
 *
 * Error lines read "rank R: err CODE: MESSAGE". */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm_internal.h"
#include "smoke_pattern.h"
#include "smoke_util.h"

static const char *code_name(int rc) {
  switch (rc) {
    case -ETIMEDOUT: return "ETIMEDOUT";
    case -EINVAL: return "EINVAL";
    case FG_EMISMATCH: return "FG_EMISMATCH";
    case FG_EBACKEND: return "FG_EBACKEND";
    case FG_EPEER: return "FG_EPEER";
    case FG_ENOTBUILT: return "FG_ENOTBUILT";
    default: return fg_strerror(rc);
  }
}

/* --- values ------------------------------------------------------------------------------ */

/* pattern.h's kernel values: products stay powers of two, sums small (int8 sums of 6 ranks
 * fit), but element 0 of int32 and int64 sums is near the top of the range, so it wraps. */
static pattern values(fg_dtype dt, fg_redop op) {
  return (pattern){.kind = PATTERN_KERNEL, .dt = dt, .op = op, .wrap = 1};
}

static void same(fg_comm *c, const char *what, fg_dtype dt, const void *want, const void *got,
                 size_t n) {
  size_t esz = fg_dtype_size(dt);
  g_checks++;
  if (!memcmp(want, got, n * esz)) return;
  for (size_t i = 0; i < n; i++)
    if (memcmp((const char *)want + i * esz, (const char *)got + i * esz, esz))
      DIE("%s %s on %s: element %zu: expected %g, got %g", what, fg_dtype_name(dt),
          fg_comm_name(c), i, fg_dtype_get(want, dt, i), fg_dtype_get(got, dt, i));
}

/* --- the checks -------------------------------------------------------------------------- */

static void reductions(fg_comm *c, fg_dtype dt, fg_redop op) {
  int me = fg_comm_rank(c), n = fg_comm_size(c), root = n - 1;
  size_t esz = fg_dtype_size(dt);
  pattern p = values(dt, op);
  void *want = pattern_reduced(&p, n, 0, COUNT);
  void *send = pattern_alloc(&p, me, 0, COUNT), *recv = calloc(COUNT, esz);
  CHECK(c, fg_allreduce(c, send, recv, COUNT, dt, op));
  same(c, "allreduce", dt, want, recv, COUNT);
  CHECK(c, fg_allreduce(c, send, send, COUNT, dt, op)); /* in place */
  same(c, "allreduce in place", dt, want, send, COUNT);
  free(send);
  send = pattern_alloc(&p, me, 0, COUNT);
  memset(recv, 0, COUNT * esz);
  CHECK(c, fg_reduce(c, send, me == root ? recv : NULL, COUNT, dt, op, root));
  if (me == root) same(c, "reduce", dt, want, recv, COUNT);
  CHECK(c, fg_reduce(c, send, send, COUNT, dt, op, 0));
  if (me == 0) same(c, "reduce in place", dt, want, send, COUNT);
  free(send);
  free(want);
  /* reduce_scatter: block r of the reduction of every rank's n-block buffer. */
  want = pattern_reduced(&p, n, (size_t)me * COUNT, COUNT);
  send = pattern_alloc(&p, me, 0, COUNT * (size_t)n);
  CHECK(c, fg_reduce_scatter(c, send, recv, COUNT, dt, op));
  same(c, "reduce_scatter", dt, want, recv, COUNT);
  CHECK(c, fg_reduce_scatter(c, send, send, COUNT, dt, op));
  same(c, "reduce_scatter in place", dt, want, send, COUNT);
  free(want);
  free(send);
  free(recv);
}

static void movement(fg_comm *c, fg_dtype dt) {
  int me = fg_comm_rank(c), n = fg_comm_size(c), root = n > 1 ? 1 : 0;
  size_t esz = fg_dtype_size(dt), all = COUNT * (size_t)n;
  pattern p = values(dt, FG_REDOP_MAX);
  void *mine = pattern_alloc(&p, me, 0, COUNT), *want = calloc(all, esz),
       *recv = calloc(all, esz);
  for (int r = 0; r < n; r++)
    pattern_fill((char *)want + (size_t)r * COUNT * esz, &p, r, 0, COUNT);
  void *buf = pattern_alloc(&p, me, 0, COUNT);
  CHECK(c, fg_broadcast(c, buf, COUNT, dt, root));
  same(c, "broadcast", dt, (char *)want + (size_t)root * COUNT * esz, buf, COUNT);
  CHECK(c, fg_allgather(c, mine, recv, COUNT, dt));
  same(c, "allgather", dt, want, recv, all);
  memset(recv, 0, all * esz);
  memcpy(recv, mine, COUNT * esz); /* in place: send is the start of recv */
  CHECK(c, fg_allgather(c, recv, recv, COUNT, dt));
  same(c, "allgather in place", dt, want, recv, all);
  memset(recv, 0, all * esz);
  CHECK(c, fg_gather(c, mine, recv, COUNT, dt, root));
  if (me == root) same(c, "gather", dt, want, recv, all);
  /* scatter: the root sends block r to rank r; the gathered buffer is a fine source. */
  memset(buf, 0, COUNT * esz);
  CHECK(c, fg_scatter(c, me == root ? want : NULL, buf, COUNT, dt, root));
  same(c, "scatter", dt, mine, buf, COUNT);
  void *send = calloc(all, esz), *wantx = calloc(all, esz);
  alltoall_values(send, wantx, dt, me, n);
  CHECK(c, fg_alltoall(c, send, recv, COUNT, dt));
  same(c, "alltoall", dt, wantx, recv, all);
  CHECK(c, fg_alltoall(c, send, send, COUNT, dt));
  same(c, "alltoall in place", dt, wantx, send, all);
  /* allgatherv: rank r contributes r+1 elements. */
  size_t total;
  void *vwant;
  size_t *counts = allgatherv_layout(&p, n, &vwant, &total);
  void *vrecv = calloc(total, esz);
  CHECK(c, fg_allgatherv(c, mine, vrecv, counts, dt));
  same(c, "allgatherv", dt, vwant, vrecv, total);
  free(counts), free(vwant), free(vrecv), free(send), free(wantx);
  free(mine), free(want), free(recv), free(buf);
}

static void point_to_point(fg_comm *c) {
  int me = fg_comm_rank(c), n = fg_comm_size(c);
  if (n == 1) return;
  int next = (me + 1) % n, prev = (me + n - 1) % n;
  int64_t out[COUNT], in[COUNT], want[COUNT];
  for (int i = 0; i < COUNT; i++) out[i] = me * 1000 + i, want[i] = prev * 1000 + i;
  fg_p2p_op ops[2] = {{1, out, COUNT, FG_INT64, next}, {0, in, COUNT, FG_INT64, prev}};
  fg_batch *b;
  CHECK(c, fg_batch_start(c, ops, 2, &b));
  CHECK(c, fg_batch_wait(b));
  same(c, "batch ring", FG_INT64, want, in, COUNT);
  if (me == 0) CHECK(c, fg_send(c, out, COUNT, FG_INT64, n - 1));
  if (me == n - 1) {
    CHECK(c, fg_recv(c, in, COUNT, FG_INT64, 0));
    for (int i = 0; i < COUNT; i++) want[i] = i;
    same(c, "send/recv", FG_INT64, want, in, COUNT);
  }
  broadcast_blob(c);
}

static void everything(fg_comm *c) {
  every_dtype(c, reductions, movement);
  point_to_point(c);
}

static void groups(fg_comm *w) {
  int me = fg_comm_rank(w), n = fg_comm_size(w);
  fg_comm *g;
  /* Odd and even ranks, in reverse order (key), and a rank that joins none. */
  CHECK(w, fg_comm_split(w, n > 2 && me == n - 1 ? -1 : me % 2, -me, &g));
  if (g) {
    if (fg_comm_world_rank(g, fg_comm_rank(g)) != me) DIE("split: wrong world rank");
    everything(g);
    fg_comm_destroy(g);
  } else if (!(n > 2 && me == n - 1)) {
    DIE("split: no group for colour %d", me % 2);
  }
  int ends[2] = {0, n - 1};
  CHECK(w, fg_comm_new_group(w, ends, n > 1 ? 2 : 1, &g));
  if (g) {
    everything(g);
    fg_comm_destroy(g);
  }
  if (n % 2 || n < 4) return;
  fg_mesh *m;
  int sizes[2] = {2, n / 2};
  const char *names[2] = {"dp", "tp"};
  CHECK(w, fg_mesh_create(w, 2, sizes, names, &m));
  for (int d = 0; d < 2; d++) everything(fg_mesh_group(m, d));
  fg_mesh_destroy(m);
}

/* --- failure cases ---------------------------------------------------------------------- */

static void mismatch(fg_comm *w) {
  int32_t buf[8] = {0};
  report(w, fg_allreduce(w, buf, buf, g_rank == 1 ? 5 : 4, FG_INT32, FG_REDOP_SUM));
}

/* On the world, or (in_group) on a group of every rank, whose name the messages carry. */
static int timeout(fg_comm *w, int p2p, int in_group) {
  int n = fg_comm_size(w), all[64];
  fg_comm *c = w;
  for (int i = 0; i < n && i < 64; i++) all[i] = i;
  if (in_group) CHECK(w, fg_comm_new_group(w, all, n, &c));
  int rc = 0;
  int32_t x = 0;
  if (!p2p && g_rank == n - 1) {
    sleep(4); /* long past the others' timeout; then leave without the barrier */
  } else if (!p2p || g_rank == 0) {
    rc = report(c, p2p ? fg_recv(c, &x, 1, FG_INT32, n - 1) : fg_barrier(c));
    if (rc != -ETIMEDOUT) DIE("expected ETIMEDOUT");
    rc = report(c, fg_allreduce(c, &x, &x, 1, FG_INT32, FG_REDOP_SUM)); /* refused, no new wait */
    rc = rc == -ETIMEDOUT ? 0 : 1;
  }
  if (c != w) fg_comm_destroy(c);
  return rc;
}

int main(int argc, char **argv) {
  fg_comm_options o;
  fg_comm_options_init(&o);
  const char *what = "all";
  for (int i = 1; i < argc; i++) {
    if (!common_option(argc, argv, &i, &o)) what = argv[i];
  }
  fg_comm *w;
  char err[512];
  int rc = fg_comm_init(&w, &o, err, sizeof err);
  if (rc != 0) {
    printf("init failed: %s: %s\n", code_name(rc), err);
    return 2;
  }
  g_rank = fg_comm_rank(w);
  int status = 0;
  if (!strcmp(what, "all")) {
    everything(w);
    groups(w);
    CHECK(w, fg_barrier(w));
    if (g_rank == 0) printf("checks: %ld per rank 0\n", g_checks);
  } else if (!strcmp(what, "mismatch")) {
    mismatch(w);
  } else if (strstr(what, "timeout")) {
    status = timeout(w, !strcmp(what, "p2p-timeout"), !strcmp(what, "group-timeout"));
  } else if (strcmp(what, "init")) {
    DIE("unknown case %s", what);
  }
  if (status == 0 && g_rank == 0) printf("ok %s\n", what);
  fflush(stdout);
  fg_comm_destroy(w);
  return status;
}
