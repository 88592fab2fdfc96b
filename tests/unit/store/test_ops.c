/* test_ops - the store's request handling without sockets (ops.c through
 * fg__core_feed): the token stage, the bound on unread replies, the bound on one reply, and
 * cases the fuzzer found. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "fg/fg.h"
#include "store/ops.h"
#include "store/proto.h"

typedef struct fixture {
  fg_core core;
  fg_session s;
  fg_buf in;
} fixture;

static int setup(void **state) {
  static fixture f;
  fg_proto_limits lim;
  fg__proto_limits_default(&lim);
  assert_int_equal(fg__core_init(&f.core, 64u << 20, &lim), 0);
  fg__session_init(&f.s);
  fg__buf_init(&f.in);
  *state = &f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  fg__session_drop(&f->core, &f->s);
  fg__buf_free(&f->in);
  fg__core_free(&f->core);
  return 0;
}

/* Feeds f->in; returns fg__core_feed's code and consumes what it used. */
static int feed(fixture *f, const char **why) {
  size_t used, need;
  *why = NULL;
  int rc = fg__core_feed(&f->core, &f->s, f->in.data, f->in.len, &used, &need, why);
  if (rc >= 0) fg__buf_consume(&f->in, used);
  return rc;
}

static void put_str(fg_buf *b, const char *s) { fg__buf_put_bytes(b, s, strlen(s)); }

static void put_set(fg_buf *b, const char *key, size_t len) {
  fg__proto_put_op(b, FG_DIALECT_LEGACY, FG_OP_SET);
  put_str(b, key);
  fg__buf_put_u64(b, len);
  for (size_t i = 0; i < len; i++) fg__buf_put_u8(b, 'v');
}

static void put_get(fg_buf *b, const char *key) {
  fg__proto_put_op(b, FG_DIALECT_LEGACY, FG_OP_GET);
  put_str(b, key);
}

static void token_decoder_hints_and_refusals(void **state) {
  (void)state;
  fg_buf b;
  fg__buf_init(&b);
  fg__proto_put_token(&b, "secret", 6);
  assert_int_equal(b.len, 14);
  fg_slice t;
  size_t used;
  for (size_t n = 0; n < 8; n++) {
    assert_int_equal(fg__proto_decode_token(b.data, n, &t, &used), FG_PROTO_NEED_MORE);
    assert_int_equal(used, 8);
  }
  for (size_t n = 8; n < 14; n++) {
    assert_int_equal(fg__proto_decode_token(b.data, n, &t, &used), FG_PROTO_NEED_MORE);
    assert_int_equal(used, 14);
  }
  assert_int_equal(fg__proto_decode_token(b.data, b.len, &t, &used), FG_PROTO_OK);
  assert_int_equal(used, 14);
  assert_int_equal(t.len, 6);
  assert_memory_equal(t.p, "secret", 6);
  static const uint8_t legacy_set[] = {0x00, 0x02};
  assert_int_equal(fg__proto_decode_token(legacy_set, 2, &t, &used), FG_EPROTO);
  static const uint8_t empty[] = {'F', 'G', 'T', 'K', 0, 0, 0, 0};
  assert_int_equal(fg__proto_decode_token(empty, 8, &t, &used), FG_EPROTO);
  static const uint8_t huge[] = {'F', 'G', 'T', 'K', 0x01, 0x04, 0, 0}; /* 1025 */
  assert_int_equal(fg__proto_decode_token(huge, 8, &t, &used), FG_EPROTO);
  fg__buf_free(&b);
}

static void a_required_token_admits_only_its_holder(void **state) {
  fixture *f = *state;
  const char *why;
  assert_int_equal(fg__core_set_token(&f->core, "secret", 6), 0);
  /* A torch client's first request. */
  put_get(&f->in, "/k");
  assert_int_equal(feed(f, &why), FG_EPROTO);
  assert_string_equal(why, "bad or missing store token");
  assert_int_equal(f->s.out.len, 4);
  assert_memory_equal(f->s.out.data, FG_TOKEN_REFUSED, 4);
  /* A wrong token, then the right one on a new session. */
  fg__session_drop(&f->core, &f->s);
  fg__session_init(&f->s);
  fg__buf_reset(&f->in);
  fg__proto_put_token(&f->in, "secreT", 6);
  assert_int_equal(feed(f, &why), FG_EPROTO);
  assert_null(strstr(why, "secre"));
  fg__session_drop(&f->core, &f->s);
  fg__session_init(&f->s);
  fg__buf_reset(&f->in);
  fg__proto_put_token(&f->in, "secret", 6);
  put_set(&f->in, "/k", 1);
  put_get(&f->in, "/k");
  assert_int_equal(feed(f, &why), 0);
  assert_int_equal(f->in.len, 0);
  static const uint8_t want[] = {FG_TOKEN_ACCEPTED, 1, 0, 0, 0, 0, 0, 0, 0, 'v'};
  assert_int_equal(f->s.out.len, sizeof want);
  assert_memory_equal(f->s.out.data, want, sizeof want);
}

