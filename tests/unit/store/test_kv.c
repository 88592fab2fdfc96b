/* test_kv - the store's table (kv.c) on its own: values set, appended and unset, per-key
 * FIFO queues, entries that live exactly as long as a value, an item or a registration
 * keeps them, one byte limit over keys, values and items, value memory that a reply still
 * holds, and a table that grows past its first buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fg/fg.h"
#include "store/kv.h"

static const uint8_t *u8(const char *s) { return (const uint8_t *)s; }

static fg_kv_entry *intern(fg_kv *kv, const char *key) {
  int err = 0;
  fg_kv_entry *e = fg__kv_intern(kv, u8(key), strlen(key), &err);
  if (!e) fail_msg("intern '%s': %d", key, err);
  return e;
}

static fg_kv_entry *find(fg_kv *kv, const char *key) {
  return fg__kv_find(kv, u8(key), strlen(key));
}

static void expect_stored(const fg_kv_entry *e, const char *want) {
  assert_true(e->has_value);
  assert_int_equal(e->len, strlen(want));
  assert_memory_equal(e->value, want, e->len);
}

static void set(fg_kv *kv, fg_kv_entry *e, const char *v) {
  assert_int_equal(fg__kv_set(kv, e, u8(v), strlen(v)), 0);
}

static void a_value_is_set_replaced_and_unset(void **state) {
  (void)state;
  fg_kv kv;
  assert_int_equal(fg__kv_init(&kv, 1 << 20), 0);
  fg_kv_entry *e = intern(&kv, "key");
  assert_ptr_equal(find(&kv, "key"), e);
  assert_ptr_equal(intern(&kv, "key"), e); /* finds, does not make a second */
  assert_false(fg_kv_exists(e));
  assert_int_equal(kv.nentries, 1);
  assert_int_equal(kv.nvalues, 0);
  assert_int_equal(kv.bytes, 3);

  set(&kv, e, "hello");
  expect_stored(e, "hello");
  assert_true(fg_kv_exists(e));
  assert_int_equal(kv.nvalues, 1);
  assert_int_equal(kv.bytes, 3 + 5);
  set(&kv, e, "hi");
  expect_stored(e, "hi");
  assert_int_equal(kv.nvalues, 1);
  assert_int_equal(kv.bytes, 3 + 2);
  set(&kv, e, ""); /* an empty value is a value */
  assert_true(e->has_value && e->len == 0);
  assert_true(fg_kv_exists(e));

  fg__kv_unset(&kv, e);
  assert_false(e->has_value);
  assert_false(fg_kv_exists(e));
  assert_int_equal(kv.nvalues, 0);
  fg__kv_unset(&kv, e); /* twice is harmless */
  assert_int_equal(kv.nvalues, 0);
  fg__kv_release(&kv, e);
  assert_null(find(&kv, "key"));
  assert_int_equal(kv.nentries, 0);
  assert_int_equal(kv.bytes, 0);

  e = intern(&kv, ""); /* the empty key too */
  set(&kv, e, "v");
  assert_ptr_equal(find(&kv, ""), e);
  assert_null(find(&kv, "k"));
  fg__kv_free(&kv);
}

static void append_creates_or_extends_the_value(void **state) {
  (void)state;
  fg_kv kv;
  assert_int_equal(fg__kv_init(&kv, 1 << 20), 0);
  fg_kv_entry *e = intern(&kv, "log");
  assert_int_equal(fg__kv_append(&kv, e, u8("ab"), 2), 0);
  expect_stored(e, "ab");
  assert_int_equal(kv.nvalues, 1);
  assert_int_equal(fg__kv_append(&kv, e, u8("cd"), 2), 0);
  expect_stored(e, "abcd");
  /* past the first allocation: the old bytes move with it */
  char big[5000];
  memset(big, 'x', sizeof big);
  assert_int_equal(fg__kv_append(&kv, e, u8(big), sizeof big), 0);
  assert_int_equal(e->len, 4 + sizeof big);
  assert_memory_equal(e->value, "abcd", 4);
  assert_memory_equal(e->value + 4, big, sizeof big);
  assert_int_equal(kv.nvalues, 1);
  assert_int_equal(kv.bytes, 3 + 4 + sizeof big);
  /* a value that shrank keeps its bytes right */
  set(&kv, e, "z");
  expect_stored(e, "z");
  assert_int_equal(kv.bytes, 3 + 1);
  fg__kv_free(&kv);
}

