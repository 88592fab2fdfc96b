/* test_proto - the TCPStore codec: opcode tables, the incremental decoder, its limits,
 * dialect sniffing, list walking and the client-side encoders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "fg/fg.h"
#include "store/proto.h"

static const enum fg_dialect dialects[] = {FG_DIALECT_LEGACY, FG_DIALECT_V2};

/* Keys of the sample lists; the empty one checks that a zero length is a key too. */
static const char *const list_keys[] = {"/a", "", "/ccc"};
static const char *const list_values[] = {"1", "", "333"};
#define LIST_LEN 3

static void put_str(fg_buf *b, const char *s) { fg__buf_put_bytes(b, s, strlen(s)); }

static void put_list(fg_buf *b, int with_values) {
  fg__buf_put_u64(b, LIST_LEN);
  for (int i = 0; i < LIST_LEN; i++) {
    put_str(b, list_keys[i]);
    if (with_values) put_str(b, list_values[i]);
  }
}

/* A well-formed request for op, with the fields check_fields expects. */
static void build(fg_buf *b, enum fg_dialect d, enum fg_op op) {
  fg__buf_reset(b);
  fg__proto_put_op(b, d, op);
  switch (op) {
    case FG_OP_VALIDATE: fg__buf_put_u32(b, FG_PROTO_MAGIC); break;
    case FG_OP_PING: fg__buf_put_u32(b, 0x12345678u); break;
    case FG_OP_SET:
    case FG_OP_APPEND:
    case FG_OP_QUEUE_PUSH:
      put_str(b, "/key");
      put_str(b, "value");
      break;
    case FG_OP_COMPARE_SET:
      put_str(b, "/key");
      put_str(b, "exp");
      put_str(b, "value");
      break;
    case FG_OP_GET:
    case FG_OP_WATCH_KEY:
    case FG_OP_DELETE_KEY:
    case FG_OP_QUEUE_POP:
    case FG_OP_QUEUE_LEN: put_str(b, "/key"); break;
    case FG_OP_ADD:
      put_str(b, "/key");
      fg__buf_put_i64(b, -2);
      break;
    case FG_OP_BARRIER:
      put_str(b, "/key");
      fg__buf_put_i64(b, 4);
      break;
    case FG_OP_CHECK:
    case FG_OP_WAIT:
    case FG_OP_MULTI_GET: put_list(b, 0); break;
    case FG_OP_MULTI_SET: put_list(b, 1); break;
    case FG_OP_GETNUMKEYS:
    case FG_OP_CANCEL_WAIT:
    case FG_OP_LIST_KEYS:
    case FG_OP_COUNT: break;
  }
  assert_false(b->failed);
}

static void assert_slice(fg_slice s, const char *want) {
  assert_int_equal(s.len, strlen(want));
  if (s.len) assert_memory_equal(s.p, want, s.len);
}

static void check_list(fg_slice list, int with_values) {
  fg_slice k, v;
  int i = 0;
  while (fg__proto_next(&list, &k, with_values ? &v : NULL)) {
    assert_true(i < LIST_LEN);
    assert_int_equal(k.len, strlen(list_keys[i]));
    if (k.len) assert_memory_equal(k.p, list_keys[i], k.len);
    if (with_values) {
      assert_int_equal(v.len, strlen(list_values[i]));
      if (v.len) assert_memory_equal(v.p, list_values[i], v.len);
    }
    i++;
  }
  assert_int_equal(i, LIST_LEN);
}

