/* bench_store_rdzv.c - the client side of the rendezvous benchmark: thousands of raw,
 * non-blocking connections on one epoll loop (or a few, one per driver thread), speaking
 * the wire protocol through proto.h's encoders. A thread per connection would measure the
 * scheduler rather than the server. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/util.h"
#include "store/proto.h"
#include "tools/bench_store.h"

#define MAX_CONNECTING 256 /* connects in flight, so the listen backlog never overflows */
#define PHASE_TIMEOUT_MS 120000
#define EVENTS 1024

enum state { CONNECTING, GREETING, IDLE, ADDING, WAITING };

typedef struct rconn {
  int fd;
  enum state state;
  uint8_t in[8]; /* the reply being read: an echo (4), a count (8) or a WAIT answer (1) */
  size_t in_len;
} rconn;

/* One driver thread's share of the connections, with its own epoll set. */
typedef struct rworker {
  pthread_t tid;
  bench_rdzv *r;
  int epfd, first, n; /* connections first .. first + n - 1 */
  int rc, bad_conn;
  uint64_t done_ns;
} rworker;

struct bench_rdzv {
  int epfd;
  int n;
  int nworkers;
  rworker *workers;
  atomic_int go;
  enum fg_dialect dialect;
  struct sockaddr_storage addr;
  socklen_t addrlen;
  rconn *conns;
  fg_buf hello, add, wait, set_wait;
  uint64_t last_arrival_ns; /* when the SET that releases everyone was sent */
};

static int conn_fail(char *err, size_t errlen, int code, int conn, const char *what) {
  return fg__fail(err, errlen, code, "connection %d: %s: %s", conn, what, fg_strerror(code));
}

static int send_request(rconn *c, const fg_buf *b) {
  ssize_t n = send(c->fd, b->data, b->len, MSG_NOSIGNAL);
  if (n == (ssize_t)b->len) return 0;
  return n < 0 ? -errno : -EAGAIN; /* a short write: never seen with requests this small */
}

/* 1 once `need` reply bytes are in, 0 while more are to come. */
static int take_reply(rconn *c, size_t need) {
  ssize_t n = recv(c->fd, c->in + c->in_len, need - c->in_len, 0);
  if (n == 0) return FG_ECLOSED;
  if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -errno;
  c->in_len += (size_t)n;
  return c->in_len == need;
}

static int watch(bench_rdzv *r, int i, int op, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)i};
  return epoll_ctl(r->epfd, op, r->conns[i].fd, &ev) < 0 ? -errno : 0;
}

static int start_connect(bench_rdzv *r, int i) {
  rconn *c = &r->conns[i];
  c->fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) return -errno;
  c->state = CONNECTING;
  if (connect(c->fd, (struct sockaddr *)&r->addr, r->addrlen) < 0 && errno != EINPROGRESS)
    return -errno;
  return watch(r, i, EPOLL_CTL_ADD, EPOLLOUT);
}

/* The connect finished: greet the server in V2, or be ready at once in 1.13. */
static int connected(bench_rdzv *r, rconn *c, int i) {
  int soerr = 0, one = 1;
  socklen_t len = sizeof soerr;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
  if (soerr) return -soerr;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int rc = watch(r, i, EPOLL_CTL_MOD, EPOLLIN);
  if (rc == 0 && r->dialect == FG_DIALECT_V2) rc = send_request(c, &r->hello);
  c->state = r->dialect == FG_DIALECT_V2 ? GREETING : IDLE;
  return rc;
}

static void build_hello(fg_buf *b) {
  fg__proto_put_validate(b);
  fg__proto_put_op(b, FG_DIALECT_V2, FG_OP_PING);
  fg__buf_put_u32(b, (uint32_t)getpid());
}

