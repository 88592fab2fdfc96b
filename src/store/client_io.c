/* client_io.c - the store client's socket: connecting with back-off, settling
 * the dialect, and exact reads and writes against a deadline.
 *
 * The socket is blocking, but every send and recv is MSG_DONTWAIT behind a
 * poll() on the time left, so no call can outlive its deadline. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "store/client_internal.h"

/* No single connect attempt waits longer than this, so an address that drops SYNs does not
 * eat the time the next address (IPv4 after IPv6) or a retry needs. */
#define ATTEMPT_MAX_MS 3000
/* The handshake gets at least this long even when the connect deadline is nearly spent. */
#define HELLO_MIN_MS 2000
#define BACKOFF_FIRST_MS 10
#define BACKOFF_MAX_MS 1000

int fg__conn_fail(fg_conn *c, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->why, sizeof c->why, fmt, ap);
  va_end(ap);
  return code;
}

void fg__conn_drop(fg_conn *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->in_pos = c->in_len = 0;
}

/* The stream is out of step after a failed read or write: close it, keep the reason. */
static int broken(fg_conn *c, int code, const char *what) {
  if (!c->why[0]) {
    if (code == FG_ECLOSED)
      fg__conn_fail(c, code, "the server closed the connection while %s", what);
    else
      fg__conn_fail(c, code, "%s while %s", fg_strerror(code), what);
  }
  fg__conn_drop(c);
  return code;
}

/* Even a deadline already past gets one look, so a zero timeout still sees a ready reply. */
static int wait_fd(int fd, short events, int64_t deadline) {
  for (;;) {
    int64_t left = FG__MAX(deadline - fg__now_ms(), 0);
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
    if (n > 0) return 0; /* POLLERR and POLLHUP too: the next send/recv says what happened */
    if (n == 0) return -ETIMEDOUT;
    if (errno != EINTR) return -errno;
  }
}

static int set_blocking_nodelay(int fd) {
  int flags = fcntl(fd, F_GETFL);
  int one = 1;
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) return -errno;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) return -errno;
  return 0;
}

static int connect_addr(const struct addrinfo *ai, int64_t deadline) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
  if (fd < 0) return -errno;
  int rc = 0;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
    rc = errno == EINPROGRESS ? wait_fd(fd, POLLOUT, deadline) : -errno;
    if (rc == 0) {
      int soerr = 0;
      socklen_t len = sizeof soerr;
      rc = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 ? -errno : -soerr;
    }
  }
  if (rc == 0) rc = set_blocking_nodelay(fd);
  if (rc < 0) {
    close(fd);
    return rc;
  }
  return fd;
}

static int64_t attempt_deadline(const fg_conn *c, int64_t deadline) {
  int64_t now = fg__now_ms();
  return fg_conn_capped(c, FG__MIN(FG__MAX(deadline, now + 100), now + ATTEMPT_MAX_MS));
}

static int is_hangup(int rc) { return rc == FG_ECLOSED || rc == -ECONNRESET || rc == -EPIPE; }

/* The store token (proto.h) opens every connection when $FG_STORE_TOKEN is set. */
static int present_token(fg_conn *c, int64_t deadline) {
  fg__buf_reset(&c->out);
  fg__proto_put_token(&c->out, c->token, strlen(c->token));
  uint8_t answer = 0;
  deadline = fg_conn_capped(c, FG__MAX(deadline, fg__now_ms() + HELLO_MIN_MS));
  int rc = fg__conn_send(c, deadline);
  if (rc == 0) rc = fg__conn_read_u8(c, &answer, deadline);
  fg__buf_reset(&c->out);
  if (is_hangup(rc) || (rc == 0 && answer == (uint8_t)FG_TOKEN_REFUSED[0])) {
    fg__conn_drop(c);
    return fg__conn_fail(c, -EACCES, "the server refused the store token (a wrong "
                                    "FG_STORE_TOKEN, or a server that takes none, as torch's)");
  }
  if (rc == 0 && answer != FG_TOKEN_ACCEPTED) {
    fg__conn_fail(c, FG_EPROTO, "unexpected answer 0x%02x to the store token", answer);
    return broken(c, FG_EPROTO, "");
  }
  return rc;
}

