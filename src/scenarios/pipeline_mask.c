/* pipeline_mask.c - the packed batch and its block-sparse attention mask.
 *
 * A batch packs several documents into each sequence; token 0 ends a document.
 * The mask is causal and keeps attention inside a document. Its block form is
 * flex-attention's BlockMask: for every query block, the key blocks that are only
 * partly visible (mask_mod decides element by element) and those fully visible
 * (no per-element work), with the block size and lengths. Blocks in neither list
 * are skipped. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scenarios/pipeline.h"

#define MASK_MAGIC 0x4d425050 /* "PPBM" */
#define MASK_VERSION 1
#define HEADER_WORDS 8
#define MAX_LEN (1 << 16)

/* --- the batch ---------------------------------------------------------------------------- */

/* Documents of 3 to about half the sequence, so every sequence holds several, some
 * long enough to fill whole blocks, and the last one is usually cut off without its
 * end token, as packing does. */
static void fill_sequence(uint64_t *rng, int32_t *ids, int len, int vocab) {
  int spread = len / 2 > 1 ? len / 2 : 1;
  for (int pos = 0; pos < len;) {
    int doc = 3 + (int)(pp_rand(rng) % (uint64_t)spread);
    for (int i = 0; i < doc && pos < len; i++, pos++)
      ids[pos] = i == doc - 1 ? 0 : 1 + (int32_t)(pp_rand(rng) % (uint64_t)(vocab - 1));
  }
}

int pp_batch_make(const pp_config *c, pp_batch *b) {
  int nseq = c->microbatches * c->mb_seqs, len = c->seq_len;
  size_t n = (size_t)nseq * (size_t)len;
  *b = (pp_batch){.nseq = nseq, .seq_len = len};
  b->ids = malloc(n * sizeof *b->ids);
  b->targets = malloc(n * sizeof *b->targets);
  if (!b->ids || !b->targets) {
    pp_batch_free(b);
    return -ENOMEM;
  }
  uint64_t rng = c->seed ^ 0xba7c4ull;
  for (int s = 0; s < nseq; s++) {
    int32_t *ids = b->ids + (size_t)s * (size_t)len, *tgt = b->targets + (size_t)s * (size_t)len;
    fill_sequence(&rng, ids, len, c->vocab);
    for (int i = 0; i < len; i++) tgt[i] = i + 1 < len ? ids[i + 1] : -1;
    b->labelled += len - 1;
  }
  return 0;
}

void pp_batch_free(pp_batch *b) {
  free(b->ids);
  free(b->targets);
  b->ids = b->targets = NULL;
}

void pp_doc_ids(const int32_t *ids, int len, int32_t *docs) {
  int32_t doc = 0;
  for (int i = 0; i < len; i++) {
    docs[i] = doc;
    if (ids[i] == 0) doc++;
  }
}

/* --- the block mask ---------------------------------------------------------------------- */

static size_t words_for(int nseq, int kv_len, int q_blocks, int kv_blocks) {
  size_t rows = (size_t)nseq * (size_t)q_blocks;
  return HEADER_WORDS + 2 * rows + 2 * rows * (size_t)kv_blocks + (size_t)nseq * (size_t)kv_len;
}

/* Points the fields into words (whose header is filled). */
static void index_words(pp_block_mask *m) {
  int32_t *w = m->words;
  m->nseq = w[2], m->q_len = w[3], m->kv_len = w[4], m->block_size = w[5];
  m->q_blocks = w[6], m->kv_blocks = w[7];
  size_t rows = (size_t)m->nseq * (size_t)m->q_blocks;
  w += HEADER_WORDS;
  m->kv_num_blocks = w, w += rows;
  m->kv_indices = w, w += rows * (size_t)m->kv_blocks;
  m->full_kv_num_blocks = w, w += rows;
  m->full_kv_indices = w, w += rows * (size_t)m->kv_blocks;
  m->doc_ids = w;
}

static int alloc_words(pp_block_mask *m, size_t nwords) {
  m->words = malloc(nwords * sizeof *m->words);
  m->nwords = nwords;
  return m->words ? 0 : -ENOMEM;
}

/* 2 if every (q, k) of the two blocks is visible, 1 if some are, 0 if none. */
static int block_visibility(const int32_t *docs, int q0, int q1, int k0, int k1) {
  long seen = 0, total = (long)(q1 - q0) * (k1 - k0);
  for (int q = q0; q < q1; q++)
    for (int k = k0; k < k1; k++) seen += pp_mask_mod(docs, q, k);
  return seen == total ? 2 : seen > 0;
}

static int block_end(int block, int size, int len) {
  int end = (block + 1) * size;
  return end < len ? end : len;
}