static void a_token_is_accepted_when_none_is_required(void **state) {
  fixture *f = *state;
  const char *why;
  fg__proto_put_token(&f->in, "anything", 8);
  fg__proto_put_validate(&f->in);
  assert_int_equal(feed(f, &why), 0);
  assert_int_equal(f->s.dialect, FG_DIALECT_V2);
  assert_int_equal(f->s.out.len, 1);
  assert_int_equal(f->s.out.data[0], FG_TOKEN_ACCEPTED);
}

static void a_half_sent_token_waits_for_the_rest(void **state) {
  fixture *f = *state;
  const char *why;
  assert_int_equal(fg__core_set_token(&f->core, "secret", 6), 0);
  fg__proto_put_token(&f->in, "secret", 6);
  size_t used, need;
  for (size_t n = 0; n < f->in.len; n++) {
    assert_int_equal(fg__core_feed(&f->core, &f->s, f->in.data, n, &used, &need, &why), 0);
    assert_int_equal(used, 0);
    assert_true(need > n);
  }
  assert_int_equal(feed(f, &why), 0);
  assert_int_equal(f->s.admitted, 1);
}

/* A client that pipelines GETs of a big value and reads nothing gets at most out_batch of
 * replies (plus one) built; the rest of its requests wait. */
static void pipelined_replies_stop_at_the_batch_limit(void **state) {
  fixture *f = *state;
  const char *why;
  f->core.out_batch = 64u << 10;
  put_set(&f->in, "/big", 40000);
  for (int i = 0; i < 10; i++) put_get(&f->in, "/big");
  size_t request = 1 + 8 + 4;
  assert_int_equal(feed(f, &why), FG_CORE_BLOCKED);
  assert_int_equal(fg_session_pending(&f->s), 2 * (8 + 40000));
  assert_int_equal(f->in.len, 8 * request);
  fg__session_clear_output(&f->s); /* the client reads */
  assert_int_equal(feed(f, &why), FG_CORE_BLOCKED);
  assert_int_equal(f->in.len, 6 * request);
  fg__session_clear_output(&f->s);
  while (f->in.len) {
    assert_true(feed(f, &why) >= 0);
    fg__session_clear_output(&f->s);
  }
}

/* A big value goes out from the table's memory, not copied (ops.h: FG_SHARE_MIN); a SET of
 * the key while that reply is unwritten leaves the reply the old value, and the output
 * reads as if copied. A small value is copied. */
static void a_big_get_shares_the_value_and_a_later_set_leaves_it_alone(void **state) {
  fixture *f = *state;
  const char *why;
  size_t big = FG_SHARE_MIN + 100;
  put_set(&f->in, "/big", big);
  put_get(&f->in, "/big");
  put_set(&f->in, "/small", 10);
  put_get(&f->in, "/small");
  assert_int_equal(feed(f, &why), 0);
  assert_int_equal(f->s.nshares, 1);
  assert_int_equal(f->s.out.len, 8 + 8 + 10); /* the big value is not in out */
  fg_kv_entry *e = fg__kv_find(&f->core.kv, (const uint8_t *)"/big", 4);
  assert_non_null(e);
  assert_ptr_equal(f->s.shares[0].p, e->value);
  /* Now the key changes before the reply is written. */
  fg__buf_reset(&f->in);
  fg__proto_put_op(&f->in, FG_DIALECT_LEGACY, FG_OP_SET);
  put_str(&f->in, "/big");
  put_str(&f->in, "changed");
  assert_int_equal(feed(f, &why), 0);
  assert_ptr_not_equal(e->value, f->s.shares[0].p);
  fg__session_flatten(&f->s);
  assert_int_equal(f->s.nshares, 0);
  assert_int_equal(f->s.out.len, 8 + big + 8 + 10);
  uint64_t len;
  memcpy(&len, f->s.out.data, 8);
  assert_int_equal(len, big);
  for (size_t i = 0; i < big; i++) assert_int_equal(f->s.out.data[8 + i], 'v');
  assert_memory_equal(e->value, "changed", 7);
  fg__session_clear_output(&f->s);
}

