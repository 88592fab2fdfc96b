/* env.c - torchrun's worker environment (LocalElasticAgent._start_workers). */
#include "launcher/env.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "launcher/rundir.h"

extern char **environ;

/* Everything the agent sets per worker; inherited values of these are dropped, also where
 * this worker gets none (FG_TRACE_FILE without --trace, ...). */
#define WORKER_VARS(X)                                                                       \
  X(LOCAL_RANK) X(RANK) X(GROUP_RANK) X(ROLE_RANK) X(ROLE_NAME) X(LOCAL_WORLD_SIZE)          \
  X(WORLD_SIZE) X(GROUP_WORLD_SIZE) X(ROLE_WORLD_SIZE) X(MASTER_ADDR) X(MASTER_PORT)         \
  X(TORCHELASTIC_RESTART_COUNT) X(TORCHELASTIC_MAX_RESTARTS) X(TORCHELASTIC_RUN_ID)          \
  X(TORCHELASTIC_USE_AGENT_STORE) X(TORCHELASTIC_ERROR_FILE) X(FG_PROGRESS_FILE)             \
  X(FG_TRACE_FILE) X(FG_PYHOOK_DIR) X(FG_PYSTACK_FILE) X(FG_PYSTACK_SIGNAL)

#define VAR_ENUM(name) V_##name,
#define VAR_NAME(name) [V_##name] = #name,
enum worker_var { WORKER_VARS(VAR_ENUM) NWORKER_VARS };
static const char *const worker_vars[NWORKER_VARS] = {WORKER_VARS(VAR_NAME)};

void fg_env_set_job_defaults(int nproc) {
  if (!getenv("OMP_NUM_THREADS") && nproc > 1) {
    setenv("OMP_NUM_THREADS", "1", 1);
    fg_warn("setting OMP_NUM_THREADS=1 for each worker by default so the machine is not "
            "overloaded; set it yourself to tune performance");
  }
  if (!getenv("TORCH_NCCL_ASYNC_ERROR_HANDLING")) setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1", 1);
  if (!getenv("NCCL_ASYNC_ERROR_HANDLING")) setenv("NCCL_ASYNC_ERROR_HANDLING", "1", 1);
}

static int is_worker_var(const char *entry) {
  for (size_t i = 0; i < NWORKER_VARS; i++) {
    size_t n = strlen(worker_vars[i]);
    if (strncmp(entry, worker_vars[i], n) == 0 && entry[n] == '=') return 1;
  }
  return 0;
}

static void put_entry(fg_buf *b, const char *name, const char *value) {
  fg__buf_put(b, name, strlen(name));
  fg__buf_put_u8(b, '=');
  fg__buf_put(b, value, strlen(value));
  fg__buf_put_u8(b, '\0');
}

static void put_var(fg_buf *b, enum worker_var v, const char *value) {
  put_entry(b, worker_vars[v], value);
}

static void put_int(fg_buf *b, enum worker_var v, int value) {
  char text[16];
  snprintf(text, sizeof text, "%d", value);
  put_var(b, v, text);
}

static void put_sibling(fg_buf *b, enum worker_var v, const char *error_file, const char *file) {
  char *path = fg_rundir_sibling(error_file, file);
  if (path) put_var(b, v, path);
  b->failed |= path == NULL;
  free(path);
}

/* fgrun's Python hook: its directory first on PYTHONPATH (the hook takes itself off again,
 * so the program and its children see the PYTHONPATH they would have), where to dump
 * tracebacks and on which signal. */
static void put_pyhook(fg_buf *b, const fg_env_spec *s, const char *error_file) {
  const char *old = getenv("PYTHONPATH");
  char *path = old && *old ? fg__asprintf("%s:%s", s->pyhook_dir, old) : strdup(s->pyhook_dir);
  if (path) put_entry(b, "PYTHONPATH", path);
  b->failed |= path == NULL;
  free(path);
  put_var(b, V_FG_PYHOOK_DIR, s->pyhook_dir);
  put_sibling(b, V_FG_PYSTACK_FILE, error_file, FG_RUNDIR_PYSTACK);
  put_int(b, V_FG_PYSTACK_SIGNAL, s->pystack_signal);
}

