/* backend_mpi_p2p.c - the mpi backend's point-to-point transfers: a batch of sends and
 * receives posted at once, then waited on under the communicator's timeout, with what each
 * receive got checked against what it asked for. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/backend_mpi.h"

enum { P2P_TAG = 0x6667 };

typedef struct p2p {
  int n;
  fg_p2p_op *ops;
  MPI_Request *reqs;
  MPI_Status *st;
} p2p;

static void p2p_free(p2p *p) {
  free(p->ops);
  free(p->reqs);
  free(p->st);
  free(p);
}

/* Receives can be cancelled, so a timed-out one does not write into the buffer later. */
static void p2p_cancel(p2p *p, int from) {
  for (int i = from; i < p->n; i++)
    if (p->reqs[i] != MPI_REQUEST_NULL) {
      MPI_Cancel(&p->reqs[i]);
      MPI_Request_free(&p->reqs[i]);
    }
}

int fg__mpi_p2p_start(fg_comm *c, const fg_p2p_op *ops, size_t n, void **state) {
  const char *what = n == 1 ? (ops[0].is_send ? "send" : "recv") : "batch";
  int rc = fg__mpi_usable(c, what);
  if (rc) return rc;
  for (size_t i = 0; i < n; i++)
    if (ops[i].count > INT_MAX)
      return fg__comm_fail(c, FG_ELIMIT, what, "MPI counts are ints: %zu elements is over %d",
                           ops[i].count, INT_MAX);
  if (n > INT_MAX / 2) return fg__comm_fail(c, FG_ELIMIT, what, "%zu operations", n);
  size_t k = n ? n : 1;
  p2p *p = calloc(1, sizeof *p);
  if (p) *p = (p2p){(int)n, calloc(k, sizeof *ops), calloc(k, sizeof(MPI_Request)),
                    calloc(k, sizeof(MPI_Status))};
  if (!p || !p->ops || !p->reqs || !p->st) {
    if (p) p2p_free(p);
    return fg__comm_fail(c, -ENOMEM, what, "out of memory");
  }
  if (n) memcpy(p->ops, ops, n * sizeof *ops);
  for (int i = 0; i < p->n; i++) {
    const fg_p2p_op *o = &ops[i];
    int err = o->is_send ? MPI_Isend(o->buf, (int)o->count, fg__mpi_type(o->dtype), o->peer,
                                     P2P_TAG, comm_of(c), &p->reqs[i])
                         : MPI_Irecv(o->buf, (int)o->count, fg__mpi_type(o->dtype), o->peer,
                                     P2P_TAG, comm_of(c), &p->reqs[i]);
    if (err != MPI_SUCCESS) {
      p2p_cancel(p, 0);
      p2p_free(p);
      return fg__mpi_abandon(c, fg__mpi_fail(c, what, err));
    }
  }
  *state = p;
  return 0;
}

/* A receive that got fewer elements than asked is a mismatch MPI does not report. */
static int check_received(fg_comm *c, const p2p *p) {
  for (int i = 0; i < p->n; i++) {
    const fg_p2p_op *o = &p->ops[i];
    int got = 0;
    if (o->is_send || MPI_Get_count(&p->st[i], fg__mpi_type(o->dtype), &got) != MPI_SUCCESS ||
        (size_t)got == o->count)
      continue;
    return fg__comm_fail(c, FG_EMISMATCH, "recv", "rank %d sent %d elements, rank %d expected %zu",
                         o->peer, got, c->rank, o->count);
  }
  return 0;
}

int fg__mpi_p2p_wait(fg_comm *c, void *state) {
  p2p *p = state;
  int mpi_err = 0, pending = 0;
  int rc = fg__mpi_poll_all(p->reqs, p->st, p->n, fg__mpi_deadline_after(c->timeout_ms),
                           &mpi_err, &pending);
  if (rc == 0) {
    rc = check_received(c, p);
  } else {
    const fg_p2p_op *o = &p->ops[pending];
    const char *what = o->is_send ? "send" : "recv";
    char peer[64];
    snprintf(peer, sizeof peer, "rank %d to %s", o->peer, o->is_send ? "receive" : "send");
    p2p_cancel(p, pending);
    fg__mpi_abandon(c, rc == -ETIMEDOUT ? rc : fg__mpi_code(mpi_err));
    rc = rc == -ETIMEDOUT ? fg__mpi_timed_out(c, what, peer) : fg__mpi_fail(c, what, mpi_err);
  }
  p2p_free(p);
  return rc;
}
