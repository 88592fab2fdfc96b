/* backend_gloo.c - the gloo backend: host memory, TCP between every pair of ranks,
 * rendezvous through our store.
 *
 * Every group gets its own gloo context (connected through the group's store scope) over
 * one TCP device per process. gloo has every collective but reduce-scatter, which is an
 * allreduce here. Reductions always run our kernels (fg__reduce_local3), so half
 * types and integer wrap-around match the other backends. A peer that dies fails every
 * operation of the groups it was in within milliseconds, naming it (gloo_shim.cc keeps
 * that watch); every wait is bounded by the communicator's timeout. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm_internal.h"
#include "comm/gloo_shim.h"
#include "common/host.h"

typedef struct gloo_comm {
  fg_gloo_device *dev; /* the world's; groups borrow it */
  fg_gloo *ctx;
  void *scratch;       /* reduce's output away from the root, kept for the next call */
  size_t scratch_len;
} gloo_comm;

typedef struct p2p_state {
  fg_gloo_batch *batch;
  const char *what;
} p2p_state;

typedef struct reduction {
  fg_dtype dt;
  fg_redop op;
} reduction;

static fg_gloo *ctx_of(const fg_comm *c) { return ((gloo_comm *)c->impl)->ctx; }

static int failed(fg_comm *c, int rc, const char *what, const fg_gloo_error *e) {
  char who[64] = "";
  if (e->peer >= 0 && c->world == c)
    snprintf(who, sizeof who, "peer rank %d: ", e->peer);
  else if (e->peer >= 0)
    snprintf(who, sizeof who, "peer rank %d (world rank %d): ", e->peer,
             fg_comm_world_rank(c, e->peer));
  return fg__comm_fail(c, rc, what, "%s%s", who, e->msg);
}

/* Where this process listens: GLOO_SOCKET_IFNAME as torch reads it, loopback when every
 * rank is on this host, else the address other hosts reach this one at (never a host name
 * that Debian maps to 127.0.1.1). */
static void listen_address(const fg_comm *w, char *host, size_t len, const char **iface) {
  *iface = getenv("GLOO_SOCKET_IFNAME");
  snprintf(host, len, "127.0.0.1");
  if (w->local_size != w->size) fg__advertised_host(host, len);
}

static int connect_group(fg_comm *c, fg_gloo_device *dev, gloo_comm *g) {
  fg_store *scope = NULL;
  int rc = fg_store_scope(c->store, "gloo", &scope);
  if (rc != 0) return fg__comm_fail(c, rc, "rendezvous", "out of memory");
  fg_gloo_error e;
  rc = fg__gloo_connect(dev, scope, c->rank, c->size, c->timeout_ms, &g->ctx, &e);
  fg_store_close(scope);
  return rc ? failed(c, rc, "rendezvous", &e) : 0;
}

static void gloo_destroy(fg_comm *c) {
  gloo_comm *g = c->impl;
  if (!g) return;
  fg__gloo_close(g->ctx);
  fg__gloo_device_close(g->dev);
  free(g->scratch);
  free(g);
  c->impl = NULL;
}

/* gloo writes to its sockets without MSG_NOSIGNAL: a peer that died would kill this process
 * with SIGPIPE instead of failing the operation (Python, hence torch, ignores SIGPIPE; C
 * programs do not). A program that chose its own handling keeps it. */
static void ignore_sigpipe(void) {
  struct sigaction old;
  if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
}

static int gloo_init(fg_comm *w) {
  ignore_sigpipe();
  gloo_comm *g = calloc(1, sizeof *g);
  if (!g) return fg__comm_fail(w, -ENOMEM, "init", "out of memory");
  char host[256];
  const char *iface;
  listen_address(w, host, sizeof host, &iface);
  fg_gloo_error e;
  int rc = fg__gloo_device_open(host, iface, &g->dev, &e);
  if (rc != 0) {
    free(g);
    return fg__comm_fail(w, rc, "init", "cannot listen on %s: %s", iface ? iface : host, e.msg);
  }
  w->impl = g;
  if ((rc = connect_group(w, g->dev, g)) != 0) gloo_destroy(w);
  return rc;
}

static int gloo_split(fg_comm *parent, fg_comm *child, int colour, int key) {
  (void)colour, (void)key;
  if (!child) return 0;
  gloo_comm *g = calloc(1, sizeof *g);
  if (!g) return fg__comm_fail(child, -ENOMEM, "split", "out of memory");
  child->impl = g;
  int rc = connect_group(child, ((gloo_comm *)parent->world->impl)->dev, g);
  if (rc != 0) gloo_destroy(child);
  return rc;
}

