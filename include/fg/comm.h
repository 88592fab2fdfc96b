/* comm.h - one communication API over gloo, MPI and NCCL.
 *
 * A communicator (fg_comm) is a group of ranks that share one backend. The
 * world communicator comes from the environment the launcher set up (fgrun or
 * torchrun, mpirun, srun); groups are carved out of it by rank list, by colour,
 * or as the rows and columns of a device mesh. Every collective is called by
 * every rank of the communicator, with matching arguments, in the same order.
 *
 * Buffers are host memory for gloo and mpi, device memory for nccl; use
 * fg_comm_malloc / fg_comm_upload / fg_comm_download to stay backend-neutral.
 *
 * Every call returns 0 or a negative code (negative errno, FG_E*); the message
 * (fg_comm_errmsg) names the operation, the group and, where known, the peer.
 * Every blocking call gives up after the communicator's timeout (-ETIMEDOUT),
 * and a peer that died makes the others fail within seconds (FG_EPEER). */
#ifndef FG_COMM_H
#define FG_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "fg/fg.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_comm fg_comm;
typedef struct fg_mesh fg_mesh;
typedef struct fg_batch fg_batch;

typedef enum fg_dtype {
  FG_INT8,
  FG_UINT8,
  FG_INT32,
  FG_INT64,
  FG_FLOAT16,
  FG_BFLOAT16,
  FG_FLOAT32,
  FG_FLOAT64,
  FG_DTYPE_COUNT
} fg_dtype;

/* Reduction operators, named by their type as nccl's ncclSum ... ncclMax. */
typedef enum fg_redop {
  FG_REDOP_SUM,
  FG_REDOP_PROD,
  FG_REDOP_MIN,
  FG_REDOP_MAX,
  FG_REDOP_AVG,
  FG_REDOP_COUNT
} fg_redop;

/* Deprecated since 0.1: the first spellings, FG_SUM ... FG_AVG, which read like min/max
 * macros. They still compile (with a warning) and will go in 1.0. */
enum {
  FG_SUM FG_DEPRECATED("use FG_REDOP_SUM") = FG_REDOP_SUM,
  FG_PROD FG_DEPRECATED("use FG_REDOP_PROD") = FG_REDOP_PROD,
  FG_MIN FG_DEPRECATED("use FG_REDOP_MIN") = FG_REDOP_MIN,
  FG_MAX FG_DEPRECATED("use FG_REDOP_MAX") = FG_REDOP_MAX,
  FG_AVG FG_DEPRECATED("use FG_REDOP_AVG") = FG_REDOP_AVG,
};

FG_EXTERN size_t fg_dtype_size(fg_dtype dt);
FG_EXTERN const char *fg_dtype_name(fg_dtype dt);
FG_EXTERN const char *fg_redop_name(fg_redop op);
/* "float32", "bf16", ...; -1 if unknown. */
FG_EXTERN int fg_dtype_parse(const char *name);
FG_EXTERN int fg_redop_parse(const char *name);
/* Element i of a typed buffer as a double, and a double stored there (converted as C casts,
 * rounded to the nearest half or bfloat16): for filling and checking buffers. */
FG_EXTERN double fg_dtype_get(const void *buf, fg_dtype dt, size_t i);
FG_EXTERN void fg_dtype_set(void *buf, fg_dtype dt, size_t i, double v);

/* The backends compiled into this library, e.g. "gloo mpi nccl". */
FG_EXTERN const char *fg_comm_backends(void);

typedef struct fg_comm_options {
  const char *backend;     /* "gloo", "mpi" or "nccl"; NULL: $FG_BACKEND, else gloo */
  int rank;                /* -1: from the environment (RANK, OMPI_COMM_WORLD_RANK, ...) */
  int world_size;          /* -1: from the environment */
  int local_rank;          /* -1: from the environment (picks the GPU for nccl) */
  const char *master_addr; /* NULL: $MASTER_ADDR (the store's address) */
  int master_port;         /* 0: $MASTER_PORT */
  int timeout_ms;          /* <= 0: $FG_TIMEOUT seconds, else 300 s */
} fg_comm_options;

FG_EXTERN void fg_comm_options_init(fg_comm_options *opts);

/* Joins the world communicator. On failure *out is NULL, and fg_comm_errmsg(NULL) says why
 * (on this thread, until its next fg_comm_init); err, if given, gets the same message. */
FG_EXTERN int fg_comm_init(fg_comm **out, const fg_comm_options *opts, char *err, size_t errlen);

/* Leaves a communicator (the world last, after its groups). NULL is allowed. */
FG_EXTERN void fg_comm_destroy(fg_comm *c);

/* The message of the last failed call on c; with NULL, of this thread's last fg_comm_init. */
FG_EXTERN const char *fg_comm_errmsg(const fg_comm *c);
FG_EXTERN const char *fg_comm_backend(const fg_comm *c);
FG_EXTERN int fg_comm_rank(const fg_comm *c);
FG_EXTERN int fg_comm_size(const fg_comm *c);
/* The rank in the world communicator of this communicator's rank r. */
FG_EXTERN int fg_comm_world_rank(const fg_comm *c, int r);
/* LOCAL_RANK and LOCAL_WORLD_SIZE of this process (from the environment). */
FG_EXTERN int fg_comm_local_rank(const fg_comm *c);
FG_EXTERN int fg_comm_local_size(const fg_comm *c);
/* A short name for messages: "world", "group 2 of world [0, 2]", "mesh dp". */
FG_EXTERN const char *fg_comm_name(const fg_comm *c);
FG_EXTERN void fg_comm_set_timeout(fg_comm *c, int timeout_ms);
FG_EXTERN int fg_comm_timeout(const fg_comm *c);
/* Deprecated since 0.1: the getters are named for what they get (fg_comm_rank, fg_comm_timeout). */
FG_EXTERN int fg_comm_get_timeout(const fg_comm *c) FG_DEPRECATED("use fg_comm_timeout");

