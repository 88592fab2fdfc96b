/* client.c - the store client's calls: handles, scopes and every operation.
 *
 * Each call locks the connection, connects again if an earlier failure closed
 * it, writes one request (a few for the 1.13 emulations), reads the reply and,
 * on failure, writes a message naming the operation, the wire key and the
 * server into the handle. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "store/client_internal.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 30000
#define DEFAULT_TIMEOUT_MS 300000
/* How long the server gets to answer CANCEL_WAIT after a WAIT timed out. */
#define CANCEL_GRACE_MS 5000

/* fg_store_connect has no handle to keep its message in when it fails. */
static __thread char connect_err[512];
/* A deadline no step of this thread's calls may pass (a barrier's), 0: none. */
static __thread int64_t step_cap;

void fg__store_cap_steps(int64_t until) { step_cap = until; }

/* One call in progress: the handle, what it does to which key, and its I/O deadline. */
typedef struct call {
  fg_store *s;
  fg_conn *c;
  enum fg_op op;
  const char *key; /* the first key, for the message */
  size_t nkeys;
  int64_t deadline;
} call;

void fg_store_options_init(fg_store_options *opts) {
  opts->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
  opts->timeout_ms = DEFAULT_TIMEOUT_MS;
  opts->dialect = FG_STORE_DIALECT_AUTO;
}

int fg__store_timeout(const fg_store *s, int timeout_ms) {
  return timeout_ms < 0 ? s->timeout_ms : timeout_ms;
}

static void describe(call *k, int rc) {
  fg_store *s = k->s;
  const char *why = k->c->why[0] ? k->c->why : fg_strerror(rc);
  char more[48] = "";
  if (k->nkeys > 1) snprintf(more, sizeof more, " (and %zu more)", k->nkeys - 1);
  if (k->key)
    snprintf(s->err, sizeof s->err, "%s '%s%s'%s on %s: %s", fg__proto_op_name(k->op), s->prefix,
             k->key, more, k->c->addr, why);
  else
    snprintf(s->err, sizeof s->err, "%s on %s: %s", fg__proto_op_name(k->op), k->c->addr, why);
}

static int invalid(fg_store *s, enum fg_op op) {
  if (s) snprintf(s->err, sizeof s->err, "%s: invalid argument", fg__proto_op_name(op));
  return -EINVAL;
}

/* Locks the connection and connects it again if an earlier failure closed it. */
static int begin(call *k, fg_store *s, enum fg_op op, const char *key, size_t nkeys) {
  *k = (call){.s = s, .c = s->conn, .op = op, .key = key, .nkeys = nkeys};
  pthread_mutex_lock(&k->c->mu);
  k->c->why[0] = '\0';
  k->c->cap = step_cap;
  fg__buf_reset(&k->c->out);
  k->deadline = fg_conn_capped(k->c, fg__now_ms() + s->timeout_ms);
  return k->c->fd >= 0 ? 0 : fg__conn_open(k->c);
}

static int end(call *k, int rc) {
  if (rc < 0) describe(k, rc);
  pthread_mutex_unlock(&k->c->mu);
  return rc;
}

static void put_op(call *k, enum fg_op op) { fg__proto_put_op(&k->c->out, k->c->dialect, op); }

static void put_key(call *k, const char *key) {
  size_t n = strlen(key);
  fg__buf_put_u64(&k->c->out, k->s->prefix_len + n);
  fg__buf_put(&k->c->out, k->s->prefix, k->s->prefix_len);
  fg__buf_put(&k->c->out, key, n);
}

static void put_keys(call *k, const char *const *keys, size_t n) {
  fg__buf_put_u64(&k->c->out, n);
  for (size_t i = 0; i < n; i++) put_key(k, keys[i]);
}

static int send_request(call *k) { return fg__conn_send(k->c, k->deadline); }

static int protocol_error(call *k, const char *what, unsigned byte) {
  fg__conn_fail(k->c, FG_EPROTO, "unexpected reply 0x%02x to %s", byte, what);
  fg__conn_drop(k->c);
  return FG_EPROTO;
}