/* One pass over the host's addresses. *retry says whether trying again later can help. */
static int dial(fg_conn *c, int64_t deadline, int *retry) {
  char port[16];
  snprintf(port, sizeof port, "%d", c->port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  struct addrinfo *res;
  int gai = getaddrinfo(c->host, port, &hints, &res);
  if (gai != 0) {
    *retry = gai == EAI_AGAIN;
    int code = gai == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
    return fg__conn_fail(c, code, "cannot resolve '%s': %s", c->host, gai_strerror(gai));
  }
  int rc = -EHOSTUNREACH;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    rc = connect_addr(ai, attempt_deadline(c, deadline));
    if (rc >= 0) break;
  }
  freeaddrinfo(res);
  if (rc >= 0) {
    c->fd = rc;
    c->in_pos = c->in_len = 0;
    return c->token ? present_token(c, deadline) : 0;
  }
  *retry = rc == -ECONNREFUSED || rc == -ETIMEDOUT || rc == -ENETUNREACH ||
           rc == -EHOSTUNREACH || rc == -ECONNRESET || rc == -EAGAIN;
  return fg__conn_fail(c, rc, "%s", fg_strerror(rc));
}


/* VALIDATE then PING, as torch >= 2.5 opens a connection. */
static int hello_v2(fg_conn *c, int64_t deadline) {
  /* The nonce's third byte becomes the top byte of the key length a torch 1.13 server reads
   * when it takes this hello for a SET; with its high bit set that length is >= 2^63, which
   * 1.13 rejects before allocating anything, so it hangs up at once instead of trying to
   * allocate (or, on a big machine, read) tens of gigabytes. */
  uint32_t nonce = ((uint32_t)getpid() & 0xffff) | 0x00800000u;
  fg__buf_reset(&c->out);
  fg__proto_put_validate(&c->out);
  fg__proto_put_op(&c->out, FG_DIALECT_V2, FG_OP_PING);
  fg__buf_put_u32(&c->out, nonce);
  uint8_t echo[4];
  int rc = fg__conn_send(c, deadline);
  if (rc == 0) rc = fg__conn_read(c, echo, sizeof echo, deadline);
  fg__buf_reset(&c->out);
  if (rc < 0) return rc;
  if (!memcmp(echo, FG_TOKEN_REFUSED, 4)) {
    fg__conn_drop(c);
    return fg__conn_fail(c, -EACCES, "the server requires a store token (set FG_STORE_TOKEN)");
  }
  if (fg_load_u32(echo) != nonce) {
    fg__conn_fail(c, FG_EPROTO, "PING echoed 0x%08x, not the nonce 0x%08x", fg_load_u32(echo),
                 nonce);
    return broken(c, FG_EPROTO, "");
  }
  return 0;
}

/* On a fresh socket: the handshake of the dialect, and the dialect itself the first time. */
static int settle_dialect(fg_conn *c, int64_t deadline, int *retry) {
  if (c->dialect == FG_DIALECT_LEGACY) return 0; /* 1.13 has no handshake */
  int rc = hello_v2(c, fg_conn_capped(c, FG__MAX(deadline, fg__now_ms() + HELLO_MIN_MS)));
  if (rc == 0) {
    c->dialect = FG_DIALECT_V2;
    return 0;
  }
  if (!is_hangup(rc)) return rc;
  if (c->dialect == FG_DIALECT_V2)
    return fg__conn_fail(c, rc, "the server hung up on the torch 2.x handshake "
                               "(a torch 1.13 server? use the legacy or auto dialect)");
  /* AUTO: a torch 1.13 server reads the hello as a SET with an impossible key length and
   * drops the connection (wire spec §4.6). Speak 1.13 on a new one. */
  c->why[0] = '\0';
  rc = dial(c, deadline, retry);
  if (rc == 0) c->dialect = FG_DIALECT_LEGACY;
  return rc;
}

