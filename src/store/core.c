/* core.c - the store core's and its sessions' lifetimes: creating and freeing the core, its
 * token, a session's output (copied bytes plus shared references to stored values) and its
 * end, and erasing keys by prefix for the launcher. What a request does is ops.c. */
#include "store/ops.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int fg__core_init(fg_core *core, uint64_t max_total, const fg_proto_limits *limits) {
  memset(core, 0, sizeof *core);
  core->limits = *limits;
  core->out_batch = 1u << 20;
  core->max_reply = 64u << 20;
  fg_link_init(&core->dirty);
  return fg__kv_init(&core->kv, max_total);
}

void fg__core_free(fg_core *core) {
  fg__kv_free(&core->kv);
  if (core->token) memset(core->token, 0, core->token_len);
  free(core->token);
  core->token = NULL;
}

int fg__core_set_token(fg_core *core, const void *token, size_t len) {
  uint8_t *copy = len ? malloc(len) : NULL;
  if (len && !copy) return -ENOMEM;
  if (len) memcpy(copy, token, len);
  free(core->token);
  core->token = copy;
  core->token_len = len;
  return 0;
}

void fg__session_init(fg_session *s) {
  memset(s, 0, sizeof *s);
  fg__buf_init(&s->out);
  fg_link_init(&s->regs);
  fg_link_init(&s->dirty);
}

fg_share *fg__session_take_shares(fg_session *s, size_t *n) {
  fg_share *taken = s->shares;
  *n = s->nshares;
  s->shares = NULL;
  s->nshares = s->cap_shares = s->shared = 0;
  return taken;
}

static void unref_shares(fg_share *shares, size_t n) {
  for (size_t i = 0; i < n; i++) fg__kv_blob_unref(shares[i].blob);
  free(shares);
}

void fg__session_clear_output(fg_session *s) {
  size_t n;
  fg_share *shares = fg__session_take_shares(s, &n);
  unref_shares(shares, n);
  fg__buf_reset(&s->out);
}

void fg__session_flatten(fg_session *s) {
  if (!s->nshares) return;
  fg_buf flat;
  fg__buf_init(&flat);
  size_t from = 0;
  for (size_t i = 0; i < s->nshares; i++) {
    if (s->shares[i].at > from) fg__buf_put(&flat, s->out.data + from, s->shares[i].at - from);
    fg__buf_put(&flat, s->shares[i].p, s->shares[i].len);
    from = s->shares[i].at;
  }
  if (s->out.len > from) fg__buf_put(&flat, s->out.data + from, s->out.len - from);
  fg__session_clear_output(s);
  fg__buf_free(&s->out);
  s->out = flat;
}

void fg__session_drop(fg_core *core, fg_session *s) {
  while (!fg_link_empty(&s->regs))
    fg__kv_unregister(&core->kv, fg_container_of(s->regs.next, fg_kv_reg, on_owner));
  fg_link_remove(&s->dirty);
  fg__session_clear_output(s);
  fg__buf_free(&s->out);
  s->pending = s->waiting = 0;
}

typedef struct erase_ctx {
  const uint8_t *prefix;
  size_t len;
  size_t count;
} erase_ctx;

static void erase_one(fg_kv *kv, fg_kv_entry *e, void *arg) {
  erase_ctx *x = arg;
  if (!e->has_value || e->keylen < x->len || memcmp(e->key, x->prefix, x->len) != 0) return;
  fg__kv_unset(kv, e);
  fg__kv_release(kv, e);
  x->count++;
}

size_t fg__core_erase_prefix(fg_core *core, const uint8_t *prefix, size_t len) {
  erase_ctx x = {prefix, len, 0};
  fg__kv_foreach(&core->kv, erase_one, &x);
  return x.count;
}