/* --- collectives ---------------------------------------------------------------------- */

static void reduce_kernel(void *dst, const void *a, const void *b, size_t n, void *arg) {
  const reduction *r = arg;
  fg__reduce_local3(dst, a, b, n, r->dt, r->op);
}

static fg_gloo_op op_of(const fg_comm *c, const void *send, void *recv, size_t count,
                        fg_dtype dt, int root) {
  return (fg_gloo_op){.send = send, .recv = recv, .count = count,
                      .elem_size = fg_dtype_size(dt), .root = root,
                      .timeout_ms = c->timeout_ms};
}

/* In place for the gathers: this rank's data already sits in its block of recv. */
static const void *unless_own_block(const void *send, const void *recv, size_t offset) {
  return send == (const char *)recv + offset ? NULL : send;
}

static int gloo_barrier(fg_comm *c) {
  fg_gloo_op op = op_of(c, NULL, NULL, 0, FG_UINT8, 0);
  fg_gloo_error e;
  int rc = fg__gloo_barrier(ctx_of(c), &op, &e);
  return rc ? failed(c, rc, "barrier", &e) : 0;
}

static int gloo_broadcast(fg_comm *c, void *buf, size_t count, fg_dtype dt, int root) {
  fg_gloo_op op = op_of(c, NULL, buf, count, dt, root);
  fg_gloo_error e;
  int rc = fg__gloo_broadcast(ctx_of(c), &op, &e);
  return rc ? failed(c, rc, "broadcast", &e) : 0;
}

/* Room for reduce's output away from the root. It is kept: a fresh allocation of a large
 * buffer on every call costs a page fault per page, a good part of the call. */
#define SCRATCH_KEPT_MAX ((size_t)256 << 20)

static void *scratch_of(fg_comm *c, size_t bytes) {
  gloo_comm *g = c->impl;
  if (bytes <= g->scratch_len) return g->scratch;
  void *p = malloc(bytes);
  if (p && bytes <= SCRATCH_KEPT_MAX) {
    free(g->scratch);
    g->scratch = p;
    g->scratch_len = bytes;
  }
  return p;
}

static int gloo_reduce(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt,
                       fg_redop rop, int root) {
  /* gloo's ring leaves partial sums in every rank's output: only root's is the caller's. */
  size_t bytes = count * fg_dtype_size(dt);
  void *scratch = NULL;
  if (c->rank != root && count > 0 && !(scratch = scratch_of(c, bytes)))
    return fg__comm_fail(c, -ENOMEM, "reduce", "out of memory");
  reduction r = {dt, rop};
  fg_gloo_op op = op_of(c, send == recv && !scratch ? NULL : send, scratch ? scratch : recv,
                        count, dt, root);
  op.reduce = reduce_kernel;
  op.reduce_arg = &r;
  fg_gloo_error e;
  int rc = fg__gloo_reduce(ctx_of(c), &op, &e);
  if (scratch && scratch != ((gloo_comm *)c->impl)->scratch) free(scratch);
  return rc ? failed(c, rc, "reduce", &e) : 0;
}

static int gloo_allreduce(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt,
                          fg_redop rop) {
  reduction r = {dt, rop};
  fg_gloo_op op = op_of(c, send == recv ? NULL : send, recv, count, dt, -1);
  op.reduce = reduce_kernel;
  op.reduce_arg = &r;
  fg_gloo_error e;
  int rc = fg__gloo_allreduce(ctx_of(c), &op, &e);
  return rc ? failed(c, rc, "allreduce", &e) : 0;
}

/* gloo has no reduce-scatter: allreduce the whole of send (a ring moves twice what a
 * reduce-scatter would) into the kept scratch, and keep this rank's block. */
static int gloo_reduce_scatter(fg_comm *c, const void *send, void *recv, size_t count,
                               fg_dtype dt, fg_redop rop) {
  size_t block = count * fg_dtype_size(dt), bytes = block * (size_t)c->size;
  void *all = count ? scratch_of(c, bytes) : NULL;
  if (count && !all) return fg__comm_fail(c, -ENOMEM, "reduce_scatter", "out of memory");
  reduction r = {dt, rop};
  fg_gloo_op op = op_of(c, send, all, count * (size_t)c->size, dt, -1);
  op.reduce = reduce_kernel;
  op.reduce_arg = &r;
  fg_gloo_error e;
  int rc = fg__gloo_allreduce(ctx_of(c), &op, &e);
  if (rc == 0 && count) memcpy(recv, (char *)all + (size_t)c->rank * block, block);
  if (all && all != ((gloo_comm *)c->impl)->scratch) free(all);
  return rc ? failed(c, rc, "reduce_scatter", &e) : 0;
}

