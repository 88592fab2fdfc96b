/* collectives.c - the public operations: argument checks, then the backend, or a
 * composition from what the backend has (point-to-point, allreduce). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm_internal.h"
#include "common/progress.h"

/* Every public operation: its number (what ranks compare under FG_DEBUG=detail), its name
 * in messages and hang reports, and whether it has a root. */
#define OPS(X)                                                                               \
  X(OP_BARRIER, "barrier", 0)                                                                \
  X(OP_BROADCAST, "broadcast", 1)                                                            \
  X(OP_REDUCE, "reduce", 1)                                                                  \
  X(OP_ALLREDUCE, "allreduce", 0)                                                            \
  X(OP_ALLGATHER, "allgather", 0)                                                            \
  X(OP_ALLGATHERV, "allgatherv", 0)                                                          \
  X(OP_GATHER, "gather", 1)                                                                  \
  X(OP_SCATTER, "scatter", 1)                                                                \
  X(OP_REDUCE_SCATTER, "reduce_scatter", 0)                                                  \
  X(OP_ALLTOALL, "alltoall", 0)

#define OP_ENUM(id, name, rooted) id,
#define OP_ROW(id, name, rooted) [id] = {name, rooted},
/* OP_UNKNOWN (0) is no operation: how a number from another rank outside the list shows. */
enum { OP_UNKNOWN, OPS(OP_ENUM) OP_COUNT };
static const struct {
  const char *name;
  int rooted;
} op_table[OP_COUNT] = {[OP_UNKNOWN] = {"?", 0}, OPS(OP_ROW)};

static const char *op_name(int64_t op) {
  return op > OP_UNKNOWN && op < OP_COUNT ? op_table[op].name : op_table[OP_UNKNOWN].name;
}

static int bad_dtype(fg_comm *c, const char *what, fg_dtype dt) {
  if ((unsigned)dt < FG_DTYPE_COUNT) return 0;
  return fg__comm_fail(c, -EINVAL, what, "unknown dtype %d", (int)dt);
}

static int bad_redop(fg_comm *c, const char *what, fg_redop op) {
  if ((unsigned)op < FG_REDOP_COUNT) return 0;
  return fg__comm_fail(c, -EINVAL, what, "unknown reduction %d", (int)op);
}

static int bad_rank(fg_comm *c, const char *what, const char *role, int r) {
  if (r >= 0 && r < c->size) return 0;
  return fg__comm_fail(c, -EINVAL, what, "%s %d is not a rank of this group (size %d)", role, r,
                       c->size);
}

/* With FG_DEBUG=detail, every rank shows the others what it called, so a mismatch is an
 * error that names both sides instead of a hang or a garbled result. */
static int compare_args(fg_comm *c, int op, size_t count, fg_dtype dt, int root) {
  if (!c->world->check_args || c->size == 1) return 0;
  int64_t mine[4] = {op, (int64_t)count, dt, root};
  int64_t *all = malloc(sizeof mine * (size_t)c->size);
  if (!all) return fg__comm_fail(c, -ENOMEM, op_name(op), "out of memory");
  int rc = fg__comm_allgather_host(c, mine, all, sizeof mine);
  static const char *const field[] = {"operation", "count", "dtype", "root"};
  for (int r = 0; rc == 0 && r < c->size; r++) {
    for (int f = 0; f < 4; f++) {
      if (all[4 * r + f] == mine[f]) continue;
      int64_t theirs = all[4 * r + f];
      if (f == 0)
        rc = fg__comm_fail(c, FG_EMISMATCH, op_name(op), "rank %d called %s instead", r,
                           op_name(theirs));
      else if (f == 2)
        rc = fg__comm_fail(c, FG_EMISMATCH, op_name(op), "rank %d passed dtype %s, rank %d %s",
                           r, fg_dtype_name((fg_dtype)theirs), c->rank, fg_dtype_name(dt));
      else
        rc = fg__comm_fail(c, FG_EMISMATCH, op_name(op), "rank %d passed %s %lld, rank %d %lld",
                           r, field[f], (long long)theirs, c->rank, (long long)mine[f]);
      break;
    }
  }
  free(all);
  return rc;
}

