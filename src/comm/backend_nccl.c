/* backend_nccl.c - the nccl backend: one NCCL communicator and one CUDA stream per fg_comm.
 *
 * Communicators are non-blocking (ncclConfig_t.blocking = 0), so that init, split and every
 * operation return at once and we poll them against the communicator's deadline: a dead or
 * absent peer costs a timeout and an ncclCommAbort, never a hang. An operation is done when
 * NCCL has issued it (ncclCommGetAsyncError stops saying ncclInProgress) and the stream has
 * run it (cudaStreamQuery). Every operation waits, so no work is left on the stream when a
 * call returns, except between fg_batch_start and fg_batch_wait.
 *
 * FG_NCCL_BLOCKING=1 makes communicators blocking instead: non-blocking NCCL starts a thread
 * per operation, which costs latency on small messages; init then waits without a deadline.
 *
 * Gather, scatter, alltoall and allgatherv are left to the generic layer, which composes
 * them from one batch of sends and receives (one NCCL group). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime.h>
#include <nccl.h>

#include "comm/comm_internal.h"
#include "common/util.h"

typedef struct nccl_state {
  ncclComm_t comm; /* NULL once aborted */
  cudaStream_t stream;
  int device;
  int *flag;       /* one int of device memory for barriers */
  int broken;      /* the code of the failure that aborted comm; 0 if none */
  char why[256];   /* its message */
} nccl_state;

/* --- errors ---------------------------------------------------------------------------- */

/* The called function's name: the call's text up to its parenthesis. */
#define CALL_NAME(text) (int)strcspn((text), "("), (text)

