/* conform_ops.c - every collective, every dtype, every reduction and root, in place and
 * out of place, against results computed here from the inputs every rank is known to
 * contribute (cf_input). Each operation is a small table entry, as in nccl-tests: its
 * buffer sizes, where in place puts send and recv, the expected result, the call.
 *
 * In place follows NCCL and MPI_IN_PLACE: reduce, allreduce, alltoall and broadcast use
 * one buffer; the gathers find this rank's contribution at its block of recv; scatter
 * and reduce_scatter leave the result at this rank's block of send. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tools/conform.h"

typedef struct op_spec {
  const char *name;
  int rooted, reducing;
  int modes; /* 1: in place only; 2: in place and out of place */
  /* Elements of this rank's send and recv (0: the rank passes NULL). */
  void (*sizes)(const fg_comm *c, const tcase *t, size_t *nsend, size_t *nrecv);
  /* In place: where send and recv start in the one buffer (NULL: both at 0). */
  void (*place)(const fg_comm *c, const tcase *t, size_t *send_at, size_t *recv_at);
  /* This rank's expected recv; 0 if it holds no result (non-roots). */
  int (*expect)(const fg_comm *c, const tcase *t, double *want, size_t n);
  int (*call)(fg_comm *c, const tcase *t, const void *send, void *recv);
} op_spec;

static int rank_of(const fg_comm *c) { return fg_comm_rank(c); }
static size_t size_of(const fg_comm *c) { return (size_t)fg_comm_size(c); }
static int is_root(const fg_comm *c, const tcase *t) { return rank_of(c) == t->root; }

/* allgatherv's counts: rank r gives count + r elements, so blocks differ and count 0
 * leaves rank 0 with nothing to give. */
static size_t v_count(const tcase *t, size_t r) { return t->count + r; }

static size_t v_offset(const tcase *t, size_t r) {
  size_t off = 0;
  for (size_t i = 0; i < r; i++) off += v_count(t, i);
  return off;
}

/* --- sizes and places ------------------------------------------------------------------ */

static void sizes_same(const fg_comm *c, const tcase *t, size_t *ns, size_t *nr) {
  (void)c;
  *ns = *nr = t->count;
}

static void sizes_gather_all(const fg_comm *c, const tcase *t, size_t *ns, size_t *nr) {
  *ns = t->count;
  *nr = t->count * size_of(c);
}

static void sizes_from_all(const fg_comm *c, const tcase *t, size_t *ns, size_t *nr) {
  *ns = t->count * size_of(c);
  *nr = t->count;
}

static void sizes_alltoall(const fg_comm *c, const tcase *t, size_t *ns, size_t *nr) {
  *ns = *nr = t->count * size_of(c);
}

static void sizes_gather(const fg_comm *c, const tcase *t, size_t *ns, size_t *nr) {
  *ns = t->count;
  *nr = is_root(c, t) ? t->count * size_of(c) : 0;
}

static void sizes_scatter(const fg_comm *c, const tcase *t, size_t *ns, size_t *nr) {
  *ns = is_root(c, t) ? t->count * size_of(c) : 0;
  *nr = t->count;
}

static void sizes_allgatherv(const fg_comm *c, const tcase *t, size_t *ns, size_t *nr) {
  *ns = v_count(t, (size_t)rank_of(c));
  *nr = v_offset(t, size_of(c));
}

static void place_own_block(const fg_comm *c, const tcase *t, size_t *sa, size_t *ra) {
  *sa = (size_t)rank_of(c) * t->count;
  *ra = 0;
}

static void place_root_block(const fg_comm *c, const tcase *t, size_t *sa, size_t *ra) {
  *sa = is_root(c, t) ? (size_t)t->root * t->count : 0;
  *ra = 0;
}

static void place_scatter(const fg_comm *c, const tcase *t, size_t *sa, size_t *ra) {
  *sa = 0;
  *ra = is_root(c, t) ? (size_t)t->root * t->count : 0;
}

static void place_reduce_scatter(const fg_comm *c, const tcase *t, size_t *sa, size_t *ra) {
  *sa = 0;
  *ra = (size_t)rank_of(c) * t->count;
}

static void place_allgatherv(const fg_comm *c, const tcase *t, size_t *sa, size_t *ra) {
  *sa = v_offset(t, (size_t)rank_of(c));
  *ra = 0;
}

/* --- expectations ---------------------------------------------------------------------- */

static int expect_broadcast(const fg_comm *c, const tcase *t, double *want, size_t n) {
  (void)c;
  for (size_t i = 0; i < n; i++) want[i] = cf_input(t, t->root, i);
  return 1;
}