/* After a WAIT timed out: make sure its answer can never be read as another reply. */
static int cancel_wait(call *k, int timeout_ms) {
  fg_conn *c = k->c;
  if (c->dialect == FG_DIALECT_LEGACY) {
    /* 1.13 has no CANCEL_WAIT: it would answer the abandoned WAIT later with a stray 00
     * that throws the stream out of step (wire spec §2.3). Start a fresh connection; if
     * that fails, the next call tries again. */
    fg__conn_open(c);
    return fg__conn_fail(c, -ETIMEDOUT, "timed out after %d ms", timeout_ms);
  }
  int64_t grace = fg_conn_capped(c, fg__now_ms() + CANCEL_GRACE_MS);
  fg__buf_reset(&c->out);
  put_op(k, FG_OP_CANCEL_WAIT);
  int rc = fg__conn_send(c, grace);
  int stopped = 0;
  for (uint8_t r = 0; rc == 0 && r != FG_WAIT_CANCELED;) {
    rc = fg__conn_read_u8(c, &r, grace);
    if (rc == 0 && r == FG_WAIT_STOP && !stopped)
      stopped = 1; /* the keys came just before the cancel (wire spec §4.4) */
    else if (rc == 0 && r != FG_WAIT_CANCELED)
      return protocol_error(k, "CANCEL_WAIT", r);
  }
  if (rc < 0) return rc;
  return stopped ? 0 : fg__conn_fail(c, -ETIMEDOUT, "timed out after %d ms", timeout_ms);
}

static int wait_keys(call *k, const char *const *keys, size_t n, int timeout_ms) {
  int64_t until = fg_conn_capped(k->c, fg__now_ms() + timeout_ms);
  fg__buf_reset(&k->c->out);
  put_op(k, FG_OP_WAIT);
  put_keys(k, keys, n);
  int rc = send_request(k);
  if (rc == 0) {
    rc = fg__conn_readable(k->c, until);
    if (rc == -ETIMEDOUT) return cancel_wait(k, timeout_ms);
  }
  uint8_t r;
  if (rc == 0) rc = fg__conn_read_u8(k->c, &r, k->deadline);
  if (rc == 0 && r != FG_WAIT_STOP) return protocol_error(k, "WAIT", r);
  return rc;
}

static int read_value(call *k, void **value, size_t *len) {
  void *v;
  size_t n;
  int rc = fg__conn_read_bytes(k->c, &v, &n, k->deadline);
  if (rc < 0) return rc;
  if (value) {
    *value = v;
  } else {
    free(v);
  }
  if (len) *len = n;
  return 0;
}

static int read_i64(call *k, int64_t *v) { return fg__conn_read_i64(k->c, v, k->deadline); }

/* ---- handles ----------------------------------------------------------------------------- */

/* Takes prefix (malloc'd; NULL means out of memory). */
static fg_store *new_handle(fg_conn *c, int timeout_ms, char *prefix) {
  fg_store *s = prefix ? calloc(1, sizeof *s) : NULL;
  if (!s) {
    free(prefix);
    return NULL;
  }
  s->prefix = prefix;
  s->conn = c;
  s->timeout_ms = timeout_ms;
  s->prefix_len = strlen(prefix);
  return s;
}