#define CUDA_TRY(c, what, call)                                                         \
  do {                                                                                  \
    cudaError_t e_ = (call);                                                            \
    if (e_ != cudaSuccess) return cuda_fail((c), (what), #call, e_);                    \
  } while (0)

#define NCCL_TRY(c, what, call)                                                         \
  do {                                                                                  \
    ncclResult_t r_ = (call);                                                           \
    if (r_ != ncclSuccess && r_ != ncclInProgress) return nccl_fail((c), (what), #call, r_); \
  } while (0)

static int nccl_ok(ncclResult_t r) { return r == ncclSuccess || r == ncclInProgress; }

static int cuda_fail(fg_comm *c, const char *what, const char *call, cudaError_t e) {
  (void)cudaGetLastError(); /* clears the error unless it is sticky */
  return fg__comm_fail(c, FG_EBACKEND, what, "%.*s: %s", CALL_NAME(call), cudaGetErrorString(e));
}

static int nccl_code(ncclResult_t r) {
  switch (r) {
  case ncclInvalidArgument:
  case ncclInvalidUsage: return -EINVAL;
  case ncclRemoteError:
  case ncclSystemError: return FG_EPEER;
  default: return FG_EBACKEND;
  }
}

/* NCCL's reason, with its last warning (which names the peer or the bad argument). */
static const char *nccl_reason(ncclResult_t r, char *buf, size_t len) {
  const char *last = ncclGetLastError(NULL);
  if (last && *last)
    snprintf(buf, len, "%s (%s)", ncclGetErrorString(r), last);
  else
    snprintf(buf, len, "%s", ncclGetErrorString(r));
  return buf;
}

/* A communicator that failed cannot be used again (NCCL keeps its error): abort it, so the
 * GPU and the peers' proxies are released, and say why in every later call. */
static void abort_comm(fg_comm *c, int code) {
  nccl_state *s = c->impl;
  if (!s || !s->comm) return;
  s->broken = code;
  snprintf(s->why, sizeof s->why, "%.*s", (int)sizeof s->why - 1, c->err);
  (void)ncclCommAbort(s->comm);
  s->comm = NULL;
}

static int nccl_fail(fg_comm *c, const char *what, const char *call, ncclResult_t r) {
  char reason[384];
  int rc = fg__comm_fail(c, nccl_code(r), what, "%.*s: %s", CALL_NAME(call),
                         nccl_reason(r, reason, sizeof reason));
  nccl_state *s = c->impl;
  ncclResult_t state = ncclSuccess;
  if (s && s->comm &&
      (ncclCommGetAsyncError(s->comm, &state) != ncclSuccess || state != ncclSuccess))
    abort_comm(c, rc);
  return rc;
}

/* --- waiting --------------------------------------------------------------------------- */

/* A timeout of 0 or less waits for ever. */
static int64_t deadline_of(const fg_comm *c) {
  return c->timeout_ms > 0 ? fg__now_ms() + c->timeout_ms : INT64_MAX;
}

/* Spin for the first 2 ms, where small operations finish, then poll every 50 us: late by
 * at most that much, at a cost of a few percent of one core. */
static void backoff(uint64_t started_ns) {
  if (fg__now_ns() - started_ns < 2000000u) return;
  struct timespec ts = {0, 50000};
  nanosleep(&ts, NULL);
}

static int timed_out(fg_comm *c, const char *what, const char *waiting_for) {
  fg__comm_fail(c, -ETIMEDOUT, what,
                "timed out after %.1f s waiting for %s (operation #%llu); a rank did not call "
                "it, called another operation, or is stuck; the NCCL communicator was aborted",
                c->timeout_ms / 1000.0, waiting_for, (unsigned long long)c->seq);
  abort_comm(c, -ETIMEDOUT);
  return -ETIMEDOUT;
}

static int async_fail(fg_comm *c, const char *what, ncclResult_t state) {
  char reason[384];
  int rc = fg__comm_fail(c, nccl_code(state), what, "NCCL failed: %s; the communicator was aborted",
                         nccl_reason(state, reason, sizeof reason));
  abort_comm(c, rc);
  return rc;
}

/* Polls comm's state until NCCL has finished issuing its last call (init, split, finalize
 * or the launch of an operation, which connects to the peers on first use). */
static int wait_issued(fg_comm *c, ncclComm_t comm, const char *what, const char *waiting_for,
                       int64_t deadline) {
  uint64_t started = fg__now_ns();
  for (;;) {
    ncclResult_t state;
    NCCL_TRY(c, what, ncclCommGetAsyncError(comm, &state));
    if (state == ncclSuccess) return 0;
    if (state != ncclInProgress) return async_fail(c, what, state);
    if (fg__now_ms() > deadline) return timed_out(c, what, waiting_for);
    backoff(started);
  }
}

/* Polls until the stream has run everything issued on it, watching NCCL for the errors that
 * a peer's failure raises while our kernels wait for it. */
static int wait_done(fg_comm *c, const char *what) {
  nccl_state *s = c->impl;
  int64_t deadline = deadline_of(c);
  if (s->comm) {
    int rc = wait_issued(c, s->comm, what, "NCCL to connect to the other ranks", deadline);
    if (rc) return rc;
  }
  uint64_t started = fg__now_ns();
  for (;;) {
    cudaError_t e = cudaStreamQuery(s->stream);
    if (e == cudaSuccess) return 0;
    if (e != cudaErrorNotReady) {
      int rc = cuda_fail(c, what, "cudaStreamQuery", e);
      abort_comm(c, rc);
      return rc;
    }
    ncclResult_t state = ncclSuccess;
    if (s->comm) NCCL_TRY(c, what, ncclCommGetAsyncError(s->comm, &state));
    if (state != ncclSuccess && state != ncclInProgress) return async_fail(c, what, state);
    if (fg__now_ms() > deadline) return timed_out(c, what, "the other ranks");
    backoff(started);
  }
}

/* Checks that the communicator is usable and makes its GPU current for this thread. */
static int enter(fg_comm *c, const char *what) {
  nccl_state *s = c->impl;
  if (s->broken)
    return fg__comm_fail(c, s->broken, what,
                         "an earlier operation failed and its NCCL communicator was aborted; only "
                         "fg_comm_destroy is allowed now (%s)",
                         s->why);
  CUDA_TRY(c, what, cudaSetDevice(s->device));
  return 0;
}

/* Issues one NCCL call and waits for it. */
#define RUN(c, what, call) run((c), (what), (call), #call)

static int run(fg_comm *c, const char *what, ncclResult_t r, const char *call) {
  if (!nccl_ok(r)) return nccl_fail(c, what, call, r);
  return wait_done(c, what);
}

/* --- types ----------------------------------------------------------------------------- */

static ncclDataType_t nccl_type(fg_dtype dt) {
  static const ncclDataType_t types[FG_DTYPE_COUNT] = {
      [FG_INT8] = ncclInt8,         [FG_UINT8] = ncclUint8,       [FG_INT32] = ncclInt32,
      [FG_INT64] = ncclInt64,       [FG_FLOAT16] = ncclFloat16,   [FG_BFLOAT16] = ncclBfloat16,
      [FG_FLOAT32] = ncclFloat32,   [FG_FLOAT64] = ncclFloat64,
  };
  return types[dt];
}

static ncclRedOp_t nccl_op(fg_redop op) {
  static const ncclRedOp_t ops[FG_REDOP_COUNT] = {
      [FG_REDOP_SUM] = ncclSum, [FG_REDOP_PROD] = ncclProd, [FG_REDOP_MIN] = ncclMin,
      [FG_REDOP_MAX] = ncclMax, [FG_REDOP_AVG] = ncclAvg,
  };
  return ops[op];
}

/* --- lifecycle ------------------------------------------------------------------------- */

static ncclConfig_t comm_config(void) {
  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  const char *blocking = getenv("FG_NCCL_BLOCKING");
  cfg.blocking = blocking && !strcmp(blocking, "1");
  return cfg;
}

/* The state of a communicator on `device`, before it has an NCCL communicator. */
static int state_new(fg_comm *c, int device) {
  nccl_state *s = calloc(1, sizeof *s);
  if (!s) return fg__comm_fail(c, -ENOMEM, "nccl init", "out of memory");
  s->device = device;
  c->impl = s;
  CUDA_TRY(c, "nccl init", cudaSetDevice(device));
  /* A blocking stream: it waits for cudaMemcpy and the default stream, as callers expect. */
  CUDA_TRY(c, "nccl init", cudaStreamCreate(&s->stream));
  CUDA_TRY(c, "nccl init", cudaMalloc((void **)&s->flag, sizeof *s->flag));
  CUDA_TRY(c, "nccl init", cudaMemset(s->flag, 0, sizeof *s->flag));
  return 0;
}

static void state_free(fg_comm *c) {
  nccl_state *s = c->impl;
  if (!s) return;
  (void)cudaSetDevice(s->device);
  if (s->flag) (void)cudaFree(s->flag);
  if (s->stream) (void)cudaStreamDestroy(s->stream);
  free(s);
  c->impl = NULL;
}

/* Rank 0 makes the NCCL id and the others read it from the store. Every rank creates its
 * worlds in the same order, so the n-th world of each process meets under the n-th key. */
static int share_id(fg_comm *w, ncclUniqueId *id) {
  static int worlds;
  char key[32];
  snprintf(key, sizeof key, "nccl.id.%d", __atomic_fetch_add(&worlds, 1, __ATOMIC_RELAXED));
  if (w->rank == 0) {
    NCCL_TRY(w, "nccl init", ncclGetUniqueId(id));
    int rc = fg_store_set(w->store, key, id, sizeof *id);
    return rc ? fg__comm_fail(w, rc, "nccl init", "cannot publish the NCCL id: %s",
                              fg_store_errmsg(w->store))
              : 0;
  }
  void *value = NULL;
  size_t len = 0;
  int rc = fg_store_get(w->store, key, &value, &len);
  if (rc != 0)
    return fg__comm_fail(w, rc, "nccl init", "no NCCL id from rank 0: %s",
                         fg_store_errmsg(w->store));
  if (len != sizeof *id) {
    free(value);
    return fg__comm_fail(w, FG_EPROTO, "nccl init",
                         "the NCCL id from rank 0 has %zu bytes, not %zu", len, sizeof *id);
  }
  memcpy(id, value, sizeof *id);
  free(value);
  return 0;
}

static int pick_device(fg_comm *w) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return fg__comm_fail(w, FG_ENODEV, "nccl init", "no CUDA device (cudaGetDeviceCount: %s)",
                         cudaGetErrorString(e));
  }
  if (count <= 0)
    return fg__comm_fail(w, FG_ENODEV, "nccl init",
                         "no CUDA device (cudaGetDeviceCount found none)");
  if (w->local_rank >= count)
    return fg__comm_fail(w, FG_ENODEV, "nccl init",
                         "rank %d needs GPU %d but this machine has %d (NCCL cannot put two ranks "
                         "on one GPU)",
                         w->rank, w->local_rank, count);
  return 0;
}

