/* server.c - the store's sockets on a libuv loop.
 *
 * Bytes read from a connection go to fg_core_feed; replies collect in each
 * session's output buffer and are written once the input at hand has been
 * processed. A connection whose client does not read its replies stops being
 * read until they drain, so one slow client cannot grow the server's memory. */
#include "store/server.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "fg/fg.h"
#include "store/ops.h"

/* Replies queued to a client beyond this stop reads from it until they drain. */
#define OUT_PAUSE_BYTES (16u << 20)
/* An input buffer left bigger than this after a large request is given back. */
#define IN_KEEP_BYTES (64u << 10)

struct fg_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  fg_server_config cfg;
  fg_core core;
  fg_link conns;
  uint64_t nconns;
  uint64_t accepted;
  uint64_t rejected;
  int open_handles; /* listener + connections still to be closed */
  int closing;
  int port;
};

typedef struct conn {
  uv_tcp_t tcp;
  fg_server *srv;
  fg_session session;
  fg_link link;   /* fg_server.conns */
  fg_buf in;      /* received, not yet consumed */
  size_t need;    /* total bytes the next request needs */
  int closing;
  int paused;
  char peer[64];
} conn;

typedef struct write_req {
  uv_write_t req;
  uv_buf_t buf;
  uint8_t data[];
} write_req;

static void on_handle_closed(uv_handle_t *h);

void fg_server_config_init(fg_server_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->host = "127.0.0.1";
  fg_proto_limits lim;
  fg_proto_limits_default(&lim);
  cfg->max_key = lim.max_key;
  cfg->max_value = lim.max_value;
  cfg->max_request = 64u << 20;
  cfg->max_total = 1ull << 30;
  cfg->max_connections = 16384;
  cfg->backlog = 4096;
}

/* --- connection lifecycle ----------------------------------------------------------------- */

static void close_conn(conn *c, const char *reason) {
  if (c->closing) return;
  c->closing = 1;
  if (reason) {
    c->srv->rejected++;
    fg_warn("store: closed connection from %s: %s", c->peer, reason);
  }
  fg_session_drop(&c->srv->core, &c->session);
  fg_link_remove(&c->link);
  c->srv->nconns--;
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_handle_closed(uv_handle_t *h) {
  fg_server *srv = h->data;
  if (h != (uv_handle_t *)&srv->listener) {
    conn *c = (conn *)h;
    fg_buf_free(&c->in);
    free(c);
  }
  if (--srv->open_handles == 0) {
    fg_core_free(&srv->core);
    free(srv);
  }
}

static void peer_name(conn *c) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
      port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
      uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
      port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
  }
  snprintf(c->peer, sizeof c->peer, "%s%s%s:%d", ss.ss_family == AF_INET6 ? "[" : "", ip,
           ss.ss_family == AF_INET6 ? "]" : "", port);
}

/* --- writing ------------------------------------------------------------------------------ */

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

static void update_pause(conn *c) {
  size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
  if (!c->paused && queued > OUT_PAUSE_BYTES) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->paused = 1;
  } else if (c->paused && queued <= OUT_PAUSE_BYTES / 2) {
    c->paused = 0;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  }
}

static void on_written(uv_write_t *req, int status) {
  conn *c = (conn *)req->handle;
  free(req);
  if (c->closing) return;
  if (status < 0) {
    close_conn(c, NULL);
    return;
  }
  update_pause(c);
}

static void flush(conn *c) {
  fg_buf *out = &c->session.out;
  if (c->closing || out->len == 0) return;
  size_t off = 0;
  /* Nothing queued: try to write straight away and skip the copy. */
  if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0) {
    uv_buf_t b = uv_buf_init((char *)out->data, (unsigned)out->len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n < 0 && n != UV_EAGAIN) {
      close_conn(c, NULL);
      return;
    }
    if (n > 0) off = (size_t)n;
  }
  if (off < out->len) {
    size_t rest = out->len - off;
    write_req *w = malloc(sizeof *w + rest);
    if (!w) {
      close_conn(c, "out of memory for replies");
      return;
    }
    memcpy(w->data, out->data + off, rest);
    w->buf = uv_buf_init((char *)w->data, (unsigned)rest);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_written) != 0) {
      free(w);
      close_conn(c, NULL);
      return;
    }
    update_pause(c);
  }
  fg_buf_reset(out);
  if (out->cap > IN_KEEP_BYTES) fg_buf_free(out);
}

static void flush_dirty(fg_server *srv) {
  fg_link *head = &srv->core.dirty;
  while (!fg_link_empty(head)) {
    fg_session *s = fg_container_of(head->next, fg_session, dirty);
    fg_link_remove(&s->dirty);
    flush(fg_container_of(s, conn, session));
  }
}