static int expect_allreduce(const fg_comm *c, const tcase *t, double *want, size_t n) {
  for (size_t i = 0; i < n; i++) want[i] = cf_fold(t, fg_comm_size(c), i);
  return 1;
}

static int expect_reduce(const fg_comm *c, const tcase *t, double *want, size_t n) {
  return is_root(c, t) && expect_allreduce(c, t, want, n);
}

static int expect_allgather(const fg_comm *c, const tcase *t, double *want, size_t n) {
  (void)c;
  for (size_t i = 0; i < n; i++) want[i] = cf_input(t, (int)(i / t->count), i % t->count);
  return 1;
}

static int expect_gather(const fg_comm *c, const tcase *t, double *want, size_t n) {
  return is_root(c, t) && expect_allgather(c, t, want, n);
}

static int expect_scatter(const fg_comm *c, const tcase *t, double *want, size_t n) {
  size_t base = (size_t)rank_of(c) * t->count;
  for (size_t i = 0; i < n; i++) want[i] = cf_input(t, t->root, base + i);
  return 1;
}

static int expect_reduce_scatter(const fg_comm *c, const tcase *t, double *want, size_t n) {
  size_t base = (size_t)rank_of(c) * t->count;
  for (size_t i = 0; i < n; i++) want[i] = cf_fold(t, fg_comm_size(c), base + i);
  return 1;
}

static int expect_alltoall(const fg_comm *c, const tcase *t, double *want, size_t n) {
  size_t base = (size_t)rank_of(c) * t->count;
  for (size_t i = 0; i < n; i++)
    want[i] = cf_input(t, (int)(i / t->count), base + i % t->count);
  return 1;
}

static int expect_allgatherv(const fg_comm *c, const tcase *t, double *want, size_t n) {
  size_t i = 0;
  for (size_t r = 0; r < size_of(c); r++)
    for (size_t j = 0; j < v_count(t, r) && i < n; j++) want[i++] = cf_input(t, (int)r, j);
  return 1;
}

/* --- calls ------------------------------------------------------------------------------ */

static int call_broadcast(fg_comm *c, const tcase *t, const void *s, void *r) {
  (void)s;
  return fg_broadcast(c, r, t->count, t->dt, t->root);
}
static int call_reduce(fg_comm *c, const tcase *t, const void *s, void *r) {
  return fg_reduce(c, s, r, t->count, t->dt, t->rop, t->root);
}
static int call_allreduce(fg_comm *c, const tcase *t, const void *s, void *r) {
  return fg_allreduce(c, s, r, t->count, t->dt, t->rop);
}
static int call_allgather(fg_comm *c, const tcase *t, const void *s, void *r) {
  return fg_allgather(c, s, r, t->count, t->dt);
}
static int call_gather(fg_comm *c, const tcase *t, const void *s, void *r) {
  return fg_gather(c, s, r, t->count, t->dt, t->root);
}
static int call_scatter(fg_comm *c, const tcase *t, const void *s, void *r) {
  return fg_scatter(c, s, r, t->count, t->dt, t->root);
}
static int call_reduce_scatter(fg_comm *c, const tcase *t, const void *s, void *r) {
  return fg_reduce_scatter(c, s, r, t->count, t->dt, t->rop);
}
static int call_alltoall(fg_comm *c, const tcase *t, const void *s, void *r) {
  return fg_alltoall(c, s, r, t->count, t->dt);
}
static int call_allgatherv(fg_comm *c, const tcase *t, const void *s, void *r) {
  size_t n = size_of(c);
  size_t *counts = malloc(n * sizeof *counts);
  if (!counts) return -ENOMEM;
  for (size_t i = 0; i < n; i++) counts[i] = v_count(t, i);
  int rc = fg_allgatherv(c, s, r, counts, t->dt);
  free(counts);
  return rc;
}

static const op_spec ops[] = {
    {"broadcast", 1, 0, 1, sizes_same, NULL, expect_broadcast, call_broadcast},
    {"reduce", 1, 1, 2, sizes_same, NULL, expect_reduce, call_reduce},
    {"allreduce", 0, 1, 2, sizes_same, NULL, expect_allreduce, call_allreduce},
    {"allgather", 0, 0, 2, sizes_gather_all, place_own_block, expect_allgather, call_allgather},
    {"allgatherv", 0, 0, 2, sizes_allgatherv, place_allgatherv, expect_allgatherv,
     call_allgatherv},
    {"gather", 1, 0, 2, sizes_gather, place_root_block, expect_gather, call_gather},
    {"scatter", 1, 0, 2, sizes_scatter, place_scatter, expect_scatter, call_scatter},
    {"reduce_scatter", 0, 1, 2, sizes_from_all, place_reduce_scatter, expect_reduce_scatter,
     call_reduce_scatter},
    {"alltoall", 0, 0, 2, sizes_alltoall, NULL, expect_alltoall, call_alltoall},
};

