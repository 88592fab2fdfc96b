/* pmix_internal.h - what pmix.c (the server, its namespaces, the event queue) shares with
 * pmix_fence.c (fences across nodes), pmix_env.c (a rank's environment) and pmix_lib.c
 * (libpmix, loaded at run time). */
#ifndef FG_LAUNCHER_PMIX_INTERNAL_H
#define FG_LAUNCHER_PMIX_INTERNAL_H

#include <pmix.h>
#include <pmix_server.h>
#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "launcher/pmix.h"

/* Every libpmix function fgrun calls: resolved with dlsym when the library is loaded, so a
 * machine without libpmix still runs fgrun (with the server off). */
#define FG_PMIX_FUNCTIONS(X)                                                              \
  X(PMIx_Get_version)                                                                     \
  X(PMIx_Error_string)                                                                    \
  X(PMIx_server_init)                                                                     \
  X(PMIx_server_finalize)                                                                 \
  X(PMIx_server_register_nspace)                                                          \
  X(PMIx_server_deregister_nspace)                                                        \
  X(PMIx_server_register_client)                                                          \
  X(PMIx_server_setup_local_support)                                                      \
  X(PMIx_server_setup_fork)                                                               \
  X(PMIx_generate_regex)                                                                  \
  X(PMIx_generate_ppn)                                                                    \
  X(PMIx_Info_list_start)                                                                 \
  X(PMIx_Info_list_add)                                                                   \
  X(PMIx_Info_list_convert)                                                               \
  X(PMIx_Info_list_release)                                                               \
  X(PMIx_Data_array_destruct)

typedef struct fg_pmix_api {
#define FG_PMIX_POINTER(name) __typeof__(name) *name;
  FG_PMIX_FUNCTIONS(FG_PMIX_POINTER)
#undef FG_PMIX_POINTER
  void *handle;
} fg_pmix_api;

/* Loads libpmix.so.2 (by its soname, then from the directory the build found it in) and
 * resolves every function. Returns 0 or -ENOENT with the loader's message. */
int fg_pmix_api_load(fg_pmix_api *api, char *err, size_t errlen);
void fg_pmix_api_unload(fg_pmix_api *api);

/* A fence that spans nodes, from libpmix's thread to the loop (pmix_fence.c). */
typedef struct fg_pmix_fence fg_pmix_fence;

struct fg_pmix {
  fg_pmix_api api;
  uv_loop_t *loop;
  uv_async_t wakeup; /* libpmix's thread queued events */
  int wakeup_open;
  pthread_mutex_t mu; /* the queue: the one thing both threads touch */
  struct fg_pmix_event *head, **tail;
  fg_pmix_abort_cb on_abort;
  void *data;
  char dir[256]; /* the server's temporary directory, session directories below it */
  int server_up;

  /* the current attempt */
  int active;
  char nspace[PMIX_MAX_NSLEN + 1];
  char nsdir[320];
  int nproc, rank_base, world;
  int nnodes, node;
  int oversubscribed; /* more local ranks than CPUs */
  int fabric;         /* a device for Open MPI's cm PML (node_has_fabric) */
  int *node_base; /* first global rank of each node; node_base[nnodes] = world */
  fg_pmix_rank *ranks;
  char *store_host;
  int store_port;
  char *store_prefix;
  fg_pmix_fence *fences; /* across nodes, not answered yet */
  struct fg_pmix_seq {
    uint64_t members;
    int next;
  } *seqs; /* fences so far, per set of members: names them the same on every node */
  int nseqs;
};

/* A libpmix call went through (some answer "succeeded" for work done at once). */
static inline int fg__pmix_ok(pmix_status_t rc) {
  return rc == PMIX_SUCCESS || rc == PMIX_OPERATION_SUCCEEDED;
}

/* Whether the node has a device for Open MPI's cm PML (pmix_env.c). */
int fg__pmix_node_has_fabric(void);

/* The node hosting a global rank. */
int fg_pmix_node_of(const fg_pmix *p, int rank);

/* The loop got a fence from libpmix: data (ours to keep) for the nodes hosting procs. */
void fg_pmix_fence_start(fg_pmix *p, const pmix_proc_t *procs, size_t nprocs, char *data,
                         size_t ndata, pmix_modex_cbfunc_t cbfunc, void *cbdata);
/* Answers every fence still waiting with an error and makes their store waits give up. */
void fg_pmix_fence_cancel_all(fg_pmix *p);

#endif