static int gloo_allgather(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt) {
  size_t mine = (size_t)c->rank * count * fg_dtype_size(dt);
  fg_gloo_op op = op_of(c, unless_own_block(send, recv, mine), recv, count, dt, -1);
  fg_gloo_error e;
  int rc = fg__gloo_allgather(ctx_of(c), &op, &e);
  return rc ? failed(c, rc, "allgather", &e) : 0;
}

static int gloo_allgatherv(fg_comm *c, const void *send, void *recv, const size_t *counts,
                           fg_dtype dt) {
  size_t mine = 0, total = 0;
  for (int r = 0; r < c->size; r++) {
    if (r == c->rank) mine = total;
    total += counts[r];
  }
  fg_gloo_op op = op_of(c, unless_own_block(send, recv, mine * fg_dtype_size(dt)), recv, total,
                        dt, -1);
  op.counts = counts;
  fg_gloo_error e;
  int rc = fg__gloo_allgatherv(ctx_of(c), &op, &e);
  return rc ? failed(c, rc, "allgatherv", &e) : 0;
}

static int gloo_gather(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt,
                       int root) {
  size_t mine = (size_t)root * count * fg_dtype_size(dt);
  fg_gloo_op op = op_of(c, c->rank == root ? unless_own_block(send, recv, mine) : send, recv,
                        count, dt, root);
  fg_gloo_error e;
  int rc = fg__gloo_gather(ctx_of(c), &op, &e);
  return rc ? failed(c, rc, "gather", &e) : 0;
}

static int gloo_scatter(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt,
                        int root) {
  fg_gloo_op op = op_of(c, send, recv, count, dt, root);
  fg_gloo_error e;
  int rc = fg__gloo_scatter(ctx_of(c), &op, &e);
  return rc ? failed(c, rc, "scatter", &e) : 0;
}

static int gloo_alltoall(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt) {
  fg_gloo_op op = op_of(c, send == recv ? NULL : send, recv, count, dt, -1);
  fg_gloo_error e;
  int rc = fg__gloo_alltoall(ctx_of(c), &op, &e);
  return rc ? failed(c, rc, "alltoall", &e) : 0;
}

/* --- point-to-point ------------------------------------------------------------------- */

static const char *batch_name(const fg_p2p_op *ops, size_t n) {
  return n != 1 ? "batch" : ops[0].is_send ? "send" : "recv";
}

static int gloo_p2p_start(fg_comm *c, const fg_p2p_op *ops, size_t n, void **state) {
  const char *what = batch_name(ops, n);
  p2p_state *s = calloc(1, sizeof *s);
  fg_gloo_xfer *x = calloc(n ? n : 1, sizeof *x);
  if (!s || !x) {
    free(s);
    free(x);
    return fg__comm_fail(c, -ENOMEM, what, "out of memory");
  }
  for (size_t i = 0; i < n; i++)
    x[i] = (fg_gloo_xfer){ops[i].is_send, ops[i].buf, ops[i].count * fg_dtype_size(ops[i].dtype),
                          ops[i].peer};
  fg_gloo_error e;
  int rc = fg__gloo_batch_start(ctx_of(c), x, n, &s->batch, &e);
  free(x);
  if (rc != 0) {
    free(s);
    return failed(c, rc, what, &e);
  }
  s->what = what;
  *state = s;
  return 0;
}

static int gloo_p2p_wait(fg_comm *c, void *state) {
  p2p_state *s = state;
  fg_gloo_error e;
  int rc = fg__gloo_batch_wait(s->batch, c->timeout_ms, &e);
  if (rc != 0) rc = failed(c, rc, s->what, &e);
  free(s);
  return rc;
}

static const fg_backend gloo_backend = {
    .name = "gloo",
    .host_memory = 1,
    .needs_store = 1,
    .native_avg = 0,
    .init = gloo_init,
    .split = gloo_split,
    .destroy = gloo_destroy,
    .barrier = gloo_barrier,
    .broadcast = gloo_broadcast,
    .reduce = gloo_reduce,
    .allreduce = gloo_allreduce,
    .allgather = gloo_allgather,
    .allgatherv = gloo_allgatherv,
    .gather = gloo_gather,
    .scatter = gloo_scatter,
    .reduce_scatter = gloo_reduce_scatter,
    .alltoall = gloo_alltoall,
    .p2p_start = gloo_p2p_start,
    .p2p_wait = gloo_p2p_wait,
};

const fg_backend *const fg__backend_gloo = &gloo_backend;
