/* nccl_smoke - drives every operation of a device-memory backend (nccl) on this machine's
 * GPUs, for tests/integration/test_comm_nccl.py and scripts/gpu-check.sh. Buffers come from
 * fg_comm_malloc, so any backend works; nccl is the default.
 *
 *   nccl_smoke [--backend B] [--timeout-ms MS] [--local-rank N] [--skip-if-no-device]
 *              [--iters N] CASE
 *
 * Cases (each prints "ok CASE" on rank 0 when it passes; a failed check prints
 * "rank R: ..." and exits 1):
 *   backends  prints "backends: LIST" (fg_comm_backends) without joining anything
 *   all       every collective, dtype and reduction (in and out of place), count 0, blobs,
 *             point-to-point when the world has 2 ranks or more, on the world, on a split, a
 *             new_group and a 1 x N mesh; results downloaded and checked on the host
 *   init      init and destroy only
 *   latency   average time of N 8-byte float32 allreduces, and the bus bandwidth of a 64 MiB
 *             one: "latency: allreduce 8 B: X us/op" and "latency: allreduce 64 MiB: Y GB/s"
 *   refused   an operation with a bad dtype fails with EINVAL and leaves the world usable
 *   timeout   (2 ranks or more) the last rank skips a barrier: the others must give up with
 *             ETIMEDOUT, and their next call must be refused at once with the same code
 *
 * When init fails: "init failed: CODE: MESSAGE" and exit 2, or, with --skip-if-no-device and
 * FG_ENODEV, "SKIP: MESSAGE" and exit 0. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm_internal.h"
#include "common/util.h"
#include "smoke_pattern.h"
#include "smoke_util.h"

static const char *code_name(int rc) { return fg_err_name(rc); }

/* --- device buffers ---------------------------------------------------------------------- */

static void *dev_alloc(fg_comm *c, size_t bytes) {
  void *p = NULL;
  CHECK(c, fg_comm_malloc(c, bytes, &p));
  return p;
}

static void *dev_copy(fg_comm *c, const void *host, size_t bytes) {
  void *p = dev_alloc(c, bytes);
  CHECK(c, fg_comm_upload(c, p, host, bytes));
  return p;
}

static void *host_copy(fg_comm *c, const void *dev, size_t bytes) {
  void *p = calloc(1, bytes ? bytes : 1);
  CHECK(c, fg_comm_download(c, p, dev, bytes));
  return p;
}

/* --- values ------------------------------------------------------------------------------ */

/* pattern.h's kernel values: products stay powers of two, sums small. */
static pattern values(fg_dtype dt, fg_redop op) {
  return (pattern){.kind = PATTERN_KERNEL, .dt = dt, .op = op};
}

/* NCCL averages floats by multiplying by 1/size before summing, so those may differ from
 * the host's sum-then-divide in the last place; everything else must match bit for bit. */
static double nccl_avg_slack(fg_dtype dt, double want) {
  (void)dt;
  return 1e-2 * fmax(1, fabs(want));
}

static void same(fg_comm *c, const char *what, fg_dtype dt, fg_redop op, const void *want,
                 const void *dev, size_t n) {
  g_checks++;
  void *got = host_copy(c, dev, n * fg_dtype_size(dt));
  pattern_slack slack = op == FG_REDOP_AVG && dt >= FG_FLOAT16 ? nccl_avg_slack : NULL;
  size_t i = 0;
  if (pattern_wrong(got, dt, want, dt, n, slack, &i))
    DIE("%s %s %s on %s: element %zu of %zu: expected %g, got %g", what, fg_dtype_name(dt),
        op < FG_REDOP_COUNT ? fg_redop_name(op) : "", fg_comm_name(c), i, n,
        fg_dtype_get(want, dt, i), fg_dtype_get(got, dt, i));
  free(got);
}

/* --- the checks -------------------------------------------------------------------------- */

