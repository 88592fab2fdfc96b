/* comm_internal.h - what the generic layer (comm.c, collectives.c, group.c) and the
 * backends (backend_gloo.c, backend_mpi.c, backend_nccl.c) share.
 *
 * The generic layer validates arguments, numbers operations, composes what a
 * backend lacks and writes error messages; a backend only moves bytes. Each
 * backend fills one fg_backend table; a NULL entry means "compose it". */
#ifndef FG_COMM_INTERNAL_H
#define FG_COMM_INTERNAL_H

#include <stdarg.h>

#include "fg/comm.h"
#include "fg/store.h"

typedef struct fg_backend fg_backend;

struct fg_comm {
  const fg_backend *be;
  fg_comm *world;   /* the world communicator (itself for the world) */
  int rank;
  int size;
  int *world_ranks; /* world rank of each member, size entries */
  int local_rank;
  int local_size;
  int timeout_ms;
  int next_child;   /* children created so far: the same count on every rank */
  uint64_t seq;     /* operations issued on this communicator */
  char name[96];
  char err[512];
  fg_store *store;  /* this communicator's key scope (NULL for backends without a store) */
  void *impl;       /* the backend's state */
  /* World only. */
  fg_store *store_conn;     /* the connection every scope shares */
  struct fg_store_host *store_host; /* a store this process serves (rank 0 without an agent) */
  int store_on_rank0;       /* rank 0 serves the store, so it must outlive the others' use */
  int mpi_initialized_here; /* we called MPI_Init, so we call MPI_Finalize */
  int check_args;           /* FG_DEBUG=detail: ranks compare each call's arguments */
};

struct fg_backend {
  const char *name;
  int host_memory; /* buffers are host memory */
  int needs_store; /* rendezvous through the store (gloo, nccl) */
  int native_avg;  /* the library reduces with FG_REDOP_AVG itself */

  /* World: rank, size, local rank, timeout and store are set. */
  int (*init)(fg_comm *world);
  /* Called on every rank of parent; child is NULL on ranks with colour < 0. The child's
   * rank, size, world_ranks and store are set. */
  int (*split)(fg_comm *parent, fg_comm *child, int colour, int key);
  void (*destroy)(fg_comm *c);

  int (*barrier)(fg_comm *c);
  int (*broadcast)(fg_comm *c, void *buf, size_t count, fg_dtype dt, int root);
  int (*reduce)(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt, fg_redop op,
                int root);
  int (*allreduce)(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt,
                   fg_redop op);
  int (*allgather)(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt);
  int (*allgatherv)(fg_comm *c, const void *send, void *recv, const size_t *counts,
                    fg_dtype dt);
  int (*gather)(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt, int root);
  int (*scatter)(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt, int root);
  int (*reduce_scatter)(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt,
                        fg_redop op);
  int (*alltoall)(fg_comm *c, const void *send, void *recv, size_t count, fg_dtype dt);
  /* Starts a batch of sends and receives; *state is handed to p2p_wait. */
  int (*p2p_start)(fg_comm *c, const fg_p2p_op *ops, size_t n, void **state);
  int (*p2p_wait)(fg_comm *c, void *state);

  /* Device memory (NULL for host-memory backends: malloc and memcpy are used). */
  int (*mem_alloc)(fg_comm *c, size_t bytes, void **ptr);
  void (*mem_free)(fg_comm *c, void *ptr);
  int (*mem_copy)(fg_comm *c, void *dst, const void *src, size_t bytes, int to_device);
  /* The device the buffers live on: its index, desc gets "[bus id] name" (NULL for
   * host-memory backends). */
  int (*device)(fg_comm *c, char *desc, size_t len);
};

/* Where this process's rank and the store come from (env.c). */
typedef struct fg_comm_env {
  int rank, size, local_rank, local_size;
  const char *launcher;  /* "fgrun/torchrun", "mpirun", "srun", "srun --mpi=pmix" or "none" */
  int mpi_launched;      /* by an MPI launcher (mpirun, srun --mpi=pmix): MPI can tell the store */
  int srun;              /* by srun: rank and sizes are the step's */
  char master_addr[256]; /* empty when not given */
  int master_port;
  char store_origin[320]; /* where srun's master_addr/port came from, for errors; or empty */
  int agent_store;       /* TORCHELASTIC_USE_AGENT_STORE=True: the launcher hosts the store */
  int restart_count;
  int timeout_ms;
} fg_comm_env;

int fg__comm_env_resolve(const fg_comm_options *opts, fg_comm_env *env, char *err, size_t errlen);

/* Connects the world to its store (bootstrap.c): the agent's, one this rank hosts, or one
 * rank 0 hosts and announces over MPI. Sets world->store, store_conn and store_host. */
int fg__comm_bootstrap_store(fg_comm *world, const fg_comm_env *env, char *err, size_t errlen);
/* Waits for every rank, then stops a store this process hosts. */
void fg__comm_release_store(fg_comm *world);

/* MPI helpers the bootstrap needs (backend_mpi.c; absent without MPI). */
int fg__mpi_ensure_init(fg_comm *world, char *err, size_t errlen);
int fg__mpi_bcast_world(void *buf, size_t len, int root);
void fg__mpi_finalize(fg_comm *world);

/* The compiled-in backends; a backend that was not built is NULL. */
extern const fg_backend *const fg__backend_gloo;
extern const fg_backend *const fg__backend_mpi;
extern const fg_backend *const fg__backend_nccl;

/* Writes "<what> on <comm name>: <message>" as c's error and returns code. */
int fg__comm_fail(fg_comm *c, int code, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Allgathers bytes of host memory, staging through device memory where needed. */
int fg__comm_allgather_host(fg_comm *c, const void *mine, void *all, size_t bytes);

/* Local reductions, shared by composed operations and by backends whose library lacks a
 * type (gloo's bfloat16, MPI's half types): dst[i] = dst[i] op src[i]. AVG reduces as SUM
 * (the division comes after). */
void fg__reduce_local(void *dst, const void *src, size_t count, fg_dtype dt, fg_redop op);
/* dst[i] = a[i] op b[i] (gloo's reduction signature). */
void fg__reduce_local3(void *dst, const void *a, const void *b, size_t count, fg_dtype dt,
                      fg_redop op);
/* buf[i] /= n, for AVG on libraries without it. */
void fg__divide_local(void *buf, size_t count, fg_dtype dt, int n);

float fg__half_to_float(uint16_t h);
uint16_t fg__float_to_half(float f);
float fg__bf16_to_float(uint16_t b);
uint16_t fg__float_to_bf16(float f);

#endif
