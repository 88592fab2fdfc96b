/* server.c - the store's sockets on a libuv loop.
 *
 * Bytes read from a connection go to fg__core_feed; replies collect in each session's output
 * buffer and go out in one write per connection once the input at hand has been processed.
 * Reads land in one buffer the whole server shares: only the tail of a request that has not
 * fully arrived is copied into the connection's own buffer, so a connection between requests
 * holds no input memory, and every read lands in memory that is already in the cache.
 *
 * Memory is bounded three ways (server.h has the arithmetic): stored bytes (max_total, kv.c);
 * partly received requests, of all connections together (max_buffered); and each
 * connection's replies: a client that does not read them is not read from either until they
 * drain, and one read's pipelined requests stop running once core.out_batch bytes wait. */
#include "store/server.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/host.h"
#include "common/log.h"
#include "common/util.h"
#include "fg/fg.h"
#include "store/ops.h"

/* The shared read buffer: large enough that a burst of pipelined requests is one read. */
#define READ_BYTES (64u << 10)
/* A connection may hold this much of unfinished input outside max_buffered. */
#define SMALL_BYTES READ_BYTES
/* Replies queued to a client beyond this stop reads from it until half of them drain. */
#define OUT_PAUSE_BYTES (16u << 20)
/* Only watch notifications, which other clients' changes cause, can queue up past the pause;
 * a watcher that lets this much pile up is not reading and is closed. */
#define OUT_CLOSE_BYTES (256u << 20)
/* An output buffer that grew past this for one large reply is given back afterwards. */
#define OUT_KEEP_BYTES (64u << 10)

struct fg_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_timer_t sweep; /* closes stalled connections (idle timeout) */
  fg_server_config cfg;
  fg_core core;
  fg_link conns;
  fg_link stalled;  /* conn.stalled, oldest first: each owes us the rest of a request */
  uint8_t *rbuf;    /* READ_BYTES, shared by every connection's reads */
  uint64_t buffered; /* sum of conn.charged */
  uint64_t nconns;
  uint64_t accepted;
  uint64_t rejected;
  int open_handles; /* listener, timer and connections still to be closed */
  int closing;
  int port;
};

typedef struct conn {
  uv_tcp_t tcp;
  fg_server *srv;
  fg_session session;
  fg_link link;      /* fg_server.conns */
  fg_link stalled;   /* fg_server.stalled while the client owes bytes */
  uint64_t since_ms; /* its last progress, while on `stalled` */
  fg_buf in;         /* an incomplete request's head, or requests a backlog deferred */
  size_t charged;    /* in.cap, as counted in fg_server.buffered */
  size_t need;       /* total bytes the next request needs */
  int closing;
  int paused;        /* not reading: its replies are backed up */
  int blocked;       /* complete requests wait in `in` until its replies drain */
  int over_budget;   /* the last allocation failed on max_buffered, not on malloc */
  char peer[64];
} conn;

typedef struct write_req {
  uv_write_t req;
  uint8_t *data;    /* a session's output buffer, handed over whole: nothing is copied */
  fg_share *shares; /* and the stored values it sends from the table's memory */
  size_t nshares;
} write_req;

static void on_handle_closed(uv_handle_t *h);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void close_conn(conn *c, const char *reason);
static void run_deferred(conn *c);

void fg__server_config_init(fg_server_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->host = "127.0.0.1";
  fg_proto_limits lim;
  fg__proto_limits_default(&lim);
  cfg->max_key = lim.max_key;
  cfg->max_value = lim.max_value;
  cfg->max_request = 64u << 20;
  cfg->max_total = 1ull << 30;
  cfg->max_buffered = 256u << 20;
  cfg->max_connections = 16384;
  cfg->backlog = 4096;
  cfg->idle_timeout_ms = 60000;
}

static size_t queued(conn *c) { return uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp); }

/* --- memory accounting -------------------------------------------------------------------- */

static void recharge(conn *c) {
  c->srv->buffered = c->srv->buffered - c->charged + c->in.cap;
  c->charged = c->in.cap;
}

/* Only requests that outgrow one read are held to the budget: a connection's small
 * remainder (the head of its next request, or requests a backlog deferred) always fits, so
 * clients that hoard big partial requests cannot get well-behaved ones closed. */
