/* backend_mpi_sched.c - the schedules of the mpi backend's allreduce and reduce, which must
 * be nonblocking (every call has a deadline) yet as quick as MPI_Allreduce and MPI_Reduce.
 *
 * Open MPI runs nonblocking collectives in libnbc, which reduces every allreduce on fewer
 * than 4 ranks, and every in-place one, along a binomial tree: the data crosses twice, one
 * way then back, and one rank does all the reducing; and which pipelines a long reduce on 4
 * ranks or fewer along a chain, at a third of MPI_Reduce's speed here. MPI_Allreduce
 * (coll/tuned) moves halves both ways at once on 2 ranks and doubles recursively on short
 * messages. So:
 *  - short allreduces on 2, 4, 8... ranks are log2(ranks) exchanges of point-to-point
 *    messages with a local reduction after each (recursive doubling, as MPI_Allreduce);
 *  - the others go to libnbc with its recursive-doubling schedule when short, halving
 *    (Rabenseifner) when medium, its ring when long; a reduce goes with its binomial tree;
 *    an allgather on two ranks is one exchange. MCA variables select these: we write
 *    them through MPI_T before each call and put the old value back, so the application's
 *    own calls keep theirs.
 * Every rank derives its choice from the same group size and byte count, so the ranks'
 * schedules match. MPIs without the variables keep their own choice. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/backend_mpi.h"

/* libnbc's values of coll_libnbc_iallreduce_algorithm and coll_libnbc_ireduce_algorithm. */
enum { NBC_DEFAULT = 0, NBC_RING = 1, NBC_BINOMIAL = 2, NBC_RABENSEIFNER = 3,
       NBC_RECURSIVE_DOUBLING = 4 };
/* Up to SHORT_MAX a message is short: latency decides, and recursive doubling wins. Two
 * ranks exchange everything once either way, so doubling pays there up to PAIR_MAX; on
 * more, Rabenseifner's halving moves less up to MEDIUM_MAX, and the ring after that. */
enum { SHORT_MAX = 65536, PAIR_MAX = 262144, MEDIUM_MAX = 262144, EXCHANGE_TAG = 0x6668 };

/* One MCA variable, written around a call. */
typedef struct tunable {
  const char *name;
  int ready;   /* h is usable */
  int initial; /* its value before us, restored after each call */
  MPI_T_cvar_handle h;
} tunable;

static tunable allreduce_alg = {.name = "coll_libnbc_iallreduce_algorithm"};
static tunable reduce_alg = {.name = "coll_libnbc_ireduce_algorithm"};
static int t_inited;

static void take(tunable *t) {
  int index, count;
  if (MPI_T_cvar_get_index(t->name, &index) != MPI_SUCCESS ||
      MPI_T_cvar_handle_alloc(index, NULL, &t->h, &count) != MPI_SUCCESS)
    return;
  if (count == 1 && MPI_T_cvar_read(t->h, &t->initial) == MPI_SUCCESS)
    t->ready = 1;
  else
    MPI_T_cvar_handle_free(&t->h);
}

static void release(tunable *t) {
  if (t->ready) MPI_T_cvar_handle_free(&t->h);
  t->ready = 0;
}

