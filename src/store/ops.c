/* ops.c - the store's semantics: torch's TCPStore, without 1.13's flaws.
 *
 * Differences from torch 1.13's server, all deliberate:
 *  - COMPARE_SET that creates a key wakes its waiters;
 *  - a watcher that went away is forgotten with its connection, so it never
 *    breaks the connection of a client that changes the key;
 *  - a request that arrives while the same connection's WAIT is pending means
 *    the client gave up on that WAIT (1.13 clients time out without telling the
 *    server); the WAIT is dropped instead of answered late, which would throw
 *    the client's reply stream out of step. */
#include "store/ops.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fg/fg.h"

/* --- replies ------------------------------------------------------------------------------ */

static void mark_dirty(fg_core *core, fg_session *s) {
  if (s->dirty.next == &s->dirty) fg_link_push(&core->dirty, &s->dirty);
}

static void reply_u8(fg_core *core, fg_session *s, uint8_t v) {
  fg__buf_put_u8(&s->out, v);
  mark_dirty(core, s);
}

static void reply_i64(fg_core *core, fg_session *s, int64_t v) {
  fg__buf_put_i64(&s->out, v);
  mark_dirty(core, s);
}

static void reply_bytes(fg_core *core, fg_session *s, const void *p, size_t n) {
  fg__buf_put_bytes(&s->out, p, n);
  mark_dirty(core, s);
}

/* A stored value as a reply: copied when small, else sent from the table's memory. */
static void reply_value(fg_core *core, fg_session *s, fg_kv_entry *e) {
  if (e->len < FG_SHARE_MIN) {
    reply_bytes(core, s, e->value, e->len);
    return;
  }
  if (s->nshares == s->cap_shares) {
    size_t cap = s->cap_shares ? 2 * s->cap_shares : 8;
    fg_share *grown = realloc(s->shares, cap * sizeof *grown);
    if (!grown) { /* then a copy it is */
      reply_bytes(core, s, e->value, e->len);
      return;
    }
    s->shares = grown;
    s->cap_shares = cap;
  }
  fg__buf_put_u64(&s->out, e->len);
  s->shares[s->nshares++] = (fg_share){s->out.len, fg__kv_blob_ref(e), e->value, e->len};
  s->shared += e->len;
  mark_dirty(core, s);
}

static void reply_bytes_raw(fg_core *core, fg_session *s, const void *p, size_t n) {
  fg__buf_put(&s->out, p, n);
  mark_dirty(core, s);
}

/* --- waking and watching ------------------------------------------------------------------ */

/* Satisfies the registrations of `kind` on e: every one, or only the first (a queue push
 * hands its item to one waiter). The entry must exist, so unregistering cannot free it. */
static void wake(fg_core *core, fg_kv_entry *e, enum fg_reg_kind kind, int only_one) {
  fg_link *head = &e->regs[kind];
  while (!fg_link_empty(head)) {
    fg_kv_reg *r = fg_container_of(head->next, fg_kv_reg, on_entry);
    fg_session *w = r->owner;
    fg__kv_unregister(&core->kv, r);
    if (--w->pending == 0) {
      w->waiting = 0;
      reply_u8(core, w, FG_WAIT_STOP);
    }
    if (only_one) return;
  }
}

static int watched(const fg_kv_entry *e) { return !fg_link_empty(&e->regs[FG_REG_WATCH]); }

static void notify(fg_core *core, fg_kv_entry *e, uint8_t type, const uint8_t *old,
                   size_t oldlen) {
  const uint8_t *now = type == FG_WATCH_DELETED ? NULL : e->value;
  size_t nowlen = type == FG_WATCH_DELETED ? 0 : e->len;
  const fg_link *head = &e->regs[FG_REG_WATCH];
  for (fg_link *n = head->next; n != head; n = n->next) {
    fg_session *w = fg_container_of(n, fg_kv_reg, on_entry)->owner;
    fg__buf_put_u8(&w->out, type);
    fg__buf_put_bytes(&w->out, e->key, e->keylen);
    fg__buf_put_bytes(&w->out, old, oldlen);
    fg__buf_put_bytes(&w->out, now, nowlen);
    mark_dirty(core, w);
  }
}

/* The old value, kept only when a watcher will want it. */
typedef struct snapshot {
  uint8_t *p;
  size_t len;
  int existed;
} snapshot;

