#include "store/kv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "fg/fg.h"

int fg__kv_init(fg_kv *kv, uint64_t max_bytes) {
  memset(kv, 0, sizeof *kv);
  kv->nbuckets = 64;
  kv->buckets = calloc(kv->nbuckets, sizeof *kv->buckets);
  if (!kv->buckets) return -ENOMEM;
  kv->max_bytes = max_bytes;
  fg__random_bytes(kv->seed, sizeof kv->seed);
  return 0;
}

static void drop_items(fg_kv_entry *e) {
  while (!fg_link_empty(&e->queue)) {
    fg_link *n = e->queue.next;
    fg_link_remove(n);
    free(fg_container_of(n, fg_kv_item, link));
  }
}

void fg__kv_free(fg_kv *kv) {
  for (size_t i = 0; i < kv->nbuckets; i++) {
    fg_kv_entry *e = kv->buckets[i];
    while (e) {
      fg_kv_entry *next = e->chain;
      /* Registrations belong to connections, which are closed before the table. */
      drop_items(e);
      fg__kv_blob_unref(e->blob);
      free(e->key);
      free(e);
      e = next;
    }
  }
  free(kv->buckets);
  memset(kv, 0, sizeof *kv);
}

static int over_limit(const fg_kv *kv, uint64_t more) {
  return more > kv->max_bytes || kv->bytes > kv->max_bytes - more;
}

fg_kv_entry *fg__kv_find(fg_kv *kv, const uint8_t *key, size_t keylen) {
  uint64_t h = fg__siphash(key, keylen, kv->seed);
  for (fg_kv_entry *e = kv->buckets[h & (kv->nbuckets - 1)]; e; e = e->chain)
    if (e->hash == h && e->keylen == keylen && memcmp(e->key, key, keylen) == 0) return e;
  return NULL;
}