/* Every public operation starts here: numbers it, clears the error and marks this rank as
 * in it (progress.h) until the caller's FG_OP_MARK goes out of scope. */
static int begin(fg_comm *c, fg_op_mark *m, int op, size_t count, fg_dtype dt, int root) {
  c->seq++;
  c->err[0] = '\0';
  fg_op_args args = {count, op == OP_BARRIER ? NULL : fg_dtype_name(dt),
                     op_table[op].rooted ? root : FG_PROGRESS_NO_RANK, FG_PROGRESS_NO_RANK};
  fg__op_enter(m, op_name(op), c->name, c->seq, c->err, &args);
  int rc = bad_dtype(c, op_name(op), dt);
  if (rc == 0 && op_table[op].rooted) rc = bad_rank(c, op_name(op), "root", root);
  if (rc == 0) rc = compare_args(c, op, count, dt, root);
  return rc;
}

/* AVG on a library without it: sum, then divide on the ranks that hold a result. */
static fg_redop lowered(const fg_comm *c, fg_redop op) {
  return op == FG_REDOP_AVG && !c->be->native_avg ? FG_REDOP_SUM : op;
}

static void finish_avg(fg_comm *c, fg_redop op, void *buf, size_t count, fg_dtype dt) {
  if (op == FG_REDOP_AVG && !c->be->native_avg) fg__divide_local(buf, count, dt, c->size);
}

int fg_barrier(fg_comm *c) {
  FG_OP_MARK(m);
  int rc = begin(c, &m, OP_BARRIER, 0, FG_UINT8, -1);
  return rc ? rc : c->be->barrier(c);
}

int fg_broadcast(fg_comm *c, void *buf, size_t count, fg_dtype dt, int root) {
  FG_OP_MARK(m);
  int rc = begin(c, &m, OP_BROADCAST, count, dt, root);
  return rc ? rc : c->be->broadcast(c, buf, count, dt, root);
}

int fg_reduce(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt, fg_redop op,
              int root) {
  FG_OP_MARK(m);
  int rc = begin(c, &m, OP_REDUCE, count, dt, root);
  if (rc || (rc = bad_redop(c, op_name(OP_REDUCE), op))) return rc;
  rc = c->be->reduce(c, send, recv, count, dt, lowered(c, op), root);
  if (rc == 0 && c->rank == root) finish_avg(c, op, recv, count, dt);
  return rc;
}

int fg_allreduce(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt,
                 fg_redop op) {
  FG_OP_MARK(m);
  int rc = begin(c, &m, OP_ALLREDUCE, count, dt, -1);
  if (rc || (rc = bad_redop(c, op_name(OP_ALLREDUCE), op))) return rc;
  rc = c->be->allreduce(c, send, recv, count, dt, lowered(c, op));
  if (rc == 0) finish_avg(c, op, recv, count, dt);
  return rc;
}

int fg_allgather(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt) {
  FG_OP_MARK(m);
  int rc = begin(c, &m, OP_ALLGATHER, count, dt, -1);
  return rc ? rc : c->be->allgather(c, send, recv, count, dt);
}

int fg__comm_allgather_host(fg_comm *c, const void *mine, void *all, size_t bytes) {
  if (c->be->host_memory) return c->be->allgather(c, mine, all, bytes, FG_UINT8);
  size_t total = bytes * (size_t)c->size;
  void *dev = NULL, *dev_all = NULL;
  int rc;
  if ((rc = fg_comm_malloc(c, bytes, &dev)) == 0 && (rc = fg_comm_malloc(c, total, &dev_all)) == 0 &&
      (rc = fg_comm_upload(c, dev, mine, bytes)) == 0 &&
      (rc = c->be->allgather(c, dev, dev_all, bytes, FG_UINT8)) == 0)
    rc = fg_comm_download(c, all, dev_all, total);
  fg_comm_free(c, dev);
  fg_comm_free(c, dev_all);
  return rc;
}

/* --- compositions from point-to-point ------------------------------------------------ */