static void backoff(int *delay_ms, unsigned *seed, int64_t deadline) {
  int half = *delay_ms / 2;
  int64_t sleep_ms = half + rand_r(seed) % (half + 1); /* jitter: ranks don't retry in step */
  sleep_ms = FG__MIN(sleep_ms, deadline - fg__now_ms());
  if (sleep_ms > 0) {
    struct timespec ts = {sleep_ms / 1000, (long)(sleep_ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
  }
  *delay_ms = FG__MIN(*delay_ms * 2, BACKOFF_MAX_MS);
}

int fg__conn_open(fg_conn *c) {
  int64_t start = fg__now_ms();
  int64_t deadline = fg_conn_capped(c, start + c->connect_timeout_ms);
  unsigned seed = (unsigned)fg__now_ns() ^ (unsigned)getpid();
  int delay = BACKOFF_FIRST_MS;
  fg__conn_drop(c);
  if (deadline <= start) return fg__conn_fail(c, -ETIMEDOUT, "no time left to connect again");
  for (;;) {
    int retry = 0;
    c->why[0] = '\0';
    int rc = dial(c, deadline, &retry);
    if (rc == 0) rc = settle_dialect(c, deadline, &retry);
    if (rc == 0) return 0;
    fg__conn_drop(c);
    if (!retry) return rc;
    if (fg__now_ms() >= deadline) {
      char why[sizeof c->why];
      snprintf(why, sizeof why, "%s", c->why);
      return fg__conn_fail(c, rc, "%s (gave up after %lld ms)", why,
                          (long long)(fg__now_ms() - start));
    }
    backoff(&delay, &seed, deadline);
  }
}

int fg__conn_send(fg_conn *c, int64_t deadline) {
  if (c->out.failed) return fg__conn_fail(c, -ENOMEM, "out of memory building the request");
  size_t off = 0;
  while (off < c->out.len) {
    ssize_t n = send(c->fd, c->out.data + off, c->out.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      off += (size_t)n;
      continue;
    }
    int rc = -errno;
    if (rc == -EINTR) continue;
    if (rc == -EAGAIN || rc == -EWOULDBLOCK) rc = wait_fd(c->fd, POLLOUT, deadline);
    if (rc < 0) return broken(c, rc, "sending the request");
  }
  return 0;
}

int fg__conn_readable(fg_conn *c, int64_t deadline) {
  return c->in_pos < c->in_len ? 0 : wait_fd(c->fd, POLLIN, deadline);
}

/* Some bytes (at most cap) into p, once the deadline allows. */
static ssize_t recv_some(fg_conn *c, uint8_t *p, size_t cap, int64_t deadline) {
  for (;;) {
    int rc = wait_fd(c->fd, POLLIN, deadline);
    if (rc < 0) return broken(c, rc, "waiting for the reply");
    ssize_t n = recv(c->fd, p, cap, MSG_DONTWAIT);
    if (n > 0) return n;
    if (n == 0) return broken(c, FG_ECLOSED, "reading the reply");
    if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
      return broken(c, -errno, "reading the reply");
  }
}

int fg__conn_read(fg_conn *c, void *dst, size_t n, int64_t deadline) {
  uint8_t *p = dst;
  while (n > 0) {
    if (c->in_pos == c->in_len) {
      c->in_pos = c->in_len = 0;
      /* Big reads go straight to the caller; small ones through the buffer, which usually
       * picks up the rest of the reply in the same recv. */
      uint8_t *to = n >= sizeof c->in ? p : c->in;
      ssize_t got = recv_some(c, to, n >= sizeof c->in ? n : sizeof c->in, deadline);
      if (got < 0) return (int)got;
      if (to == p) {
        p += got;
        n -= (size_t)got;
        continue;
      }
      c->in_len = (size_t)got;
    }
    size_t take = FG__MIN(n, c->in_len - c->in_pos);
    memcpy(p, c->in + c->in_pos, take);
    c->in_pos += take;
    p += take;
    n -= take;
  }
  return 0;
}

int fg__conn_read_u8(fg_conn *c, uint8_t *v, int64_t deadline) {
  return fg__conn_read(c, v, 1, deadline);
}

int fg__conn_read_i64(fg_conn *c, int64_t *v, int64_t deadline) {
  uint8_t b[8];
  int rc = fg__conn_read(c, b, sizeof b, deadline);
  if (rc == 0) *v = (int64_t)fg_load_u64(b);
  return rc;
}

int fg__conn_read_bytes(fg_conn *c, void **value, size_t *len, int64_t deadline) {
  int64_t n = 0;
  int rc = fg__conn_read_i64(c, &n, deadline);
  if (rc < 0) return rc;
  uint64_t total = (uint64_t)n;
  if (total > FG_STORE_REPLY_MAX) {
    fg__conn_fail(c, FG_EPROTO, "the reply claims %llu bytes, over the %llu MiB cap",
                 (unsigned long long)total, (unsigned long long)(FG_STORE_REPLY_MAX >> 20));
    return broken(c, FG_EPROTO, "");
  }
  size_t have = 0, cap = (size_t)FG__MIN(total, 64 * 1024);
  uint8_t *buf = malloc(cap + 1);
  while (buf && have < total) {
    if (have == cap) {
      cap = (size_t)FG__MIN(total, (uint64_t)cap * 2);
      uint8_t *grown = realloc(buf, cap + 1);
      if (!grown) break;
      buf = grown;
    }
    rc = fg__conn_read(c, buf + have, cap - have, deadline);
    if (rc < 0) {
      free(buf);
      return rc;
    }
    have = cap;
  }
  if (!buf || have < total) {
    free(buf);
    return broken(c, -ENOMEM, "allocating the reply");
  }
  buf[total] = '\0';
  *value = buf;
  *len = (size_t)total;
  return 0;
}
