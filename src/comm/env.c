/* env.c - who am I: rank, world size and local rank from whichever launcher started
 * this process (explicit options win, then fgrun/torchrun, mpirun, srun), and, under srun,
 * where the store is when MASTER_ADDR or MASTER_PORT is not set. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm_internal.h"
#include "common/slurm.h"
#include "common/util.h"

#ifdef FG_HAVE_MPI
#define MPI_BUILT 1
#else
#define MPI_BUILT 0
#endif

/* The first variable of the list that is set; its name goes to *which. srun's variables
 * (SLURM_*) count only for a rank srun started: fgrun's workers and mpirun's ranks inherit
 * them from the srun that started their launcher, and a batch script sees the job's. */
static const char *first_env(const char *const *names, int slurm, const char **which) {
  for (; *names; names++) {
    const char *v = getenv(*names);
    if (v && *v && (slurm || strncmp(*names, "SLURM_", 6) != 0)) {
      *which = *names;
      return v;
    }
  }
  return NULL;
}

static int env_int(const char *const *names, int slurm, int min, int fallback, int *out,
                   char *err, size_t errlen) {
  const char *name = NULL;
  const char *v = first_env(names, slurm, &name);
  if (!v) {
    *out = fallback;
    return 0;
  }
  if (fg__parse_int(v, min, 1 << 24, out) != 0)
    return fg__fail(err, errlen, -EINVAL, "%s=%s is not a number of at least %d", name, v, min);
  return 0;
}

static const char *const RANK_VARS[] = {"RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK",
                                        "SLURM_PROCID", NULL};
static const char *const SIZE_VARS[] = {"WORLD_SIZE", "OMPI_COMM_WORLD_SIZE",
                                        "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", NULL};
static const char *const SLURM_SIZE_VARS[] = {"SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", NULL};
static const char *const LOCAL_RANK_VARS[] = {"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
                                              "SLURM_LOCALID", NULL};
static const char *const LOCAL_SIZE_VARS[] = {"LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE",
                                              NULL};

/* srun's ranks: the world is the step's tasks, this node's share of them is its entry in
 * SLURM_STEP_TASKS_PER_NODE ("2(x3),1"; SLURM_NTASKS_PER_NODE is what the job asked for,
 * not how this step was laid out), and a WORLD_SIZE of some other launcher must agree. */
static int slurm_sizes(fg_comm_env *env, char *err, size_t errlen) {
  const char *name = NULL, *tasks = first_env(SLURM_SIZE_VARS, 1, &name);
  const char *ws = getenv("WORLD_SIZE");
  if (tasks && ws && *ws && strcmp(ws, tasks) != 0)
    return fg__fail(err, errlen, -EINVAL,
                   "WORLD_SIZE=%s disagrees with the %s tasks srun started (%s=%s): unset "
                   "WORLD_SIZE, or set RANK too for torch's variables to win",
                   ws, tasks, name, tasks);
  if (env->local_size >= 0) return 0;
  const char *list = getenv("SLURM_STEP_TASKS_PER_NODE");
  const char *node = getenv("SLURM_NODEID");
  int id;
  if (!list || !*list || !node || fg__parse_int(node, 0, 1 << 24, &id) != 0) return 0;
  int rc = fg__slurm_count_on_node(list, id, &env->local_size);
  if (rc == -ERANGE)
    return fg__fail(err, errlen, -EINVAL, "SLURM_NODEID=%s is beyond SLURM_STEP_TASKS_PER_NODE=%s",
                   node, list);
  if (rc != 0 || env->local_size < 1)
    return fg__fail(err, errlen, -EINVAL, "SLURM_STEP_TASKS_PER_NODE=%s is not a list of task "
                   "counts", list);
  return 0;
}

/* Under srun, what MASTER_ADDR and MASTER_PORT leave out comes from the step: rank 0 runs on
 * its first node, and listens on a port derived from the job id (common/slurm.h). */
static int slurm_store(fg_comm_env *env, char *err, size_t errlen) {
  char *why = env->store_origin;
  size_t len = sizeof env->store_origin, at = 0;
  if (!env->master_addr[0]) {
    const char *var = "SLURM_STEP_NODELIST", *list = getenv(var);
    if (!list || !*list) list = getenv(var = "SLURM_JOB_NODELIST");
    if (!list || !*list)
      return fg__fail(err, errlen, -EINVAL, "srun started this rank, but neither "
                     "SLURM_STEP_NODELIST nor SLURM_JOB_NODELIST is set: set MASTER_ADDR");
    if (fg__slurm_first_host(list, env->master_addr, sizeof env->master_addr) != 0)
      return fg__fail(err, errlen, -EINVAL, "%s=%s is not a Slurm node list: set MASTER_ADDR",
                     var, list);
    const char *node = getenv("SLURMD_NODENAME");
    if (env->rank == 0 && node && *node && strcmp(node, env->master_addr) != 0)
      return fg__fail(err, errlen, -EINVAL, "rank 0 runs on %s, but the other ranks look for its "
                     "store on %s, the first node of %s=%s: set MASTER_ADDR to rank 0's node",
                     node, env->master_addr, var, list);
    at += (size_t)snprintf(why, len, "%s is the first node of %s=%s", env->master_addr, var,
                           list);
  }
  if (!env->master_port) {
    const char *job = getenv("SLURM_JOB_ID");
    if (fg__slurm_job_port(job, &env->master_port) != 0)
      return fg__fail(err, errlen, -EINVAL, "SLURM_JOB_ID=%s is not a job id to derive the "
                     "store's port from: set MASTER_PORT", job ? job : "(unset)");
    snprintf(why + FG__MIN(at, len - 1), len - FG__MIN(at, len - 1),
             "%sport %d is %d + SLURM_JOB_ID=%s %% %d", at ? "; " : "", env->master_port,
             FG_SLURM_PORT_BASE, job, FG_SLURM_PORT_SPAN);
  }
  return 0;
}