static void check_fields(const fg_request *r, enum fg_op op) {
  assert_int_equal(r->op, op);
  switch (op) {
    case FG_OP_VALIDATE: assert_int_equal(r->u32, FG_PROTO_MAGIC); break;
    case FG_OP_PING: assert_int_equal(r->u32, 0x12345678u); break;
    case FG_OP_SET:
    case FG_OP_APPEND:
    case FG_OP_QUEUE_PUSH:
      assert_slice(r->key, "/key");
      assert_slice(r->value, "value");
      break;
    case FG_OP_COMPARE_SET:
      assert_slice(r->key, "/key");
      assert_slice(r->expected, "exp");
      assert_slice(r->value, "value");
      break;
    case FG_OP_GET:
    case FG_OP_WATCH_KEY:
    case FG_OP_DELETE_KEY:
    case FG_OP_QUEUE_POP:
    case FG_OP_QUEUE_LEN: assert_slice(r->key, "/key"); break;
    case FG_OP_ADD:
      assert_slice(r->key, "/key");
      assert_int_equal(r->number, -2);
      break;
    case FG_OP_BARRIER:
      assert_slice(r->key, "/key");
      assert_int_equal(r->number, 4);
      break;
    case FG_OP_CHECK:
    case FG_OP_WAIT:
    case FG_OP_MULTI_GET:
      assert_int_equal(r->nkeys, LIST_LEN);
      check_list(r->list, 0);
      break;
    case FG_OP_MULTI_SET:
      assert_int_equal(r->nkeys, LIST_LEN);
      check_list(r->list, 1);
      break;
    case FG_OP_GETNUMKEYS:
    case FG_OP_CANCEL_WAIT:
    case FG_OP_LIST_KEYS:
    case FG_OP_COUNT: break;
  }
}

static int decode(enum fg_dialect d, const fg_buf *b, size_t len, const fg_proto_limits *lim,
                  fg_request *r, size_t *used) {
  const char *why = NULL;
  fg_proto_limits def;
  if (!lim) {
    fg__proto_limits_default(&def);
    lim = &def;
  }
  int rc = fg__proto_decode(d, b->data, len, lim, r, used, &why);
  if (rc < 0) assert_non_null(why);
  return rc;
}

/* Every op of the dialect, whole: OK, all bytes used, every field as built. */
static int decode_every_op(enum fg_dialect d) {
  fg_buf b;
  fg__buf_init(&b);
  int decoded = 0;
  for (int op = 0; op < FG_OP_COUNT; op++) {
    if (fg__proto_opcode(d, (enum fg_op)op) < 0) continue;
    build(&b, d, (enum fg_op)op);
    fg_request r;
    size_t used = 0;
    assert_int_equal(decode(d, &b, b.len, NULL, &r, &used), FG_PROTO_OK);
    assert_int_equal(used, b.len);
    check_fields(&r, (enum fg_op)op);
    decoded++;
  }
  fg__buf_free(&b);
  return decoded;
}

static void decodes_every_legacy_opcode(void **state) {
  (void)state;
  assert_int_equal(decode_every_op(FG_DIALECT_LEGACY), 9); /* SET .. DELETE_KEY */
}

static void decodes_every_v2_opcode(void **state) {
  (void)state;
  assert_int_equal(decode_every_op(FG_DIALECT_V2), 19); /* VALIDATE .. BARRIER */
}

/* Cut anywhere, a request asks for more, and for no more than it really has: a server that
 * trusts the hint neither spins nor waits for bytes that will never come. */
static void every_prefix_needs_more_with_a_sane_hint(void **state) {
  (void)state;
  fg_buf b;
  fg__buf_init(&b);
  for (size_t i = 0; i < 2; i++)
    for (int op = 0; op < FG_OP_COUNT; op++) {
      if (fg__proto_opcode(dialects[i], (enum fg_op)op) < 0) continue;
      build(&b, dialects[i], (enum fg_op)op);
      for (size_t cut = 0; cut < b.len; cut++) {
        fg_request r;
        size_t used = 0;
        assert_int_equal(decode(dialects[i], &b, cut, NULL, &r, &used), FG_PROTO_NEED_MORE);
        assert_true(used > cut);
        assert_true(used <= b.len);
      }
    }
  fg__buf_free(&b);
}

