/* bootstrap.c - the store the world's ranks meet through.
 *
 * Under fgrun or torchrun the agent hosts it (TORCHELASTIC_USE_AGENT_STORE)
 * and our keys go under the attempt's prefix, as torch's do. Without an agent,
 * rank 0 serves one from a thread of its own: on MASTER_PORT when given (as
 * torch's env:// does; under srun env.c fills in what is missing from the step), or on a
 * free port it announces over MPI under mpirun. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "comm/comm_internal.h"
#include "common/host.h"
#include "common/util.h"
#include "store/server.h"

struct fg_store_host {
  uv_loop_t loop;
  uv_thread_t thread;
  uv_async_t stop;
  fg_server *server;
};

static void host_run(void *arg) {
  struct fg_store_host *h = arg;
  uv_run(&h->loop, UV_RUN_DEFAULT);
}

static void host_on_stop(uv_async_t *a) {
  struct fg_store_host *h = a->data;
  fg__server_close(h->server);
  uv_close((uv_handle_t *)a, NULL);
}

static int host_start(const char *addr, int port, struct fg_store_host **out, int *bound,
                      char *err, size_t errlen) {
  struct fg_store_host *h = calloc(1, sizeof *h);
  if (!h) return fg__fail(err, errlen, -ENOMEM, "out of memory");
  uv_loop_init(&h->loop);
  fg_server_config cfg;
  fg__server_config_init(&cfg);
  cfg.host = addr;
  cfg.port = port;
  int rc = fg__server_start(&h->loop, &cfg, &h->server, err, errlen);
  if (rc == 0) {
    uv_async_init(&h->loop, &h->stop, host_on_stop);
    h->stop.data = h;
    *bound = fg__server_port(h->server);
    rc = uv_thread_create(&h->thread, host_run, h);
    if (rc == 0) {
      *out = h;
      return 0;
    }
    fg__server_close(h->server);
    uv_close((uv_handle_t *)&h->stop, NULL);
    fg__fail(err, errlen, rc, "cannot start the store thread: %s", uv_strerror(rc));
  }
  uv_run(&h->loop, UV_RUN_DEFAULT); /* runs the close callbacks */
  uv_loop_close(&h->loop);
  free(h);
  return rc;
}

static void host_stop(struct fg_store_host *h) {
  uv_async_send(&h->stop);
  uv_thread_join(&h->thread);
  uv_loop_close(&h->loop);
  free(h);
}

static int connect_scoped(fg_comm *w, const char *host, int port, const char *prefix, char *err,
                          size_t errlen) {
  fg_store_options so;
  fg_store_options_init(&so);
  so.connect_timeout_ms = w->timeout_ms;
  so.timeout_ms = w->timeout_ms;
  int rc = fg_store_connect(&w->store_conn, host, port, &so);
  if (rc != 0) {
    fg__fail(err, errlen, rc, "cannot reach the store at %s:%d: %s", host, port,
            w->store_conn ? fg_store_errmsg(w->store_conn) : fg_strerror(rc));
    fg_store_close(w->store_conn);
    w->store_conn = NULL;
    return rc;
  }
  fg_store *attempt = NULL;
  if (prefix && (rc = fg_store_scope(w->store_conn, prefix, &attempt)) != 0)
    return fg__fail(err, errlen, rc, "out of memory");
  rc = fg_store_scope(attempt ? attempt : w->store_conn, "fgcomm", &w->store);
  fg_store_close(attempt); /* a scope of a scope keeps the full prefix, not its parent */
  return rc ? fg__fail(err, errlen, rc, "out of memory") : 0;
}