/* --- one case --------------------------------------------------------------------------- */

typedef struct case_bufs {
  cf_buf send, recv; /* in place: only send, holding both */
  void *sent;        /* what this rank uploaded as send, to see it left alone */
  double *want;
} case_bufs;

static void free_case(fg_comm *c, case_bufs *b) {
  cf_buf_free(c, &b->send);
  cf_buf_free(c, &b->recv);
  free(b->sent);
  free(b->want);
}

static void fill_sentinel(void *host, fg_dtype dt, size_t n) {
  for (size_t i = 0; i < n; i++) fg_dtype_set(host, dt, i, CF_SENTINEL);
}

static char *at(void *base, size_t elems, fg_dtype dt) {
  return (char *)base + elems * fg_dtype_size(dt);
}

/* Checks the result (and, out of place, that send was left alone). */
static void verify(conform *cf, fg_comm *c, const op_spec *op, const tcase *t, case_bufs *b,
                   size_t nsend, size_t nrecv, size_t recv_at) {
  cf_buf *holder = t->in_place ? &b->send : &b->recv;
  int rc = cf_buf_download(c, holder);
  if (rc == 0 && !t->in_place && nsend) rc = cf_buf_download(c, &b->send);
  if (rc != 0) {
    cf_call_failed(cf, c, "download", rc);
    return;
  }
  if (op->expect(c, t, b->want, nrecv))
    cf_expect(cf, c, t, "recv", at(holder->host, recv_at, t->dt), b->want, nrecv, 1);
  if (!t->in_place && nsend) {
    char desc[160];
    cf_describe(t, desc, sizeof desc);
    cf_true(cf, c, !memcmp(b->sent, b->send.host, b->send.bytes),
            "%s: the send buffer changed", desc);
  }
}

static void run_case(conform *cf, fg_comm *c, const op_spec *op, const tcase *t) {
  size_t nsend, nrecv, send_at = 0, recv_at = 0, esz = fg_dtype_size(t->dt);
  op->sizes(c, t, &nsend, &nrecv);
  if (t->in_place && op->place) op->place(c, t, &send_at, &recv_at);
  size_t one = send_at + nsend > recv_at + nrecv ? send_at + nsend : recv_at + nrecv;
  case_bufs b = {0};
  b.want = calloc(nrecv + 1, sizeof *b.want);
  b.sent = malloc(nsend * esz + 1);
  int rc = !b.want || !b.sent ? -ENOMEM : cf_buf_alloc(c, &b.send, (t->in_place ? one : nsend) * esz);
  if (rc == 0 && !t->in_place) rc = cf_buf_alloc(c, &b.recv, nrecv * esz);
  if (rc != 0) {
    cf_call_failed(cf, c, "allocation", rc);
    free_case(c, &b);
    return;
  }
  if (t->in_place)
    fill_sentinel(b.send.host, t->dt, one);
  else
    fill_sentinel(b.recv.host, t->dt, nrecv);
  cf_fill_input(cf, c, t, at(b.send.host, send_at, t->dt), nsend);
  memcpy(b.sent, at(b.send.host, send_at, t->dt), nsend * esz);
  if ((rc = cf_buf_upload(c, &b.send)) == 0 && !t->in_place) rc = cf_buf_upload(c, &b.recv);

  void *send = nsend ? at(b.send.dev, send_at, t->dt) : NULL;
  void *recv = !nrecv ? NULL : t->in_place ? at(b.send.dev, recv_at, t->dt) : b.recv.dev;
  if (rc == 0) rc = op->call(c, t, send, recv);
  if (rc != 0) {
    char desc[160];
    cf_describe(t, desc, sizeof desc);
    cf_call_failed(cf, c, desc, rc);
  } else {
    verify(cf, c, op, t, &b, nsend, nrecv, recv_at);
  }
  free_case(c, &b);
}

/* --- the sweep -------------------------------------------------------------------------- */

static int redops_for(fg_dtype dt, fg_redop *out) {
  int n = 0;
  for (int r = 0; r < FG_REDOP_COUNT; r++)
    if (r != FG_REDOP_AVG || dt >= FG_FLOAT16) out[n++] = (fg_redop)r;
  return n;
}

/* Every (dtype, reduction, mode) once; the root turns with each case, so every root is
 * met without multiplying the cases by the group's size, unless all_roots asks for that. */