static int take_snapshot(const fg_kv_entry *e, snapshot *snap) {
  snap->p = NULL;
  snap->len = 0;
  snap->existed = e->has_value;
  if (!e->has_value || !watched(e)) return 0;
  snap->p = malloc(e->len ? e->len : 1);
  if (!snap->p) return -ENOMEM;
  if (e->len) memcpy(snap->p, e->value, e->len); /* an empty value may have no buffer */
  snap->len = e->len;
  return 0;
}

/* After a value changed: tell watchers, wake waiters, free the snapshot. */
static void changed(fg_core *core, fg_kv_entry *e, snapshot *snap) {
  notify(core, e, snap->existed ? FG_WATCH_UPDATED : FG_WATCH_CREATED, snap->p, snap->len);
  free(snap->p);
  wake(core, e, FG_REG_WAIT, 0);
}

static void cancel_waits(fg_core *core, fg_session *s) {
  fg_link *n = s->regs.next;
  while (n != &s->regs) {
    fg_link *next = n->next;
    fg_kv_reg *r = fg_container_of(n, fg_kv_reg, on_owner);
    if (r->kind != FG_REG_WATCH) fg__kv_unregister(&core->kv, r);
    n = next;
  }
  s->pending = s->waiting = 0;
}

/* --- operations --------------------------------------------------------------------------- */

static int refuse(const char **why, const char *msg, int code) {
  *why = msg;
  return code;
}

static int table_error(const char **why, int rc) {
  return refuse(why, rc == FG_ELIMIT ? "the store is full (total size limit)" : "out of memory",
              rc);
}

/* Finds or creates the entry for a key. */
static fg_kv_entry *intern(fg_core *core, fg_slice key, const char **why, int *rc) {
  fg_kv_entry *e = fg__kv_intern(&core->kv, key.p, (size_t)key.len, rc);
  if (!e) table_error(why, *rc);
  return e;
}

typedef int (*kv_write)(fg_kv *kv, fg_kv_entry *e, const uint8_t *v, size_t len);

/* Gives e a value with `write` (fg__kv_set, fg__kv_append), then tells watchers and wakes
 * waiters; when the table cannot take it, the entry is released. */
static int write_value(fg_core *core, fg_kv_entry *e, kv_write write, const uint8_t *p,
                       size_t len, const char **why) {
  snapshot snap;
  int rc = take_snapshot(e, &snap);
  if (rc == 0 && (rc = write(&core->kv, e, p, len)) == 0) {
    changed(core, e, &snap);
    return 0;
  }
  free(snap.p);
  fg__kv_release(&core->kv, e);
  return table_error(why, rc);
}

/* SET (fg__kv_set) or APPEND (fg__kv_append) of one key. */
static int do_write(fg_core *core, fg_slice key, fg_slice value, kv_write write,
                    const char **why) {
  int rc;
  fg_kv_entry *e = intern(core, key, why, &rc);
  return e ? write_value(core, e, write, value.p, value.len, why) : rc;
}

/* Parses a stored counter the way std::stoll does: leading space and a sign are accepted,
 * parsing stops at the first non-digit, and no digits or overflow is an error. */