int fg__comm_env_resolve(const fg_comm_options *o, fg_comm_env *env, char *err, size_t errlen) {
  memset(env, 0, sizeof *env);
  const char *which = NULL;
  const char *unused = NULL;
  int in_step = fg__slurm_in_step();
  env->launcher = "none";
  if (first_env(RANK_VARS, in_step, &which)) {
    int slurm_rank = in_step && (!strcmp(which, "SLURM_PROCID") || !strcmp(which, "PMIX_RANK"));
    env->launcher = !strcmp(which, "RANK")             ? "fgrun/torchrun"
                    : !slurm_rank                      ? "mpirun"
                    : !strcmp(which, "SLURM_PROCID")   ? "srun"
                                                       : "srun --mpi=pmix";
    env->mpi_launched = !strcmp(which, "OMPI_COMM_WORLD_RANK") || !strcmp(which, "PMIX_RANK");
    env->srun = slurm_rank;
  }
  int rc;
  if ((rc = env_int(RANK_VARS, in_step, 0, 0, &env->rank, err, errlen)) ||
      (rc = env_int(env->srun ? SLURM_SIZE_VARS : SIZE_VARS, env->srun, 1, 1, &env->size, err,
                    errlen)) ||
      (rc = env_int(LOCAL_RANK_VARS, env->srun, 0, -1, &env->local_rank, err, errlen)) ||
      (rc = env_int(LOCAL_SIZE_VARS, env->srun, 1, -1, &env->local_size, err, errlen)) ||
      (env->srun && (rc = slurm_sizes(env, err, errlen))))
    return rc;
  if (!strcmp(env->launcher, "fgrun/torchrun") && !first_env(SIZE_VARS, 0, &unused))
    return fg__fail(err, errlen, -EINVAL, "RANK is set but WORLD_SIZE is not");
  if (o->rank >= 0) env->rank = o->rank;
  if (o->world_size > 0) env->size = o->world_size;
  if (o->local_rank >= 0) env->local_rank = o->local_rank;
  if (env->local_rank < 0) env->local_rank = env->size == 1 ? 0 : env->rank;
  if (env->local_size < 0) env->local_size = env->size;
  if (env->rank >= env->size)
    return fg__fail(err, errlen, -EINVAL, "rank %d is not below the world size %d", env->rank,
                   env->size);

  const char *addr = o->master_addr ? o->master_addr : getenv("MASTER_ADDR");
  if (addr && *addr) snprintf(env->master_addr, sizeof env->master_addr, "%s", addr);
  env->master_port = o->master_port;
  const char *port = getenv("MASTER_PORT");
  if (!env->master_port && port && *port && fg__parse_int(port, 1, 65535, &env->master_port))
    return fg__fail(err, errlen, -EINVAL, "MASTER_PORT=%s is not a port", port);
  const char *agent = getenv("TORCHELASTIC_USE_AGENT_STORE");
  env->agent_store = agent && (!strcmp(agent, "True") || !strcmp(agent, "1"));
  const char *restarts = getenv("TORCHELASTIC_RESTART_COUNT");
  if (restarts && fg__parse_int(restarts, 0, 1 << 30, &env->restart_count))
    return fg__fail(err, errlen, -EINVAL, "TORCHELASTIC_RESTART_COUNT=%s is not a count",
                   restarts);
  /* Under srun --mpi=pmix with neither set, rank 0 tells the others over MPI instead: no
   * port to agree on. */
  int mpi_tells = env->mpi_launched && MPI_BUILT && !env->master_addr[0] &&
                  !env->master_port;
  if (env->srun && env->size > 1 && !env->agent_store && !mpi_tells &&
      (!env->master_addr[0] || !env->master_port) &&
      (rc = slurm_store(env, err, errlen)) != 0)
    return rc;

  env->timeout_ms = o->timeout_ms;
  if (env->timeout_ms <= 0) {
    const char *t = getenv("FG_TIMEOUT");
    double s = 300;
    if (t && *t && (fg__parse_seconds(t, &s) != 0 || s <= 0))
      return fg__fail(err, errlen, -EINVAL, "FG_TIMEOUT=%s is not a number of seconds", t);
    env->timeout_ms = (int)(s * 1000 > 1 << 30 ? 1 << 30 : s * 1000);
  }
  return 0;
}