static void a_queue_is_first_in_first_out(void **state) {
  (void)state;
  fg_kv kv;
  assert_int_equal(fg__kv_init(&kv, 1 << 20), 0);
  fg_kv_entry *e = intern(&kv, "q");
  assert_null(fg__kv_pop(&kv, e));
  const char *items[] = {"one", "", "three"};
  for (int i = 0; i < 3; i++)
    assert_int_equal(fg__kv_push(&kv, e, u8(items[i]), strlen(items[i])), 0);
  assert_int_equal(e->queued, 3);
  assert_true(fg_kv_exists(e)); /* queued items count for WAIT and CHECK */
  assert_false(e->has_value);
  assert_int_equal(kv.nvalues, 0); /* but not for GETNUMKEYS */
  assert_int_equal(kv.bytes, 1 + 3 + 0 + 5);
  fg__kv_release(&kv, e); /* items keep the entry */
  assert_ptr_equal(find(&kv, "q"), e);
  for (int i = 0; i < 3; i++) {
    fg_kv_item *it = fg__kv_pop(&kv, e);
    assert_non_null(it);
    assert_int_equal(it->len, strlen(items[i]));
    assert_memory_equal(it->data, items[i], it->len);
    fg__kv_item_free(it);
  }
  assert_int_equal(e->queued, 0);
  assert_null(fg__kv_pop(&kv, e));
  assert_false(fg_kv_exists(e));
  assert_int_equal(kv.bytes, 1);
  fg__kv_release(&kv, e);
  assert_null(find(&kv, "q"));
  /* items left in the table go with it */
  e = intern(&kv, "left");
  assert_int_equal(fg__kv_push(&kv, e, u8("x"), 1), 0);
  fg__kv_free(&kv);
}

static void one_limit_counts_keys_values_and_items(void **state) {
  (void)state;
  fg_kv kv;
  assert_int_equal(fg__kv_init(&kv, 16), 0);
  fg_kv_entry *e = intern(&kv, "0123456789"); /* 10 of 16 */
  set(&kv, e, "abcdef");                       /* 16 of 16 */
  assert_int_equal(fg__kv_set(&kv, e, u8("abcdefg"), 7), FG_ELIMIT);
  expect_stored(e, "abcdef"); /* nothing changed */
  assert_int_equal(fg__kv_append(&kv, e, u8("g"), 1), FG_ELIMIT);
  expect_stored(e, "abcdef");
  assert_int_equal(fg__kv_push(&kv, e, u8("g"), 1), FG_ELIMIT);
  assert_int_equal(e->queued, 0);
  int err = 0;
  assert_null(fg__kv_intern(&kv, u8("k"), 1, &err));
  assert_int_equal(err, FG_ELIMIT);
  assert_int_equal(kv.nentries, 1);
  assert_int_equal(kv.bytes, 16);
  set(&kv, e, "uvwxyz"); /* the same size fits */
  set(&kv, e, "ab");     /* a smaller value gives bytes back */
  assert_int_equal(fg__kv_push(&kv, e, u8("1234"), 4), 0);
  assert_int_equal(kv.bytes, 16);
  fg_kv_item *it = fg__kv_pop(&kv, e);
  fg__kv_item_free(it);
  assert_int_equal(kv.bytes, 12);
  fg_kv_entry *k = intern(&kv, "k");
  assert_int_equal(fg__kv_append(&kv, k, u8("123"), 3), 0);
  assert_int_equal(kv.bytes, 16);
  fg__kv_free(&kv);
}