static fg_conn *new_conn(const char *host, int port, const fg_store_options *o) {
  fg_conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  pthread_mutex_init(&c->mu, NULL);
  fg__buf_init(&c->out);
  c->fd = -1;
  c->port = port;
  c->dialect = o->dialect == FG_STORE_DIALECT_V2       ? FG_DIALECT_V2
               : o->dialect == FG_STORE_DIALECT_LEGACY ? FG_DIALECT_LEGACY
                                                       : FG_DIALECT_UNKNOWN;
  c->connect_timeout_ms = o->connect_timeout_ms;
  const char *token = getenv("FG_STORE_TOKEN");
  if (token && *token && strlen(token) <= FG_TOKEN_MAX && !(c->token = strdup(token))) {
    free(c);
    return NULL;
  }
  snprintf(c->host, sizeof c->host, "%s", host);
  snprintf(c->addr, sizeof c->addr, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
  return c;
}

static void free_conn(fg_conn *c) {
  fg__conn_drop(c);
  if (c->token) memset(c->token, 0, strlen(c->token));
  free(c->token);
  fg__buf_free(&c->out);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

int fg_store_connect(fg_store **out, const char *host, int port, const fg_store_options *opts) {
  fg_store_options defaults;
  if (!opts) {
    fg_store_options_init(&defaults);
    opts = &defaults;
  }
  if (!out || !host || !*host || strlen(host) >= sizeof ((fg_conn *)0)->host || port <= 0 ||
      port > 65535 || opts->connect_timeout_ms < 0 || opts->timeout_ms < 0)
    return fg__fail(connect_err, sizeof connect_err, -EINVAL, "connect: invalid argument");
  *out = NULL;
  const char *token = getenv("FG_STORE_TOKEN");
  if (token && strlen(token) > FG_TOKEN_MAX)
    return fg__fail(connect_err, sizeof connect_err, -EINVAL,
                   "connect: FG_STORE_TOKEN is %zu bytes; a store token has at most %d",
                   strlen(token), FG_TOKEN_MAX);
  fg_conn *c = new_conn(host, port, opts);
  fg_store *s = c ? new_handle(c, opts->timeout_ms, strdup("/")) : NULL;
  if (!s) {
    if (c) free_conn(c);
    return fg__fail(connect_err, sizeof connect_err, -ENOMEM, "connect: out of memory");
  }
  s->conn = c;
  s->owns_conn = 1;
  int rc = fg__conn_open(c);
  if (rc < 0) {
    fg__fail(connect_err, sizeof connect_err, rc, "connect to %s: %s", c->addr,
            c->why[0] ? c->why : fg_strerror(rc));
    fg_store_close(s);
    return rc;
  }
  *out = s;
  return 0;
}

int fg_store_scope(fg_store *base, const char *prefix, fg_store **out) {
  if (!base || !prefix || !out) {
    if (base) snprintf(base->err, sizeof base->err, "scope: invalid argument");
    return -EINVAL;
  }
  char *full = fg__asprintf("%s%s/", base->prefix, prefix);
  fg_store *s = new_handle(base->conn, base->timeout_ms, full);
  if (!s) return -ENOMEM;
  *out = s;
  return 0;
}

void fg_store_close(fg_store *s) {
  if (!s) return;
  if (s->owns_conn) free_conn(s->conn);
  free(s->prefix);
  free(s);
}

const char *fg_store_errmsg(const fg_store *s) { return s ? s->err : connect_err; }

fg_store_dialect fg_store_get_dialect(const fg_store *s) {
  switch (s ? s->conn->dialect : FG_DIALECT_UNKNOWN) {
    case FG_DIALECT_V2: return FG_STORE_DIALECT_V2;
    case FG_DIALECT_LEGACY: return FG_STORE_DIALECT_LEGACY;
    default: return FG_STORE_DIALECT_AUTO;
  }
}

void fg_store_set_timeout(fg_store *s, int timeout_ms) {
  if (s && timeout_ms >= 0) s->timeout_ms = timeout_ms;
}

int fg__store_failf(fg_store *s, int code, const char *fmt, ...) {
  pthread_mutex_lock(&s->conn->mu);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->err, sizeof s->err, fmt, ap);
  va_end(ap);
  pthread_mutex_unlock(&s->conn->mu);
  return code;
}

/* ---- operations -------------------------------------------------------------------------- */

int fg_store_set(fg_store *s, const char *key, const void *value, size_t len) {
  if (!s || !key || (!value && len)) return invalid(s, FG_OP_SET);
  call k;
  int rc = begin(&k, s, FG_OP_SET, key, 1);
  if (rc == 0) {
    put_op(&k, FG_OP_SET);
    put_key(&k, key);
    fg__buf_put_bytes(&k.c->out, value, len);
    rc = send_request(&k);
  }
  return end(&k, rc);
}

/* GET of a key that exists (the 1.13 server hangs up on a missing one). */
static int get_existing(call *k, const char *key, void **value, size_t *len) {
  fg__buf_reset(&k->c->out);
  put_op(k, FG_OP_GET);
  put_key(k, key);
  int rc = send_request(k);
  return rc < 0 ? rc : read_value(k, value, len);
}

int fg_store_get(fg_store *s, const char *key, void **value, size_t *len) {
  if (!s || !key || !value) return invalid(s, FG_OP_GET);
  call k;
  int rc = begin(&k, s, FG_OP_GET, key, 1);
  if (rc == 0) rc = wait_keys(&k, &key, 1, s->timeout_ms);
  if (rc == 0) rc = get_existing(&k, key, value, len);
  return end(&k, rc);
}

/* The call's op on its key (ADD with a delta, DELETE_KEY without), answered with a number. */
static int keyed_i64(call *k, const int64_t *delta, int64_t *reply) {
  put_op(k, k->op);
  put_key(k, k->key);
  if (delta) fg__buf_put_i64(&k->c->out, *delta);
  int rc = send_request(k);
  return rc < 0 ? rc : read_i64(k, reply);
}

int fg_store_add(fg_store *s, const char *key, int64_t delta, int64_t *result) {
  if (!s || !key) return invalid(s, FG_OP_ADD);
  call k;
  int64_t v;
  int rc = begin(&k, s, FG_OP_ADD, key, 1);
  if (rc == 0) rc = keyed_i64(&k, &delta, &v);
  if (rc == 0 && result) *result = v;
  return end(&k, rc);
}

static int check_keys(call *k, const char *const *keys, size_t n) {
  fg__buf_reset(&k->c->out);
  put_op(k, FG_OP_CHECK);
  put_keys(k, keys, n);
  uint8_t r;
  int rc = send_request(k);
  if (rc == 0) rc = fg__conn_read_u8(k->c, &r, k->deadline);
  if (rc < 0) return rc;
  if (r != FG_CHECK_READY && r != FG_CHECK_NOT_READY) return protocol_error(k, "CHECK", r);
  return r == FG_CHECK_READY;
}

int fg_store_check(fg_store *s, const char *const *keys, size_t n) {
  if (!s || (!keys && n)) return invalid(s, FG_OP_CHECK);
  call k;
  int rc = begin(&k, s, FG_OP_CHECK, n ? keys[0] : NULL, n);
  if (rc == 0) rc = check_keys(&k, keys, n);
  return end(&k, rc);
}

int fg_store_wait(fg_store *s, const char *const *keys, size_t n, int timeout_ms) {
  if (!s || (!keys && n)) return invalid(s, FG_OP_WAIT);
  call k;
  int rc = begin(&k, s, FG_OP_WAIT, n ? keys[0] : NULL, n);
  if (rc == 0) rc = wait_keys(&k, keys, n, fg__store_timeout(s, timeout_ms));
  return end(&k, rc);
}

static int compare_set(call *k, const char *key, const void *expected, size_t expected_len,
                       const void *desired, size_t desired_len, void **current,
                       size_t *current_len) {
  fg__buf_reset(&k->c->out);
  put_op(k, FG_OP_COMPARE_SET);
  put_key(k, key);
  fg__buf_put_bytes(&k->c->out, expected, expected_len);
  fg__buf_put_bytes(&k->c->out, desired, desired_len);
  int rc = send_request(k);
  return rc < 0 ? rc : read_value(k, current, current_len);
}

int fg_store_compare_set(fg_store *s, const char *key, const void *expected, size_t expected_len,
                         const void *desired, size_t desired_len, void **current,
                         size_t *current_len) {
  if (!s || !key || (!expected && expected_len) || (!desired && desired_len))
    return invalid(s, FG_OP_COMPARE_SET);
  call k;
  int rc = begin(&k, s, FG_OP_COMPARE_SET, key, 1);
  if (rc == 0)
    rc = compare_set(&k, key, expected, expected_len, desired, desired_len, current,
                     current_len);
  return end(&k, rc);
}

int fg_store_delete(fg_store *s, const char *key) {
  if (!s || !key) return invalid(s, FG_OP_DELETE_KEY);
  call k;
  int64_t n;
  int rc = begin(&k, s, FG_OP_DELETE_KEY, key, 1);
  if (rc == 0) rc = keyed_i64(&k, NULL, &n);
  if (rc == 0 && n != 0 && n != 1) rc = protocol_error(&k, "DELETE_KEY", (unsigned)n);
  return end(&k, rc < 0 ? rc : (int)n);
}

int fg_store_num_keys(fg_store *s, int64_t *count) {
  if (!s || !count) return invalid(s, FG_OP_GETNUMKEYS);
  call k;
  int rc = begin(&k, s, FG_OP_GETNUMKEYS, NULL, 0);
  if (rc == 0) {
    put_op(&k, FG_OP_GETNUMKEYS);
    rc = send_request(&k);
  }
  if (rc == 0) rc = read_i64(&k, count);
  return end(&k, rc);
}

int fg_store_multi_get(fg_store *s, const char *const *keys, size_t n, void **values,
                       size_t *lens) {
  if (!s || (n && (!keys || !values || !lens))) return invalid(s, FG_OP_MULTI_GET);
  if (n == 0) return 0;
  call k;
  int rc = begin(&k, s, FG_OP_MULTI_GET, keys[0], n);
  if (rc == 0) rc = wait_keys(&k, keys, n, s->timeout_ms);
  if (rc == 0) {
    fg__buf_reset(&k.c->out);
    if (k.c->dialect == FG_DIALECT_V2) {
      put_op(&k, FG_OP_MULTI_GET);
      put_keys(&k, keys, n);
    } else {
      for (size_t i = 0; i < n; i++) { /* 1.13: one GET each, in one write */
        put_op(&k, FG_OP_GET);
        put_key(&k, keys[i]);
      }
    }
    rc = send_request(&k);
  }
  size_t got = 0;
  while (rc == 0 && got < n) {
    rc = read_value(&k, &values[got], &lens[got]);
    if (rc == 0) got++;
  }
  if (rc < 0)
    while (got > 0) {
      got--;
      free(values[got]);
      values[got] = NULL;
    }
  return end(&k, rc);
}

int fg_store_multi_set(fg_store *s, const char *const *keys, const void *const *values,
                       const size_t *lens, size_t n) {
  if (!s || (n && (!keys || !values || !lens))) return invalid(s, FG_OP_MULTI_SET);
  if (n == 0) return 0;
  call k;
  int rc = begin(&k, s, FG_OP_MULTI_SET, keys[0], n);
  if (rc == 0) {
    int v2 = k.c->dialect == FG_DIALECT_V2;
    if (v2) {
      put_op(&k, FG_OP_MULTI_SET);
      fg__buf_put_u64(&k.c->out, n);
    }
    for (size_t i = 0; i < n; i++) {
      if (!v2) put_op(&k, FG_OP_SET); /* 1.13: one SET each, in one write */
      put_key(&k, keys[i]);
      fg__buf_put_bytes(&k.c->out, values[i], lens[i]);
    }
    rc = send_request(&k);
  }
  return end(&k, rc);
}

static int same_bytes(const void *a, size_t alen, const void *b, size_t blen) {
  return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0); /* a or b may be NULL if 0 */
}