static int run_batch(fg_comm *c, const fg_p2p_op *ops, size_t n) {
  void *state = NULL;
  int rc = c->be->p2p_start(c, ops, n, &state);
  return rc ? rc : c->be->p2p_wait(c, state);
}

static char *block(const void *base, size_t index, size_t count, fg_dtype dt) {
  return (char *)base + index * count * fg_dtype_size(dt);
}

/* Copies within the backend's memory (host or device) through the host when needed. */
static int copy_local(fg_comm *c, void *dst, const void *src, size_t bytes) {
  if (dst == src || bytes == 0) return 0;
  if (c->be->host_memory) {
    memmove(dst, src, bytes);
    return 0;
  }
  void *tmp = malloc(bytes);
  if (!tmp) return fg__comm_fail(c, -ENOMEM, "copy", "out of memory");
  int rc = fg_comm_download(c, tmp, src, bytes);
  if (rc == 0) rc = fg_comm_upload(c, dst, tmp, bytes);
  free(tmp);
  return rc;
}

int fg_allgatherv(fg_comm *c, const void *send, void *recv, const size_t *counts, fg_dtype dt) {
  FG_OP_MARK(m);
  int rc = begin(c, &m, OP_ALLGATHERV, 0, dt, -1);
  if (rc) return rc;
  if (c->be->allgatherv) return c->be->allgatherv(c, send, recv, counts, dt);
  size_t esz = fg_dtype_size(dt), off = 0, mine = 0, n = 0;
  fg_p2p_op *ops = calloc(2 * (size_t)c->size, sizeof *ops);
  if (!ops) return fg__comm_fail(c, -ENOMEM, op_name(OP_ALLGATHERV), "out of memory");
  for (int r = 0; r < c->size; r++) {
    if (r == c->rank) mine = off;
    off += counts[r];
  }
  off = 0;
  for (int r = 0; r < c->size; r++) {
    if (r != c->rank) {
      ops[n++] = (fg_p2p_op){1, (void *)send, counts[c->rank], dt, r};
      ops[n++] = (fg_p2p_op){0, (char *)recv + off * esz, counts[r], dt, r};
    }
    off += counts[r];
  }
  rc = run_batch(c, ops, n);
  if (rc == 0) rc = copy_local(c, (char *)recv + mine * esz, send, counts[c->rank] * esz);
  free(ops);
  return rc;
}

/* gather (or scatter) over point-to-point: every rank's block `mine` goes to (comes from) its
 * place in the root's `all`; the root copies its own block. */
static int rooted_p2p(fg_comm *c, int gather, void *mine, void *all, size_t count, fg_dtype dt,
                      int root) {
  if (c->rank != root) return run_batch(c, &(fg_p2p_op){gather, mine, count, dt, root}, 1);
  fg_p2p_op *ops = calloc((size_t)c->size, sizeof *ops);
  size_t n = 0;
  if (!ops)
    return fg__comm_fail(c, -ENOMEM, op_name(gather ? OP_GATHER : OP_SCATTER), "out of memory");
  for (int r = 0; r < c->size; r++)
    if (r != root) ops[n++] = (fg_p2p_op){!gather, block(all, (size_t)r, count, dt), count, dt, r};
  int rc = run_batch(c, ops, n);
  char *own = block(all, (size_t)root, count, dt);
  size_t bytes = count * fg_dtype_size(dt);
  if (rc == 0) rc = gather ? copy_local(c, own, mine, bytes) : copy_local(c, mine, own, bytes);
  free(ops);
  return rc;
}

int fg_gather(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt, int root) {
  FG_OP_MARK(m);
  int rc = begin(c, &m, OP_GATHER, count, dt, root);
  if (rc) return rc;
  if (c->be->gather) return c->be->gather(c, send, recv, count, dt, root);
  return rooted_p2p(c, 1, (void *)send, recv, count, dt, root);
}

int fg_scatter(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt, int root) {
  FG_OP_MARK(m);
  int rc = begin(c, &m, OP_SCATTER, count, dt, root);
  if (rc) return rc;
  if (c->be->scatter) return c->be->scatter(c, send, recv, count, dt, root);
  return rooted_p2p(c, 0, recv, (void *)send, count, dt, root);
}

