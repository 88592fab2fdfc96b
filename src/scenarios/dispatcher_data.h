/* dispatcher_data.h - what the dataloader-dispatcher moves: a batch of named
 * tensors, its metadata (keys and dtypes) as bytes, and the synthetic dataset
 * whose every token can be checked where it lands.
 *
 * Batch b, sample j: every input_ids token is b*1000 + j, every label one more,
 * every attention_mask entry 1. So a batch's first token names it (b*1000) and
 * any other token says whether it arrived intact. */
#ifndef FG_SCENARIOS_DISPATCHER_DATA_H
#define FG_SCENARIOS_DISPATCHER_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "fg/comm.h"

enum { BATCH_MAX_TENSORS = 4, BATCH_KEY_LEN = 32 };

/* The keys and dtypes every batch of a dataset shares: sent once, as metadata. */
typedef struct batch_layout {
  int n; /* 0: empty metadata, the dataset had nothing */
  char key[BATCH_MAX_TENSORS][BATCH_KEY_LEN];
  fg_dtype dtype[BATCH_MAX_TENSORS];
} batch_layout;

/* One batch: tensor i has shape[i] = {rows, cols} and host data. All-zero shapes mean
 * "no batch". */
typedef struct batch {
  int64_t shape[BATCH_MAX_TENSORS][2];
  void *data[BATCH_MAX_TENSORS];
} batch;

typedef struct dataset {
  int64_t length; /* batches; INT64_MAX for one that never ends */
  int64_t next;   /* the batch the next load yields */
  int batch_size, seq_len;
  int duplicate; /* fault: batch 1 is a copy of batch 0 */
  int corrupt;   /* fault: one label of the last batch is wrong */
} dataset;

/* The layout of this scenario's batches: input_ids int64, labels int64, attention_mask
 * int8. */
void batch_layout_default(batch_layout *l);
/* "input_ids:int64,labels:int64,..." (malloc'd, length in *len; NULL when out of memory).
 * An empty layout is zero bytes. */
char *batch_layout_encode(const batch_layout *l, size_t *len);
/* Parses what batch_layout_encode wrote; returns 0 or -EINVAL. */
int batch_layout_decode(const char *bytes, size_t len, batch_layout *l);
int batch_layout_equal(const batch_layout *a, const batch_layout *b);

int64_t batch_numel(const batch *b, int i);
size_t batch_bytes(const batch_layout *l, const batch *b, int i);
int batch_is_empty(const batch_layout *l, const batch *b);
/* Allocates host data for the shapes already set; returns 0 or -ENOMEM. */
int batch_alloc(const batch_layout *l, batch *b);
void batch_free(batch *b);

/* The batch with index `index` (faults aside), whatever the dataset's position. */
int dataset_make(const dataset *d, const batch_layout *l, int64_t index, batch *out);
/* The next batch: 1 if one was loaded, 0 at the end, < 0 on error. */
int dataset_load(dataset *d, const batch_layout *l, batch *out);

/* Counts the values of b that break the pattern, and the tensors whose shape is not
 * batch_size x seq_len; the batch's first token goes to *first_token (-1 if none). */
int64_t batch_bad_values(const batch_layout *l, const batch *b, int batch_size, int seq_len,
                         int64_t *first_token);

#endif