static void build_row(pp_block_mask *m, int s, int qb) {
  size_t row = (size_t)s * (size_t)m->q_blocks + (size_t)qb;
  int32_t *part = m->kv_indices + row * (size_t)m->kv_blocks;
  int32_t *full = m->full_kv_indices + row * (size_t)m->kv_blocks;
  const int32_t *docs = m->doc_ids + (size_t)s * (size_t)m->kv_len;
  int np = 0, nf = 0, bs = m->block_size;
  for (int kb = 0; kb < m->kv_blocks; kb++) {
    int v = block_visibility(docs, qb * bs, block_end(qb, bs, m->q_len), kb * bs,
                             block_end(kb, bs, m->kv_len));
    if (v == 2) full[nf++] = kb;
    if (v == 1) part[np++] = kb;
  }
  for (int i = np; i < m->kv_blocks; i++) part[i] = -1;
  for (int i = nf; i < m->kv_blocks; i++) full[i] = -1;
  m->kv_num_blocks[row] = np;
  m->full_kv_num_blocks[row] = nf;
}

int pp_block_mask_build(pp_block_mask *m, const int32_t *ids, int nseq, int seq_len,
                        int block_size) {
  memset(m, 0, sizeof *m);
  int blocks = (seq_len + block_size - 1) / block_size;
  if (alloc_words(m, words_for(nseq, seq_len, blocks, blocks)) != 0) return -ENOMEM;
  int32_t header[HEADER_WORDS] = {MASK_MAGIC, MASK_VERSION, nseq,  seq_len,
                                  seq_len,    block_size,   blocks, blocks};
  memcpy(m->words, header, sizeof header);
  index_words(m);
  for (size_t s = 0; s < (size_t)nseq; s++)
    pp_doc_ids(ids + s * (size_t)seq_len, seq_len, m->doc_ids + s * (size_t)seq_len);
  for (int s = 0; s < nseq; s++)
    for (int qb = 0; qb < blocks; qb++) build_row(m, s, qb);
  return 0;
}

void pp_block_mask_free(pp_block_mask *m) {
  free(m->words);
  memset(m, 0, sizeof *m);
}

/* --- carrying it --------------------------------------------------------------------------- */

static int check_header(const int32_t *h, size_t nwords, char *err, size_t errlen) {
  if (h[0] != MASK_MAGIC || h[1] != MASK_VERSION)
    return snprintf(err, errlen, "not a block mask (magic %#x, version %d)", (unsigned)h[0],
                    h[1]), -1;
  for (int i = 2; i < HEADER_WORDS; i++)
    if (h[i] <= 0 || h[i] > MAX_LEN)
      return snprintf(err, errlen, "header field %d is %d", i, h[i]), -1;
  if (h[6] != (h[3] + h[5] - 1) / h[5] || h[7] != (h[4] + h[5] - 1) / h[5])
    return snprintf(err, errlen, "%d x %d blocks do not cover %d x %d tokens in blocks of %d",
                    h[6], h[7], h[3], h[4], h[5]), -1;
  size_t want = words_for(h[2], h[4], h[6], h[7]);
  if (want != nwords)
    return snprintf(err, errlen, "%zu words where the header implies %zu", nwords, want), -1;
  return 0;
}

/* Counts within range, listed indices within range, the rest -1. */
static int check_lists(const int32_t *num, const int32_t *idx, size_t rows, int blocks) {
  for (size_t r = 0; r < rows; r++) {
    if (num[r] < 0 || num[r] > blocks) return -1;
    for (int i = 0; i < blocks; i++) {
      int32_t v = idx[r * (size_t)blocks + (size_t)i];
      if (i < num[r] ? v < 0 || v >= blocks : v != -1) return -1;
    }
  }
  return 0;
}

int pp_block_mask_parse(pp_block_mask *m, const void *bytes, size_t len, char *err,
                        size_t errlen) {
  memset(m, 0, sizeof *m);
  size_t nwords = len / sizeof(int32_t);
  if (len % sizeof(int32_t) != 0 || nwords < HEADER_WORDS)
    return snprintf(err, errlen, "a block mask of %zu bytes is truncated", len), -EINVAL;
  int32_t header[HEADER_WORDS];
  memcpy(header, bytes, sizeof header);
  if (check_header(header, nwords, err, errlen) != 0) return -EINVAL;
  if (alloc_words(m, nwords) != 0) return -ENOMEM;
  memcpy(m->words, bytes, len);
  index_words(m);
  size_t rows = (size_t)m->nseq * (size_t)m->q_blocks;
  int bad = check_lists(m->kv_num_blocks, m->kv_indices, rows, m->kv_blocks) ||
            check_lists(m->full_kv_num_blocks, m->full_kv_indices, rows, m->kv_blocks);
  for (size_t i = 0; !bad && i < (size_t)m->nseq * (size_t)m->kv_len; i++)
    bad = m->doc_ids[i] < 0 || m->doc_ids[i] >= m->kv_len;
  if (bad) {
    pp_block_mask_free(m);
    return snprintf(err, errlen, "block mask has an index out of range"), -EINVAL;
  }
  return 0;
}

