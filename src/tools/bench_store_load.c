/* bench_store_load.c - the lean throughput load of `fgbench store`: K connections driven by
 * one or a few epoll threads, speaking the wire protocol through proto.h's encoders.
 *
 * Each connection keeps one request in flight and sends what torch's get/set and libfg's
 * fg_store_set/fg_store_get send, in the same order: SET, WAIT, then GET once the WAIT is
 * answered. SET has no reply, so SET and WAIT leave in one write (the byte stream is the one
 * the library client sends in two). A pair then costs the driver two sends, two receives and
 * a share of one epoll_wait, where the threaded library client spends about seven syscalls
 * and two thread wake-ups: on a 2-core machine the server, not the load, sets the pace. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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

#define HELLO_TIMEOUT_MS 10000
#define EVENTS 256
#define MAX_VALUE 4096

typedef struct lconn {
  int fd;
  int want_get;  /* 0: the WAIT's answer is due; 1: the GET's */
  size_t got, due;
  fg_buf set_wait, get;
  uint8_t in[8 + MAX_VALUE];
} lconn;

typedef struct lthread {
  pthread_t tid;
  bench_load *load;
  int epfd;
  lconn *conns;
  int n;
  uint64_t pairs;
  int rc;
} lthread;

struct bench_load {
  lconn *conns;
  int n;
  lthread *threads;
  int nthreads, started;
  size_t value_size;
  atomic_int go, stop;
};

static int send_all(lconn *c, const fg_buf *b) {
  ssize_t n = send(c->fd, b->data, b->len, MSG_NOSIGNAL);
  if (n == (ssize_t)b->len) return 0;
  return n < 0 ? -errno : -EAGAIN; /* one request in flight never fills a socket buffer */
}

static int start_pair(lconn *c) {
  c->want_get = 0;
  c->got = 0;
  c->due = 1;
  return send_all(c, &c->set_wait);
}

/* One readable event: 0 while the reply is incomplete or the pair goes on, 1 when a pair
 * completed (and the next one was sent), < 0 on failure. */
static int step(lconn *c, size_t value_size) {
  ssize_t n = recv(c->fd, c->in + c->got, c->due - c->got, 0);
  if (n == 0) return FG_ECLOSED;
  if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -errno;
  c->got += (size_t)n;
  if (c->got < c->due) return 0;
  if (!c->want_get) {
    if (c->in[0] != FG_WAIT_STOP) return FG_EPROTO;
    c->want_get = 1;
    c->got = 0;
    c->due = 8 + value_size;
    return send_all(c, &c->get);
  }
  if (fg_load_u64(c->in) != value_size) return FG_EPROTO;
  int rc = start_pair(c);
  return rc < 0 ? rc : 1;
}

static void *thread_main(void *arg) {
  lthread *t = arg;
  bench_load *l = t->load;
  struct epoll_event ev[EVENTS];
  while (!atomic_load(&l->go)) sched_yield(); /* connecting is not timed */
  for (int i = 0; i < t->n && t->rc == 0; i++) t->rc = start_pair(&t->conns[i]);
  while (t->rc == 0 && !atomic_load_explicit(&l->stop, memory_order_relaxed)) {
    int n = epoll_wait(t->epfd, ev, EVENTS, 100);
    for (int e = 0; e < n && t->rc == 0; e++) {
      int rc = step(ev[e].data.ptr, l->value_size);
      if (rc < 0) t->rc = rc;
      if (rc == 1 && !atomic_load_explicit(&l->stop, memory_order_relaxed)) t->pairs++;
    }
  }
  return NULL;
}

static int wait_readable(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int n = poll(&p, 1, HELLO_TIMEOUT_MS);
  return n == 1 ? 0 : n == 0 ? -ETIMEDOUT : -errno;
}

/* A blocking connect and, in V2, the hello libfg's client sends (VALIDATE, PING, the echo). */
static int dial(lconn *c, const struct sockaddr_storage *ss, socklen_t len, enum fg_dialect d) {
  int one = 1;
  c->fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) return -errno;
  if (connect(c->fd, (const struct sockaddr *)ss, len) < 0) return -errno;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (d == FG_DIALECT_V2) {
    fg_buf hello;
    fg__buf_init(&hello);
    fg__proto_put_validate(&hello);
    fg__proto_put_op(&hello, FG_DIALECT_V2, FG_OP_PING);
    fg__buf_put_u32(&hello, (uint32_t)getpid());
    int rc = send_all(c, &hello);
    fg__buf_free(&hello);
    uint8_t echo[4];
    if (rc == 0) rc = wait_readable(c->fd);
    if (rc == 0 && recv(c->fd, echo, 4, MSG_WAITALL) != 4) rc = FG_EPROTO;
    if (rc < 0) return rc;
  }
  return fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0 ? -errno : 0;
}

