/* kv.h - the store's table: keys to values, per-key FIFO queues, and the
 * registrations (waits, barrier waits, watches) that hang off each key.
 *
 * An entry exists while it has a value, queued items or registrations; the
 * last of those to go takes the entry with it. Every byte of keys, values and
 * queued items is counted against one limit, so no client can grow the table
 * past it. */
#ifndef FG_STORE_KV_H
#define FG_STORE_KV_H

#include <stddef.h>
#include <stdint.h>

typedef struct fg_link {
  struct fg_link *prev, *next;
} fg_link;

static inline void fg_link_init(fg_link *head) { head->prev = head->next = head; }
static inline int fg_link_empty(const fg_link *head) { return head->next == head; }
static inline void fg_link_push(fg_link *head, fg_link *n) {
  n->prev = head->prev;
  n->next = head;
  head->prev->next = n;
  head->prev = n;
}
static inline void fg_link_remove(fg_link *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = n;
}
#define fg_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

enum fg_reg_kind { FG_REG_WAIT, FG_REG_BARRIER, FG_REG_WATCH, FG_REG_KINDS };

/* A value's memory, counted: the entry holds one reference, and a reply that sends the value
 * without copying it (ops.h: fg_session's shares) holds another until it is written. A value
 * that changes while replies still hold it moves to new memory; the old stays theirs. */
typedef struct fg_kv_blob {
  size_t refs;
  size_t cap;
  uint8_t data[];
} fg_kv_blob;

typedef struct fg_kv_entry {
  struct fg_kv_entry *chain; /* next in the hash bucket */
  uint64_t hash;
  uint8_t *key;
  size_t keylen;
  uint8_t *value; /* blob->data, or NULL */
  size_t len;
  fg_kv_blob *blob;
  int has_value;
  /* fg_kv_reg.on_entry, a list per kind: a change looks only at the kind it affects, so
   * 4,096 barrier waiters on a counter do not make each arrival's ADD walk all of them. */
  fg_link regs[FG_REG_KINDS];
  fg_link queue; /* fg_kv_item.link */
  size_t queued;
} fg_kv_entry;

/* A connection's interest in a key. Owned by both lists; freed by fg__kv_unregister. */
typedef struct fg_kv_reg {
  fg_link on_entry;
  fg_link on_owner;
  fg_kv_entry *entry;
  void *owner;
  enum fg_reg_kind kind;
} fg_kv_reg;

typedef struct fg_kv_item {
  fg_link link;
  size_t len;
  uint8_t data[];
} fg_kv_item;

typedef struct fg_kv {
  fg_kv_entry **buckets;
  size_t nbuckets; /* a power of two */
  size_t nentries;
  size_t nvalues; /* entries with a value: what GETNUMKEYS counts */
  uint64_t bytes; /* keys + values + queued items */
  uint64_t max_bytes;
  uint8_t seed[16];
} fg_kv;

int fg__kv_init(fg_kv *kv, uint64_t max_bytes);
void fg__kv_free(fg_kv *kv);

fg_kv_entry *fg__kv_find(fg_kv *kv, const uint8_t *key, size_t keylen);
/* Finds or creates; NULL with *err = -ENOMEM or FG_ELIMIT (the byte limit). */
fg_kv_entry *fg__kv_intern(fg_kv *kv, const uint8_t *key, size_t keylen, int *err);
/* Drops the entry if nothing keeps it (no value, no items, no registrations). */
void fg__kv_release(fg_kv *kv, fg_kv_entry *e);

/* A key "exists" for WAIT and CHECK when it has a value or queued items. */
static inline int fg_kv_exists(const fg_kv_entry *e) { return e && (e->has_value || e->queued); }

/* Value changes; 0, -ENOMEM or FG_ELIMIT (nothing changed then). */
int fg__kv_set(fg_kv *kv, fg_kv_entry *e, const uint8_t *v, size_t len);
/* Another reference to e's value memory (e must have a value); give it back with
 * fg__kv_blob_unref. */
fg_kv_blob *fg__kv_blob_ref(fg_kv_entry *e);
void fg__kv_blob_unref(fg_kv_blob *b);
int fg__kv_append(fg_kv *kv, fg_kv_entry *e, const uint8_t *v, size_t len);
void fg__kv_unset(fg_kv *kv, fg_kv_entry *e);

int fg__kv_push(fg_kv *kv, fg_kv_entry *e, const uint8_t *v, size_t len);
/* Removes the head item; the caller frees it with fg__kv_item_free. */
fg_kv_item *fg__kv_pop(fg_kv *kv, fg_kv_entry *e);
void fg__kv_item_free(fg_kv_item *it);

fg_kv_reg *fg__kv_register(fg_kv *kv, fg_kv_entry *e, void *owner, fg_link *owner_list,
                          enum fg_reg_kind kind);
/* Unlinks and frees the registration, releasing its entry if that was its last hold. */
void fg__kv_unregister(fg_kv *kv, fg_kv_reg *r);

/* Calls fn for every entry; fn may release the entry it is given. */
void fg__kv_foreach(fg_kv *kv, void (*fn)(fg_kv *kv, fg_kv_entry *e, void *arg), void *arg);

#endif
