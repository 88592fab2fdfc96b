/* backend_mpi.c - the mpi backend: each operation is MPI's nonblocking form, tested
 * until it completes or the communicator's timeout passes, so no call waits forever.
 *
 * Buffers are host memory. MPI has no half types: float16 and bfloat16 travel as
 * MPI_UINT16_T and reduce with user operations over fg__reduce_local (in float32, one
 * rounding per pair, as the other backends do). The other types use MPI's built-in
 * operations; integer sums and products wrap in two's complement in Open MPI and MPICH,
 * as they do in NCCL. AVG arrives as SUM (native_avg = 0) and the generic layer divides.
 * Allreduce and reduce take the schedules MPI's blocking forms would (backend_mpi_sched.c).
 *
 * MPI cannot cancel a collective, so after a timeout MPI may still write into the
 * abandoned operation's buffers: the communicator then refuses every call but destroy,
 * and MPI_Finalize, which waits for every process, is skipped so that mpirun ends the
 * job instead of this process hanging.
 *
 * MPI is started (MPI_THREAD_SERIALIZED) by the first world that needs it, mpi or gloo
 * under mpirun, and finalized with the last; a process cannot start it again after. */
#include <errno.h>
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/backend_mpi.h"
#include "common/slurm.h"
#include "common/util.h"

/* MPI is initialised once per process and shared by every world that uses it. */
static struct {
  int initialized_here; /* we called MPI_Init_thread, so we finalize */
  int users;            /* worlds holding a reference */
  int abandoned;        /* an operation was left in flight: MPI_Finalize would wait for it */
  int timeout_ms;       /* for fg__mpi_bcast_world, which has no communicator */
  int ops_created;
  MPI_Op half_ops[2][FG_REDOP_AVG]; /* [bfloat16][redop] */
} g;

/* --- types and reductions -------------------------------------------------------------- */

MPI_Datatype fg__mpi_type(fg_dtype dt) {
  switch (dt) {
    case FG_INT8: return MPI_INT8_T;
    case FG_UINT8: return MPI_UINT8_T;
    case FG_INT32: return MPI_INT32_T;
    case FG_INT64: return MPI_INT64_T;
    case FG_FLOAT32: return MPI_FLOAT;
    case FG_FLOAT64: return MPI_DOUBLE;
    default: return MPI_UINT16_T; /* float16, bfloat16: bits that only half_ops reduce */
  }
}

#define HALF_OP(name, dt, op)                                                    \
  static void name(void *in, void *inout, int *len, MPI_Datatype *type) {        \
    (void)type;                                                                  \
    fg__reduce_local(inout, in, (size_t)*len, dt, op);                            \
  }