int fg_env_rank(const fg_env_spec *s, int local_rank) {
  return (s->world_size ? s->rank_base : s->node_rank * s->nproc) + local_rank;
}

char **fg_worker_env(const fg_env_spec *s, int local_rank, int restart_count,
                     const char *error_file) {
  int rank = fg_env_rank(s, local_rank);
  int world = s->world_size ? s->world_size : s->nnodes * s->nproc;
  int role_rank = s->world_size ? s->role_rank_base + local_rank : rank;
  int role_world = s->world_size ? s->role_world_size : world;
  fg_buf own;
  fg__buf_init(&own);
  put_int(&own, V_LOCAL_RANK, local_rank);
  put_int(&own, V_RANK, rank);
  put_int(&own, V_GROUP_RANK, s->node_rank);
  put_int(&own, V_ROLE_RANK, role_rank);
  put_var(&own, V_ROLE_NAME, s->role);
  put_int(&own, V_LOCAL_WORLD_SIZE, s->nproc);
  put_int(&own, V_WORLD_SIZE, world);
  put_int(&own, V_GROUP_WORLD_SIZE, s->nnodes);
  put_int(&own, V_ROLE_WORLD_SIZE, role_world);
  put_var(&own, V_MASTER_ADDR, s->master_addr);
  put_int(&own, V_MASTER_PORT, s->master_port);
  put_int(&own, V_TORCHELASTIC_RESTART_COUNT, restart_count);
  put_int(&own, V_TORCHELASTIC_MAX_RESTARTS, s->max_restarts);
  put_var(&own, V_TORCHELASTIC_RUN_ID, s->run_id);
  put_var(&own, V_TORCHELASTIC_USE_AGENT_STORE, "True");
  put_var(&own, V_TORCHELASTIC_ERROR_FILE, error_file);
  if (s->progress_file) put_var(&own, V_FG_PROGRESS_FILE, s->progress_file);
  if (s->trace) put_sibling(&own, V_FG_TRACE_FILE, error_file, FG_RUNDIR_TRACE);
  if (s->pyhook_dir) put_pyhook(&own, s, error_file);
  if (own.failed) {
    fg__buf_free(&own);
    return NULL;
  }

  size_t ninherited = 0;
  for (char **e = environ; *e; e++) ninherited++;
  size_t nown = 0; /* the variables just made, some of them optional */
  for (size_t i = 0; i < own.len; i++) nown += own.data[i] == '\0';
  size_t nptr = ninherited + nown + 1;
  char **env = malloc(nptr * sizeof *env + own.len);
  if (!env) {
    fg__buf_free(&own);
    return NULL;
  }
  char *strings = (char *)(env + nptr);
  memcpy(strings, own.data, own.len);
  fg__buf_free(&own);

  size_t n = 0;
  for (char **e = environ; *e; e++)
    if (!is_worker_var(*e) && !(s->pyhook_dir && !strncmp(*e, "PYTHONPATH=", 11))) env[n++] = *e;
  for (size_t i = 0; i < nown; i++) {
    env[n++] = strings;
    strings += strlen(strings) + 1;
  }
  env[n] = NULL;
  return env;
}

static int sets_name(char *const *over, const char *entry) {
  size_t n = strcspn(entry, "=");
  for (; *over; over++)
    if (strncmp(*over, entry, n) == 0 && (*over)[n] == '=') return 1;
  return 0;
}

char **fg_env_overlay(char *const *env, char *const *over) {
  size_t nptr = 1, bytes = 0;
  for (char *const *e = env; *e; e++)
    if (!sets_name(over, *e)) nptr++, bytes += strlen(*e) + 1;
  for (char *const *e = over; *e; e++) nptr++, bytes += strlen(*e) + 1;
  char **out = malloc(nptr * sizeof *out + bytes);
  if (!out) return NULL;
  char *strings = (char *)(out + nptr);
  size_t n = 0;
  for (int pass = 0; pass < 2; pass++)
    for (char *const *e = pass ? over : env; *e; e++) {
      if (!pass && sets_name(over, *e)) continue;
      size_t len = strlen(*e) + 1;
      out[n++] = memcpy(strings, *e, len);
      strings += len;
    }
  out[n] = NULL;
  return out;
}
