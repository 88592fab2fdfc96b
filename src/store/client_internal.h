/* client_internal.h - what the store client's files share: the connection
 * (one socket, its mutex, its dialect) and the handle (a key prefix, a timeout
 * and a message on top of a connection).
 *
 * client_io.c owns the socket: connecting with back-off, the handshake that
 * settles the dialect, and exact reads and writes against a deadline. Any I/O
 * failure there closes the socket, because a request that was cut off leaves
 * the stream out of step; the next call connects again. client.c builds the
 * requests and reads the replies; barrier.c is written on the public calls. */
#ifndef FG_STORE_CLIENT_INTERNAL_H
#define FG_STORE_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "fg/store.h"
#include "store/proto.h"

/* Replies longer than this are taken for a broken stream, not allocated. */
#define FG_STORE_REPLY_MAX ((uint64_t)1 << 30)

typedef struct fg_conn {
  pthread_mutex_t mu;
  int fd; /* -1 while disconnected */
  enum fg_dialect dialect; /* FG_DIALECT_UNKNOWN until the first connection settles it */
  int connect_timeout_ms;
  int port;
  char host[256];
  char addr[300]; /* "host:port", for messages */
  char why[200];  /* detail of the last I/O failure, "" when fg_strerror says enough */
  char *token;    /* $FG_STORE_TOKEN when the connection was made, or NULL */
  int64_t cap;    /* the current call's hard deadline (fg__store_cap_steps), 0: none */
  fg_buf out;     /* the request being built */
  uint8_t in[4096]; /* received bytes not consumed yet */
  size_t in_pos, in_len;
} fg_conn;

struct fg_store {
  fg_conn *conn;
  int owns_conn; /* the base handle; scopes borrow its connection */
  int timeout_ms;
  char *prefix; /* the whole wire prefix: "/" for the base, "/<p>/" for scope p, ... */
  size_t prefix_len;
  char err[512];
};

/* client_io.c. Every call expects c->mu held. Deadlines are fg__now_ms() values. */
int fg__conn_open(fg_conn *c);
void fg__conn_drop(fg_conn *c);
int fg__conn_send(fg_conn *c, int64_t deadline);
/* 0 once a byte can be read, -ETIMEDOUT at the deadline (the connection stays open). */
int fg__conn_readable(fg_conn *c, int64_t deadline);
int fg__conn_read(fg_conn *c, void *p, size_t n, int64_t deadline);
int fg__conn_read_u8(fg_conn *c, uint8_t *v, int64_t deadline);
int fg__conn_read_i64(fg_conn *c, int64_t *v, int64_t deadline);
/* A bytes field into a fresh NUL-terminated buffer, grown as the bytes arrive so that a
 * bogus length costs no more memory than the bytes actually sent. */
int fg__conn_read_bytes(fg_conn *c, void **value, size_t *len, int64_t deadline);
/* Sets c->why and returns code, for "return fg__conn_fail(...)". */
int fg__conn_fail(fg_conn *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* t, or the current call's hard deadline if that comes first. */
static inline int64_t fg_conn_capped(const fg_conn *c, int64_t t) {
  return c->cap > 0 && t > c->cap ? c->cap : t;
}

/* client.c, for barrier.c: until reset with 0, every call this thread makes ends by `until`
 * (an fg__now_ms() value), reconnects, handshakes and cancelled waits included. */
void fg__store_cap_steps(int64_t until);
/* Writes the handle's message (taking the connection's lock). */
int fg__store_failf(fg_store *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int fg__store_timeout(const fg_store *s, int timeout_ms);
/* present[i] = whether keys[i] exists, for every key, in one round trip. */
int fg__store_check_each(fg_store *s, const char *const *keys, size_t n, uint8_t *present);

#endif