/* Connection i's two requests under its own key. */
static void build(lconn *c, int i, enum fg_dialect d, size_t value_size) {
  static const uint8_t value[MAX_VALUE] = {0};
  char key[64];
  snprintf(key, sizeof key, "/fgbench/throughput/%d/%d", (int)getpid(), i);
  fg__buf_init(&c->set_wait);
  fg__buf_init(&c->get);
  fg__proto_put_op(&c->set_wait, d, FG_OP_SET);
  fg__buf_put_bytes(&c->set_wait, key, strlen(key));
  fg__buf_put_bytes(&c->set_wait, value, value_size);
  fg__proto_put_op(&c->set_wait, d, FG_OP_WAIT);
  fg__buf_put_u64(&c->set_wait, 1);
  fg__buf_put_bytes(&c->set_wait, key, strlen(key));
  fg__proto_put_op(&c->get, d, FG_OP_GET);
  fg__buf_put_bytes(&c->get, key, strlen(key));
}

static int open_threads(bench_load *l) {
  int per = (l->n + l->nthreads - 1) / l->nthreads;
  for (int t = 0; t < l->nthreads; t++) {
    lthread *th = &l->threads[t];
    *th = (lthread){.load = l, .conns = l->conns + t * per, .n = FG__MIN(per, l->n - t * per)};
    th->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (th->epfd < 0) return -errno;
    for (int i = 0; i < th->n; i++) {
      struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &th->conns[i]};
      if (epoll_ctl(th->epfd, EPOLL_CTL_ADD, th->conns[i].fd, &ev) < 0) return -errno;
    }
    if (pthread_create(&th->tid, NULL, thread_main, th) != 0) return -EAGAIN;
    l->started++;
  }
  return 0;
}

int bench_load_open(bench_load **out, const bench_server *s, int conns, int threads,
                    int value_size, char *err, size_t errlen) {
  bench_load *l = calloc(1, sizeof *l);
  threads = FG__MAX(1, FG__MIN(threads, conns));
  if (!l || !(l->conns = calloc((size_t)conns, sizeof *l->conns)) ||
      !(l->threads = calloc((size_t)threads, sizeof *l->threads))) {
    if (l) free(l->conns);
    free(l);
    return fg__fail(err, errlen, -ENOMEM, "out of memory");
  }
  l->n = conns;
  l->nthreads = threads;
  l->value_size = (size_t)FG__MIN(value_size, MAX_VALUE);
  enum fg_dialect d = s->dialect == FG_STORE_DIALECT_V2 ? FG_DIALECT_V2 : FG_DIALECT_LEGACY;
  struct sockaddr_storage ss;
  socklen_t len;
  int rc = bench_server_sockaddr(s, &ss, &len);
  for (int i = 0; i < conns; i++) l->conns[i].fd = -1;
  for (int i = 0; rc == 0 && i < conns; i++) {
    build(&l->conns[i], i, d, l->value_size);
    rc = dial(&l->conns[i], &ss, len, d);
    if (rc < 0) fg__fail(err, errlen, rc, "%s: connection %d: %s", s->label, i, fg_strerror(rc));
  }
  if (rc == 0 && (rc = open_threads(l)) < 0)
    fg__fail(err, errlen, rc, "cannot start the load threads: %s", fg_strerror(rc));
  if (rc < 0) {
    bench_load_close(l);
    return rc;
  }
  *out = l;
  return 0;
}

int bench_load_run(bench_load *l, double seconds, uint64_t *pairs, char *err, size_t errlen) {
  struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  atomic_store(&l->go, 1);
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
  atomic_store(&l->stop, 1);
  int rc = 0;
  *pairs = 0;
  for (int t = 0; t < l->started; t++) {
    pthread_join(l->threads[t].tid, NULL);
    *pairs += l->threads[t].pairs;
    if (l->threads[t].rc < 0 && rc == 0)
      rc = fg__fail(err, errlen, l->threads[t].rc, "load thread %d: %s", t,
                   fg_strerror(l->threads[t].rc));
  }
  l->started = 0;
  return rc;
}

void bench_load_close(bench_load *l) {
  if (!l) return;
  atomic_store(&l->go, 1);
  atomic_store(&l->stop, 1);
  for (int t = 0; t < l->started; t++) pthread_join(l->threads[t].tid, NULL);
  for (int t = 0; t < l->nthreads; t++)
    if (l->threads[t].epfd > 0) close(l->threads[t].epfd);
  for (int i = 0; i < l->n; i++) {
    if (l->conns[i].fd >= 0) close(l->conns[i].fd);
    fg__buf_free(&l->conns[i].set_wait);
    fg__buf_free(&l->conns[i].get);
  }
  free(l->threads);
  free(l->conns);
  free(l);
}