static void reductions(fg_comm *c, fg_dtype dt, fg_redop op) {
  int me = fg_comm_rank(c), n = fg_comm_size(c), root = n - 1;
  size_t esz = fg_dtype_size(dt), bytes = COUNT * esz;
  pattern p = values(dt, op);
  void *want = pattern_reduced(&p, n, 0, COUNT), *mine = pattern_alloc(&p, me, 0, COUNT);
  void *send = dev_copy(c, mine, bytes), *recv = dev_alloc(c, bytes);
  CHECK(c, fg_allreduce(c, send, recv, COUNT, dt, op));
  same(c, "allreduce", dt, op, want, recv, COUNT);
  CHECK(c, fg_allreduce(c, send, send, COUNT, dt, op)); /* in place */
  same(c, "allreduce in place", dt, op, want, send, COUNT);
  CHECK(c, fg_comm_upload(c, send, mine, bytes));
  CHECK(c, fg_reduce(c, send, me == root ? recv : NULL, COUNT, dt, op, root));
  if (me == root) same(c, "reduce", dt, op, want, recv, COUNT);
  CHECK(c, fg_reduce(c, send, send, COUNT, dt, op, 0));
  if (me == 0) same(c, "reduce in place", dt, op, want, send, COUNT);
  fg_comm_free(c, send);
  free(want);
  free(mine);
  /* reduce_scatter: block r of the reduction of every rank's n-block buffer; in place the
   * result lands in this rank's block of send. */
  want = pattern_reduced(&p, n, (size_t)me * COUNT, COUNT);
  mine = pattern_alloc(&p, me, 0, COUNT * (size_t)n);
  send = dev_copy(c, mine, bytes * (size_t)n);
  CHECK(c, fg_reduce_scatter(c, send, recv, COUNT, dt, op));
  same(c, "reduce_scatter", dt, op, want, recv, COUNT);
  void *block = (char *)send + (size_t)me * bytes;
  CHECK(c, fg_reduce_scatter(c, send, block, COUNT, dt, op));
  same(c, "reduce_scatter in place", dt, op, want, block, COUNT);
  fg_comm_free(c, send);
  fg_comm_free(c, recv);
  free(want);
  free(mine);
}

static void movement(fg_comm *c, fg_dtype dt) {
  int me = fg_comm_rank(c), n = fg_comm_size(c), root = n > 1 ? 1 : 0;
  size_t esz = fg_dtype_size(dt), bytes = COUNT * esz, all = bytes * (size_t)n;
  pattern p = values(dt, FG_REDOP_MAX);
  void *mine = pattern_alloc(&p, me, 0, COUNT), *want = calloc(1, all);
  for (int r = 0; r < n; r++) pattern_fill((char *)want + (size_t)r * bytes, &p, r, 0, COUNT);
  void *send = dev_copy(c, mine, bytes), *recv = dev_alloc(c, all);
  void *buf = dev_copy(c, mine, bytes);
  CHECK(c, fg_broadcast(c, buf, COUNT, dt, root));
  same(c, "broadcast", dt, FG_REDOP_COUNT, (char *)want + (size_t)root * bytes, buf, COUNT);
  CHECK(c, fg_allgather(c, send, recv, COUNT, dt));
  same(c, "allgather", dt, FG_REDOP_COUNT, want, recv, COUNT * (size_t)n);
  void *zero = calloc(1, all);
  CHECK(c, fg_comm_upload(c, recv, zero, all));
  void *block = (char *)recv + (size_t)me * bytes; /* in place: send is this rank's block */
  CHECK(c, fg_comm_upload(c, block, mine, bytes));
  CHECK(c, fg_allgather(c, block, recv, COUNT, dt));
  same(c, "allgather in place", dt, FG_REDOP_COUNT, want, recv, COUNT * (size_t)n);
  CHECK(c, fg_comm_upload(c, recv, zero, all));
  CHECK(c, fg_gather(c, send, recv, COUNT, dt, root));
  if (me == root) same(c, "gather", dt, FG_REDOP_COUNT, want, recv, COUNT * (size_t)n);
  /* scatter: the root sends block r to rank r; the gathered buffer is a fine source. */
  void *all_dev = dev_copy(c, want, all);
  CHECK(c, fg_comm_upload(c, buf, zero, bytes));
  CHECK(c, fg_scatter(c, me == root ? all_dev : NULL, buf, COUNT, dt, root));
  same(c, "scatter", dt, FG_REDOP_COUNT, mine, buf, COUNT);
  void *xsend = calloc(1, all), *xwant = calloc(1, all);
  alltoall_values(xsend, xwant, dt, me, n);
  CHECK(c, fg_comm_upload(c, all_dev, xsend, all));
  CHECK(c, fg_alltoall(c, all_dev, recv, COUNT, dt));
  same(c, "alltoall", dt, FG_REDOP_COUNT, xwant, recv, COUNT * (size_t)n);
  /* allgatherv: rank r contributes r+1 elements. */
  size_t total;
  void *vwant;
  size_t *counts = allgatherv_layout(&p, n, &vwant, &total);
  void *vrecv = dev_alloc(c, total * esz);
  CHECK(c, fg_allgatherv(c, send, vrecv, counts, dt));
  same(c, "allgatherv", dt, FG_REDOP_COUNT, vwant, vrecv, total);
  fg_comm_free(c, vrecv), fg_comm_free(c, all_dev), fg_comm_free(c, send);
  fg_comm_free(c, recv), fg_comm_free(c, buf);
  free(counts), free(vwant), free(xsend), free(xwant), free(zero), free(mine), free(want);
}

