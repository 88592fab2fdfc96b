/* pmix.h - the PMIx server in the agent: Open MPI programs started by fgrun are one world.
 *
 * Open MPI ranks started by a launcher other than mpirun ("direct launch", as under
 * srun --mpi=pmix) learn who they are from a PMIx server on their node. The agent hosts
 * one through libpmix's server API (loaded at run time, so fgrun works without it):
 *
 *   fg_pmix_open    PMIx_server_init with the callbacks below; once per agent
 *   fg_pmix_begin   per attempt: a fresh namespace (job size, node and proc maps, local
 *                   peers, each rank's local and node rank, session directories) and each
 *                   local client registered
 *   fg_pmix_env     the variables PMIx_server_setup_fork gives a rank, to put on top of
 *                   torchrun's
 *   fg_pmix_rank    what a local rank told the server: connected (MPI_Init), finalized,
 *                   or aborted with a code and message
 *   fg_pmix_end     the attempt is over: pending fences answered, namespace deregistered
 *
 * The PMIx library calls back on its own progress thread; those calls only queue events,
 * which the agent's loop takes in through a uv_async_t (the agent stays single-threaded).
 * A fence (the modex of MPI_Init, the barrier of MPI_Finalize) whose ranks are all on this
 * node completes inside libpmix; one that spans nodes goes through the job's store, one
 * round per fence (pmix_fence.c). Publish/lookup, spawn and connect answer "not
 * supported", with one line naming the rank that asked. */
#ifndef FG_LAUNCHER_PMIX_H
#define FG_LAUNCHER_PMIX_H

#include <stddef.h>
#include <uv.h>

typedef struct fg_pmix fg_pmix;

enum fg_pmix_state {
  FG_PMIX_NONE,      /* never connected: not an MPI program, or not yet in MPI_Init */
  FG_PMIX_CONNECTED, /* in MPI_Init or after it, not finalized */
  FG_PMIX_FINALIZED,
  FG_PMIX_ABORTED,   /* called MPI_Abort (PMIx_Abort) */
};

typedef struct fg_pmix_rank {
  enum fg_pmix_state state;
  int abort_status;
  char abort_msg[256];
} fg_pmix_rank;

/* One node of the attempt, by node rank. */
typedef struct fg_pmix_node {
  const char *name; /* unique among the nodes */
  int nproc;
} fg_pmix_node;

typedef struct fg_pmix_job {
  const char *id;      /* the same on every node, different for every attempt and job */
  int attempt;
  int nnodes, node;    /* node: this agent's index into nodes */
  const fg_pmix_node *nodes;
  /* Several nodes: the job's store, and the key prefix of this attempt. */
  const char *store_host;
  int store_port;
  const char *store_prefix;
} fg_pmix_job;

/* A local rank called MPI_Abort; fg_pmix_rank has the code and message. Called on the loop. */
typedef void (*fg_pmix_abort_cb)(void *data, int local_rank);

/* Loads libpmix and starts the server. Returns 0; -ENOENT when libpmix cannot be loaded
 * (err says which file and why); another negative errno when the server cannot start. */
int fg_pmix_open(fg_pmix **out, uv_loop_t *loop, fg_pmix_abort_cb on_abort, void *data,
                 char *err, size_t errlen);
/* Registers the attempt's namespace and local ranks (ending the previous attempt first).
 * Returns 0 or a negative errno with a message. */
int fg_pmix_begin(fg_pmix *p, const fg_pmix_job *job, char *err, size_t errlen);
/* The rank's PMIx variables ("NAME=value", NULL-terminated), or NULL when out of memory or
 * outside an attempt. Release with fg_pmix_env_free. */
char **fg_pmix_env(fg_pmix *p, int local_rank);
void fg_pmix_env_free(char **env);
/* What the rank told the server, events queued so far included. */
const fg_pmix_rank *fg_pmix_rank_info(fg_pmix *p, int local_rank);
/* The attempt is over (every rank is gone): fences still waiting get an error, the
 * namespace and its session directories go. */
void fg_pmix_end(fg_pmix *p);
/* Ends the attempt, finalizes the server and removes its directory. */
void fg_pmix_close(fg_pmix *p);
/* "OpenPMIx 4.2.2 ..." */
const char *fg_pmix_version(const fg_pmix *p);

#endif