/* One per reduction below FG_REDOP_AVG, in fg_redop's order. */
#define HALF_OPS(prefix, dt)                \
  HALF_OP(prefix##_sum, dt, FG_REDOP_SUM)   \
  HALF_OP(prefix##_prod, dt, FG_REDOP_PROD) \
  HALF_OP(prefix##_min, dt, FG_REDOP_MIN)   \
  HALF_OP(prefix##_max, dt, FG_REDOP_MAX)
#define HALF_ROW(prefix) {prefix##_sum, prefix##_prod, prefix##_min, prefix##_max}
HALF_OPS(f16, FG_FLOAT16)
HALF_OPS(bf16, FG_BFLOAT16)

static MPI_User_function *const half_fns[2][FG_REDOP_AVG] = {HALF_ROW(f16), HALF_ROW(bf16)};

static int create_half_ops(void) {
  for (int b = 0; b < 2 && !g.ops_created; b++)
    for (int op = 0; op < FG_REDOP_AVG; op++) {
      int rc = MPI_Op_create(half_fns[b][op], 1, &g.half_ops[b][op]);
      if (rc != MPI_SUCCESS) return rc;
    }
  g.ops_created = 1;
  return MPI_SUCCESS;
}

static void free_half_ops(void) {
  for (int b = 0; b < 2 && g.ops_created; b++)
    for (int op = 0; op < FG_REDOP_AVG; op++) MPI_Op_free(&g.half_ops[b][op]);
  g.ops_created = 0;
}

MPI_Op fg__mpi_op(fg_dtype dt, fg_redop op) {
  if (op == FG_REDOP_AVG) op = FG_REDOP_SUM;
  if (dt == FG_FLOAT16 || dt == FG_BFLOAT16) return g.half_ops[dt == FG_BFLOAT16][op];
  switch (op) {
    case FG_REDOP_PROD: return MPI_PROD;
    case FG_REDOP_MIN: return MPI_MIN;
    case FG_REDOP_MAX: return MPI_MAX;
    default: return MPI_SUM;
  }
}

/* --- collectives: one description, one switch ------------------------------------------ */

enum kind { K_BARRIER, K_BROADCAST, K_REDUCE, K_ALLREDUCE, K_ALLGATHER, K_GATHER, K_SCATTER,
            K_REDUCE_SCATTER, K_ALLTOALL };

typedef struct call {
  enum kind kind;
  const char *what;
  const void *send;
  void *recv;
  size_t count;
  fg_dtype dt;
  fg_redop op;
  int root;
} call;

static int elementwise(enum kind k) {
  return k == K_BROADCAST || k == K_REDUCE || k == K_ALLREDUCE;
}

/* MPI's in-place form for send == recv; MPI forbids aliased buffers otherwise. */
static const void *in_place(const void *send, const void *recv) {
  return send == recv ? MPI_IN_PLACE : send;
}

/* Our in-place gathers pass send anywhere in recv; MPI's expect the data already in this
 * rank's block: moving it there first covers both. A send apart from recv goes as it is,
 * which saves that copy (half the time of a short allgather on 2 ranks). */
static const void *into_block(const void *send, void *recv, int index, size_t bytes,
                              int blocks) {
  const char *from = send, *start = recv, *end = start + bytes * (size_t)blocks;
  char *mine = (char *)recv + (size_t)index * bytes;
  if (from >= end || from + bytes <= start) return send;
  if (bytes && mine != from) memmove(mine, send, bytes);
  return MPI_IN_PLACE;
}

static int start(fg_comm *c, const call *k, MPI_Request *r) {
  MPI_Comm comm = comm_of(c);
  MPI_Datatype t = fg__mpi_type(k->dt);
  MPI_Op op = fg__mpi_op(k->dt, k->op);
  int n = (int)k->count, root = c->rank == k->root;
  size_t bytes = k->count * fg_dtype_size(k->dt);
  switch (k->kind) {
    case K_BARRIER: return MPI_Ibarrier(comm, r);
    case K_BROADCAST: return MPI_Ibcast(k->recv, n, t, k->root, comm, r);
    case K_REDUCE:
      return fg__mpi_ireduce(root ? in_place(k->send, k->recv) : k->send, root ? k->recv : NULL,
                            n, t, op, k->root, comm, r);
    case K_ALLREDUCE:
      return fg__mpi_iallreduce(in_place(k->send, k->recv), k->recv, n, t, op, comm, c->size,
                               bytes, r);
    case K_ALLGATHER:
      return MPI_Iallgather(into_block(k->send, k->recv, c->rank, bytes, c->size), n, t, k->recv,
                            n, t, comm, r);
    case K_GATHER:
      if (!root) return MPI_Igather(k->send, n, t, NULL, n, t, k->root, comm, r);
      return MPI_Igather(into_block(k->send, k->recv, k->root, bytes, c->size), n, t, k->recv,
                         n, t, k->root, comm, r);
    case K_SCATTER: /* the root copies its own block once the others' are out */
      return MPI_Iscatter(k->send, n, t, root ? MPI_IN_PLACE : k->recv, n, t, k->root, comm, r);
    case K_REDUCE_SCATTER:
      return MPI_Ireduce_scatter_block(in_place(k->send, k->recv), k->recv, n, t, op, comm, r);
    case K_ALLTOALL:
      return MPI_Ialltoall(in_place(k->send, k->recv), n, t, k->recv, n, t, comm, r);
  }
  return MPI_ERR_OP;
}

/* MPI counts are ints. Element-wise operations go in chunks (FG_MPI_CHUNK elements, a
 * debugging knob, lets tests see more than one); the others must fit. */
static size_t chunk_elements(void) {
  static size_t chunk;
  if (!chunk) {
    const char *v = getenv("FG_MPI_CHUNK");
    int64_t n = 0;
    chunk = v && fg__parse_i64(v, 1, INT_MAX, &n) == 0 ? (size_t)n : (size_t)INT_MAX;
  }
  return chunk;
}

static int run(fg_comm *c, call k) {
  int rc = fg__mpi_usable(c, k.what);
  if (rc) return rc;
  size_t esz = fg_dtype_size(k.dt), chunk = elementwise(k.kind) ? chunk_elements() : INT_MAX;
  if (k.count > INT_MAX && !elementwise(k.kind))
    return fg__comm_fail(c, FG_ELIMIT, k.what, "MPI counts are ints: %zu elements is over %d",
                         k.count, INT_MAX);
  size_t done = 0;
  do {
    call part = k;
    part.count = FG__MIN(k.count - done, chunk);
    if (done && part.send) part.send = (const char *)k.send + done * esz;
    if (done && part.recv) part.recv = (char *)k.recv + done * esz;
    if (part.kind == K_ALLREDUCE && fg__mpi_doubling_fits(c, part.count, part.dt)) {
      rc = fg__mpi_doubling_allreduce(c, part.what, part.send, part.recv, part.count, part.dt,
                                     part.op);
    } else if (part.kind == K_ALLGATHER && c->size == 2 && part.count > 0) {
      rc = fg__mpi_pair_allgather(c, part.what, part.send, part.recv, part.count, part.dt);
    } else {
      MPI_Request req;
      int err = start(c, &part, &req);
      rc = err != MPI_SUCCESS ? fg__mpi_fail(c, k.what, err) : fg__mpi_wait_one(c, k.what, &req);
    }
    done += part.count;
  } while (rc == 0 && done < k.count);
  if (rc == 0 && k.kind == K_SCATTER && c->rank == k.root && k.count)
    memmove(k.recv, (const char *)k.send + (size_t)k.root * k.count * esz, k.count * esz);
  return rc;
}

/* The table's entries: (send, recv, count, dtype[, op][, root]) as in comm_internal.h. */
static int be_barrier(fg_comm *c) {
  return run(c, (call){.kind = K_BARRIER, .what = "barrier", .dt = FG_UINT8});
}

static int be_broadcast(fg_comm *c, void *buf, size_t n, fg_dtype dt, int root) {
  return run(c, (call){K_BROADCAST, "broadcast", buf, buf, n, dt, FG_REDOP_SUM, root});
}

static int be_reduce(fg_comm *c, const void *s, void *r, size_t n, fg_dtype dt, fg_redop op,
                     int root) {
  return run(c, (call){K_REDUCE, "reduce", s, r, n, dt, op, root});
}

static int be_allreduce(fg_comm *c, const void *s, void *r, size_t n, fg_dtype dt, fg_redop op) {
  return run(c, (call){K_ALLREDUCE, "allreduce", s, r, n, dt, op, 0});
}

static int be_allgather(fg_comm *c, const void *s, void *r, size_t n, fg_dtype dt) {
  return run(c, (call){K_ALLGATHER, "allgather", s, r, n, dt, FG_REDOP_SUM, 0});
}

static int be_gather(fg_comm *c, const void *s, void *r, size_t n, fg_dtype dt, int root) {
  return run(c, (call){K_GATHER, "gather", s, r, n, dt, FG_REDOP_SUM, root});
}

static int be_scatter(fg_comm *c, const void *s, void *r, size_t n, fg_dtype dt, int root) {
  return run(c, (call){K_SCATTER, "scatter", s, r, n, dt, FG_REDOP_SUM, root});
}

static int be_reduce_scatter(fg_comm *c, const void *s, void *r, size_t n, fg_dtype dt,
                             fg_redop op) {
  return run(c, (call){K_REDUCE_SCATTER, "reduce_scatter", s, r, n, dt, op, 0});
}

static int be_alltoall(fg_comm *c, const void *s, void *r, size_t n, fg_dtype dt) {
  return run(c, (call){K_ALLTOALL, "alltoall", s, r, n, dt, FG_REDOP_SUM, 0});
}

/* Counts and offsets are ints here too, in elements. */
static int be_allgatherv(fg_comm *c, const void *send, void *recv, const size_t *counts,
                         fg_dtype dt) {
  int rc = fg__mpi_usable(c, "allgatherv");
  if (rc) return rc;
  int *nums = calloc(2 * (size_t)c->size, sizeof *nums), *offs = nums + c->size;
  if (!nums) return fg__comm_fail(c, -ENOMEM, "allgatherv", "out of memory");
  size_t off = 0, esz = fg_dtype_size(dt);
  for (int r = 0; r < c->size; r++) {
    if (counts[r] > INT_MAX || off > INT_MAX) {
      free(nums);
      return fg__comm_fail(c, FG_ELIMIT, "allgatherv",
                           "MPI counts are ints: rank %d's block (%zu elements at %zu) is past %d",
                           r, counts[r], off, INT_MAX);
    }
    nums[r] = (int)counts[r];
    offs[r] = (int)off;
    off += counts[r];
  }
  size_t mine = counts[c->rank] * esz;
  char *slot = (char *)recv + (size_t)offs[c->rank] * esz;
  if (mine && slot != send) memmove(slot, send, mine);
  MPI_Datatype t = fg__mpi_type(dt);
  MPI_Request req;
  int err = MPI_Iallgatherv(MPI_IN_PLACE, 0, t, recv, nums, offs, t, comm_of(c), &req);
  rc = err != MPI_SUCCESS ? fg__mpi_fail(c, "allgatherv", err)
                          : fg__mpi_wait_one(c, "allgatherv", &req);
  /* A request left in flight still reads the counts. */
  if (!((mpi_state *)c->impl)->broken) free(nums);
  return rc;
}

/* --- lifecycle ------------------------------------------------------------------------- */

/* The operation stays in flight inside MPI: nothing but destroy may follow. */
int fg__mpi_abandon(fg_comm *c, int code) {
  ((mpi_state *)c->impl)->broken = code;
  g.abandoned = 1;
  return code;
}

/* MPI_Init outside an MPI launcher hangs or makes a world of one: refuse first. */
static int check_launcher(char *err, size_t errlen) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
  for (size_t i = 0; i < FG_ARRAY_LEN(vars); i++)
    if (getenv(vars[i])) return 0;
  const char *rank = getenv("RANK");
  char seen[96] = "no MPI launcher variable (OMPI_COMM_WORLD_SIZE, PMIX_RANK) is set";
  if (rank) snprintf(seen, sizeof seen, "this process has RANK=%.16s but no OMPI_COMM_WORLD_SIZE "
                                        "or PMIX_RANK", rank);
  if (!rank && fg__slurm_in_step())
    return fg__fail(err, errlen, -EINVAL,
                   "the mpi backend needs an MPI launcher: srun started this rank without PMIx "
                   "(no PMIX_RANK): run `srun --mpi=pmix ...`, as Open MPI needs, or use "
                   "--backend gloo");
  return fg__fail(err, errlen, -EINVAL,
                 "the mpi backend needs an MPI launcher: fgrun with its PMIx server (not "
                 "--pmix off) or `mpirun -np N <program> --backend mpi`; else use --backend "
                 "gloo (%s)", seen);
}

int fg__mpi_ensure_init(fg_comm *world, char *err, size_t errlen) {
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (finalized)
    return fg__fail(err, errlen, FG_EBACKEND,
                   "MPI was finalized when this process's last world was destroyed and cannot "
                   "start again: keep a world alive for as long as MPI is needed");
  if (!inited) {
    int provided, rc = check_launcher(err, errlen);
    if (rc) return rc;
    rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    char buf[MPI_MAX_ERROR_STRING];
    if (rc != MPI_SUCCESS)
      return fg__fail(err, errlen, FG_EBACKEND, "MPI_Init_thread failed: %s", fg__mpi_text(rc, buf));
    g.initialized_here = 1;
    /* Open MPI raises errors of nonblocking collectives on MPI_COMM_WORLD, whatever their
     * communicator; an application that initialised MPI keeps its own choice. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  /* A world holds a reference even if a check below fails: its destroy finalizes. */
  if (g.initialized_here && !world->mpi_initialized_here) {
    world->mpi_initialized_here = 1;
    g.users++;
  }
  g.timeout_ms = world->timeout_ms;
  int rank = -1, size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  /* The ranks that did join wait for this one in MPI: without MPI_Finalize, mpirun ends
   * the job now rather than after their timeout. */
  if (rank != world->rank || size != world->size) {
    g.abandoned = 1;
    return fg__fail(err, errlen, -EINVAL,
                   "MPI says this is rank %d of %d but the environment or options say rank %d "
                   "of %d (RANK/WORLD_SIZE from another launcher?)",
                   rank, size, world->rank, world->size);
  }
  return 0;
}

int fg__mpi_bcast_world(void *buf, size_t len, int root) {
  if (len > INT_MAX) return FG_ELIMIT;
  MPI_Request req;
  int mpi_err = 0, pending = 0;
  if (MPI_Ibcast(buf, (int)len, MPI_BYTE, root, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
    return FG_EBACKEND;
  int rc = fg__mpi_poll_all(&req, NULL, 1, fg__mpi_deadline_after(g.timeout_ms), &mpi_err, &pending);
  if (rc != 0) g.abandoned = 1;
  return rc;
}

void fg__mpi_finalize(fg_comm *world) {
  if (!world->mpi_initialized_here) return;
  world->mpi_initialized_here = 0;
  if (--g.users > 0) return;
  if (g.abandoned) {
    fprintf(stderr, "fgcomm: rank %d skips MPI_Finalize: a failure left MPI operations or "
                    "other ranks waiting (mpirun will end the job)\n", world->rank);
    return;
  }
  free_half_ops();
  fg__mpi_tuning_stop();
  MPI_Finalize();
}

static int state_new(fg_comm *c, MPI_Comm comm) {
  mpi_state *s = calloc(1, sizeof *s);
  if (!s) return -ENOMEM;
  s->comm = comm;
  c->impl = s;
  return 0;
}

/* On failure fg_comm_init does not call destroy: what init made, init frees. */
static int be_init(fg_comm *w) {
  char err[400];
  int rc = fg__mpi_ensure_init(w, err, sizeof err);
  if (rc) return fg__comm_fail(w, rc, "init", "%s", err);
  fg__mpi_tuning_start();
  int mpi_err = create_half_ops();
  if (mpi_err != MPI_SUCCESS) return fg__mpi_fail(w, "init", mpi_err);
  if (state_new(w, MPI_COMM_NULL) != 0) return fg__comm_fail(w, -ENOMEM, "init", "out of memory");
  /* Our own copy of MPI_COMM_WORLD: the application's traffic and error handler stay its. */
  mpi_state *s = w->impl;
  MPI_Request req;
  mpi_err = MPI_Comm_idup(MPI_COMM_WORLD, &s->comm, &req);
  rc = mpi_err != MPI_SUCCESS ? fg__mpi_fail(w, "init", mpi_err) : fg__mpi_wait_one(w, "init", &req);
  if (rc == 0) {
    MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN);
  } else if (!s->broken) { /* a broken one's idup may still write into s */
    free(s);
    w->impl = NULL;
  }
  return rc;
}

static void be_destroy(fg_comm *c) {
  mpi_state *s = c->impl;
  if (!s) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  /* A broken communicator's abandoned operation may still use it. */
  if (!s->broken && !finalized && s->comm != MPI_COMM_NULL) MPI_Comm_free(&s->comm);
  if (!s->broken) free(s->theirs); /* an abandoned exchange may still write into it */
  free(s);
  c->impl = NULL;
}

static int be_split(fg_comm *parent, fg_comm *child, int colour, int key) {
  int rc = fg__mpi_usable(parent, "split");
  if (rc) return rc;
  /* MPI has no nonblocking split. Every rank of parent has just finished the generic
   * layer's allgather under the timeout, so every one of them is on its way here. */
  MPI_Comm comm = MPI_COMM_NULL;
  int mpi_err = MPI_Comm_split(comm_of(parent), child ? colour : MPI_UNDEFINED, key, &comm);
  if (mpi_err != MPI_SUCCESS) return fg__mpi_fail(parent, "split", mpi_err);
  if (!child) return 0;
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  int rank = -1, size = -1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (rank != child->rank || size != child->size) {
    MPI_Comm_free(&comm);
    return fg__comm_fail(parent, FG_EBACKEND, "split",
                         "MPI made this rank %d of %d, the group's membership says %d of %d",
                         rank, size, child->rank, child->size);
  }
  if (state_new(child, comm) != 0) {
    MPI_Comm_free(&comm);
    return fg__comm_fail(parent, -ENOMEM, "split", "out of memory");
  }
  return 0;
}

static const fg_backend mpi_backend = {
    .name = "mpi",
    .host_memory = 1,
    .needs_store = 0,
    .native_avg = 0,
    .init = be_init,
    .split = be_split,
    .destroy = be_destroy,
    .barrier = be_barrier,
    .broadcast = be_broadcast,
    .reduce = be_reduce,
    .allreduce = be_allreduce,
    .allgather = be_allgather,
    .allgatherv = be_allgatherv,
    .gather = be_gather,
    .scatter = be_scatter,
    .reduce_scatter = be_reduce_scatter,
    .alltoall = be_alltoall,
    .p2p_start = fg__mpi_p2p_start,
    .p2p_wait = fg__mpi_p2p_wait,
};

const fg_backend *const fg__backend_mpi = &mpi_backend;