static void point_to_point(fg_comm *c) {
  int me = fg_comm_rank(c), n = fg_comm_size(c);
  if (n == 1) return;
  int next = (me + 1) % n, prev = (me + n - 1) % n;
  int64_t out[COUNT], want[COUNT];
  for (int i = 0; i < COUNT; i++) out[i] = me * 1000 + i, want[i] = prev * 1000 + i;
  void *dout = dev_copy(c, out, sizeof out), *din = dev_alloc(c, sizeof out);
  fg_p2p_op ops[2] = {{1, dout, COUNT, FG_INT64, next}, {0, din, COUNT, FG_INT64, prev}};
  fg_batch *b;
  CHECK(c, fg_batch_start(c, ops, 2, &b));
  CHECK(c, fg_batch_wait(b));
  same(c, "batch ring", FG_INT64, FG_REDOP_COUNT, want, din, COUNT);
  if (me == 0) CHECK(c, fg_send(c, dout, COUNT, FG_INT64, n - 1));
  if (me == n - 1) {
    CHECK(c, fg_recv(c, din, COUNT, FG_INT64, 0));
    for (int i = 0; i < COUNT; i++) want[i] = i;
    same(c, "send/recv", FG_INT64, FG_REDOP_COUNT, want, din, COUNT);
  }
  fg_comm_free(c, dout);
  fg_comm_free(c, din);
}

static void blobs_and_edges(fg_comm *c) {
  broadcast_blob(c);
  void *empty = dev_alloc(c, 0);
  CHECK(c, fg_allreduce(c, empty, empty, 0, FG_FLOAT32, FG_REDOP_SUM)); /* count 0: nothing to do */
  CHECK(c, fg_broadcast(c, empty, 0, FG_INT8, 0));
  fg_comm_free(c, empty);
  g_checks++;
}

static void everything(fg_comm *c) {
  every_dtype(c, reductions, movement);
  point_to_point(c);
  blobs_and_edges(c);
  CHECK(c, fg_barrier(c));
}

static void groups(fg_comm *w) {
  int me = fg_comm_rank(w), n = fg_comm_size(w);
  fg_comm *g;
  /* Odd and even ranks in reverse order (key), and with 3 ranks or more one that joins none. */
  int outside = n > 2 && me == n - 1;
  CHECK(w, fg_comm_split(w, outside ? -1 : me % 2, -me, &g));
  if ((g == NULL) != outside) DIE("split: %s group for colour %d", g ? "a" : "no", me % 2);
  if (g) {
    if (fg_comm_world_rank(g, fg_comm_rank(g)) != me) DIE("split: wrong world rank");
    everything(g);
    fg_comm_destroy(g);
  }
  int ends[2] = {0, n - 1};
  CHECK(w, fg_comm_new_group(w, ends, n > 1 ? 2 : 1, &g));
  if (g) {
    everything(g);
    fg_comm_destroy(g);
  }
  fg_mesh *m;
  int sizes[2] = {1, n};
  const char *names[2] = {"dp", "tp"};
  CHECK(w, fg_mesh_create(w, 2, sizes, names, &m));
  for (int d = 0; d < 2; d++) {
    fg_comm *dim = fg_mesh_group(m, d);
    if (fg_comm_size(dim) != sizes[d]) DIE("mesh %s has %d ranks", names[d], fg_comm_size(dim));
    float x = 1, *dx = dev_copy(dim, &x, sizeof x);
    CHECK(dim, fg_allreduce(dim, dx, dx, 1, FG_FLOAT32, FG_REDOP_SUM));
    float want = (float)sizes[d];
    same(dim, "mesh allreduce", FG_FLOAT32, FG_REDOP_SUM, &want, dx, 1);
    fg_comm_free(dim, dx);
  }
  fg_mesh_destroy(m);
}

