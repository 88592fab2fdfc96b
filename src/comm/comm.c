/* comm.c - communicator lifecycle, accessors, errors and memory. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm_internal.h"
#include "common/progress.h"
#include "common/trace.h"
#include "common/util.h"

/* Every backend fgrun knows, built or not: one this build lacks is NULL (backends.c). */
static const struct {
  const char *name;
  const fg_backend *const *be;
} backends[] = {{"gloo", &fg__backend_gloo}, {"mpi", &fg__backend_mpi},
                {"nccl", &fg__backend_nccl}};

/* The row of backends[] called name; -1 for a name fgrun does not know. */
static int backend_index(const char *name) {
  for (size_t i = 0; i < FG_ARRAY_LEN(backends); i++)
    if (!strcmp(backends[i].name, name)) return (int)i;
  return -1;
}

const char *fg_comm_backends(void) {
  static char list[32];
  if (!list[0]) {
    for (size_t i = 0; i < FG_ARRAY_LEN(backends); i++)
      if (*backends[i].be) {
        if (list[0]) strcat(list, " ");
        strcat(list, backends[i].name);
      }
    if (!list[0]) strcpy(list, "none");
  }
  return list;
}

void fg_comm_options_init(fg_comm_options *o) {
  memset(o, 0, sizeof *o);
  o->rank = o->world_size = o->local_rank = -1;
}

int fg__comm_fail(fg_comm *c, int code, const char *what, const char *fmt, ...) {
  int n = snprintf(c->err, sizeof c->err, "%s on %s: ", what, c->name);
  if (n < 0 || (size_t)n >= sizeof c->err) return code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err + n, sizeof c->err - (size_t)n, fmt, ap);
  va_end(ap);
  return code;
}

/* fg_comm_init's last failure on this thread, for fg_comm_errmsg(NULL) (there is no handle). */
static __thread char init_err[512];

static int comm_init(fg_comm **out, const fg_comm_options *opts, char *err, size_t errlen) {
  FG_OP_MARK(m); /* the rendezvous: a rank missing here shows in fgrun's hang report */
  fg__op_enter(&m, "init", "world", 0, NULL, NULL);
  fg_comm_options defaults;
  if (!opts) {
    fg_comm_options_init(&defaults);
    opts = &defaults;
  }
  const char *name = opts->backend ? opts->backend : getenv("FG_BACKEND");
  if (!name || !*name) name = "gloo";
  int known = backend_index(name);
  if (known < 0)
    return fg__fail(err, errlen, -EINVAL, "unknown backend '%s' (this build has: %s)", name,
                   fg_comm_backends());
  const fg_backend *be = *backends[known].be;
  if (!be)
    return fg__fail(err, errlen, FG_ENOTBUILT,
                   "the %s backend was not compiled into this build (it has: %s)", name,
                   fg_comm_backends());
  fg_comm_env env;
  int rc = fg__comm_env_resolve(opts, &env, err, errlen);
  if (rc != 0) return rc;

  fg_comm *c = calloc(1, sizeof *c);
  int *ranks = calloc((size_t)env.size, sizeof *ranks);
  if (!c || !ranks) {
    free(c);
    free(ranks);
    return fg__fail(err, errlen, -ENOMEM, "out of memory");
  }
  for (int i = 0; i < env.size; i++) ranks[i] = i;
  c->be = be;
  c->world = c;
  c->rank = env.rank;
  c->size = env.size;
  c->world_ranks = ranks;
  c->local_rank = env.local_rank;
  c->local_size = env.local_size;
  c->timeout_ms = env.timeout_ms;
  snprintf(c->name, sizeof c->name, "world");
  const char *debug = getenv("FG_DEBUG");
  c->check_args = debug && strstr(debug, "detail") != NULL;

  if (be->needs_store && (rc = fg__comm_bootstrap_store(c, &env, err, errlen)) != 0) {
    fg_comm_destroy(c);
    return rc;
  }
  if ((rc = be->init(c)) != 0) {
    fg__fail(err, errlen, rc, "%s", c->err[0] ? c->err : fg_strerror(rc));
    c->be = NULL; /* nothing of the backend's to tear down */
    fg_comm_destroy(c);
    return rc;
  }
  *out = c;
  return 0;
}

void fg_comm_destroy(fg_comm *c) {
  if (!c) return;
  fg_op_mark m = {0};
  if (c->world == c) fg__op_enter(&m, "destroy", c->name, 0, NULL, NULL);
  if (c->be) c->be->destroy(c);
  if (c->world == c) {
    fg__comm_release_store(c);
    if (c->mpi_initialized_here) fg__mpi_finalize(c);
    fg__op_leave(&m); /* before c->name goes */
    fg__trace_flush();
  } else {
    fg_store_close(c->store);
  }
  free(c->world_ranks);
  free(c);
}

int fg_comm_init(fg_comm **out, const fg_comm_options *opts, char *err, size_t errlen) {
  *out = NULL;
  init_err[0] = '\0';
  int rc = comm_init(out, opts, init_err, sizeof init_err);
  if (err && errlen) snprintf(err, errlen, "%s", init_err);
  return rc;
}

const char *fg_comm_errmsg(const fg_comm *c) { return c ? c->err : init_err; }
const char *fg_comm_backend(const fg_comm *c) { return c->be->name; }
int fg_comm_rank(const fg_comm *c) { return c->rank; }
int fg_comm_size(const fg_comm *c) { return c->size; }
int fg_comm_local_rank(const fg_comm *c) { return c->world->local_rank; }
int fg_comm_local_size(const fg_comm *c) { return c->world->local_size; }
const char *fg_comm_name(const fg_comm *c) { return c->name; }
void fg_comm_set_timeout(fg_comm *c, int timeout_ms) { c->timeout_ms = timeout_ms; }
int fg_comm_timeout(const fg_comm *c) { return c->timeout_ms; }
int fg_comm_get_timeout(const fg_comm *c) { return fg_comm_timeout(c); }

int fg_comm_world_rank(const fg_comm *c, int r) {
  return r >= 0 && r < c->size ? c->world_ranks[r] : -1;
}

int fg_comm_host_memory(const fg_comm *c) { return c->be->host_memory; }

int fg_comm_device(fg_comm *c, char *desc, size_t len) {
  if (c->be->device) return c->be->device(c, desc, len);
  snprintf(desc, len, "[host] host memory (%s)", c->be->name);
  return -1;
}

int fg_comm_malloc(fg_comm *c, size_t bytes, void **ptr) {
  if (c->be->mem_alloc) return c->be->mem_alloc(c, bytes, ptr);
  *ptr = malloc(bytes ? bytes : 1);
  return *ptr ? 0 : fg__comm_fail(c, -ENOMEM, "malloc", "out of memory (%zu bytes)", bytes);
}

void fg_comm_free(fg_comm *c, void *ptr) {
  if (!ptr) return;
  if (c->be->mem_free)
    c->be->mem_free(c, ptr);
  else
    free(ptr);
}

int fg_comm_upload(fg_comm *c, void *dst, const void *host, size_t bytes) {
  if (c->be->mem_copy) return c->be->mem_copy(c, dst, host, bytes, 1);
  if (bytes) memmove(dst, host, bytes);
  return 0;
}

int fg_comm_download(fg_comm *c, void *host, const void *src, size_t bytes) {
  if (c->be->mem_copy) return c->be->mem_copy(c, host, src, bytes, 0);
  if (bytes) memmove(host, src, bytes);
  return 0;
}
