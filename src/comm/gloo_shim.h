/* gloo_shim.h - a C face on gloo's C++ API, for backend_gloo.c.
 *
 * gloo speaks C++ and reports failures by throwing; this shim is the one place that
 * catches. Every call returns 0 or a negative code (-ETIMEDOUT, FG_EPEER, FG_EBACKEND, ...)
 * and fills an fg_gloo_error saying why and, where known, which peer rank of the context
 * was at fault. A peer whose connection breaks fails every operation of the context, at
 * once and on every rank; a context that failed stays failed: later calls return the first
 * error at once. */
#ifndef FG_COMM_GLOO_SHIM_H
#define FG_COMM_GLOO_SHIM_H

#include <stddef.h>

#include "fg/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_gloo_device fg_gloo_device; /* a TCP transport, shared by contexts */
typedef struct fg_gloo fg_gloo;               /* a connected group of ranks */
typedef struct fg_gloo_batch fg_gloo_batch;   /* point-to-point transfers in flight */

typedef struct fg_gloo_error {
  int peer; /* the context rank at fault, -1 if unknown */
  char msg[400];
} fg_gloo_error;

/* dst[i] = a[i] op b[i] for n elements; dst may equal a or b. */
typedef void (*fg_gloo_reduce_fn)(void *dst, const void *a, const void *b, size_t n, void *arg);

/* Listens on iface when given, else on the address hostname resolves to. */
int fg__gloo_device_open(const char *hostname, const char *iface, fg_gloo_device **out,
                        fg_gloo_error *e);
/* Contexts keep the device alive; this drops only the caller's hold. */
void fg__gloo_device_close(fg_gloo_device *d);

/* Connects rank to every other rank of a group of size, meeting through store (whose keys
 * it owns), within timeout_ms. */
int fg__gloo_connect(fg_gloo_device *d, fg_store *store, int rank, int size, int timeout_ms,
                    fg_gloo **out, fg_gloo_error *e);
void fg__gloo_close(fg_gloo *g);

/* One collective's arguments. send == NULL means in place (the data is in recv already, at
 * this rank's block for the gathers). */
typedef struct fg_gloo_op {
  const void *send;
  void *recv;
  size_t count;         /* elements per rank (per block for the gathers and alltoall; in all
                           for allgatherv) */
  size_t elem_size;     /* 1, 2, 4 or 8 */
  const size_t *counts; /* allgatherv: elements from each rank */
  int root;
  fg_gloo_reduce_fn reduce;
  void *reduce_arg;
  int timeout_ms;
} fg_gloo_op;

int fg__gloo_barrier(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e);
int fg__gloo_broadcast(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e);
int fg__gloo_reduce(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e);
int fg__gloo_allreduce(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e);
int fg__gloo_allgather(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e);
int fg__gloo_allgatherv(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e);
int fg__gloo_gather(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e);
int fg__gloo_scatter(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e);
int fg__gloo_alltoall(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e);

typedef struct fg_gloo_xfer {
  int is_send;
  void *buf;
  size_t bytes;
  int peer;
} fg_gloo_xfer;

/* Posts every transfer; messages between two ranks match in the order they were posted. */
int fg__gloo_batch_start(fg_gloo *g, const fg_gloo_xfer *x, size_t n, fg_gloo_batch **out,
                        fg_gloo_error *e);
/* Waits for every transfer (timeout_ms for the whole batch), then frees the batch. */
int fg__gloo_batch_wait(fg_gloo_batch *b, int timeout_ms, fg_gloo_error *e);

#ifdef __cplusplus
}
#endif
#endif