/* Names the field a word belongs to, for a difference report. */
static void describe_word(const pp_block_mask *m, size_t w, char *out, size_t len) {
  static const char *const header[] = {"magic", "version", "batch", "q_len",
                                       "kv_len", "block_size", "q_blocks", "kv_blocks"};
  const int32_t *p = m->words + w;
  size_t kb = (size_t)m->kv_blocks, qb = (size_t)m->q_blocks, row;
  const char *field;
  if (w < HEADER_WORDS) {
    snprintf(out, len, "%s", header[w]);
    return;
  }
  if (p >= m->doc_ids) {
    size_t i = (size_t)(p - m->doc_ids);
    snprintf(out, len, "doc_ids[seq %zu][token %zu]", i / (size_t)m->kv_len, i % (size_t)m->kv_len);
    return;
  }
  if (p < m->kv_indices)
    field = "kv_num_blocks", row = (size_t)(p - m->kv_num_blocks);
  else if (p < m->full_kv_num_blocks)
    field = "kv_indices", row = (size_t)(p - m->kv_indices) / kb;
  else if (p < m->full_kv_indices)
    field = "full_kv_num_blocks", row = (size_t)(p - m->full_kv_num_blocks);
  else
    field = "full_kv_indices", row = (size_t)(p - m->full_kv_indices) / kb;
  snprintf(out, len, "%s[seq %zu][q block %zu]", field, row / qb, row % qb);
}

int pp_block_mask_equal(const pp_block_mask *a, const pp_block_mask *b, char *why, size_t len) {
  if (len) why[0] = '\0';
  size_t n = a->nwords < b->nwords ? a->nwords : b->nwords;
  for (size_t w = 0; w < n; w++) {
    if (a->words[w] == b->words[w]) continue;
    char where[96];
    describe_word(a, w, where, sizeof where);
    snprintf(why, len, "%s is %d, expected %d", where, (int)b->words[w], (int)a->words[w]);
    return 0;
  }
  if (a->nwords != b->nwords) {
    snprintf(why, len, "%zu words, expected %zu", b->nwords, a->nwords);
    return 0;
  }
  return 1;
}

void pp_block_mask_counts(const pp_block_mask *m, long *partial, long *full) {
  *partial = *full = 0;
  for (size_t r = 0; r < (size_t)m->nseq * (size_t)m->q_blocks; r++) {
    *partial += m->kv_num_blocks[r];
    *full += m->full_kv_num_blocks[r];
  }
}

/* --- the element mask ---------------------------------------------------------------------- */

static void fill_block(const pp_block_mask *m, int s, int qb, int kb, int partial, uint8_t *out) {
  const int32_t *docs = m->doc_ids + (size_t)s * (size_t)m->kv_len;
  int bs = m->block_size;
  for (int q = qb * bs; q < block_end(qb, bs, m->q_len); q++) {
    uint8_t *row = out + (size_t)q * (size_t)m->kv_len;
    for (int k = kb * bs; k < block_end(kb, bs, m->kv_len); k++)
      row[k] = partial ? (uint8_t)pp_mask_mod(docs, q, k) : 1;
  }
}

void pp_block_mask_dense(const pp_block_mask *m, uint8_t *out) {
  size_t per_seq = (size_t)m->q_len * (size_t)m->kv_len;
  memset(out, 0, (size_t)m->nseq * per_seq);
  for (int s = 0; s < m->nseq; s++) {
    for (int qb = 0; qb < m->q_blocks; qb++) {
      size_t row = (size_t)s * (size_t)m->q_blocks + (size_t)qb;
      const int32_t *part = m->kv_indices + row * (size_t)m->kv_blocks;
      const int32_t *full = m->full_kv_indices + row * (size_t)m->kv_blocks;
      for (int i = 0; i < m->kv_num_blocks[row]; i++)
        fill_block(m, s, qb, part[i], 1, out + (size_t)s * per_seq);
      for (int i = 0; i < m->full_kv_num_blocks[row]; i++)
        fill_block(m, s, qb, full[i], 0, out + (size_t)s * per_seq);
    }
  }
}

int pp_dense_mask(const int32_t *ids, int nseq, int seq_len, uint8_t *out) {
  int32_t *docs = malloc((size_t)seq_len * sizeof *docs);
  if (!docs) return -ENOMEM;
  for (int s = 0; s < nseq; s++) {
    pp_doc_ids(ids + (size_t)s * (size_t)seq_len, seq_len, docs);
    uint8_t *o = out + (size_t)s * (size_t)seq_len * (size_t)seq_len;
    for (int q = 0; q < seq_len; q++)
      for (int k = 0; k < seq_len; k++)
        o[(size_t)q * (size_t)seq_len + (size_t)k] = (uint8_t)pp_mask_mod(docs, q, k);
  }
  free(docs);
  return 0;
}