static int open_all(bench_rdzv *r, char *err, size_t errlen) {
  struct epoll_event ev[EVENTS];
  int started = 0, ready = 0;
  int64_t deadline = fg__now_ms() + PHASE_TIMEOUT_MS;
  while (ready < r->n) {
    while (started < r->n && started - ready < MAX_CONNECTING) {
      int rc = start_connect(r, started);
      if (rc < 0) return conn_fail(err, errlen, rc, started, "connect");
      started++;
    }
    int64_t left = deadline - fg__now_ms();
    int n = left > 0 ? epoll_wait(r->epfd, ev, EVENTS, (int)left) : 0;
    if (n == 0) return fg__fail(err, errlen, -ETIMEDOUT, "%d of %d connected", ready, r->n);
    for (int e = 0; e < n; e++) {
      int i = (int)ev[e].data.u32;
      rconn *c = &r->conns[i];
      int rc = c->state == CONNECTING ? connected(r, c, i) : take_reply(c, 4);
      if (rc < 0) return conn_fail(err, errlen, rc, i, "connect and greet");
      if (c->state == GREETING && rc == 1) c->state = IDLE;
      if (c->state == IDLE) {
        c->in_len = 0;
        ready++;
      }
    }
  }
  return 0;
}

/* Splits the connections among the driver threads, each with its own epoll set (the
 * first keeps the one they were opened on). */
static int split(bench_rdzv *r) {
  int per = (r->n + r->nworkers - 1) / r->nworkers;
  for (int t = 0; t < r->nworkers; t++) {
    rworker *w = &r->workers[t];
    *w = (rworker){.r = r, .epfd = t ? epoll_create1(EPOLL_CLOEXEC) : r->epfd,
                   .first = t * per, .n = FG__MAX(0, FG__MIN(per, r->n - t * per))};
    if (w->epfd < 0) return -errno;
    for (int i = w->first; t && i < w->first + w->n; i++) {
      struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
      if (epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->conns[i].fd, NULL) < 0 ||
          epoll_ctl(w->epfd, EPOLL_CTL_ADD, r->conns[i].fd, &ev) < 0)
        return -errno;
    }
  }
  return 0;
}

int bench_rdzv_open(bench_rdzv **out, const bench_server *s, int conns, int threads,
                    char *err, size_t errlen) {
  bench_rdzv *r = calloc(1, sizeof *r);
  threads = FG__MAX(1, FG__MIN(threads, conns));
  if (!r || !(r->conns = calloc((size_t)conns, sizeof *r->conns)) ||
      !(r->workers = calloc((size_t)threads, sizeof *r->workers))) {
    if (r) free(r->conns);
    free(r);
    return fg__fail(err, errlen, -ENOMEM, "out of memory");
  }
  r->n = conns;
  r->nworkers = threads;
  r->dialect = s->dialect == FG_STORE_DIALECT_V2 ? FG_DIALECT_V2 : FG_DIALECT_LEGACY;
  for (int i = 0; i < conns; i++) r->conns[i].fd = -1;
  fg__buf_init(&r->hello);
  fg__buf_init(&r->add);
  fg__buf_init(&r->wait);
  fg__buf_init(&r->set_wait);
  build_hello(&r->hello);
  r->epfd = epoll_create1(EPOLL_CLOEXEC);
  int rc = r->epfd < 0 ? -errno : bench_server_sockaddr(s, &r->addr, &r->addrlen);
  if (rc < 0) fg__fail(err, errlen, rc, "%s:%d: %s", s->host, s->port, fg_strerror(rc));
  if (rc == 0) rc = open_all(r, err, errlen);
  if (rc == 0 && (rc = split(r)) < 0) fg__fail(err, errlen, rc, "epoll: %s", fg_strerror(rc));
  if (rc < 0) {
    bench_rdzv_close(r);
    return rc;
  }
  *out = r;
  return 0;
}

/* This round's requests, under keys no earlier round used. */
static void build_round(bench_rdzv *r, int round) {
  char count[96], done[96];
  snprintf(count, sizeof count, "/fgbench/rdzv/%d/%d/count", (int)getpid(), round);
  snprintf(done, sizeof done, "/fgbench/rdzv/%d/%d/done", (int)getpid(), round);
  fg_buf *bufs[] = {&r->add, &r->wait, &r->set_wait};
  for (int i = 0; i < 3; i++) fg__buf_reset(bufs[i]);
  fg__proto_put_op(&r->add, r->dialect, FG_OP_ADD);
  fg__buf_put_bytes(&r->add, count, strlen(count));
  fg__buf_put_i64(&r->add, 1);
  fg__proto_put_op(&r->set_wait, r->dialect, FG_OP_SET);
  fg__buf_put_bytes(&r->set_wait, done, strlen(done));
  fg__buf_put_bytes(&r->set_wait, "1", 1);
  fg__proto_put_op(&r->wait, r->dialect, FG_OP_WAIT);
  fg__buf_put_u64(&r->wait, 1);
  fg__buf_put_bytes(&r->wait, done, strlen(done));
  fg__buf_put(&r->set_wait, r->wait.data, r->wait.len); /* the last arrival waits too */
}