static int parse_counter(const uint8_t *p, size_t n, int64_t *out) {
  size_t i = 0;
  while (i < n && isspace(p[i])) i++;
  int neg = 0;
  if (i < n && (p[i] == '+' || p[i] == '-')) neg = p[i++] == '-';
  if (i >= n || !isdigit(p[i])) return -1;
  uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  uint64_t v = 0;
  for (; i < n && isdigit(p[i]); i++) {
    unsigned d = (unsigned)(p[i] - '0');
    if (v > (limit - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return 0;
}

/* old + delta, wrapping on overflow like torch; stores the result as decimal text. */
static int do_add(fg_core *core, fg_slice key, int64_t delta, int64_t *result, fg_kv_entry **out,
                  const char **why) {
  int rc;
  fg_kv_entry *e = intern(core, key, why, &rc);
  if (!e) return rc;
  int64_t old = 0;
  if (e->has_value && parse_counter(e->value, e->len, &old) != 0)
    return refuse(why, "ADD to a value that is not a decimal integer", FG_EPROTO);
  *result = (int64_t)((uint64_t)old + (uint64_t)delta);
  char text[24];
  int n = snprintf(text, sizeof text, "%lld", (long long)*result);
  rc = write_value(core, e, fg__kv_set, (const uint8_t *)text, (size_t)n, why);
  if (rc == 0) *out = e;
  return rc;
}

static int op_get(fg_core *core, fg_session *s, fg_slice key, const char **why) {
  fg_kv_entry *e = fg__kv_find(&core->kv, key.p, key.len);
  if (e && e->has_value) {
    reply_value(core, s, e);
    return 0;
  }
  /* torch 1.13 drops the connection; its clients never GET before a WAIT. 2.x answers "". */
  if (s->dialect == FG_DIALECT_LEGACY) return refuse(why, "GET of a missing key", FG_EPROTO);
  reply_bytes(core, s, NULL, 0);
  return 0;
}

static int op_compare_set(fg_core *core, fg_session *s, const fg_request *req, const char **why) {
  fg_kv_entry *e = fg__kv_find(&core->kv, req->key.p, req->key.len);
  if (e && e->has_value) {
    if (e->len != req->expected.len ||
        (e->len && memcmp(e->value, req->expected.p, e->len) != 0)) {
      reply_bytes(core, s, e->value, e->len);
      return 0;
    }
  } else if (req->expected.len != 0) {
    /* Absent key, non-empty expectation: torch answers with `expected` and stores nothing. */
    reply_bytes(core, s, req->expected.p, req->expected.len);
    return 0;
  }
  int rc = do_write(core, req->key, req->value, fg__kv_set, why);
  if (rc == 0) reply_bytes(core, s, req->value.p, req->value.len);
  return rc;
}

static int op_check(fg_core *core, fg_session *s, fg_slice list) {
  fg_slice k;
  int ready = 1;
  while (ready && fg__proto_next(&list, &k, NULL))
    ready = fg_kv_exists(fg__kv_find(&core->kv, k.p, k.len));
  reply_u8(core, s, ready ? FG_CHECK_READY : FG_CHECK_NOT_READY);
  return 0;
}

/* Registers s as a waiter on or a watcher of key (kind), creating its entry if need be. */
static int register_on(fg_core *core, fg_session *s, fg_slice key, enum fg_reg_kind kind,
                       const char **why) {
  int rc;
  fg_kv_entry *e = intern(core, key, why, &rc);
  if (!e) return rc;
  if (!fg__kv_register(&core->kv, e, s, &s->regs, kind)) {
    fg__kv_release(&core->kv, e);
    return refuse(why, "out of memory", -ENOMEM);
  }
  return 0;
}

static int op_wait(fg_core *core, fg_session *s, fg_slice list, const char **why) {
  fg_slice k;
  while (fg__proto_next(&list, &k, NULL)) {
    if (fg_kv_exists(fg__kv_find(&core->kv, k.p, k.len))) continue;
    int rc = register_on(core, s, k, FG_REG_WAIT, why);
    if (rc) return rc;
    s->pending++;
  }
  if (s->pending == 0)
    reply_u8(core, s, FG_WAIT_STOP);
  else
    s->waiting = 1;
  return 0;
}

static int op_watch(fg_core *core, fg_session *s, fg_slice key, const char **why) {
  int rc = register_on(core, s, key, FG_REG_WATCH, why);
  if (rc == 0) reply_u8(core, s, FG_WATCH_REGISTERED);
  return rc;
}

static int op_delete(fg_core *core, fg_session *s, fg_slice key) {
  fg_kv_entry *e = fg__kv_find(&core->kv, key.p, key.len);
  if (!e || !e->has_value) {
    reply_i64(core, s, 0);
    return 0;
  }
  if (watched(e)) {
    /* The old value goes out before the entry can be released. */
    notify(core, e, FG_WATCH_DELETED, e->value, e->len);
  }
  fg__kv_unset(&core->kv, e);
  fg__kv_release(&core->kv, e);
  reply_i64(core, s, 1);
  return 0;
}

static const fg_kv_entry *valued(fg_core *core, fg_slice k) {
  const fg_kv_entry *e = fg__kv_find(&core->kv, k.p, k.len);
  return e && e->has_value ? e : NULL;
}

/* One request's reply is bounded, or a MULTI_GET naming one big value 100,000 times would
 * make the server build terabytes of output from a megabyte of request. */
static int too_big(fg_core *core, uint64_t bytes, const char **why) {
  return bytes > core->max_reply ? refuse(why, "reply larger than the limit", FG_ELIMIT) : 0;
}

static int op_multi_get(fg_core *core, fg_session *s, fg_slice list, const char **why) {
  fg_slice k, walk = list;
  uint64_t bytes = 0;
  while (fg__proto_next(&walk, &k, NULL)) {
    const fg_kv_entry *e = valued(core, k);
    bytes += 8 + (e ? e->len : 0);
  }
  if (too_big(core, bytes, why)) return FG_ELIMIT;
  while (fg__proto_next(&list, &k, NULL)) {
    fg_kv_entry *e = fg__kv_find(&core->kv, k.p, k.len);
    if (e && e->has_value)
      reply_value(core, s, e);
    else
      reply_bytes(core, s, NULL, 0);
  }
  return 0;
}

static int op_multi_set(fg_core *core, fg_slice list, const char **why) {
  fg_slice k, v;
  while (fg__proto_next(&list, &k, &v)) {
    int rc = do_write(core, k, v, fg__kv_set, why);
    if (rc) return rc;
  }
  return 0;
}

static int op_queue_push(fg_core *core, fg_slice key, fg_slice value, const char **why) {
  int rc;
  fg_kv_entry *e = intern(core, key, why, &rc);
  if (!e) return rc;
  if ((rc = fg__kv_push(&core->kv, e, value.p, value.len)) != 0) {
    fg__kv_release(&core->kv, e);
    return table_error(why, rc);
  }
  wake(core, e, FG_REG_WAIT, 1);
  return 0;
}

static int op_queue_pop(fg_core *core, fg_session *s, fg_slice key) {
  fg_kv_entry *e = fg__kv_find(&core->kv, key.p, key.len);
  size_t queued = e ? e->queued : 0;
  reply_i64(core, s, (int64_t)queued);
  if (queued) {
    fg_kv_item *it = fg__kv_pop(&core->kv, e);
    reply_bytes(core, s, it->data, it->len);
    fg__kv_item_free(it);
    fg__kv_release(&core->kv, e);
  }
  return 0;
}

static void list_one(fg_kv *kv, fg_kv_entry *e, void *arg) {
  (void)kv;
  if (e->has_value) fg__buf_put_bytes(arg, e->key, e->keylen);
}

static void count_one(fg_kv *kv, fg_kv_entry *e, void *arg) {
  (void)kv;
  if (e->has_value) *(uint64_t *)arg += 8 + e->keylen;
}

static int op_list_keys(fg_core *core, fg_session *s, const char **why) {
  uint64_t bytes = 8;
  fg__kv_foreach(&core->kv, count_one, &bytes);
  if (too_big(core, bytes, why)) return FG_ELIMIT;
  reply_i64(core, s, (int64_t)core->kv.nvalues);
  fg__kv_foreach(&core->kv, list_one, &s->out);
  return 0;
}

static int op_barrier(fg_core *core, fg_session *s, fg_slice key, int64_t world,
                      const char **why) {
  int64_t count;
  fg_kv_entry *e;
  int rc = do_add(core, key, 1, &count, &e, why);
  if (rc) return rc;
  if (count >= world) {
    wake(core, e, FG_REG_BARRIER, 0);
    reply_u8(core, s, FG_WAIT_STOP);
    return 0;
  }
  if (!fg__kv_register(&core->kv, e, s, &s->regs, FG_REG_BARRIER))
    return refuse(why, "out of memory", -ENOMEM);
  s->pending = 1;
  s->waiting = 1;
  return 0;
}

static int execute(fg_core *core, fg_session *s, const fg_request *req, const char **why) {
  if (s->waiting && req->op != FG_OP_CANCEL_WAIT) cancel_waits(core, s);
  int64_t result;
  fg_kv_entry *e;
  int rc;
  switch (req->op) {
    case FG_OP_VALIDATE:
      return req->u32 == FG_PROTO_MAGIC ? 0 : refuse(why, "VALIDATE with a wrong magic", FG_EPROTO);
    case FG_OP_SET: return do_write(core, req->key, req->value, fg__kv_set, why);
    case FG_OP_COMPARE_SET: return op_compare_set(core, s, req, why);
    case FG_OP_GET: return op_get(core, s, req->key, why);
    case FG_OP_ADD:
      if ((rc = do_add(core, req->key, req->number, &result, &e, why)) == 0)
        reply_i64(core, s, result);
      return rc;
    case FG_OP_CHECK: return op_check(core, s, req->list);
    case FG_OP_WAIT: return op_wait(core, s, req->list, why);
    case FG_OP_GETNUMKEYS: reply_i64(core, s, (int64_t)core->kv.nvalues); return 0;
    case FG_OP_WATCH_KEY: return op_watch(core, s, req->key, why);
    case FG_OP_DELETE_KEY: return op_delete(core, s, req->key);
    case FG_OP_APPEND: return do_write(core, req->key, req->value, fg__kv_append, why);
    case FG_OP_MULTI_GET: return op_multi_get(core, s, req->list, why);
    case FG_OP_MULTI_SET: return op_multi_set(core, req->list, why);
    case FG_OP_CANCEL_WAIT:
      cancel_waits(core, s);
      reply_u8(core, s, FG_WAIT_CANCELED);
      return 0;
    case FG_OP_PING:
      fg__buf_put_u32(&s->out, req->u32);
      mark_dirty(core, s);
      return 0;
    case FG_OP_QUEUE_PUSH: return op_queue_push(core, req->key, req->value, why);
    case FG_OP_QUEUE_POP: return op_queue_pop(core, s, req->key);
    case FG_OP_QUEUE_LEN:
      e = fg__kv_find(&core->kv, req->key.p, req->key.len);
      reply_i64(core, s, e ? (int64_t)e->queued : 0);
      return 0;
    case FG_OP_LIST_KEYS: return op_list_keys(core, s, why);
    case FG_OP_BARRIER: return op_barrier(core, s, req->key, req->number, why);
    case FG_OP_COUNT: break;
  }
  return refuse(why, "unknown opcode", FG_EPROTO);
}

/* Compares in time that does not depend on where the first difference is. */
static int same_token(const fg_core *core, fg_slice t) {
  uint8_t diff = t.len != core->token_len;
  for (size_t i = 0; i < t.len && i < core->token_len; i++) diff |= t.p[i] ^ core->token[i];
  return diff == 0;
}

/* A session's first bytes: the token message, required when the core has a token and
 * accepted (whatever it holds) when not, so that clients given a token work with any
 * fgstore. 1 once admitted (*pos past the message), 0 while more bytes are needed. */
static int admit(fg_core *core, fg_session *s, const uint8_t *p, size_t len, size_t *pos,
                 size_t *need, const char **why) {
  fg_slice token;
  size_t n = 1;
  int rc = len ? fg__proto_decode_token(p, len, &token, &n) : FG_PROTO_NEED_MORE;
  if (rc == FG_PROTO_NEED_MORE) {
    *need = n;
    return 0;
  }
  /* The message never names the token or says how it differed. */
  if (core->token && (rc != FG_PROTO_OK || !same_token(core, token))) {
    reply_bytes_raw(core, s, FG_TOKEN_REFUSED, 4);
    return refuse(why, "bad or missing store token", FG_EPROTO);
  }
  s->admitted = 1;
  if (rc == FG_PROTO_OK) {
    *pos = n;
    reply_u8(core, s, FG_TOKEN_ACCEPTED);
  }
  return 1;
}

int fg__core_feed(fg_core *core, fg_session *s, const uint8_t *p, size_t len, size_t *used,
                 size_t *need, const char **why) {
  size_t pos = 0;
  int rc = 0;
  *used = 0;
  *need = 1;
  if (!s->admitted && (rc = admit(core, s, p, len, &pos, need, why)) <= 0) return rc;
  if (s->dialect == FG_DIALECT_UNKNOWN) {
    s->dialect = fg__proto_sniff(p + pos, len - pos);
    if (s->dialect == FG_DIALECT_UNKNOWN) {
      *used = pos;
      *need = 5;
      return 0;
    }
  }
  rc = 0;
  while (pos < len) {
    if (fg_session_pending(s) >= core->out_batch) {
      rc = FG_CORE_BLOCKED; /* the rest waits until the client has read what it asked for */
      break;
    }
    fg_request req;
    size_t n;
    int drc = fg__proto_decode(s->dialect, p + pos, len - pos, &core->limits, &req, &n, why);
    if (drc == FG_PROTO_NEED_MORE) {
      *need = n;
      break;
    }
    if (drc < 0) return drc;
    if ((drc = execute(core, s, &req, why)) < 0) return drc;
    core->requests++;
    pos += n;
  }
  *used = pos;
  if (s->out.failed) return refuse(why, "out of memory for replies", -ENOMEM);
  return rc;
}