/* --- memory the backend can use (device memory for nccl) ------------------------------- */
FG_EXTERN int fg_comm_malloc(fg_comm *c, size_t bytes, void **ptr);
FG_EXTERN void fg_comm_free(fg_comm *c, void *ptr);
FG_EXTERN int fg_comm_upload(fg_comm *c, void *dst, const void *host, size_t bytes);
FG_EXTERN int fg_comm_download(fg_comm *c, void *host, const void *src, size_t bytes);
/* 1 if buffers are plain host memory (gloo, mpi). */
FG_EXTERN int fg_comm_host_memory(const fg_comm *c);
/* The GPU this rank's buffers live on (-1 for host memory); desc gets what nccl-tests shows
 * of it, "[0000:07:00] NVIDIA H100 80GB HBM3", or "[host] host memory (gloo)". */
FG_EXTERN int fg_comm_device(fg_comm *c, char *desc, size_t len);

/* --- collectives: send may equal recv (in place) where both are given ------------------ */
FG_EXTERN int fg_barrier(fg_comm *c);
FG_EXTERN int fg_broadcast(fg_comm *c, void *buf, size_t count, fg_dtype dt, int root);
FG_EXTERN int fg_reduce(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt,
                        fg_redop op, int root);
FG_EXTERN int fg_allreduce(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt,
                           fg_redop op);
/* recv holds size * count elements, rank r's at r * count. */
FG_EXTERN int fg_allgather(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt);
/* Rank r contributes counts[r] elements; recv holds their sum, in rank order. */
FG_EXTERN int fg_allgatherv(fg_comm *c, const void *send, void *recv, const size_t *counts,
                            fg_dtype dt);
FG_EXTERN int fg_gather(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt,
                        int root);
FG_EXTERN int fg_scatter(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt,
                         int root);
/* send holds size * count elements; rank r receives the reduction of every rank's block r. */
FG_EXTERN int fg_reduce_scatter(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt,
                                fg_redop op);
/* Block r of send (count elements) goes to rank r; block r of recv comes from rank r. */
FG_EXTERN int fg_alltoall(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt);

FG_EXTERN int fg_send(fg_comm *c, const void *buf, size_t count, fg_dtype dt, int peer);
FG_EXTERN int fg_recv(fg_comm *c, void *buf, size_t count, fg_dtype dt, int peer);

/* Batched point-to-point (torch's batch_isend_irecv): start every op, then wait for all. */
typedef struct fg_p2p_op {
  int is_send;
  void *buf;
  size_t count;
  fg_dtype dtype;
  int peer;
} fg_p2p_op;

FG_EXTERN int fg_batch_start(fg_comm *c, const fg_p2p_op *ops, size_t n, fg_batch **out);
/* Completes and frees the batch. */
FG_EXTERN int fg_batch_wait(fg_batch *b);

/* A byte blob of any length from root to every rank (torch's broadcast_object_list).
 * On root *data and *len are inputs; elsewhere *data receives a malloc'd copy (free()). */
FG_EXTERN int fg_broadcast_bytes(fg_comm *c, void **data, size_t *len, int root);

/* --- groups ---------------------------------------------------------------------------- */
/* Collective over parent: every rank of parent calls it with the same list (of parent
 * ranks). Members get the new group in *out; the others get NULL. */
FG_EXTERN int fg_comm_new_group(fg_comm *parent, const int *ranks, int n, fg_comm **out);
/* Collective over parent: ranks with the same colour form a group, ordered by key then by
 * parent rank. colour < 0 joins no group (*out = NULL). */
FG_EXTERN int fg_comm_split(fg_comm *parent, int colour, int key, fg_comm **out);

/* --- device mesh: the world's ranks in 1 or 2 named dimensions, row-major --------------- */
/* Collective over world: rank = i0 * sizes[1] + i1. The product of sizes must equal the
 * world size. names may be NULL ("dim0", "dim1"). */
FG_EXTERN int fg_mesh_create(fg_comm *world, int ndims, const int *sizes, const char *const *names,
                             fg_mesh **out);
FG_EXTERN void fg_mesh_destroy(fg_mesh *m);
FG_EXTERN int fg_mesh_ndims(const fg_mesh *m);
/* The index of a named dimension, or -1. */
FG_EXTERN int fg_mesh_dim(const fg_mesh *m, const char *name);
/* The group of ranks that differ from this one only in coordinate dim. */
FG_EXTERN fg_comm *fg_mesh_group(const fg_mesh *m, int dim);
/* This rank's coordinate in dim (its rank in fg_mesh_group), and the dimension's size. */
FG_EXTERN int fg_mesh_coord(const fg_mesh *m, int dim);
FG_EXTERN int fg_mesh_size(const fg_mesh *m, int dim);
/* The world rank at the given coordinates. */
FG_EXTERN int fg_mesh_rank_at(const fg_mesh *m, const int *coords);

#ifdef __cplusplus
}
#endif
#endif
