/* env.h - the environment each worker gets: fgrun's own plus torchrun's variables. */
#ifndef FG_LAUNCHER_ENV_H
#define FG_LAUNCHER_ENV_H

typedef struct fg_env_spec {
  const char *role;
  int nproc;      /* LOCAL_WORLD_SIZE */
  int node_rank;  /* GROUP_RANK */
  int nnodes;     /* GROUP_WORLD_SIZE */
  const char *master_addr;
  int master_port;
  int max_restarts;
  const char *run_id;
  /* Several nodes (set by the rendezvous): this node's first global rank and the world;
   * the same among the nodes of this role. world_size 0: one node, ranks from node_rank. */
  int rank_base, world_size;
  int role_rank_base, role_world_size;
  /* Diagnostics: FG_PROGRESS_FILE (hang.h) when set, and with trace FG_TRACE_FILE, the
   * rank's trace.jsonl next to its error file. */
  const char *progress_file;
  int trace;
  /* With --hang_timeout: fgrun's Python hook (src/launcher/pyhook/) on PYTHONPATH, and the
   * signal it dumps tracebacks on (hang.h). NULL: none. */
  const char *pyhook_dir;
  int pystack_signal;
} fg_env_spec;

/* The global rank of a local rank. */
int fg_env_rank(const fg_env_spec *s, int local_rank);

/* Job-wide defaults put into fgrun's own environment so every worker inherits them, as
 * torchrun does: OMP_NUM_THREADS=1 when unset and nproc > 1 (with one notice on stderr),
 * TORCH_NCCL_ASYNC_ERROR_HANDLING=1 and NCCL_ASYNC_ERROR_HANDLING=1 (torch 1.13's name)
 * when unset. */
void fg_env_set_job_defaults(int nproc);

/* A NULL-terminated "NAME=value" array: the current environment minus the variables
 * fgrun sets (env.c's WORKER_VARS), then RANK, LOCAL_RANK, ... TORCHELASTIC_ERROR_FILE for
 * this worker.
 * One allocation; release it with free(). NULL when out of memory. */
char **fg_worker_env(const fg_env_spec *s, int local_rank, int restart_count,
                     const char *error_file);

/* env with over on top: env's entries whose names over does not set, then over's, copied
 * into one allocation (release it with free()). NULL when out of memory. */
char **fg_env_overlay(char *const *env, char *const *over);

#endif