void fg__mpi_tuning_start(void) {
  int provided;
  if (t_inited || MPI_T_init_thread(MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) return;
  take(&allreduce_alg);
  take(&reduce_alg);
  t_inited = 1;
}

void fg__mpi_tuning_stop(void) {
  if (!t_inited) return;
  release(&allreduce_alg);
  release(&reduce_alg);
  MPI_T_finalize();
  t_inited = 0;
}

/* The value to write, or -1 to leave the variable alone: the user's own choice
 * (OMPI_MCA_coll_libnbc_..._algorithm) wins. */
static int usable(const tunable *t, int alg) {
  return t->ready && t->initial == NBC_DEFAULT ? alg : -1;
}

static void set(tunable *t, int alg) {
  if (alg >= 0) MPI_T_cvar_write(t->h, &alg);
}

static void restore(tunable *t, int alg) {
  if (alg >= 0) MPI_T_cvar_write(t->h, &t->initial);
}

/* Measured on 4 ranks against MPI_Allreduce: Rabenseifner 0.95-1.0 from 128 KB up, the
 * ring 0.9 at 128 KB but 1.1-1.4 from 256 KB up. */
static int allreduce_schedule(int ranks, size_t bytes) {
  if (ranks == 2) return NBC_RING;
  return bytes <= SHORT_MAX    ? NBC_RECURSIVE_DOUBLING
         : bytes <= MEDIUM_MAX ? NBC_RABENSEIFNER
                               : NBC_RING;
}

int fg__mpi_iallreduce(const void *send, void *recv, int n, MPI_Datatype t, MPI_Op op,
                      MPI_Comm comm, int ranks, size_t bytes, MPI_Request *r) {
  int alg = usable(&allreduce_alg, allreduce_schedule(ranks, bytes));
  set(&allreduce_alg, alg);
  int rc = MPI_Iallreduce(send, recv, n, t, op, comm, r);
  restore(&allreduce_alg, alg);
  return rc;
}

/* The binomial tree measured 0.8-1.1 of MPI_Reduce on 2 and 4 ranks at every size; libnbc's
 * own choice, a chain from 64 KB up, 0.3-0.5. */
int fg__mpi_ireduce(const void *send, void *recv, int n, MPI_Datatype t, MPI_Op op, int root,
                   MPI_Comm comm, MPI_Request *r) {
  int alg = usable(&reduce_alg, NBC_BINOMIAL);
  set(&reduce_alg, alg);
  int rc = MPI_Ireduce(send, recv, n, t, op, root, comm, r);
  restore(&reduce_alg, alg);
  return rc;
}

/* --- recursive doubling -------------------------------------------------------------------- */

int fg__mpi_doubling_fits(const fg_comm *c, size_t count, fg_dtype dt) {
  return c->size >= 2 && (c->size & (c->size - 1)) == 0 && count > 0 &&
         count * fg_dtype_size(dt) <= (c->size == 2 ? PAIR_MAX : SHORT_MAX);
}

/* Sends mine to peer while receiving theirs, within the deadline. */
static int swap_with(fg_comm *c, const char *what, const void *mine, void *theirs, int n,
                     MPI_Datatype t, int peer, uint64_t deadline) {
  int got = 0, mpi_err = 0, pending = 0;
  MPI_Request r[2];
  MPI_Status st[2];
  int err = MPI_Irecv(theirs, n, t, peer, EXCHANGE_TAG, comm_of(c), &r[0]);
  if (err == MPI_SUCCESS) err = MPI_Isend(mine, n, t, peer, EXCHANGE_TAG, comm_of(c), &r[1]);
  if (err != MPI_SUCCESS) return fg__mpi_abandon(c, fg__mpi_fail(c, what, err));
  int rc = fg__mpi_poll_all(r, st, 2, deadline, &mpi_err, &pending);
  if (rc != 0) {
    if (pending == 0) { /* a cancelled receive writes nothing later */
      MPI_Cancel(&r[0]);
      MPI_Request_free(&r[0]);
    }
    fg__mpi_abandon(c, rc == -ETIMEDOUT ? rc : fg__mpi_code(mpi_err));
    char who[32];
    snprintf(who, sizeof who, "rank %d", peer);
    return rc == -ETIMEDOUT ? fg__mpi_timed_out(c, what, who) : fg__mpi_fail(c, what, mpi_err);
  }
  if (MPI_Get_count(&st[0], t, &got) == MPI_SUCCESS && got != n)
    return fg__comm_fail(c, FG_EMISMATCH, what,
                         "ranks passed different counts (rank %d sent %d elements, rank %d "
                         "expected %d); FG_DEBUG=detail names them", peer, got, c->rank, n);
  return 0;
}

/* The lower rank's partial result goes first in every reduction, so every rank computes
 * the same operations in the same order, bit for bit. acc is this rank's partial result:
 * send at first (read only), then recv or the kept buffer, whichever saves a copy. */
int fg__mpi_doubling_allreduce(fg_comm *c, const char *what, const void *send, void *recv,
                              size_t count, fg_dtype dt, fg_redop op) {
  mpi_state *s = c->impl;
  size_t bytes = count * fg_dtype_size(dt);
  if (!s->theirs && !(s->theirs = malloc(PAIR_MAX)))
    return fg__comm_fail(c, -ENOMEM, what, "out of memory");
  void *tmp = s->theirs;
  const void *acc = send;
  uint64_t deadline = fg__mpi_deadline_after(c->timeout_ms);
  MPI_Datatype t = fg__mpi_type(dt);
  MPI_Op mop = fg__mpi_op(dt, op);
  for (int mask = 1; mask < c->size; mask <<= 1) {
    int peer = c->rank ^ mask, lower = c->rank < peer;
    /* The higher rank reduces into its own partial result, which must be writable. */
    void *mine = !lower && acc == send && send != recv ? recv : (void *)acc;
    void *into = lower ? (acc == recv ? tmp : recv) : (mine == recv ? tmp : recv);
    int rc = swap_with(c, what, acc, into, (int)count, t, peer, deadline);
    if (rc != 0) return rc;
    if (lower) { /* into = acc op theirs */
      MPI_Reduce_local(acc, into, (int)count, t, mop);
      acc = into;
    } else { /* mine = theirs op mine */
      if (mine != acc) memcpy(mine, acc, bytes);
      MPI_Reduce_local(into, mine, (int)count, t, mop);
      acc = mine;
    }
  }
  if (acc != recv) memcpy(recv, acc, bytes);
  return 0;
}

/* --- allgather on two ranks ---------------------------------------------------------------- */

/* One exchange, as MPI_Allgather's two-process schedule; libnbc's linear one took twice as
 * long up to 1 MB. send may lie in recv (in place); MPI forbids the overlap, so it moves to
 * this rank's block first. */
int fg__mpi_pair_allgather(fg_comm *c, const char *what, const void *send, void *recv,
                          size_t count, fg_dtype dt) {
  size_t bytes = count * fg_dtype_size(dt);
  char *mine = (char *)recv + (size_t)c->rank * bytes;
  char *theirs = (char *)recv + (size_t)(1 - c->rank) * bytes;
  const char *from = send;
  if (from < (char *)recv + 2 * bytes && from + bytes > (char *)recv) {
    if (from != mine) memmove(mine, send, bytes);
    from = mine;
  }
  int rc = swap_with(c, what, from, theirs, (int)count, fg__mpi_type(dt), 1 - c->rank,
                     fg__mpi_deadline_after(c->timeout_ms));
  if (rc == 0 && from != mine) memcpy(mine, from, bytes);
  return rc;
}