static int connect_world(fg_comm *w) {
  nccl_state *s = w->impl;
  ncclUniqueId id;
  int rc = share_id(w, &id);
  if (rc) return rc;
  ncclConfig_t cfg = comm_config();
  ncclResult_t r = ncclCommInitRankConfig(&s->comm, w->size, id, w->rank, &cfg);
  if (!nccl_ok(r)) {
    rc = nccl_fail(w, "nccl init", "ncclCommInitRankConfig", r);
    abort_comm(w, rc); /* a failed non-blocking init still leaves a communicator to free */
    return rc;
  }
  return wait_issued(w, s->comm, "nccl init", "the other ranks to join", deadline_of(w));
}

static int nccl_init(fg_comm *w) {
  int rc = pick_device(w);
  if (rc == 0) rc = state_new(w, w->local_rank);
  if (rc == 0) rc = connect_world(w);
  if (rc != 0) {
    abort_comm(w, rc);
    state_free(w);
  }
  return rc;
}

static int nccl_split(fg_comm *parent, fg_comm *child, int colour, int key) {
  (void)key; /* child->rank already orders the members: NCCL gets it as the key */
  nccl_state *ps = parent->impl;
  int rc = enter(parent, "split");
  if (rc == 0 && child) rc = state_new(child, ps->device);
  if (rc != 0) {
    if (child && child->err[0]) snprintf(parent->err, sizeof parent->err, "%s", child->err);
    if (child) state_free(child);
    return rc;
  }
  /* NCCL writes the new communicator once the split completes, which the parent reports. */
  ncclComm_t comm = NULL;
  ncclConfig_t cfg = comm_config();
  ncclResult_t r = ncclCommSplit(ps->comm, child ? colour : NCCL_SPLIT_NOCOLOR,
                                 child ? child->rank : 0, &comm, &cfg);
  rc = nccl_ok(r) ? wait_issued(parent, ps->comm, "split", "the other ranks to split",
                                deadline_of(parent))
                  : nccl_fail(parent, "split", "ncclCommSplit", r);
  if (rc == 0 && child) {
    nccl_state *cs = child->impl;
    cs->comm = comm;
    int rank = -1, size = -1;
    if (!comm)
      rc = fg__comm_fail(parent, FG_EBACKEND, "split", "ncclCommSplit gave no communicator");
    else if ((rc = wait_issued(child, comm, "split", "the new group", deadline_of(child))) != 0)
      snprintf(parent->err, sizeof parent->err, "%s", child->err);
    else if (ncclCommUserRank(comm, &rank) != ncclSuccess ||
             ncclCommCount(comm, &size) != ncclSuccess || rank != child->rank ||
             size != child->size)
      rc = fg__comm_fail(parent, FG_EBACKEND, "split",
                         "NCCL made this rank %d of %d, the group has it as %d of %d", rank, size,
                         child->rank, child->size);
  } else if (comm) {
    (void)ncclCommAbort(comm); /* a split that failed late still made one */
  }
  if (rc != 0 && child) {
    abort_comm(child, rc);
    state_free(child);
  }
  return rc;
}