static void sweep_op(conform *cf, fg_comm *c, const op_spec *op, int salt, size_t count,
                     int all_roots) {
  int size = fg_comm_size(c), turn = salt;
  for (int d = 0; d < FG_DTYPE_COUNT; d++) {
    fg_redop rops[FG_REDOP_COUNT] = {FG_REDOP_SUM};
    int nrops = op->reducing ? redops_for((fg_dtype)d, rops) : 1;
    for (int r = 0; r < nrops; r++)
      for (int m = 2 - op->modes; m < 2; m++) {
        int first = op->rooted ? (all_roots ? 0 : turn++ % size) : -1;
        int last = op->rooted && all_roots ? size - 1 : first;
        for (int root = first; root <= last; root++) {
          tcase t = {op->name, (fg_dtype)d, rops[r], op->reducing, root, count,
                     op->modes == 1 || m == 1, salt};
          run_case(cf, c, op, &t);
          if (cf->broken) return;
        }
      }
  }
}

/* --- arguments no rank may pass --------------------------------------------------------- */

static void refused(conform *cf, fg_comm *c, const char *what, int rc) {
  cf_true(cf, c, rc == -EINVAL && fg_comm_errmsg(c)[0],
          "%s returned %d (%s) with message '%s', not -EINVAL with one", what, rc,
          fg_strerror(rc), fg_comm_errmsg(c));
}

/* Refused with -EINVAL before anything moves, on every rank alike, and the group is still
 * usable afterwards. */
static void refusals(conform *cf, fg_comm *c) {
  int n = fg_comm_size(c), me = fg_comm_rank(c);
  cf_buf b = {0};
  int rc = cf_buf_alloc(c, &b, (size_t)n * 8);
  if (rc != 0) {
    cf_call_failed(cf, c, "allocation", rc);
    return;
  }
  void *p = b.dev;
  refused(cf, c, "broadcast from root -1", fg_broadcast(c, p, 1, FG_INT32, -1));
  refused(cf, c, "reduce to root <size>", fg_reduce(c, p, p, 1, FG_INT32, FG_REDOP_SUM, n));
  refused(cf, c, "gather to root -1", fg_gather(c, p, p, 1, FG_INT32, -1));
  refused(cf, c, "scatter from root <size>", fg_scatter(c, p, p, 1, FG_INT32, n));
  refused(cf, c, "allreduce of dtype 99", fg_allreduce(c, p, p, 1, (fg_dtype)99, FG_REDOP_SUM));
  refused(cf, c, "allreduce with reduction 99", fg_allreduce(c, p, p, 1, FG_INT32, (fg_redop)99));
  refused(cf, c, "send to itself", fg_send(c, p, 1, FG_INT32, me));
  refused(cf, c, "recv from rank <size>", fg_recv(c, p, 1, FG_INT32, n));
  refused(cf, c, "broadcast_bytes from root <size>",
          fg_broadcast_bytes(c, &p, &(size_t){0}, n));
  if ((rc = fg_barrier(c)) != 0) cf_call_failed(cf, c, "barrier after refused calls", rc);
  cf_buf_free(c, &b);
}

void cf_run_collectives(conform *cf, fg_comm *c) {
  /* The odd sizes split unevenly over any group; the quick run keeps one of them. */
  static const size_t counts[] = {13, 1, 1031};
  size_t ncounts = cf->quick ? 1 : sizeof counts / sizeof *counts;
  int rc = fg_barrier(c);
  if (rc != 0) {
    cf_call_failed(cf, c, "barrier", rc);
    return;
  }
  cf_true(cf, c, 1, "barrier");
  for (size_t o = 0; o < sizeof ops / sizeof *ops && !cf->broken; o++) {
    /* Nothing to move is still a call every rank must survive. */
    tcase empty = {ops[o].name, FG_INT32, FG_REDOP_SUM, ops[o].reducing, ops[o].rooted ? 0 : -1, 0,
                   ops[o].modes == 1, (int)o};
    run_case(cf, c, &ops[o], &empty);
    for (size_t k = 0; k < ncounts && !cf->broken; k++)
      sweep_op(cf, c, &ops[o], (int)o, counts[k], !cf->quick && k == 0);
  }
  if (!cf->broken) refusals(cf, c);
  /* Past gloo's 1 MB segments and NCCL's chunking. */
  static const size_t big = 300007;
  for (size_t o = 0; o < 3 && !cf->quick && !cf->broken; o++) {
    tcase t = {ops[o].name, FG_FLOAT32, FG_REDOP_SUM, ops[o].reducing, ops[o].rooted ? 0 : -1, big,
               ops[o].modes == 1, (int)o};
    run_case(cf, c, &ops[o], &t);
  }
}