/* 1.13 has no APPEND: read the value, then COMPARE_SET it to value + data until no one changed
 * it in between. The reply cannot tell "stored" from "someone else stored the same bytes", so
 * two identical appends racing on one key may count once; sequential appends are exact. */
static int append_by_compare_set(call *k, const char *key, const void *data, size_t len) {
  fg_buf want;
  fg__buf_init(&want);
  void *cur = NULL;
  size_t cur_len = 0;
  int rc = check_keys(k, &key, 1);
  if (rc == 1) rc = get_existing(k, key, &cur, &cur_len);
  while (rc >= 0) {
    fg__buf_reset(&want);
    fg__buf_put(&want, cur, cur_len);
    fg__buf_put(&want, data, len);
    void *now;
    size_t now_len;
    rc = want.failed ? -ENOMEM
                     : compare_set(k, key, cur, cur_len, want.data, want.len, &now, &now_len);
    if (rc < 0) break;
    int stored = same_bytes(now, now_len, want.data, want.len);
    /* `expected` echoed back means the key is gone (wire spec §2.3): start from empty. */
    int absent = same_bytes(now, now_len, cur, cur_len);
    free(cur);
    cur = now;
    cur_len = absent ? 0 : now_len;
    if (stored) break;
    if (fg__now_ms() >= k->deadline) rc = fg__conn_fail(k->c, -ETIMEDOUT, "gave up racing writers");
  }
  free(cur);
  fg__buf_free(&want);
  return rc < 0 ? rc : 0;
}