/* Pipelined requests come apart one at a time. */
static void pipelined_requests_decode_one_at_a_time(void **state) {
  (void)state;
  fg_buf one, all;
  fg__buf_init(&one);
  fg__buf_init(&all);
  size_t sizes[FG_OP_COUNT], n = 0;
  for (int op = 0; op < FG_OP_COUNT; op++) {
    if (fg__proto_opcode(FG_DIALECT_V2, (enum fg_op)op) < 0) continue;
    build(&one, FG_DIALECT_V2, (enum fg_op)op);
    fg__buf_put(&all, one.data, one.len);
    sizes[n++] = one.len;
  }
  fg_proto_limits lim;
  fg__proto_limits_default(&lim);
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    fg_request r;
    size_t used = 0;
    const char *why;
    assert_int_equal(fg__proto_decode(FG_DIALECT_V2, all.data + off, all.len - off, &lim, &r,
                                     &used, &why),
                     FG_PROTO_OK);
    assert_int_equal(used, sizes[i]);
    off += used;
  }
  assert_int_equal(off, all.len);
  fg__buf_free(&one);
  fg__buf_free(&all);
}

/* ---- limits ----------------------------------------------------------------------------- */

static const fg_proto_limits small = {.max_key = 16, .max_value = 32, .max_keys = 4};

/* Decodes only the header bytes of a request (no payload): the limit must already bite. */
static int decode_header(enum fg_dialect d, fg_buf *b, const fg_proto_limits *lim) {
  fg_request r;
  size_t used;
  return decode(d, b, b->len, lim, &r, &used);
}

static void key_over_limit_fails_before_its_bytes_arrive(void **state) {
  (void)state;
  fg_buf b;
  fg__buf_init(&b);
  enum fg_op ops[] = {FG_OP_SET, FG_OP_GET, FG_OP_ADD, FG_OP_COMPARE_SET, FG_OP_DELETE_KEY};
  for (size_t i = 0; i < 2; i++)
    for (size_t j = 0; j < sizeof ops / sizeof ops[0]; j++) {
      fg__buf_reset(&b);
      fg__proto_put_op(&b, dialects[i], ops[j]);
      fg__buf_put_u64(&b, small.max_key + 1);
      assert_int_equal(decode_header(dialects[i], &b, &small), FG_ELIMIT);
    }
  fg__buf_free(&b);
}

static void value_over_limit_fails_before_its_bytes_arrive(void **state) {
  (void)state;
  fg_buf b;
  fg__buf_init(&b);
  for (size_t i = 0; i < 2; i++) {
    fg__buf_reset(&b);
    fg__proto_put_op(&b, dialects[i], FG_OP_SET);
    put_str(&b, "k");
    fg__buf_put_u64(&b, small.max_value + 1);
    assert_int_equal(decode_header(dialects[i], &b, &small), FG_ELIMIT);
    /* COMPARE_SET's expected and desired are values too. */
    fg__buf_reset(&b);
    fg__proto_put_op(&b, dialects[i], FG_OP_COMPARE_SET);
    put_str(&b, "k");
    fg__buf_put_u64(&b, small.max_value + 1);
    assert_int_equal(decode_header(dialects[i], &b, &small), FG_ELIMIT);
    fg__buf_reset(&b);
    fg__proto_put_op(&b, dialects[i], FG_OP_COMPARE_SET);
    put_str(&b, "k");
    put_str(&b, "e");
    fg__buf_put_u64(&b, small.max_value + 1);
    assert_int_equal(decode_header(dialects[i], &b, &small), FG_ELIMIT);
  }
  fg__buf_reset(&b); /* MULTI_SET's values, after a good first pair */
  fg__proto_put_op(&b, FG_DIALECT_V2, FG_OP_MULTI_SET);
  fg__buf_put_u64(&b, 2);
  put_str(&b, "a");
  put_str(&b, "1");
  put_str(&b, "b");
  fg__buf_put_u64(&b, small.max_value + 1);
  assert_int_equal(decode_header(FG_DIALECT_V2, &b, &small), FG_ELIMIT);
  fg__buf_free(&b);
}