/* The table's side of sharing: while a reference is held, APPEND and SET move the value to
 * memory of its own (APPEND keeping the old bytes), and DELETE leaves the reference alone. */
static void a_held_value_survives_append_set_and_unset(void **state) {
  fixture *f = *state;
  fg_kv *kv = &f->core.kv;
  int err = 0;
  fg_kv_entry *e = fg__kv_intern(kv, (const uint8_t *)"/k", 2, &err);
  assert_non_null(e);
  assert_int_equal(fg__kv_set(kv, e, (const uint8_t *)"abc", 3), 0);
  fg_kv_blob *held = fg__kv_blob_ref(e);
  assert_int_equal(held->refs, 2);
  assert_int_equal(fg__kv_append(kv, e, (const uint8_t *)"def", 3), 0);
  assert_ptr_not_equal(e->blob, held);
  assert_int_equal(e->len, 6);
  assert_memory_equal(e->value, "abcdef", 6);
  assert_memory_equal(held->data, "abc", 3);
  assert_int_equal(held->refs, 1);
  /* Unshared now: a further APPEND stays in place when it fits. */
  fg_kv_blob *own = e->blob;
  assert_int_equal(fg__kv_append(kv, e, (const uint8_t *)"g", 1), 0);
  assert_ptr_equal(e->blob, own);
  fg__kv_blob_unref(held);
  held = fg__kv_blob_ref(e);
  assert_int_equal(fg__kv_set(kv, e, (const uint8_t *)"x", 1), 0);
  assert_memory_equal(held->data, "abcdefg", 7);
  fg__kv_blob_unref(held);
  held = fg__kv_blob_ref(e);
  fg__kv_unset(kv, e);
  assert_null(e->blob);
  assert_memory_equal(held->data, "x", 1);
  fg__kv_blob_unref(held);
  fg__kv_release(kv, e);
}

static void a_multi_get_reply_over_the_limit_is_refused(void **state) {
  fixture *f = *state;
  const char *why;
  f->core.max_reply = 1u << 20;
  fg__proto_put_validate(&f->in);
  fg__proto_put_op(&f->in, FG_DIALECT_V2, FG_OP_SET);
  put_str(&f->in, "/v");
  fg__buf_put_u64(&f->in, 100000);
  for (int i = 0; i < 100000; i++) fg__buf_put_u8(&f->in, 'x');
  fg__proto_put_op(&f->in, FG_DIALECT_V2, FG_OP_MULTI_GET);
  fg__buf_put_u64(&f->in, 11); /* 1.1 MB of reply from 143 bytes of request */
  for (int i = 0; i < 11; i++) put_str(&f->in, "/v");
  assert_int_equal(feed(f, &why), FG_ELIMIT);
  assert_string_equal(why, "reply larger than the limit");
  assert_int_equal(f->s.out.len, 0);
}

/* Found by the fuzzer: the snapshot for watchers copied from an empty value's NULL buffer. */
static void a_watched_empty_value_changes(void **state) {
  fixture *f = *state;
  const char *why;
  put_set(&f->in, "/w", 0);
  fg__proto_put_op(&f->in, FG_DIALECT_LEGACY, FG_OP_WATCH_KEY);
  put_str(&f->in, "/w");
  put_set(&f->in, "/w", 2);
  assert_int_equal(feed(f, &why), 0);
  /* 03 (registered), then UPDATED "/w" "" "vv" */
  static const uint8_t want[] = {3, 0, 2, 0, 0, 0, 0, 0, 0, 0, '/', 'w', 0, 0, 0, 0, 0, 0, 0, 0,
                                 2, 0, 0, 0, 0, 0, 0, 0, 'v', 'v'};
  assert_int_equal(f->s.out.len, sizeof want);
  assert_memory_equal(f->s.out.data, want, sizeof want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(token_decoder_hints_and_refusals),
      cmocka_unit_test_setup_teardown(a_required_token_admits_only_its_holder, setup, teardown),
      cmocka_unit_test_setup_teardown(a_token_is_accepted_when_none_is_required, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_half_sent_token_waits_for_the_rest, setup, teardown),
      cmocka_unit_test_setup_teardown(pipelined_replies_stop_at_the_batch_limit, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_big_get_shares_the_value_and_a_later_set_leaves_it_alone,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(a_held_value_survives_append_set_and_unset, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_multi_get_reply_over_the_limit_is_refused, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_watched_empty_value_changes, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