/* --- reading ------------------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn *c = (conn *)h;
  /* Read exactly what the pending request still needs (its lengths were already checked
   * against the limits), and at least a page. */
  size_t want = c->need > c->in.len ? c->need - c->in.len : 0;
  if (want < 4096) want = 4096;
  if (fg_buf_reserve(&c->in, want) != 0) {
    *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
    return;
  }
  *buf = uv_buf_init((char *)c->in.data + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  conn *c = (conn *)stream;
  fg_server *srv = c->srv;
  if (nread == 0 || c->closing) return;
  if (nread < 0) {
    char why[96];
    if (nread == UV_ENOBUFS)
      close_conn(c, "out of memory for its request");
    else if (c->in.len > 0) {
      snprintf(why, sizeof why, "disconnected in the middle of a request (%zu bytes received)",
               c->in.len);
      close_conn(c, why);
    } else
      close_conn(c, NULL);
    return;
  }
  c->in.len += (size_t)nread;
  size_t used, need;
  const char *why = NULL;
  int rc = fg_core_feed(&srv->core, &c->session, c->in.data, c->in.len, &used, &need, &why);
  if (rc < 0) {
    close_conn(c, why);
  } else {
    fg_buf_consume(&c->in, used);
    c->need = need;
    if (need > srv->cfg.max_request) {
      char msg[96];
      snprintf(msg, sizeof msg, "request larger than the limit (%llu bytes)",
               (unsigned long long)srv->cfg.max_request);
      close_conn(c, msg);
    } else if (c->in.len == 0 && c->in.cap > IN_KEEP_BYTES) {
      fg_buf_free(&c->in);
    }
  }
  flush_dirty(srv);
}

static void on_connection(uv_stream_t *listener, int status) {
  fg_server *srv = listener->data;
  if (status < 0) {
    fg_warn("store: accept failed: %s", uv_strerror(status));
    return;
  }
  conn *c = calloc(1, sizeof *c);
  if (!c) {
    fg_error("store: out of memory accepting a connection");
    return;
  }
  c->srv = srv;
  fg_session_init(&c->session);
  fg_buf_init(&c->in);
  fg_link_init(&c->link);
  c->need = 1;
  uv_tcp_init(srv->loop, &c->tcp);
  c->tcp.data = srv;
  srv->open_handles++;
  fg_link_push(&srv->conns, &c->link);
  srv->nconns++;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    close_conn(c, NULL);
    return;
  }
  srv->accepted++;
  peer_name(c);
  if (srv->nconns > (uint64_t)srv->cfg.max_connections) {
    char msg[96];
    snprintf(msg, sizeof msg, "too many connections (limit %d)", srv->cfg.max_connections);
    close_conn(c, msg);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* --- the server --------------------------------------------------------------------------- */

static int bind_listener(fg_server *srv, const fg_server_config *cfg, char *err, size_t errlen) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *ai = NULL;
  char port[8];
  snprintf(port, sizeof port, "%d", cfg->port);
  int rc = getaddrinfo(cfg->host, port, &hints, &ai);
  if (rc != 0)
    return fg_fail(err, errlen, -EINVAL, "cannot listen on %s:%d: %s", cfg->host, cfg->port,
                   gai_strerror(rc));
  rc = uv_tcp_bind(&srv->listener, ai->ai_addr, 0);
  freeaddrinfo(ai);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&srv->listener, cfg->backlog, on_connection);
  if (rc != 0)
    return fg_fail(err, errlen, rc, "cannot listen on %s:%d: %s", cfg->host, cfg->port,
                   uv_strerror(rc));
  struct sockaddr_storage ss;
  int len = sizeof ss;
  uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len);
  srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
  return 0;
}

int fg_server_start(uv_loop_t *loop, const fg_server_config *cfg, fg_server **out, char *err,
                    size_t errlen) {
  fg_server *srv = calloc(1, sizeof *srv);
  if (!srv) return fg_fail(err, errlen, -ENOMEM, "out of memory");
  srv->loop = loop;
  srv->cfg = *cfg;
  srv->cfg.host = NULL; /* not owned; only used while binding */
  fg_link_init(&srv->conns);
  fg_proto_limits lim = {cfg->max_key, cfg->max_value, 131072};
  if (fg_core_init(&srv->core, cfg->max_total, &lim) != 0) {
    free(srv);
    return fg_fail(err, errlen, -ENOMEM, "out of memory");
  }
  uv_tcp_init(loop, &srv->listener);
  srv->listener.data = srv;
  srv->open_handles = 1;
  int rc = bind_listener(srv, cfg, err, errlen);
  if (rc != 0) {
    uv_close((uv_handle_t *)&srv->listener, on_handle_closed);
    return rc;
  }
  *out = srv;
  return 0;
}

int fg_server_port(const fg_server *srv) { return srv->port; }

size_t fg_server_erase_prefix(fg_server *srv, const char *prefix) {
  return fg_core_erase_prefix(&srv->core, (const uint8_t *)prefix, strlen(prefix));
}

void fg_server_get_stats(const fg_server *srv, fg_server_stats *st) {
  st->keys = srv->core.kv.nvalues;
  st->bytes = srv->core.kv.bytes;
  st->connections = srv->nconns;
  st->accepted = srv->accepted;
  st->rejected = srv->rejected;
  st->requests = srv->core.requests;
}

void fg_server_close(fg_server *srv) {
  if (srv->closing) return;
  srv->closing = 1;
  while (!fg_link_empty(&srv->conns)) close_conn(fg_container_of(srv->conns.next, conn, link), NULL);
  uv_close((uv_handle_t *)&srv->listener, on_handle_closed);
}