int fg_store_append(fg_store *s, const char *key, const void *value, size_t len) {
  if (!s || !key || (!value && len)) return invalid(s, FG_OP_APPEND);
  call k;
  int rc = begin(&k, s, FG_OP_APPEND, key, 1);
  if (rc == 0 && k.c->dialect != FG_DIALECT_V2) {
    rc = append_by_compare_set(&k, key, value, len);
  } else if (rc == 0) {
    put_op(&k, FG_OP_APPEND);
    put_key(&k, key);
    fg__buf_put_bytes(&k.c->out, value, len);
    rc = send_request(&k);
  }
  return end(&k, rc);
}

int fg__store_check_each(fg_store *s, const char *const *keys, size_t n, uint8_t *present) {
  call k;
  int rc = begin(&k, s, FG_OP_CHECK, n ? keys[0] : NULL, n);
  for (size_t i = 0; rc == 0 && i < n; i++) { /* one CHECK per key, all in one write */
    put_op(&k, FG_OP_CHECK);
    put_keys(&k, &keys[i], 1);
  }
  if (rc == 0) rc = send_request(&k);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    rc = fg__conn_read_u8(k.c, &present[i], k.deadline);
    if (rc == 0 && present[i] > FG_CHECK_NOT_READY) rc = protocol_error(&k, "CHECK", present[i]);
    present[i] = present[i] == FG_CHECK_READY;
  }
  return end(&k, rc);
}