static void key_count_over_limit_fails_before_the_keys_arrive(void **state) {
  (void)state;
  fg_buf b;
  fg__buf_init(&b);
  enum fg_op ops[] = {FG_OP_CHECK, FG_OP_WAIT, FG_OP_MULTI_GET, FG_OP_MULTI_SET};
  for (size_t i = 0; i < 2; i++)
    for (size_t j = 0; j < sizeof ops / sizeof ops[0]; j++) {
      if (fg__proto_opcode(dialects[i], ops[j]) < 0) continue;
      fg__buf_reset(&b);
      fg__proto_put_op(&b, dialects[i], ops[j]);
      fg__buf_put_u64(&b, small.max_keys + 1);
      assert_int_equal(decode_header(dialects[i], &b, &small), FG_ELIMIT);
    }
  /* A key inside a list is held to the key limit too. */
  fg__buf_reset(&b);
  fg__proto_put_op(&b, FG_DIALECT_V2, FG_OP_WAIT);
  fg__buf_put_u64(&b, 2);
  put_str(&b, "a");
  fg__buf_put_u64(&b, small.max_key + 1);
  assert_int_equal(decode_header(FG_DIALECT_V2, &b, &small), FG_ELIMIT);
  fg__buf_free(&b);
}

/* 2^63 and 2^64-1 are what a sign or overflow bug would let through. */
static void lengths_of_2_to_the_63_fail(void **state) {
  (void)state;
  fg_buf b;
  fg__buf_init(&b);
  fg_proto_limits def;
  fg__proto_limits_default(&def);
  uint64_t huge[] = {(uint64_t)1 << 63, UINT64_MAX};
  for (size_t i = 0; i < 2; i++)
    for (size_t h = 0; h < 2; h++) {
      fg__buf_reset(&b);
      fg__proto_put_op(&b, dialects[i], FG_OP_SET);
      fg__buf_put_u64(&b, huge[h]);
      assert_int_equal(decode_header(dialects[i], &b, &def), FG_ELIMIT);
      fg__buf_reset(&b);
      fg__proto_put_op(&b, dialects[i], FG_OP_WAIT);
      fg__buf_put_u64(&b, huge[h]);
      assert_int_equal(decode_header(dialects[i], &b, &def), FG_ELIMIT);
    }
  fg__buf_free(&b);
}

/* With the limits lifted, a huge length still asks for more than has arrived. */
static void unlimited_lengths_give_a_hint_past_the_end(void **state) {
  (void)state;
  fg_proto_limits none = {UINT64_MAX, UINT64_MAX, UINT64_MAX};
  fg_buf b;
  fg__buf_init(&b);
  fg__proto_put_op(&b, FG_DIALECT_LEGACY, FG_OP_SET);
  fg__buf_put_u64(&b, UINT64_MAX - 4);
  fg_request r;
  size_t used = 0;
  assert_int_equal(decode(FG_DIALECT_LEGACY, &b, b.len, &none, &r, &used), FG_PROTO_NEED_MORE);
  assert_true(used > b.len);
  fg__buf_reset(&b);
  fg__proto_put_op(&b, FG_DIALECT_LEGACY, FG_OP_WAIT);
  fg__buf_put_u64(&b, UINT64_MAX);
  put_str(&b, "k");
  assert_int_equal(decode(FG_DIALECT_LEGACY, &b, b.len, &none, &r, &used), FG_PROTO_NEED_MORE);
  assert_true(used > b.len);
  fg__buf_free(&b);
}

static void lengths_at_the_limit_are_accepted(void **state) {
  (void)state;
  char key[16], value[32];
  memset(key, 'k', sizeof key);
  memset(value, 'v', sizeof value);
  fg_buf b;
  fg__buf_init(&b);
  fg__proto_put_op(&b, FG_DIALECT_V2, FG_OP_SET);
  fg__buf_put_bytes(&b, key, small.max_key);
  fg__buf_put_bytes(&b, value, small.max_value);
  fg_request r;
  size_t used;
  assert_int_equal(decode(FG_DIALECT_V2, &b, b.len, &small, &r, &used), FG_PROTO_OK);
  assert_int_equal(r.key.len, small.max_key);
  assert_int_equal(r.value.len, small.max_value);
  fg__buf_reset(&b);
  fg__proto_put_op(&b, FG_DIALECT_V2, FG_OP_WAIT);
  fg__buf_put_u64(&b, small.max_keys);
  for (uint64_t i = 0; i < small.max_keys; i++) put_str(&b, "k");
  assert_int_equal(decode(FG_DIALECT_V2, &b, b.len, &small, &r, &used), FG_PROTO_OK);
  assert_int_equal(r.nkeys, small.max_keys);
  fg__buf_free(&b);
}