static void latency(fg_comm *w, int iters) {
  size_t big = 64u << 20;
  void *small = dev_alloc(w, 8), *buf = dev_alloc(w, big);
  for (int i = 0; i < 10; i++) CHECK(w, fg_allreduce(w, small, small, 2, FG_FLOAT32, FG_REDOP_SUM));
  double t0 = fg__now_s();
  for (int i = 0; i < iters; i++)
    CHECK(w, fg_allreduce(w, small, small, 2, FG_FLOAT32, FG_REDOP_SUM));
  double small_s = (fg__now_s() - t0) / iters;
  CHECK(w, fg_allreduce(w, buf, buf, big / 4, FG_FLOAT32, FG_REDOP_SUM));
  t0 = fg__now_s();
  for (int i = 0; i < 5; i++)
    CHECK(w, fg_allreduce(w, buf, buf, big / 4, FG_FLOAT32, FG_REDOP_SUM));
  double big_s = (fg__now_s() - t0) / 5;
  int n = fg_comm_size(w);
  /* nccl-tests' bus bandwidth: 2(n-1)/n of the algorithm bandwidth; with 1 rank, the latter. */
  double factor = n > 1 ? 2.0 * (n - 1) / n : 1.0;
  if (g_rank == 0) {
    printf("latency: allreduce 8 B: %.1f us/op (%d ops)\n", small_s * 1e6, iters);
    printf("latency: allreduce 64 MiB: %.1f GB/s bus bandwidth (%.3f ms/op)\n",
           (double)big / big_s / 1e9 * factor, big_s * 1e3);
  }
  fg_comm_free(w, small);
  fg_comm_free(w, buf);
}

static void refused(fg_comm *w) {
  void *x = dev_alloc(w, 8);
  int rc = report(w, fg_allreduce(w, x, x, 1, (fg_dtype)99, FG_REDOP_SUM));
  if (rc != -EINVAL) DIE("a bad dtype gave %s, not EINVAL", code_name(rc));
  CHECK(w, fg_allreduce(w, x, x, 1, FG_FLOAT32, FG_REDOP_SUM));
  fg_comm_free(w, x);
}

static int timeout(fg_comm *w) {
  int n = fg_comm_size(w);
  if (n < 2) DIE("the timeout case needs 2 ranks or more");
  if (g_rank == n - 1) {
    sleep(4); /* long past the others' timeout; then leave without the barrier */
    return 0;
  }
  int rc = report(w, fg_barrier(w));
  if (rc != -ETIMEDOUT) DIE("expected ETIMEDOUT");
  double t0 = fg__now_s();
  rc = report(w, fg_barrier(w));
  if (rc != -ETIMEDOUT || fg__now_s() - t0 > 0.5) DIE("the next call was not refused at once");
  return 0;
}

int main(int argc, char **argv) {
  fg_comm_options o;
  fg_comm_options_init(&o);
  o.backend = "nccl";
  const char *what = "all";
  int skip_if_no_device = 0, iters = 1000;
  for (int i = 1; i < argc; i++) {
    if (common_option(argc, argv, &i, &o)) continue;
    if (!strcmp(argv[i], "--local-rank") && i + 1 < argc)
      o.local_rank = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
      iters = atoi(argv[++i]) > 0 ? atoi(argv[i]) : 1;
    else if (!strcmp(argv[i], "--skip-if-no-device"))
      skip_if_no_device = 1;
    else
      what = argv[i];
  }
  if (!strcmp(what, "backends")) {
    printf("backends: %s\n", fg_comm_backends());
    return 0;
  }
  fg_comm *w;
  char err[512];
  int rc = fg_comm_init(&w, &o, err, sizeof err);
  if (rc != 0) {
    if (skip_if_no_device && rc == FG_ENODEV) {
      printf("SKIP: %s\n", err);
      return 0;
    }
    printf("init failed: %s: %s\n", code_name(rc), err);
    return 2;
  }
  g_rank = fg_comm_rank(w);
  if (fg_comm_host_memory(w) && !strcmp(o.backend, "nccl")) DIE("nccl claims host memory");
  if (!strcmp(what, "all")) {
    everything(w);
    groups(w);
    if (g_rank == 0) printf("checks: %ld on rank 0\n", g_checks);
  } else if (!strcmp(what, "latency")) {
    latency(w, iters);
  } else if (!strcmp(what, "refused")) {
    refused(w);
  } else if (!strcmp(what, "timeout")) {
    timeout(w);
    fflush(stdout);
    fg_comm_destroy(w); /* no barrier: the communicator is gone */
    return 0;
  } else if (strcmp(what, "init")) {
    DIE("unknown case %s", what);
  }
  CHECK(w, fg_barrier(w));
  if (g_rank == 0) printf("ok %s\n", what);
  fflush(stdout);
  fg_comm_destroy(w);
  return 0;
}