/* Under mpirun without MASTER_ADDR: rank 0 serves, and tells the others over MPI. */
static int bootstrap_mpi(fg_comm *w, char *err, size_t errlen) {
  int rc = fg__mpi_ensure_init(w, err, errlen);
  if (rc != 0) return rc;
  char where[320] = "";
  int single_host = w->local_size == w->size;
  if (w->rank == 0) {
    int port = 0;
    rc = host_start(single_host ? "127.0.0.1" : "0.0.0.0", 0, &w->store_host, &port, err,
                    errlen);
    if (rc == 0) {
      char host[256] = "127.0.0.1";
      if (!single_host) fg__advertised_host(host, sizeof host);
      snprintf(where, sizeof where, "%s:%d", host, port);
    } else {
      snprintf(where, sizeof where, "!%s", err);
    }
  }
  int sent = fg__mpi_bcast_world(where, sizeof where, 0);
  if (sent != 0)
    return fg__fail(err, errlen, sent, "cannot share the store's address over MPI: %s",
                   fg_strerror(sent));
  if (where[0] == '!')
    return w->rank == 0 ? rc
                        : fg__fail(err, errlen, FG_EPEER, "rank 0 could not serve the store: %s",
                                  where + 1);
  char host[256];
  int port = 0;
  if (fg__split_hostport(where, host, sizeof host, &port) != 0)
    return fg__fail(err, errlen, FG_EPROTO, "bad store address '%s' from rank 0", where);
  w->store_on_rank0 = 1;
  return connect_scoped(w, host, port, NULL, err, errlen);
}

/* A store address srun's variables gave: the error says where it came from, and how to pick
 * another. */
static int with_origin(int rc, const fg_comm_env *env, char *err, size_t errlen) {
  char first[512];
  snprintf(first, sizeof first, "%s", err ? err : "");
  return fg__fail(err, errlen, rc, "%s (under srun: %s; set MASTER_ADDR or MASTER_PORT to choose "
                 "others)", first, env->store_origin);
}

int fg__comm_bootstrap_store(fg_comm *w, const fg_comm_env *env, char *err, size_t errlen) {
  int rc;
  const char *addr = env->master_addr[0] ? env->master_addr : NULL;
  if (env->agent_store) {
    if (!addr || !env->master_port)
      return fg__fail(err, errlen, -EINVAL,
                     "TORCHELASTIC_USE_AGENT_STORE is set but MASTER_ADDR/MASTER_PORT are not");
    char prefix[64];
    snprintf(prefix, sizeof prefix, "/worker/attempt_%d", env->restart_count);
    return connect_scoped(w, addr, env->master_port, prefix, err, errlen);
  }
  if (addr && env->master_port) {
    w->store_on_rank0 = 1;
    rc = 0;
    if (w->rank == 0) {
      int port;
      rc = host_start(fg__is_loopback(addr) ? addr : "0.0.0.0", env->master_port, &w->store_host,
                      &port, err, errlen);
    }
    if (rc == 0) rc = connect_scoped(w, addr, env->master_port, NULL, err, errlen);
    return rc && env->store_origin[0] ? with_origin(rc, env, err, errlen) : rc;
  }
  if (w->size == 1) {
    int port;
    w->store_on_rank0 = 1;
    if ((rc = host_start("127.0.0.1", 0, &w->store_host, &port, err, errlen)) != 0) return rc;
    return connect_scoped(w, "127.0.0.1", port, NULL, err, errlen);
  }
  if (env->mpi_launched) return bootstrap_mpi(w, err, errlen);
  return fg__fail(err, errlen, -EINVAL,
                 "no rendezvous store: start the ranks with fgrun, torchrun, mpirun or srun, or "
                 "set MASTER_ADDR and MASTER_PORT");
}

void fg__comm_release_store(fg_comm *w) {
  if (w->store_on_rank0 && w->store && w->size > 1) {
    /* Rank 0's store must outlive every rank's last use of it. */
    int rc = fg_store_barrier(w->store, "exit", w->rank, w->size, w->timeout_ms);
    if (rc != 0 && w->rank == 0)
      fprintf(stderr, "fgcomm: rank 0 leaves before every rank is done: %s\n",
              fg_store_errmsg(w->store));
  }
  fg_store_close(w->store);
  fg_store_close(w->store_conn);
  w->store = w->store_conn = NULL;
  if (w->store_host) host_stop(w->store_host);
  w->store_host = NULL;
}