static int over_budget(const conn *c, size_t cap) {
  return cap > SMALL_BYTES && c->srv->buffered - c->charged + cap > c->srv->cfg.max_buffered;
}

/* --- the idle timeout --------------------------------------------------------------------- */

/* Whether the client owes us bytes: the rest of a request, or (when a token is required) its
 * token. Without a token a silent connection owes nothing: torch 1.13 opens a second
 * connection per store and never sends a byte on it, and a torch client may open its store
 * long before its first call; neither reconnects if cut off. */
static int owes_bytes(const conn *c) {
  if (c->closing || c->paused || c->blocked) return 0; /* waiting on us, not on the client */
  if (c->in.len > 0) return 1;
  return !c->session.admitted && c->srv->core.token;
}

/* After a read (progress) or a change of state: restart the clock, or stop it. */
static void track_stall(conn *c, int progressed) {
  if (!owes_bytes(c)) {
    fg_link_remove(&c->stalled);
    return;
  }
  if (!progressed && !fg_link_empty(&c->stalled)) return;
  fg_link_remove(&c->stalled);
  c->since_ms = uv_now(c->srv->loop);
  fg_link_push(&c->srv->stalled, &c->stalled); /* the list stays ordered by since_ms */
}

static void on_sweep(uv_timer_t *t) {
  fg_server *srv = t->data;
  uint64_t now = uv_now(srv->loop), limit = (uint64_t)srv->cfg.idle_timeout_ms;
  while (!fg_link_empty(&srv->stalled)) {
    conn *c = fg_container_of(srv->stalled.next, conn, stalled);
    if (now - c->since_ms < limit) break;
    char msg[128];
    snprintf(msg, sizeof msg, "%s for %.3g s (idle timeout)",
             c->in.len ? "no progress on a request" : "no store token", limit / 1000.0);
    close_conn(c, msg);
  }
}

/* --- connection lifecycle ----------------------------------------------------------------- */

static void close_conn(conn *c, const char *reason) {
  if (c->closing) return;
  c->closing = 1;
  if (reason) {
    c->srv->rejected++;
    fg_warn("store: closed connection from %s: %s", c->peer, reason);
  }
  fg__session_drop(&c->srv->core, &c->session);
  fg_link_remove(&c->link);
  fg_link_remove(&c->stalled);
  c->srv->buffered -= c->charged;
  c->charged = 0;
  c->srv->nconns--;
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_handle_closed(uv_handle_t *h) {
  fg_server *srv = h->data;
  if (h != (uv_handle_t *)&srv->listener && h != (uv_handle_t *)&srv->sweep) {
    conn *c = (conn *)h;
    fg__buf_free(&c->in);
    free(c);
  }
  if (--srv->open_handles == 0) {
    fg__core_free(&srv->core);
    free(srv->rbuf);
    free(srv);
  }
}

static void peer_name(conn *c) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  ss.ss_family = AF_UNSPEC;
  uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
  fg__sockaddr_name((struct sockaddr *)&ss, c->peer, sizeof c->peer);
}

/* --- flow control ------------------------------------------------------------------------- */

static void pause_reading(conn *c) {
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->paused = 1;
  track_stall(c, 0);
}

static void resume_reading(conn *c) {
  c->paused = 0;
  if (c->blocked) run_deferred(c);
  if (c->closing || c->paused) return;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  track_stall(c, 1);
}

/* Blocked input runs again only once everything before it is out; otherwise reading resumes
 * when half of a large backlog has drained. */
static void update_pause(conn *c) {
  size_t q = queued(c);
  if (!c->paused && (q > OUT_PAUSE_BYTES || (c->blocked && q > 0)))
    pause_reading(c);
  else if (c->paused && (c->blocked ? q == 0 : q <= OUT_PAUSE_BYTES / 2))
    resume_reading(c);
}

/* --- writing ------------------------------------------------------------------------------ */

static void free_shares(fg_share *shares, size_t n) {
  for (size_t i = 0; i < n; i++) fg__kv_blob_unref(shares[i].blob);
  free(shares);
}