static void nccl_destroy(fg_comm *c) {
  nccl_state *s = c->impl;
  if (!s) return;
  (void)cudaSetDevice(s->device);
  /* Finalize lets in-flight work and the peers' proxies drain; abort if that fails. */
  if (s->comm && nccl_ok(ncclCommFinalize(s->comm)) &&
      wait_issued(c, s->comm, "destroy", "the other ranks to finish", deadline_of(c)) == 0) {
    (void)ncclCommDestroy(s->comm);
    s->comm = NULL;
  }
  abort_comm(c, FG_ECLOSED);
  state_free(c);
}

/* --- collectives ----------------------------------------------------------------------- */

static int nccl_barrier(fg_comm *c) {
  nccl_state *s = c->impl;
  int rc = enter(c, "barrier");
  return rc ? rc : RUN(c, "barrier", ncclAllReduce(s->flag, s->flag, 1, ncclInt32, ncclMax,
                                                   s->comm, s->stream));
}

static int nccl_broadcast(fg_comm *c, void *buf, size_t count, fg_dtype dt, int root) {
  nccl_state *s = c->impl;
  int rc = enter(c, "broadcast");
  if (rc || count == 0) return rc;
  return RUN(c, "broadcast",
             ncclBroadcast(buf, buf, count, nccl_type(dt), root, s->comm, s->stream));
}