/* ---- opcodes, sniffing, lists, encoders ------------------------------------------------- */

static void unknown_opcodes_are_protocol_errors(void **state) {
  (void)state;
  int unknown[2] = {0, 0};
  for (size_t i = 0; i < 2; i++)
    for (int byte = 0; byte < 256; byte++) {
      if (fg__proto_op(dialects[i], (uint8_t)byte) >= 0) continue;
      uint8_t p[16] = {(uint8_t)byte};
      fg_buf b = {.data = p, .len = sizeof p};
      fg_request r;
      size_t used;
      assert_int_equal(decode(dialects[i], &b, 1, NULL, &r, &used), FG_EPROTO);
      unknown[i]++;
    }
  assert_int_equal(unknown[0], 256 - 9);  /* legacy: 0..8 */
  assert_int_equal(unknown[1], 256 - 19); /* v2: 0..18 */
}

static void opcode_tables_round_trip(void **state) {
  (void)state;
  for (size_t i = 0; i < 2; i++) {
    for (int op = 0; op < FG_OP_COUNT; op++) {
      int code = fg__proto_opcode(dialects[i], (enum fg_op)op);
      if (code >= 0) assert_int_equal(fg__proto_op(dialects[i], (uint8_t)code), op);
    }
    for (int byte = 0; byte < 256; byte++) {
      int op = fg__proto_op(dialects[i], (uint8_t)byte);
      if (op >= 0) assert_int_equal(fg__proto_opcode(dialects[i], (enum fg_op)op), byte);
    }
  }
  assert_int_equal(fg__proto_opcode(FG_DIALECT_UNKNOWN, FG_OP_SET), -1);
  assert_int_equal(fg__proto_op(FG_DIALECT_UNKNOWN, 0), -1);
  assert_int_equal(fg__proto_opcode(FG_DIALECT_V2, FG_OP_COUNT), -1);
}