static void grow(fg_kv *kv) {
  size_t n = kv->nbuckets * 2;
  fg_kv_entry **b = calloc(n, sizeof *b);
  if (!b) return; /* a fuller table is slower, not wrong */
  for (size_t i = 0; i < kv->nbuckets; i++) {
    fg_kv_entry *e = kv->buckets[i];
    while (e) {
      fg_kv_entry *next = e->chain;
      e->chain = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  free(kv->buckets);
  kv->buckets = b;
  kv->nbuckets = n;
}

fg_kv_entry *fg__kv_intern(fg_kv *kv, const uint8_t *key, size_t keylen, int *err) {
  fg_kv_entry *e = fg__kv_find(kv, key, keylen);
  if (e) return e;
  if (over_limit(kv, keylen)) {
    *err = FG_ELIMIT;
    return NULL;
  }
  e = calloc(1, sizeof *e);
  uint8_t *k = malloc(keylen ? keylen : 1);
  if (!e || !k) {
    free(e);
    free(k);
    *err = -ENOMEM;
    return NULL;
  }
  memcpy(k, key, keylen);
  e->key = k;
  e->keylen = keylen;
  e->hash = fg__siphash(key, keylen, kv->seed);
  for (int k = 0; k < FG_REG_KINDS; k++) fg_link_init(&e->regs[k]);
  fg_link_init(&e->queue);
  if (kv->nentries >= kv->nbuckets) grow(kv);
  fg_kv_entry **head = &kv->buckets[e->hash & (kv->nbuckets - 1)];
  e->chain = *head;
  *head = e;
  kv->nentries++;
  kv->bytes += keylen;
  return e;
}

static int registered(const fg_kv_entry *e) {
  for (int k = 0; k < FG_REG_KINDS; k++)
    if (!fg_link_empty(&e->regs[k])) return 1;
  return 0;
}

void fg__kv_release(fg_kv *kv, fg_kv_entry *e) {
  if (e->has_value || e->queued || registered(e)) return;
  fg_kv_entry **p = &kv->buckets[e->hash & (kv->nbuckets - 1)];
  while (*p != e) p = &(*p)->chain;
  *p = e->chain;
  kv->nentries--;
  kv->bytes -= e->keylen;
  fg__kv_blob_unref(e->blob);
  free(e->key);
  free(e);
}

fg_kv_blob *fg__kv_blob_ref(fg_kv_entry *e) {
  e->blob->refs++;
  return e->blob;
}

void fg__kv_blob_unref(fg_kv_blob *b) {
  if (b && --b->refs == 0) free(b);
}

/* Memory for `need` bytes of value, the first `keep` of them as they were. A blob a reply
 * still holds is left to it and the value moves to a blob of its own. */
static int reserve_value(fg_kv_entry *e, size_t need, size_t keep) {
  fg_kv_blob *b = e->blob;
  if (b && b->refs == 1 && need <= b->cap) return 0;
  size_t cap = b && b->refs == 1 ? b->cap : 16;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  if (cap > SIZE_MAX - sizeof *b) return -ENOMEM;
  fg_kv_blob *nb;
  if (b && b->refs == 1) {
    nb = realloc(b, sizeof *nb + cap);
    if (!nb) return -ENOMEM;
  } else {
    if (!(nb = malloc(sizeof *nb + cap))) return -ENOMEM;
    nb->refs = 1;
    if (keep) memcpy(nb->data, b->data, keep);
    fg__kv_blob_unref(b);
  }
  nb->cap = cap;
  e->blob = nb;
  e->value = nb->data;
  return 0;
}

int fg__kv_set(fg_kv *kv, fg_kv_entry *e, const uint8_t *v, size_t len) {
  if (len > e->len && over_limit(kv, len - e->len)) return FG_ELIMIT;
  if (reserve_value(e, len, 0) != 0) return -ENOMEM;
  if (len) memcpy(e->value, v, len);
  kv->bytes = kv->bytes - e->len + len;
  e->len = len;
  if (!e->has_value) kv->nvalues++;
  e->has_value = 1;
  /* A value that shrank a lot gives its memory back. */
  fg_kv_blob *b = e->blob;
  if (b->cap > 4096 && e->len < b->cap / 4) {
    size_t cap = e->len ? e->len : 1;
    fg_kv_blob *nb = realloc(b, sizeof *nb + cap);
    if (nb) {
      nb->cap = cap;
      e->blob = nb;
      e->value = nb->data;
    }
  }
  return 0;
}

int fg__kv_append(fg_kv *kv, fg_kv_entry *e, const uint8_t *v, size_t len) {
  size_t old = e->has_value ? e->len : 0;
  if (over_limit(kv, len) || len > SIZE_MAX - old) return FG_ELIMIT;
  if (reserve_value(e, old + len, old) != 0) return -ENOMEM;
  if (len) memcpy(e->value + old, v, len);
  e->len = old + len;
  kv->bytes += len;
  if (!e->has_value) kv->nvalues++;
  e->has_value = 1;
  return 0;
}

void fg__kv_unset(fg_kv *kv, fg_kv_entry *e) {
  if (!e->has_value) return;
  kv->bytes -= e->len;
  kv->nvalues--;
  fg__kv_blob_unref(e->blob);
  e->blob = NULL;
  e->value = NULL;
  e->len = 0;
  e->has_value = 0;
}

int fg__kv_push(fg_kv *kv, fg_kv_entry *e, const uint8_t *v, size_t len) {
  if (over_limit(kv, len)) return FG_ELIMIT;
  fg_kv_item *it = malloc(sizeof *it + len);
  if (!it) return -ENOMEM;
  it->len = len;
  if (len) memcpy(it->data, v, len);
  fg_link_push(&e->queue, &it->link);
  e->queued++;
  kv->bytes += len;
  return 0;
}

fg_kv_item *fg__kv_pop(fg_kv *kv, fg_kv_entry *e) {
  if (!e->queued) return NULL;
  fg_link *n = e->queue.next;
  fg_link_remove(n);
  e->queued--;
  fg_kv_item *it = fg_container_of(n, fg_kv_item, link);
  kv->bytes -= it->len;
  return it;
}

void fg__kv_item_free(fg_kv_item *it) { free(it); }

fg_kv_reg *fg__kv_register(fg_kv *kv, fg_kv_entry *e, void *owner, fg_link *owner_list,
                          enum fg_reg_kind kind) {
  (void)kv;
  fg_kv_reg *r = malloc(sizeof *r);
  if (!r) return NULL;
  r->entry = e;
  r->owner = owner;
  r->kind = kind;
  fg_link_push(&e->regs[kind], &r->on_entry);
  fg_link_push(owner_list, &r->on_owner);
  return r;
}

void fg__kv_unregister(fg_kv *kv, fg_kv_reg *r) {
  fg_kv_entry *e = r->entry;
  fg_link_remove(&r->on_entry);
  fg_link_remove(&r->on_owner);
  free(r);
  fg__kv_release(kv, e);
}

void fg__kv_foreach(fg_kv *kv, void (*fn)(fg_kv *kv, fg_kv_entry *e, void *arg), void *arg) {
  for (size_t i = 0; i < kv->nbuckets; i++) {
    fg_kv_entry *e = kv->buckets[i];
    while (e) {
      fg_kv_entry *next = e->chain; /* fn may free e */
      fn(kv, e, arg);
      e = next;
    }
  }
}
