/* backend_mpi.h - what the mpi backend's files share: backend_mpi.c (types, the
 * collectives, lifecycle), backend_mpi_wait.c (errors and waiting), backend_mpi_p2p.c
 * (point-to-point) and backend_mpi_sched.c (the schedules of allreduce and reduce). */
#ifndef FG_COMM_BACKEND_MPI_H
#define FG_COMM_BACKEND_MPI_H

#include <mpi.h>

#include "comm/comm_internal.h"

typedef struct mpi_state {
  MPI_Comm comm;
  int broken;   /* the code of a failure that left an operation in flight; 0 if none */
  void *theirs; /* a peer's partial result in fg__mpi_doubling_allreduce, once needed */
} mpi_state;

static inline MPI_Comm comm_of(const fg_comm *c) { return ((const mpi_state *)c->impl)->comm; }

/* --- backend_mpi.c ------------------------------------------------------------------------ */
MPI_Datatype fg__mpi_type(fg_dtype dt);
MPI_Op fg__mpi_op(fg_dtype dt, fg_redop op);
/* Marks c as having an operation in flight that MPI cannot cancel; returns code. */
int fg__mpi_abandon(fg_comm *c, int code);

/* --- backend_mpi_wait.c ------------------------------------------------------------------- */
/* MPI's text for err, in msg. */
const char *fg__mpi_text(int err, char msg[MPI_MAX_ERROR_STRING]);
/* An MPI error as our code (FG_EPEER, FG_EMISMATCH, FG_EBACKEND), and as c's error. */
int fg__mpi_code(int err);
int fg__mpi_fail(fg_comm *c, const char *what, int err);
/* 0, or c's error if an abandoned operation broke c. */
int fg__mpi_usable(fg_comm *c, const char *what);
uint64_t fg__mpi_deadline_after(int timeout_ms);
/* Tests every request until all are done or the deadline passes: 0, -ETIMEDOUT, or
 * FG_EBACKEND with the MPI error in *mpi_err; *pending is the first request not done. */
int fg__mpi_poll_all(MPI_Request *reqs, MPI_Status *st, int n, uint64_t deadline, int *mpi_err,
                    int *pending);
int fg__mpi_timed_out(fg_comm *c, const char *what, const char *waiting_for);
/* Waits for one collective's request under c's timeout; abandons it on failure. */
int fg__mpi_wait_one(fg_comm *c, const char *what, MPI_Request *req);

/* --- backend_mpi_p2p.c -------------------------------------------------------------------- */
/* The table's p2p_start and p2p_wait. */
int fg__mpi_p2p_start(fg_comm *c, const fg_p2p_op *ops, size_t n, void **state);
int fg__mpi_p2p_wait(fg_comm *c, void *state);

/* --- backend_mpi_sched.c ------------------------------------------------------------------- */
/* Takes hold of (releases) libnbc's algorithm variables, where there are any. */
void fg__mpi_tuning_start(void);
void fg__mpi_tuning_stop(void);
/* MPI_Iallreduce with the schedule MPI_Allreduce would choose, for a group of ranks. */
int fg__mpi_iallreduce(const void *send, void *recv, int n, MPI_Datatype t, MPI_Op op,
                      MPI_Comm comm, int ranks, size_t bytes, MPI_Request *r);
/* MPI_Ireduce with the schedule MPI_Reduce would choose. */
int fg__mpi_ireduce(const void *send, void *recv, int n, MPI_Datatype t, MPI_Op op, int root,
                   MPI_Comm comm, MPI_Request *r);
/* 1 if an allreduce of count elements goes by fg__mpi_doubling_allreduce. */
int fg__mpi_doubling_fits(const fg_comm *c, size_t count, fg_dtype dt);
int fg__mpi_doubling_allreduce(fg_comm *c, const char *what, const void *send, void *recv,
                              size_t count, fg_dtype dt, fg_redop op);
/* Allgather on exactly two ranks, count <= INT_MAX. */
int fg__mpi_pair_allgather(fg_comm *c, const char *what, const void *send, void *recv,
                          size_t count, fg_dtype dt);

#endif