/* The numbers of wire spec §4.2. */
static void opcode_numbers_match_the_spec(void **state) {
  (void)state;
  static const int legacy[FG_OP_COUNT] = {-1, 0, 1, 2, 3, 4, 5, 6, 7, 8,
                                          -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
  for (int op = 0; op < FG_OP_COUNT; op++) {
    assert_int_equal(fg__proto_opcode(FG_DIALECT_LEGACY, (enum fg_op)op), legacy[op]);
    int v2 = op < FG_OP_WATCH_KEY ? op : op == FG_OP_WATCH_KEY ? -1 : op - 1;
    assert_int_equal(fg__proto_opcode(FG_DIALECT_V2, (enum fg_op)op), v2);
  }
}

static void op_names_are_distinct(void **state) {
  (void)state;
  for (int a = 0; a < FG_OP_COUNT; a++) {
    assert_non_null(fg__proto_op_name((enum fg_op)a));
    for (int b = 0; b < a; b++)
      assert_string_not_equal(fg__proto_op_name((enum fg_op)a), fg__proto_op_name((enum fg_op)b));
  }
  assert_string_equal(fg__proto_op_name(FG_OP_COMPARE_SET), "COMPARE_SET");
  assert_string_equal(fg__proto_op_name(FG_OP_COUNT), "?");
}

static void sniff_tells_the_dialects_apart(void **state) {
  (void)state;
  static const uint8_t hello[] = {0x00, 0xce, 0xf7, 0x85, 0x3c, 0x0d, 1, 2, 3, 4};
  assert_int_equal(fg__proto_sniff(NULL, 0), FG_DIALECT_UNKNOWN);
  for (size_t n = 1; n < 5; n++) assert_int_equal(fg__proto_sniff(hello, n), FG_DIALECT_UNKNOWN);
  assert_int_equal(fg__proto_sniff(hello, 5), FG_DIALECT_V2);
  assert_int_equal(fg__proto_sniff(hello, sizeof hello), FG_DIALECT_V2);
  /* A 1.13 SET of a short key differs at its second byte. */
  static const uint8_t set[] = {0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, '/', 'k'};
  assert_int_equal(fg__proto_sniff(set, 1), FG_DIALECT_UNKNOWN);
  assert_int_equal(fg__proto_sniff(set, 2), FG_DIALECT_LEGACY);
  /* Any other first opcode is 1.13 at once. */
  static const uint8_t get[] = {0x02};
  assert_int_equal(fg__proto_sniff(get, 1), FG_DIALECT_LEGACY);
  /* The right opcode with a wrong magic is not a V2 hello. */
  static const uint8_t bad[] = {0x00, 0xce, 0xf7, 0x85, 0x3d};
  assert_int_equal(fg__proto_sniff(bad, sizeof bad), FG_DIALECT_LEGACY);
}

static void next_on_an_empty_list_ends_at_once(void **state) {
  (void)state;
  fg_buf b;
  fg__buf_init(&b);
  fg__proto_put_op(&b, FG_DIALECT_V2, FG_OP_MULTI_GET);
  fg__buf_put_u64(&b, 0);
  fg_request r;
  size_t used;
  assert_int_equal(decode(FG_DIALECT_V2, &b, b.len, NULL, &r, &used), FG_PROTO_OK);
  assert_int_equal(r.nkeys, 0);
  fg_slice k;
  assert_int_equal(fg__proto_next(&r.list, &k, NULL), 0);
  fg__buf_free(&b);
}

/* check_fields walks every list op's keys (and MULTI_SET's values); this pins it on its own. */
static void next_walks_keys_and_pairs(void **state) {
  (void)state;
  fg_buf b;
  fg__buf_init(&b);
  fg_request r;
  size_t used;
  build(&b, FG_DIALECT_V2, FG_OP_WAIT);
  assert_int_equal(decode(FG_DIALECT_V2, &b, b.len, NULL, &r, &used), FG_PROTO_OK);
  check_list(r.list, 0);
  build(&b, FG_DIALECT_V2, FG_OP_MULTI_SET);
  assert_int_equal(decode(FG_DIALECT_V2, &b, b.len, NULL, &r, &used), FG_PROTO_OK);
  check_list(r.list, 1);
  fg__buf_free(&b);
}

static void encoders_write_the_wire_bytes(void **state) {
  (void)state;
  fg_buf b;
  fg__buf_init(&b);
  fg__proto_put_validate(&b);
  static const uint8_t hello[] = {0x00, 0xce, 0xf7, 0x85, 0x3c};
  assert_int_equal(b.len, sizeof hello);
  assert_memory_equal(b.data, hello, sizeof hello);
  fg__buf_reset(&b);
  fg__proto_put_op(&b, FG_DIALECT_LEGACY, FG_OP_DELETE_KEY);
  fg__proto_put_op(&b, FG_DIALECT_V2, FG_OP_DELETE_KEY);
  fg__proto_put_op(&b, FG_DIALECT_V2, FG_OP_CANCEL_WAIT);
  static const uint8_t ops[] = {8, 8, 12};
  assert_memory_equal(b.data, ops, sizeof ops);
  fg__buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(decodes_every_legacy_opcode),
      cmocka_unit_test(decodes_every_v2_opcode),
      cmocka_unit_test(every_prefix_needs_more_with_a_sane_hint),
      cmocka_unit_test(pipelined_requests_decode_one_at_a_time),
      cmocka_unit_test(key_over_limit_fails_before_its_bytes_arrive),
      cmocka_unit_test(value_over_limit_fails_before_its_bytes_arrive),
      cmocka_unit_test(key_count_over_limit_fails_before_the_keys_arrive),
      cmocka_unit_test(lengths_of_2_to_the_63_fail),
      cmocka_unit_test(unlimited_lengths_give_a_hint_past_the_end),
      cmocka_unit_test(lengths_at_the_limit_are_accepted),
      cmocka_unit_test(unknown_opcodes_are_protocol_errors),
      cmocka_unit_test(opcode_tables_round_trip),
      cmocka_unit_test(opcode_numbers_match_the_spec),
      cmocka_unit_test(op_names_are_distinct),
      cmocka_unit_test(sniff_tells_the_dialects_apart),
      cmocka_unit_test(next_on_an_empty_list_ends_at_once),
      cmocka_unit_test(next_walks_keys_and_pairs),
      cmocka_unit_test(encoders_write_the_wire_bytes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