/* One reply for connection c: its count (then its WAIT) or its release. 1 when released. */
static int advance(bench_rdzv *r, rconn *c) {
  int rc = take_reply(c, c->state == ADDING ? 8 : 1);
  if (rc <= 0) return rc;
  if (c->state == WAITING) {
    c->state = IDLE;
    return c->in[0] == FG_WAIT_STOP ? 1 : FG_EPROTO;
  }
  int last = (int64_t)fg_load_u64(c->in) == r->n;
  c->state = WAITING;
  c->in_len = 0;
  if (last) r->last_arrival_ns = fg__now_ns();
  return send_request(c, last ? &r->set_wait : &r->wait);
}

/* One thread's part of a round: send its ADDs, then answer its replies until every one of
 * its connections is released. */
static void run_share(rworker *w) {
  bench_rdzv *r = w->r;
  struct epoll_event ev[EVENTS];
  for (int i = w->first; w->rc == 0 && i < w->first + w->n; i++) {
    rconn *c = &r->conns[i];
    c->state = ADDING;
    c->in_len = 0;
    if ((w->rc = send_request(c, &r->add)) < 0) w->bad_conn = i;
  }
  int64_t deadline = fg__now_ms() + PHASE_TIMEOUT_MS;
  for (int released = 0; w->rc == 0 && released < w->n;) {
    int64_t left = deadline - fg__now_ms();
    int n = left > 0 ? epoll_wait(w->epfd, ev, EVENTS, (int)left) : 0;
    if (n == 0) w->rc = -ETIMEDOUT;
    for (int e = 0; e < n && w->rc == 0; e++) {
      rconn *c = &r->conns[ev[e].data.u32];
      int rc = c->state == ADDING || c->state == WAITING ? advance(r, c) : FG_EPROTO;
      if (rc < 0) {
        w->rc = rc;
        w->bad_conn = (int)ev[e].data.u32;
      }
      released += rc > 0;
    }
  }
  w->done_ns = fg__now_ns();
}

static void *worker_main(void *arg) {
  rworker *w = arg;
  while (!atomic_load(&w->r->go)) sched_yield();
  run_share(w);
  return NULL;
}

int bench_rdzv_round(bench_rdzv *r, int round, double *seconds, double *release, char *err,
                     size_t errlen) {
  build_round(r, round);
  atomic_store(&r->go, 0);
  int started = 1;
  for (int t = 0; t < r->nworkers; t++) r->workers[t].rc = 0;
  for (; started < r->nworkers; started++) /* started before the clock, held at `go` */
    if (pthread_create(&r->workers[started].tid, NULL, worker_main, &r->workers[started]))
      break;
  uint64_t t0 = fg__now_ns(), t1 = t0;
  atomic_store(&r->go, 1);
  run_share(&r->workers[0]);
  for (int t = 1; t < started; t++) pthread_join(r->workers[t].tid, NULL);
  if (started < r->nworkers) return fg__fail(err, errlen, -EAGAIN, "cannot start driver threads");
  for (int t = 0; t < r->nworkers; t++) {
    rworker *w = &r->workers[t];
    if (w->rc == -ETIMEDOUT) return fg__fail(err, errlen, w->rc, "not every connection released");
    if (w->rc < 0) return conn_fail(err, errlen, w->rc, w->bad_conn, "ADD then WAIT");
    t1 = FG__MAX(t1, w->done_ns);
  }
  *seconds = (double)(t1 - t0) / 1e9;
  *release = (double)(t1 - r->last_arrival_ns) / 1e9;
  return 0;
}

void bench_rdzv_close(bench_rdzv *r) {
  if (!r) return;
  for (int i = 0; i < r->n; i++)
    if (r->conns[i].fd >= 0) close(r->conns[i].fd);
  for (int t = 1; t < r->nworkers; t++)
    if (r->workers[t].epfd > 0) close(r->workers[t].epfd);
  free(r->workers);
  if (r->epfd >= 0) close(r->epfd);
  fg__buf_free(&r->hello);
  fg__buf_free(&r->add);
  fg__buf_free(&r->wait);
  fg__buf_free(&r->set_wait);
  free(r->conns);
  free(r);
}
