/* backend_mpi_wait.c - the mpi backend's errors and waiting: an MPI error as our code and
 * c's message, the refusal of a communicator an uncancellable operation left in flight, and
 * waiting on requests, which in MPI means testing them until they complete or a deadline
 * passes. */
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>
#if defined(OPEN_MPI) && __has_include(<mpi-ext.h>)
#include <mpi-ext.h> /* MPIX_ERR_PROC_FAILED, in Open MPI builds with ULFM */
#endif

#include "comm/backend_mpi.h"
#include "common/util.h"

const char *fg__mpi_text(int err, char msg[MPI_MAX_ERROR_STRING]) {
  int n = 0;
  if (MPI_Error_string(err, msg, &n) != MPI_SUCCESS || n <= 0) return "unknown MPI error";
  msg[FG__MIN(n, MPI_MAX_ERROR_STRING - 1)] = '\0';
  return msg;
}

int fg__mpi_code(int err) {
  int cls = MPI_ERR_OTHER;
  MPI_Error_class(err, &cls);
#ifdef MPIX_ERR_PROC_FAILED
  if (cls == MPIX_ERR_PROC_FAILED) return FG_EPEER;
#endif
  return cls == MPI_ERR_TRUNCATE ? FG_EMISMATCH : FG_EBACKEND;
}

int fg__mpi_fail(fg_comm *c, const char *what, int err) {
  char buf[MPI_MAX_ERROR_STRING];
  const char *msg = fg__mpi_text(err, buf);
  int code = fg__mpi_code(err);
  if (code == FG_EMISMATCH)
    return fg__comm_fail(c, code, what,
                         "ranks passed different counts (MPI: %s); FG_DEBUG=detail names them",
                         msg);
  if (code == FG_EPEER)
    return fg__comm_fail(c, code, what, "a rank of the group died (MPI: %s)", msg);
  return fg__comm_fail(c, FG_EBACKEND, what, "MPI: %s (ranks that pass different arguments "
                       "cause this too: FG_DEBUG=detail compares them)", msg);
}

int fg__mpi_usable(fg_comm *c, const char *what) {
  int code = ((mpi_state *)c->impl)->broken;
  if (!code) return 0;
  return fg__comm_fail(c, code, what,
                       "an earlier operation on this communicator failed or timed out and MPI "
                       "cannot cancel it; only fg_comm_destroy is allowed now");
}

uint64_t fg__mpi_deadline_after(int timeout_ms) {
  return timeout_ms > 0 ? fg__now_ns() + (uint64_t)timeout_ms * 1000000u : UINT64_MAX;
}

/* MPI progresses only inside MPI calls, so waiting means testing: busily for the first
 * SPIN_NS, which covers most short operations; then yielding the CPU between tests until
 * YIELD_NS, as MPI's own blocking calls do when ranks share cores, so a long operation
 * still takes each step as soon as its data is there (napping here cost large messages
 * ~10% on 4 ranks over 2 cores); then with naps of a sixteenth of the time waited so far,
 * up to MAX_NAP_NS, so a rank waiting seconds for a late peer tests about once a
 * millisecond instead of burning a core.
 * Returns 0, -ETIMEDOUT, or FG_EBACKEND with the MPI error in *mpi_err; *pending is the
 * first request not known to be done. */
enum { SPIN_NS = 1000000, YIELD_NS = 100000000, MAX_NAP_NS = 1000000 };
/* Reading the clock costs about what a test does (a VM's clock can cost more): short
 * operations, which need no clock at all, should not pay for it on every test. */
enum { TESTS_PER_CLOCK = 32 };

static void nap(uint64_t waited_ns) {
  struct timespec ts = {0, (long)FG__MIN(FG__MAX(waited_ns / 16, 1000u), (uint64_t)MAX_NAP_NS)};
  nanosleep(&ts, NULL);
}

int fg__mpi_poll_all(MPI_Request *reqs, MPI_Status *st, int n, uint64_t deadline, int *mpi_err,
                    int *pending) {
  uint64_t start = 0;
  int next = 0;
  for (unsigned tests = 1;; tests++) {
    while (next < n) {
      int done = 0;
      int rc = MPI_Test(&reqs[next], &done, st ? &st[next] : MPI_STATUS_IGNORE);
      *pending = next;
      if (rc != MPI_SUCCESS) {
        *mpi_err = rc;
        return FG_EBACKEND;
      }
      if (!done) break;
      next++;
    }
    if (next == n) return 0;
    if (tests % TESTS_PER_CLOCK) continue;
    uint64_t now = fg__now_ns();
    if (!start) start = now;
    if (now >= deadline) return -ETIMEDOUT;
    if (now - start >= YIELD_NS)
      nap(now - start);
    else if (now - start >= SPIN_NS)
      sched_yield();
  }
}

int fg__mpi_timed_out(fg_comm *c, const char *what, const char *waiting_for) {
  return fg__comm_fail(c, -ETIMEDOUT, what,
                       "timed out after %.1f s waiting for %s (operation #%llu); a rank did not "
                       "call it, called another operation, or is stuck",
                       c->timeout_ms / 1000.0, waiting_for, (unsigned long long)c->seq);
}

int fg__mpi_wait_one(fg_comm *c, const char *what, MPI_Request *req) {
  int mpi_err = 0, pending = 0;
  int rc = fg__mpi_poll_all(req, NULL, 1, fg__mpi_deadline_after(c->timeout_ms), &mpi_err, &pending);
  if (rc == 0) return 0;
  fg__mpi_abandon(c, rc == -ETIMEDOUT ? rc : fg__mpi_code(mpi_err));
  return rc == -ETIMEDOUT ? fg__mpi_timed_out(c, what, "the other ranks of the group")
                          : fg__mpi_fail(c, what, mpi_err);
}