int fg_alltoall(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt) {
  FG_OP_MARK(m);
  int rc = begin(c, &m, OP_ALLTOALL, count, dt, -1);
  if (rc) return rc;
  if (c->be->alltoall) return c->be->alltoall(c, send, recv, count, dt);
  /* In place, block r would be sent to rank r while rank r's block lands on it: send from
   * a copy. */
  void *copy = NULL;
  if (send == recv && c->size > 1) {
    size_t bytes = count * (size_t)c->size * fg_dtype_size(dt);
    if ((rc = fg_comm_malloc(c, bytes, &copy)) != 0) return rc;
    if ((rc = copy_local(c, copy, send, bytes)) != 0) {
      fg_comm_free(c, copy);
      return rc;
    }
    send = copy;
  }
  fg_p2p_op *ops = calloc(2 * (size_t)c->size, sizeof *ops);
  size_t n = 0;
  if (!ops) {
    fg_comm_free(c, copy);
    return fg__comm_fail(c, -ENOMEM, op_name(OP_ALLTOALL), "out of memory");
  }
  for (int r = 0; r < c->size; r++) {
    if (r == c->rank) continue;
    ops[n++] = (fg_p2p_op){1, block(send, (size_t)r, count, dt), count, dt, r};
    ops[n++] = (fg_p2p_op){0, block(recv, (size_t)r, count, dt), count, dt, r};
  }
  rc = run_batch(c, ops, n);
  if (rc == 0)
    rc = copy_local(c, block(recv, (size_t)c->rank, count, dt),
                    block(send, (size_t)c->rank, count, dt), count * fg_dtype_size(dt));
  free(ops);
  fg_comm_free(c, copy);
  return rc;
}

int fg_reduce_scatter(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt,
                      fg_redop op) {
  FG_OP_MARK(m);
  int rc = begin(c, &m, OP_REDUCE_SCATTER, count, dt, -1);
  if (rc || (rc = bad_redop(c, op_name(OP_REDUCE_SCATTER), op))) return rc;
  fg_redop low = lowered(c, op);
  if (c->be->reduce_scatter) {
    rc = c->be->reduce_scatter(c, send, recv, count, dt, low);
  } else {
    /* Allreduce the whole buffer, keep this rank's block: the same result, with size times
     * the traffic, for libraries without a reduce-scatter. */
    size_t bytes = count * (size_t)c->size * fg_dtype_size(dt);
    void *tmp = NULL;
    if ((rc = fg_comm_malloc(c, bytes, &tmp)) != 0) return rc;
    rc = c->be->allreduce(c, send, tmp, count * (size_t)c->size, dt, low);
    if (rc == 0)
      rc = copy_local(c, recv, block(tmp, (size_t)c->rank, count, dt), count * fg_dtype_size(dt));
    fg_comm_free(c, tmp);
  }
  if (rc == 0) finish_avg(c, op, recv, count, dt);
  return rc;
}

/* --- point-to-point ------------------------------------------------------------------ */

struct fg_batch {
  fg_comm *c;
  void *state;
  fg_op_mark mark; /* from start to the end of the wait */
};

static const char *batch_name(const fg_p2p_op *ops, size_t n) {
  return n != 1 ? "batch" : ops[0].is_send ? "send" : "recv";
}

/* The peer the batch waits on, for the hang report: its receives' peer (a batch that only
 * sends: the sends' peer), FG_PROGRESS_SEVERAL when that is more than one rank. */
static fg_op_args batch_args(const fg_p2p_op *ops, size_t n) {
  fg_op_args a = FG_OP_ARGS_NONE;
  if (n == 1) {
    a.count = ops[0].count;
    a.dtype = fg_dtype_name(ops[0].dtype);
  }
  int any_recv = 0;
  for (size_t i = 0; i < n; i++) any_recv |= !ops[i].is_send;
  for (size_t i = 0; i < n; i++) {
    if (any_recv && ops[i].is_send) continue;
    if (a.peer == FG_PROGRESS_NO_RANK) a.peer = ops[i].peer;
    else if (a.peer != ops[i].peer) a.peer = FG_PROGRESS_SEVERAL;
  }
  return a;
}