static void a_registration_keeps_its_entry(void **state) {
  (void)state;
  fg_kv kv;
  assert_int_equal(fg__kv_init(&kv, 1 << 20), 0);
  fg_link owner;
  fg_link_init(&owner);
  fg_kv_entry *e = intern(&kv, "waited");
  fg_kv_reg *w = fg__kv_register(&kv, e, &owner, &owner, FG_REG_WAIT);
  fg_kv_reg *b = fg__kv_register(&kv, e, &owner, &owner, FG_REG_BARRIER);
  assert_non_null(w);
  assert_non_null(b);
  assert_ptr_equal(w->entry, e);
  assert_false(fg_link_empty(&e->regs[FG_REG_WAIT]));
  assert_true(fg_link_empty(&e->regs[FG_REG_WATCH]));
  assert_false(fg_kv_exists(e)); /* a registration keeps the entry, not the key */
  fg__kv_release(&kv, e);
  assert_ptr_equal(find(&kv, "waited"), e);
  fg__kv_unregister(&kv, w);
  assert_ptr_equal(find(&kv, "waited"), e); /* the barrier wait still holds it */
  assert_true(fg_link_empty(&e->regs[FG_REG_WAIT]));
  fg__kv_unregister(&kv, b); /* the last hold: the entry goes */
  assert_null(find(&kv, "waited"));
  assert_true(fg_link_empty(&owner));
  assert_int_equal(kv.nentries, 0);

  /* an entry with a value outlives its registrations */
  e = intern(&kv, "set");
  set(&kv, e, "v");
  fg__kv_unregister(&kv, fg__kv_register(&kv, e, &owner, &owner, FG_REG_WATCH));
  assert_ptr_equal(find(&kv, "set"), e);
  expect_stored(e, "v");
  fg__kv_free(&kv);
}

static void a_held_value_stays_as_it_was(void **state) {
  (void)state;
  fg_kv kv;
  assert_int_equal(fg__kv_init(&kv, 1 << 20), 0);
  fg_kv_entry *e = intern(&kv, "k");
  set(&kv, e, "first");
  fg_kv_blob *held = fg__kv_blob_ref(e);
  assert_int_equal(held->refs, 2);
  set(&kv, e, "second");
  expect_stored(e, "second");
  assert_ptr_not_equal(e->blob, held); /* the value moved to memory of its own */
  assert_int_equal(held->refs, 1);
  assert_memory_equal(held->data, "first", 5);
  fg__kv_blob_unref(held);

  held = fg__kv_blob_ref(e);
  assert_int_equal(fg__kv_append(&kv, e, u8("+"), 1), 0);
  expect_stored(e, "second+");
  assert_memory_equal(held->data, "second", 6);
  fg__kv_unset(&kv, e);
  fg__kv_release(&kv, e); /* the entry goes; the reply's memory does not */
  assert_int_equal(held->refs, 1);
  assert_memory_equal(held->data, "second", 6);
  fg__kv_blob_unref(held);
  fg__kv_free(&kv);
}

static void count_and_drop(fg_kv *kv, fg_kv_entry *e, void *arg) {
  ++*(int *)arg;
  fg__kv_unset(kv, e);
  fg__kv_release(kv, e);
}

static void many_keys_outgrow_the_first_buckets(void **state) {
  (void)state;
  fg_kv kv;
  assert_int_equal(fg__kv_init(&kv, 1 << 20), 0);
  size_t first = kv.nbuckets;
  enum { KEYS = 1000 };
  char key[32], value[32];
  for (int i = 0; i < KEYS; i++) {
    snprintf(key, sizeof key, "rank/%d", i);
    snprintf(value, sizeof value, "%d", i * 7);
    set(&kv, intern(&kv, key), value);
  }
  assert_true(kv.nbuckets > first);
  assert_int_equal(kv.nentries, KEYS);
  assert_int_equal(kv.nvalues, KEYS);
  for (int i = 0; i < KEYS; i++) {
    snprintf(key, sizeof key, "rank/%d", i);
    snprintf(value, sizeof value, "%d", i * 7);
    fg_kv_entry *e = find(&kv, key);
    if (!e) fail_msg("%s is lost", key);
    expect_stored(e, value);
  }
  int seen = 0;
  fg__kv_foreach(&kv, count_and_drop, &seen); /* fn may release what it is given */
  assert_int_equal(seen, KEYS);
  assert_int_equal(kv.nentries, 0);
  assert_int_equal(kv.bytes, 0);
  fg__kv_free(&kv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_value_is_set_replaced_and_unset),
      cmocka_unit_test(append_creates_or_extends_the_value),
      cmocka_unit_test(a_queue_is_first_in_first_out),
      cmocka_unit_test(one_limit_counts_keys_values_and_items),
      cmocka_unit_test(a_registration_keeps_its_entry),
      cmocka_unit_test(a_held_value_stays_as_it_was),
      cmocka_unit_test(many_keys_outgrow_the_first_buckets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