static void on_written(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  conn *c = (conn *)req->handle;
  free(w->data);
  free_shares(w->shares, w->nshares);
  free(w);
  if (c->closing) return;
  if (status < 0) {
    close_conn(c, NULL);
    return;
  }
  update_pause(c);
}

/* The output as buffers for one gathering write: the bytes of out, with each shared value
 * (ops.h) in its place. *n gets how many; NULL when out of memory. */
static uv_buf_t *output_bufs(fg_session *s, uv_buf_t *small, size_t nsmall, size_t *n) {
  size_t most = 2 * s->nshares + 1;
  uv_buf_t *b = most <= nsmall ? small : malloc(most * sizeof *b);
  if (!b) return NULL;
  size_t k = 0, from = 0;
  for (size_t i = 0; i < s->nshares; i++) {
    const fg_share *sh = &s->shares[i];
    if (sh->at > from) b[k++] = uv_buf_init((char *)s->out.data + from, (unsigned)(sh->at - from));
    b[k++] = uv_buf_init((char *)sh->p, (unsigned)sh->len);
    from = sh->at;
  }
  if (s->out.len > from) b[k++] = uv_buf_init((char *)s->out.data + from, (unsigned)(s->out.len - from));
  *n = k;
  return b;
}

/* Skips the first `done` bytes of b[0..*n). */
static uv_buf_t *after(uv_buf_t *b, size_t *n, size_t done) {
  while (*n && done >= b->len) done -= b->len, b++, (*n)--;
  if (*n) b->base += done, b->len -= done;
  return b;
}

/* What uv_try_write left goes to uv_write with the output itself (buffer and shared values);
 * the session starts afresh. 0, or -1 once the connection is closed. */
static int queue_rest(conn *c, uv_buf_t *bufs, size_t nbufs) {
  fg_session *s = &c->session;
  write_req *w = malloc(sizeof *w);
  if (!w) {
    close_conn(c, "out of memory for replies");
    return -1;
  }
  w->data = s->out.data;
  w->shares = fg__session_take_shares(s, &w->nshares);
  fg__buf_init(&s->out);
  /* libuv keeps its own copy of the buffer list; the bytes stay where they are. */
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, (unsigned)nbufs, on_written) != 0) {
    free(w->data);
    free_shares(w->shares, w->nshares);
    free(w);
    close_conn(c, NULL);
    return -1;
  }
  if (queued(c) > OUT_CLOSE_BYTES) {
    close_conn(c, "not reading its replies");
    return -1;
  }
  if (!c->paused && (queued(c) > OUT_PAUSE_BYTES || c->blocked)) pause_reading(c);
  return 0;
}

/* One gathering write of everything waiting, when nothing is queued ahead of it. */
static void flush(conn *c) {
  fg_session *s = &c->session;
  size_t total = fg_session_pending(s);
  if (c->closing || total == 0) return;
  uv_buf_t small[8], *bufs;
  size_t nbufs;
  if (!(bufs = output_bufs(s, small, FG_ARRAY_LEN(small), &nbufs))) {
    close_conn(c, "out of memory for replies");
    return;
  }
  size_t done = 0;
  if (queued(c) == 0) { /* in order: only when nothing is queued ahead of these bytes */
    int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)nbufs);
    if (n < 0 && n != UV_EAGAIN) {
      close_conn(c, NULL);
      goto out;
    }
    if (n > 0) done = (size_t)n;
  }
  if (done < total) {
    uv_buf_t *rest = after(bufs, &nbufs, done);
    queue_rest(c, rest, nbufs);
    goto out;
  }
  fg__session_clear_output(s);
  if (s->out.cap > OUT_KEEP_BYTES) fg__buf_free(&s->out);
out:
  if (bufs != small) free(bufs);
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

/* Runs the complete requests in p[0..len); the bytes used, or -1 once the connection is
 * closed. */