int fg_batch_start(fg_comm *c, const fg_p2p_op *ops, size_t n, fg_batch **out) {
  *out = NULL;
  c->seq++;
  c->err[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    const char *what = ops[i].is_send ? "send" : "recv";
    int rc = bad_dtype(c, what, ops[i].dtype);
    if (rc || (rc = bad_rank(c, what, "peer", ops[i].peer))) return rc;
    if (ops[i].peer == c->rank)
      return fg__comm_fail(c, -EINVAL, what, "rank %d cannot %s to itself", c->rank, what);
  }
  fg_batch *b = calloc(1, sizeof *b);
  if (!b) return fg__comm_fail(c, -ENOMEM, "batch", "out of memory");
  b->c = c;
  fg_op_args args = batch_args(ops, n);
  fg__op_enter(&b->mark, batch_name(ops, n), c->name, c->seq, c->err, &args);
  int rc = c->be->p2p_start(c, ops, n, &b->state);
  if (rc != 0) {
    fg__op_leave(&b->mark);
    free(b);
    return rc;
  }
  *out = b;
  return 0;
}

int fg_batch_wait(fg_batch *b) {
  if (!b) return 0;
  int rc = b->c->be->p2p_wait(b->c, b->state);
  fg__op_leave(&b->mark);
  free(b);
  return rc;
}

int fg_send(fg_comm *c, const void *buf, size_t count, fg_dtype dt, int peer) {
  fg_batch *b;
  int rc = fg_batch_start(c, &(fg_p2p_op){1, (void *)buf, count, dt, peer}, 1, &b);
  return rc ? rc : fg_batch_wait(b);
}

int fg_recv(fg_comm *c, void *buf, size_t count, fg_dtype dt, int peer) {
  fg_batch *b;
  int rc = fg_batch_start(c, &(fg_p2p_op){0, buf, count, dt, peer}, 1, &b);
  return rc ? rc : fg_batch_wait(b);
}

/* --- blobs --------------------------------------------------------------------------- */

int fg_broadcast_bytes(fg_comm *c, void **data, size_t *len, int root) {
  int64_t n = c->rank == root ? (int64_t)*len : 0;
  void *dev = NULL;
  int rc = 0;
  if (!c->be->host_memory) {
    if ((rc = fg_comm_malloc(c, 8, &dev)) == 0 && (rc = fg_comm_upload(c, dev, &n, 8)) == 0 &&
        (rc = fg_broadcast(c, dev, 1, FG_INT64, root)) == 0)
      rc = fg_comm_download(c, &n, dev, 8);
    fg_comm_free(c, dev);
    dev = NULL;
  } else {
    rc = fg_broadcast(c, &n, 1, FG_INT64, root);
  }
  if (rc) return rc;
  if (n < 0) return fg__comm_fail(c, FG_EPROTO, "broadcast_bytes", "negative length from root");
  void *buf = c->rank == root ? *data : malloc((size_t)n + 1);
  if (!buf)
    return fg__comm_fail(c, -ENOMEM, "broadcast_bytes", "out of memory (%lld bytes)", (long long)n);
  if (c->be->host_memory) {
    rc = fg_broadcast(c, buf, (size_t)n, FG_UINT8, root);
  } else if ((rc = fg_comm_malloc(c, (size_t)n, &dev)) == 0) {
    if (c->rank == root) rc = fg_comm_upload(c, dev, buf, (size_t)n);
    if (rc == 0) rc = fg_broadcast(c, dev, (size_t)n, FG_UINT8, root);
    if (rc == 0 && c->rank != root) rc = fg_comm_download(c, buf, dev, (size_t)n);
    fg_comm_free(c, dev);
  }
  if (c->rank != root) {
    if (rc) {
      free(buf);
      return rc;
    }
    ((char *)buf)[n] = '\0';
    *data = buf;
    *len = (size_t)n;
  }
  return rc;
}