static int nccl_reduce(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt,
                       fg_redop op, int root) {
  nccl_state *s = c->impl;
  int rc = enter(c, "reduce");
  if (rc || count == 0) return rc;
  return RUN(c, "reduce", ncclReduce(send, recv, count, nccl_type(dt), nccl_op(op), root,
                                     s->comm, s->stream));
}

static int nccl_allreduce(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt,
                          fg_redop op) {
  nccl_state *s = c->impl;
  int rc = enter(c, "allreduce");
  if (rc || count == 0) return rc;
  return RUN(c, "allreduce", ncclAllReduce(send, recv, count, nccl_type(dt), nccl_op(op),
                                           s->comm, s->stream));
}

static int nccl_allgather(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt) {
  nccl_state *s = c->impl;
  int rc = enter(c, "allgather");
  if (rc || count == 0) return rc;
  return RUN(c, "allgather",
             ncclAllGather(send, recv, count, nccl_type(dt), s->comm, s->stream));
}

static int nccl_reduce_scatter(fg_comm *c, const void *send, void *recv, size_t count,
                               fg_dtype dt, fg_redop op) {
  nccl_state *s = c->impl;
  int rc = enter(c, "reduce_scatter");
  if (rc || count == 0) return rc;
  return RUN(c, "reduce_scatter", ncclReduceScatter(send, recv, count, nccl_type(dt),
                                                    nccl_op(op), s->comm, s->stream));
}

/* --- point-to-point -------------------------------------------------------------------- */

typedef struct p2p_batch {
  char what[48]; /* "send to rank 3", "batch of 6" */
} p2p_batch;

static int nccl_p2p_start(fg_comm *c, const fg_p2p_op *ops, size_t n, void **state) {
  nccl_state *s = c->impl;
  p2p_batch *b = calloc(1, sizeof *b);
  *state = NULL;
  if (!b) return fg__comm_fail(c, -ENOMEM, "batch", "out of memory");
  if (n == 1)
    snprintf(b->what, sizeof b->what, "%s rank %d", ops[0].is_send ? "send to" : "recv from",
             ops[0].peer);
  else
    snprintf(b->what, sizeof b->what, "batch of %zu", n);
  int rc = enter(c, b->what);
  if (rc) {
    free(b);
    return rc;
  }
  /* Every op of the batch in one group, so that NCCL pairs them without deadlock. The group
   * is closed even when an op fails: it belongs to this thread, not to the communicator. */
  ncclResult_t r = ncclGroupStart();
  if (!nccl_ok(r)) {
    rc = nccl_fail(c, b->what, "ncclGroupStart", r);
    free(b);
    return rc;
  }
  const char *call = "ncclGroupEnd";
  for (size_t i = 0; nccl_ok(r) && i < n; i++) {
    if (ops[i].count == 0) continue; /* both sides know the count: both skip it */
    call = ops[i].is_send ? "ncclSend" : "ncclRecv";
    r = ops[i].is_send ? ncclSend(ops[i].buf, ops[i].count, nccl_type(ops[i].dtype),
                                  ops[i].peer, s->comm, s->stream)
                       : ncclRecv(ops[i].buf, ops[i].count, nccl_type(ops[i].dtype),
                                  ops[i].peer, s->comm, s->stream);
  }
  ncclResult_t end = ncclGroupEnd();
  if (nccl_ok(r)) r = end, call = "ncclGroupEnd";
  /* Wait until NCCL has issued the group, as a blocking communicator would, so that the
   * next call finds the communicator ready; the stream runs it while the caller works. */
  rc = nccl_ok(r) ? wait_issued(c, s->comm, b->what, "NCCL to connect to the peers",
                                deadline_of(c))
                  : nccl_fail(c, b->what, call, r);
  if (rc) {
    free(b);
    return rc;
  }
  *state = b;
  return 0;
}