static ssize_t feed(conn *c, const uint8_t *p, size_t len) {
  fg_server *srv = c->srv;
  size_t used, need;
  const char *why = NULL;
  int rc = fg__core_feed(&srv->core, &c->session, p, len, &used, &need, &why);
  if (rc < 0) {
    flush(c); /* what the requests before the bad one asked for, as far as it goes at once */
    close_conn(c, why);
    return -1;
  }
  c->blocked = rc == FG_CORE_BLOCKED;
  c->need = need;
  if (!c->blocked && need > srv->cfg.max_request) {
    char msg[96];
    snprintf(msg, sizeof msg, "request larger than the limit (%llu bytes)",
             (unsigned long long)srv->cfg.max_request);
    close_conn(c, msg);
    return -1;
  }
  return (ssize_t)used;
}

static void budget_exceeded(conn *c) {
  char msg[128];
  snprintf(msg, sizeof msg, "partial requests of all clients over the limit (%llu bytes)",
           (unsigned long long)c->srv->cfg.max_buffered);
  close_conn(c, msg);
}

/* The unprocessed tail of a shared-buffer read moves into the connection's own buffer. */
static void keep(conn *c, const uint8_t *p, size_t n) {
  if (over_budget(c, c->in.len + n)) {
    budget_exceeded(c);
    return;
  }
  fg__buf_put(&c->in, p, n);
  recharge(c);
  if (c->in.failed) close_conn(c, "out of memory for its request");
}

static void feed_shared(conn *c, size_t n) {
  ssize_t used = feed(c, c->srv->rbuf, n);
  if (used >= 0 && (size_t)used < n) keep(c, c->srv->rbuf + used, n - (size_t)used);
}

static void feed_own(conn *c) {
  ssize_t used = feed(c, c->in.data, c->in.len);
  if (used < 0) return;
  fg__buf_consume(&c->in, (size_t)used);
  if (c->in.len == 0) {
    fg__buf_free(&c->in);
    recharge(c);
  }
}

/* Requests a backlog held back, now that the replies before them have gone out. */
static void run_deferred(conn *c) {
  while (c->blocked && !c->closing && queued(c) == 0) {
    feed_own(c);
    flush_dirty(c->srv);
  }
  if (!c->closing) update_pause(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn *c = (conn *)h;
  if (c->in.len == 0) {
    *buf = uv_buf_init((char *)c->srv->rbuf, READ_BYTES);
    return;
  }
  /* A request is partly here: read the rest of it (its lengths were checked against the
   * limits) straight into the connection's buffer, behind the part it has. */
  size_t want = FG__MAX(c->need > c->in.len ? c->need - c->in.len : 0, (size_t)4096);
  c->over_budget = over_budget(c, c->in.len + want);
  if (c->over_budget || fg__buf_reserve(&c->in, want) != 0) {
    *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
    return;
  }
  recharge(c);
  size_t room = FG__MIN(c->in.cap - c->in.len, (size_t)1 << 30);
  *buf = uv_buf_init((char *)c->in.data + c->in.len, (unsigned)room);
}

static void read_failed(conn *c, ssize_t nread) {
  char why[96];
  if (nread == UV_ENOBUFS && c->over_budget) {
    budget_exceeded(c);
  } else if (nread == UV_ENOBUFS) {
    close_conn(c, "out of memory for its request");
  } else if (c->in.len > 0) {
    snprintf(why, sizeof why, "disconnected in the middle of a request (%zu bytes received)",
             c->in.len);
    close_conn(c, why);
  } else {
    close_conn(c, NULL);
  }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn *c = (conn *)stream;
  fg_server *srv = c->srv;
  if (nread == 0 || c->closing) return;
  if (nread < 0) {
    read_failed(c, nread);
    return;
  }
  if (buf->base == (char *)srv->rbuf) {
    feed_shared(c, (size_t)nread);
  } else {
    c->in.len += (size_t)nread;
    feed_own(c);
  }
  flush_dirty(srv);
  if (c->closing) return;
  if (c->blocked) run_deferred(c);
  track_stall(c, 1);
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
  fg__session_init(&c->session);
  fg__buf_init(&c->in);
  fg_link_init(&c->link);
  fg_link_init(&c->stalled);
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
  /* Replies are already one write per read; Nagle would only hold the next one back. */
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  track_stall(c, 1);
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
    return fg__fail(err, errlen, -EINVAL, "cannot listen on %s:%d: %s", cfg->host, cfg->port,
                   gai_strerror(rc));
  rc = uv_tcp_bind(&srv->listener, ai->ai_addr, 0);
  freeaddrinfo(ai);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&srv->listener, cfg->backlog, on_connection);
  if (rc != 0)
    return fg__fail(err, errlen, rc, "cannot listen on %s:%d: %s", cfg->host, cfg->port,
                   uv_strerror(rc));
  struct sockaddr_storage ss;
  int len = sizeof ss;
  uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len);
  srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
  return 0;
}

