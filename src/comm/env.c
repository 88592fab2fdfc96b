/* env.c - who am I: rank, world size and local rank from whichever launcher started
 * this process (explicit options win, then fgrun/torchrun, mpirun, srun). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm_internal.h"
#include "common/util.h"

/* The first variable of the list that is set; its name goes to *which. */
static const char *first_env(const char *const *names, const char **which) {
  for (; *names; names++) {
    const char *v = getenv(*names);
    if (v && *v) {
      *which = *names;
      return v;
    }
  }
  return NULL;
}

static int env_int(const char *const *names, int min, int fallback, int *out, char *err,
                   size_t errlen) {
  const char *name = NULL;
  const char *v = first_env(names, &name);
  if (!v) {
    *out = fallback;
    return 0;
  }
  /* SLURM_NTASKS_PER_NODE may read "4(x2)": the leading number is the count here. */
  char digits[24];
  size_t n = strspn(v, "0123456789");
  if (n == 0 || n >= sizeof digits || (v[n] && v[n] != '('))
    return fg_fail(err, errlen, -EINVAL, "%s=%s is not a number", name, v);
  memcpy(digits, v, n);
  digits[n] = '\0';
  if (fg_parse_int(digits, min, 1 << 24, out) != 0)
    return fg_fail(err, errlen, -EINVAL, "%s=%s is out of range", name, v);
  return 0;
}

static const char *const RANK_VARS[] = {"RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK",
                                        "SLURM_PROCID", NULL};
static const char *const SIZE_VARS[] = {"WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS",
                                        NULL};
static const char *const LOCAL_RANK_VARS[] = {"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
                                              "SLURM_LOCALID", NULL};
static const char *const LOCAL_SIZE_VARS[] = {"LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE",
                                              "SLURM_NTASKS_PER_NODE", NULL};

int fg_comm_env_resolve(const fg_comm_options *o, fg_comm_env *env, char *err, size_t errlen) {
  memset(env, 0, sizeof *env);
  const char *which = NULL;
  const char *unused = NULL;
  if (first_env(RANK_VARS, &which)) {
    env->launcher = !strcmp(which, "RANK")           ? "fgrun/torchrun"
                    : !strcmp(which, "SLURM_PROCID") ? "srun"
                                                     : "mpirun";
  } else {
    env->launcher = "none";
  }
  int rc;
  if ((rc = env_int(RANK_VARS, 0, 0, &env->rank, err, errlen)) ||
      (rc = env_int(SIZE_VARS, 1, 1, &env->size, err, errlen)) ||
      (rc = env_int(LOCAL_RANK_VARS, 0, -1, &env->local_rank, err, errlen)) ||
      (rc = env_int(LOCAL_SIZE_VARS, 1, -1, &env->local_size, err, errlen)))
    return rc;
  if (!strcmp(env->launcher, "fgrun/torchrun") && !first_env(SIZE_VARS, &unused))
    return fg_fail(err, errlen, -EINVAL, "RANK is set but WORLD_SIZE is not");
  if (o->rank >= 0) env->rank = o->rank;
  if (o->world_size > 0) env->size = o->world_size;
  if (o->local_rank >= 0) env->local_rank = o->local_rank;
  if (env->local_rank < 0) env->local_rank = env->size == 1 ? 0 : env->rank;
  if (env->local_size < 0) env->local_size = env->size;
  if (env->rank >= env->size)
    return fg_fail(err, errlen, -EINVAL, "rank %d is not below the world size %d", env->rank,
                   env->size);

  const char *addr = o->master_addr ? o->master_addr : getenv("MASTER_ADDR");
  if (addr && *addr) snprintf(env->master_addr, sizeof env->master_addr, "%s", addr);
  env->master_port = o->master_port;
  const char *port = getenv("MASTER_PORT");
  if (!env->master_port && port && *port && fg_parse_int(port, 1, 65535, &env->master_port))
    return fg_fail(err, errlen, -EINVAL, "MASTER_PORT=%s is not a port", port);
  const char *agent = getenv("TORCHELASTIC_USE_AGENT_STORE");
  env->agent_store = agent && (!strcmp(agent, "True") || !strcmp(agent, "1"));
  const char *restarts = getenv("TORCHELASTIC_RESTART_COUNT");
  if (restarts && fg_parse_int(restarts, 0, 1 << 30, &env->restart_count))
    return fg_fail(err, errlen, -EINVAL, "TORCHELASTIC_RESTART_COUNT=%s is not a count",
                   restarts);

  env->timeout_ms = o->timeout_ms;
  if (env->timeout_ms <= 0) {
    const char *t = getenv("FG_TIMEOUT");
    double s = 300;
    if (t && *t && (fg_parse_seconds(t, &s) != 0 || s <= 0))
      return fg_fail(err, errlen, -EINVAL, "FG_TIMEOUT=%s is not a number of seconds", t);
    env->timeout_ms = (int)(s * 1000 > 1 << 30 ? 1 << 30 : s * 1000);
  }
  return 0;
}
