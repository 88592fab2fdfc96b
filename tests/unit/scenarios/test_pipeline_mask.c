/* test_pipeline_mask - the pipeline-split scenario's batches and masks (pipeline_mask.c): the
 * block mask against the element mask it stands for, and its serialisation, which rejects
 * damage. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scenarios/pipeline.h"
#include "pipeline_test.h"

static void block_mask_stands_for_the_element_mask(void **state) {
  (void)state;
  pp_config cfg = {.layers = 1, .dim = 4, .heads = 1, .ffn = 4, .seq_len = 37, .vocab = 9,
                   .block_size = 5, .microbatches = 3, .mb_seqs = 2, .seed = 77};
  pp_batch b;
  assert_int_equal(pp_batch_make(&cfg, &b), 0);
  pp_block_mask bm;
  assert_int_equal(pp_block_mask_build(&bm, b.ids, b.nseq, cfg.seq_len, cfg.block_size), 0);
  assert_int_equal(bm.q_blocks, 8); /* 37 tokens: the last block is ragged */
  size_t n = (size_t)b.nseq * 37 * 37;
  uint8_t *dense = malloc(n), *from_blocks = malloc(n);
  assert_int_equal(pp_dense_mask(b.ids, b.nseq, cfg.seq_len, dense), 0);
  pp_block_mask_dense(&bm, from_blocks);
  assert_memory_equal(dense, from_blocks, n);
  long partial, full;
  pp_block_mask_counts(&bm, &partial, &full);
  long total = (long)b.nseq * 8 * 8;
  print_message("%ld partial, %ld full, %ld skipped key blocks\n", partial, full,
                total - partial - full);
  assert_true(partial > 0 && full > 0 && partial + full < total);
  /* documents really are packed: some causal pairs are hidden */
  long hidden = 0;
  for (int q = 0; q < 37; q++)
    for (int k = 0; k <= q; k++) hidden += !dense[q * 37 + k];
  assert_true(hidden > 0);
  free(dense), free(from_blocks);
  pp_block_mask_free(&bm);
  pp_batch_free(&b);
}

static void block_mask_survives_serialisation_and_rejects_damage(void **state) {
  (void)state;
  pp_config cfg = tiny(PP_F64);
  pp_batch b;
  assert_int_equal(pp_batch_make(&cfg, &b), 0);
  pp_block_mask bm, back;
  char err[200];
  assert_int_equal(pp_block_mask_build(&bm, b.ids, b.nseq, cfg.seq_len, cfg.block_size), 0);
  size_t bytes = bm.nwords * sizeof(int32_t);
  assert_int_equal(pp_block_mask_parse(&back, bm.words, bytes, err, sizeof err), 0);
  assert_true(pp_block_mask_equal(&bm, &back, err, sizeof err));
  back.full_kv_num_blocks[1]++;
  assert_false(pp_block_mask_equal(&bm, &back, err, sizeof err));
  assert_non_null(strstr(err, "full_kv_num_blocks[seq 0][q block 1]"));
  pp_block_mask_free(&back);
  assert_int_not_equal(pp_block_mask_parse(&back, bm.words, bytes - 4, err, sizeof err), 0);
  int32_t *copy = malloc(bytes);
  memcpy(copy, bm.words, bytes);
  copy[bm.kv_indices - bm.words] = 99; /* a key block that does not exist */
  assert_int_not_equal(pp_block_mask_parse(&back, copy, bytes, err, sizeof err), 0);
  free(copy);
  pp_block_mask_free(&bm);
  pp_batch_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(block_mask_stands_for_the_element_mask),
      cmocka_unit_test(block_mask_survives_serialisation_and_rejects_damage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