static int nccl_p2p_wait(fg_comm *c, void *state) {
  p2p_batch *b = state;
  int rc = wait_done(c, b ? b->what : "batch");
  free(b);
  return rc;
}

/* --- memory ---------------------------------------------------------------------------- */

static int nccl_mem_alloc(fg_comm *c, size_t bytes, void **ptr) {
  nccl_state *s = c->impl;
  *ptr = NULL;
  CUDA_TRY(c, "malloc", cudaSetDevice(s->device));
  cudaError_t e = cudaMalloc(ptr, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    *ptr = NULL;
    return fg__comm_fail(c, e == cudaErrorMemoryAllocation ? -ENOMEM : FG_EBACKEND, "malloc",
                         "cudaMalloc of %zu bytes on GPU %d: %s", bytes, s->device,
                         cudaGetErrorString(e));
  }
  return 0;
}

static void nccl_mem_free(fg_comm *c, void *ptr) {
  nccl_state *s = c->impl;
  (void)cudaSetDevice(s->device);
  (void)cudaFree(ptr);
}

/* Copies on the communicator's stream, so they stay ordered with its operations. */
static int nccl_mem_copy(fg_comm *c, void *dst, const void *src, size_t bytes, int to_device) {
  nccl_state *s = c->impl;
  const char *what = to_device ? "upload" : "download";
  if (bytes == 0) return 0;
  CUDA_TRY(c, what, cudaSetDevice(s->device));
  CUDA_TRY(c, what, cudaMemcpyAsync(dst, src, bytes,
                                    to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
                                    s->stream));
  return wait_done(c, what);
}

static int nccl_device(fg_comm *c, char *desc, size_t len) {
  nccl_state *s = c->impl;
  struct cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, s->device) != cudaSuccess) {
    (void)cudaGetLastError();
    snprintf(desc, len, "[?] GPU %d", s->device);
  } else {
    snprintf(desc, len, "[%04x:%02x:%02x] %s", p.pciDomainID, p.pciBusID, p.pciDeviceID, p.name);
  }
  return s->device;
}

static const fg_backend nccl_backend = {
    .name = "nccl",
    .host_memory = 0,
    .needs_store = 1,
    .native_avg = 1,
    .init = nccl_init,
    .split = nccl_split,
    .destroy = nccl_destroy,
    .barrier = nccl_barrier,
    .broadcast = nccl_broadcast,
    .reduce = nccl_reduce,
    .allreduce = nccl_allreduce,
    .allgather = nccl_allgather,
    .reduce_scatter = nccl_reduce_scatter,
    .p2p_start = nccl_p2p_start,
    .p2p_wait = nccl_p2p_wait,
    .mem_alloc = nccl_mem_alloc,
    .mem_free = nccl_mem_free,
    .mem_copy = nccl_mem_copy,
    .device = nccl_device,
};

const fg_backend *const fg__backend_nccl = &nccl_backend;