/* A sweep every eighth of the timeout closes a stalled connection at most 12.5% late. */
static void start_sweep(fg_server *srv) {
  uv_timer_init(srv->loop, &srv->sweep);
  srv->sweep.data = srv;
  srv->open_handles++;
  if (srv->cfg.idle_timeout_ms <= 0) return;
  uint64_t every = FG__MIN(FG__MAX((uint64_t)srv->cfg.idle_timeout_ms / 8, 10), 1000);
  uv_timer_start(&srv->sweep, on_sweep, every, every);
  uv_unref((uv_handle_t *)&srv->sweep); /* never what keeps a loop running */
}

static int init_core(fg_server *srv, const fg_server_config *cfg) {
  fg_proto_limits lim = {cfg->max_key, cfg->max_value, 131072};
  if (fg__core_init(&srv->core, cfg->max_total, &lim) != 0) return -ENOMEM;
  srv->core.max_reply = FG__MAX(cfg->max_request, cfg->max_value + 64);
  if (cfg->token && *cfg->token && fg__core_set_token(&srv->core, cfg->token, strlen(cfg->token)))
    return -ENOMEM;
  return 0;
}

int fg__server_start(uv_loop_t *loop, const fg_server_config *cfg, fg_server **out, char *err,
                    size_t errlen) {
  if (cfg->token && strlen(cfg->token) > FG_TOKEN_MAX)
    return fg__fail(err, errlen, -EINVAL, "the store token is longer than %d bytes", FG_TOKEN_MAX);
  fg_server *srv = calloc(1, sizeof *srv);
  uint8_t *rbuf = malloc(READ_BYTES);
  if (!srv || !rbuf || init_core(srv, cfg) != 0) {
    if (srv) fg__core_free(&srv->core);
    free(srv);
    free(rbuf);
    return fg__fail(err, errlen, -ENOMEM, "out of memory");
  }
  srv->loop = loop;
  srv->rbuf = rbuf;
  srv->cfg = *cfg;
  srv->cfg.host = NULL; /* not owned; only used while binding */
  srv->cfg.token = NULL; /* the core keeps its own copy */
  fg_link_init(&srv->conns);
  fg_link_init(&srv->stalled);
  uv_tcp_init(loop, &srv->listener);
  srv->listener.data = srv;
  srv->open_handles = 1;
  start_sweep(srv);
  int rc = bind_listener(srv, cfg, err, errlen);
  if (rc != 0) {
    srv->closing = 1;
    uv_close((uv_handle_t *)&srv->sweep, on_handle_closed);
    uv_close((uv_handle_t *)&srv->listener, on_handle_closed);
    return rc;
  }
  *out = srv;
  return 0;
}

int fg__server_port(const fg_server *srv) { return srv->port; }

size_t fg__server_erase_prefix(fg_server *srv, const char *prefix) {
  return fg__core_erase_prefix(&srv->core, (const uint8_t *)prefix, strlen(prefix));
}

void fg__server_get_stats(const fg_server *srv, fg_server_stats *st) {
  st->keys = srv->core.kv.nvalues;
  st->bytes = srv->core.kv.bytes;
  st->connections = srv->nconns;
  st->accepted = srv->accepted;
  st->rejected = srv->rejected;
  st->requests = srv->core.requests;
  st->buffered = srv->buffered;
}

void fg__server_close(fg_server *srv) {
  if (srv->closing) return;
  srv->closing = 1;
  while (!fg_link_empty(&srv->conns)) close_conn(fg_container_of(srv->conns.next, conn, link), NULL);
  uv_close((uv_handle_t *)&srv->sweep, on_handle_closed);
  uv_close((uv_handle_t *)&srv->listener, on_handle_closed);
}
