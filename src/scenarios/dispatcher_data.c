/* dispatcher_data.c - batches, their metadata, and the synthetic dataset. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scenarios/dispatcher_data.h"

void batch_layout_default(batch_layout *l) {
  static const struct {
    const char *key;
    fg_dtype dtype;
  } keys[] = {{"input_ids", FG_INT64}, {"labels", FG_INT64}, {"attention_mask", FG_INT8}};
  memset(l, 0, sizeof *l);
  for (int i = 0; i < 3; i++) {
    snprintf(l->key[i], sizeof l->key[i], "%s", keys[i].key);
    l->dtype[i] = keys[i].dtype;
  }
  l->n = 3;
}

char *batch_layout_encode(const batch_layout *l, size_t *len) {
  char *out = calloc(1, BATCH_MAX_TENSORS * (BATCH_KEY_LEN + 16) + 1);
  if (!out) return NULL;
  size_t n = 0;
  for (int i = 0; i < l->n; i++)
    n += (size_t)sprintf(out + n, "%s%s:%s", i ? "," : "", l->key[i], fg_dtype_name(l->dtype[i]));
  *len = n;
  return out;
}

int batch_layout_decode(const char *bytes, size_t len, batch_layout *l) {
  memset(l, 0, sizeof *l);
  size_t pos = 0;
  while (pos < len) {
    if (l->n == BATCH_MAX_TENSORS) return -EINVAL;
    size_t end = pos;
    while (end < len && bytes[end] != ',') end++;
    const char *colon = memchr(bytes + pos, ':', end - pos);
    char dtype[16];
    size_t keylen = colon ? (size_t)(colon - (bytes + pos)) : 0;
    size_t dtlen = colon ? (size_t)(bytes + end - colon - 1) : 0;
    if (!colon || keylen == 0 || keylen >= BATCH_KEY_LEN || dtlen == 0 || dtlen >= sizeof dtype)
      return -EINVAL;
    memcpy(l->key[l->n], bytes + pos, keylen);
    memcpy(dtype, colon + 1, dtlen);
    dtype[dtlen] = '\0';
    int dt = fg_dtype_parse(dtype);
    if (dt < 0) return -EINVAL;
    l->dtype[l->n++] = (fg_dtype)dt;
    pos = end + 1;
  }
  return 0;
}

int batch_layout_equal(const batch_layout *a, const batch_layout *b) {
  if (a->n != b->n) return 0;
  for (int i = 0; i < a->n; i++)
    if (strcmp(a->key[i], b->key[i]) || a->dtype[i] != b->dtype[i]) return 0;
  return 1;
}

int64_t batch_numel(const batch *b, int i) { return b->shape[i][0] * b->shape[i][1]; }

size_t batch_bytes(const batch_layout *l, const batch *b, int i) {
  return (size_t)batch_numel(b, i) * fg_dtype_size(l->dtype[i]);
}

int batch_is_empty(const batch_layout *l, const batch *b) {
  for (int i = 0; i < l->n; i++)
    if (b->shape[i][0] || b->shape[i][1]) return 0;
  return 1;
}

int batch_alloc(const batch_layout *l, batch *b) {
  for (int i = 0; i < l->n; i++) {
    b->data[i] = calloc(1, batch_bytes(l, b, i) + 1); /* + 1: a 0x0 tensor is still a pointer */
    if (!b->data[i]) {
      batch_free(b);
      return -ENOMEM;
    }
  }
  return 0;
}

void batch_free(batch *b) {
  for (int i = 0; i < BATCH_MAX_TENSORS; i++) {
    free(b->data[i]);
    b->data[i] = NULL;
  }
}

/* --- reading and writing integer tensors of any width ---------------------------------- */

static int64_t get_value(fg_dtype dt, const void *data, int64_t k) {
  switch (dt) {
    case FG_INT8: return ((const int8_t *)data)[k];
    case FG_UINT8: return ((const uint8_t *)data)[k];
    case FG_INT32: return ((const int32_t *)data)[k];
    case FG_INT64: return ((const int64_t *)data)[k];
    default: return INT64_MIN;
  }
}

static void set_value(fg_dtype dt, void *data, int64_t k, int64_t v) {
  switch (dt) {
    case FG_INT8: ((int8_t *)data)[k] = (int8_t)v; break;
    case FG_UINT8: ((uint8_t *)data)[k] = (uint8_t)v; break;
    case FG_INT32: ((int32_t *)data)[k] = (int32_t)v; break;
    case FG_INT64: ((int64_t *)data)[k] = v; break;
    default: break;
  }
}

/* What key holds for sample j of batch b; -1 for a key this dataset does not have. */
static int expected(const char *key, int64_t b, int64_t j, int64_t *out) {
  if (!strcmp(key, "input_ids"))
    *out = b * 1000 + j;
  else if (!strcmp(key, "labels"))
    *out = b * 1000 + j + 1;
  else if (!strcmp(key, "attention_mask"))
    *out = 1;
  else
    return -1;
  return 0;
}

/* --- the dataset ----------------------------------------------------------------------- */

int dataset_make(const dataset *d, const batch_layout *l, int64_t index, batch *out) {
  memset(out, 0, sizeof *out);
  int64_t b = d->duplicate && index == 1 ? 0 : index;
  for (int i = 0; i < l->n; i++) {
    out->shape[i][0] = d->batch_size;
    out->shape[i][1] = d->seq_len;
  }
  int rc = batch_alloc(l, out);
  if (rc) return rc;
  for (int i = 0; i < l->n; i++) {
    for (int64_t j = 0; j < d->batch_size; j++) {
      int64_t v = 0;
      if (expected(l->key[i], b, j, &v) != 0) return -EINVAL;
      for (int64_t k = 0; k < d->seq_len; k++)
        set_value(l->dtype[i], out->data[i], j * d->seq_len + k, v);
    }
    if (d->corrupt && index == d->length - 1 && !strcmp(l->key[i], "labels"))
      set_value(l->dtype[i], out->data[i], batch_numel(out, i) - 1, -7);
  }
  return 0;
}

int dataset_load(dataset *d, const batch_layout *l, batch *out) {
  memset(out, 0, sizeof *out);
  if (d->next >= d->length) return 0;
  int rc = dataset_make(d, l, d->next++, out);
  return rc ? rc : 1;
}

int64_t batch_bad_values(const batch_layout *l, const batch *b, int batch_size, int seq_len,
                         int64_t *first_token) {
  int64_t bad = 0;
  int ids = -1;
  for (int i = 0; i < l->n; i++)
    if (!strcmp(l->key[i], "input_ids")) ids = i;
  *first_token =
      ids >= 0 && batch_numel(b, ids) > 0 ? get_value(l->dtype[ids], b->data[ids], 0) : -1;
  int64_t index = *first_token >= 0 ? *first_token / 1000 : -1;
  for (int i = 0; i < l->n; i++) {
    if (b->shape[i][0] != batch_size || b->shape[i][1] != seq_len) {
      bad++; /* the wrong shape counts once: its values cannot be lined up */
      continue;
    }
    for (int64_t j = 0; j < batch_size; j++) {
      int64_t want;
      if (expected(l->key[i], index, j, &want) != 0) {
        bad++;
        break;
      }
      for (int64_t k = 0; k < seq_len; k++)
        bad += get_value(l->dtype[i], b->data[i], j * seq_len + k) != want;
    }
  }
  return bad + (ids < 0);
}
