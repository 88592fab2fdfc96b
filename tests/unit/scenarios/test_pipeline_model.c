/* test_pipeline_model - the pipeline-split scenario's model (pipeline_model.c) on the CPU
 * kernel table: the whole model's gradients, which compose every backward with the matmuls
 * and attention, against central finite differences; a chain of stages run microbatch by
 * microbatch against the whole-batch reference; and float32 against float64. */
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

static const pp_kernels *K;

typedef struct model_case {
  pp_config cfg;
  pp_batch batch;
  uint8_t *mask;
  void *params;
  size_t nparams;
} model_case;

static void case_init(model_case *m, pp_config cfg) {
  m->cfg = cfg;
  assert_int_equal(pp_batch_make(&m->cfg, &m->batch), 0);
  size_t t = (size_t)cfg.seq_len;
  m->mask = malloc((size_t)m->batch.nseq * t * t);
  assert_int_equal(pp_dense_mask(m->batch.ids, m->batch.nseq, cfg.seq_len, m->mask), 0);
  m->nparams = pp_param_count(&m->cfg);
  m->params = malloc(m->nparams * pp_dtype_size(cfg.dtype));
  assert_int_equal(pp_init_params(&m->cfg, m->params), 0);
}

static void case_free(model_case *m) {
  pp_batch_free(&m->batch);
  free(m->mask);
  free(m->params);
}

static double reference(model_case *m, void *grads) {
  double loss;
  char err[256];
  void *scratch = grads ? NULL : malloc(m->nparams * pp_dtype_size(m->cfg.dtype));
  int rc = pp_reference(&m->cfg, m->params, &m->batch, m->mask, &loss, grads ? grads : scratch,
                        err, sizeof err);
  free(scratch);
  if (rc) fail_msg("reference: %s", err);
  return loss;
}

static double model_loss(void *m) { return reference(m, NULL); }

static void model_gradients_match_finite_differences(void **state) {
  (void)state;
  model_case m;
  case_init(&m, tiny(PP_F64));
  double *g = malloc(m.nparams * sizeof *g), *p = m.params;
  double loss = reference(&m, g);
  assert_true(loss > 1.0 && loss < 5.0); /* about log(vocab) for random weights */
  pp_tensor t[3 + PP_LAYER_TENSORS * 2];
  int nt = pp_tensors(&m.cfg, t);
  double worst = 0;
  for (int ti = 0; ti < nt; ti++) {
    for (size_t i = t[ti].offset; i < t[ti].offset + t[ti].count; i++) {
      double fd = central_difference(&p[i], model_loss, &m);
      assert_close(g[i], fd, 1e-7, t[ti].name, i - t[ti].offset);
      worst = fmax(worst, fabs(g[i] - fd));
    }
  }
  print_message("%zu parameters, loss %.6f, worst |analytic - finite difference| %.2e\n",
                m.nparams, loss, worst);
  free(g);
  case_free(&m);
}

/* Runs the model as stages chained in this process, microbatch by microbatch, with the
 * element mask taken from the block mask; returns the loss and the gradients. */
static double run_stages(model_case *m, const int *layers, int nstages, void *grads) {
  const pp_config *c = &m->cfg;
  size_t es = pp_dtype_size(c->dtype), t = (size_t)c->seq_len;
  pp_block_mask bm;
  assert_int_equal(
      pp_block_mask_build(&bm, m->batch.ids, m->batch.nseq, c->seq_len, c->block_size), 0);
  uint8_t *mask = malloc((size_t)m->batch.nseq * t * t);
  pp_block_mask_dense(&bm, mask);
  pp_part *parts = calloc((size_t)nstages, sizeof *parts);
  for (int s = 0, first = 0; s < nstages; first += layers[s], s++) {
    assert_int_equal(pp_part_init(&parts[s], c, K, first, layers[s], s == 0, s == nstages - 1,
                                  c->microbatches, c->mb_seqs), 0);
    pp_part_load(&parts[s], m->params);
  }
  double loss = 0;
  for (int mb = 0; mb < c->microbatches; mb++) {
    size_t tok = (size_t)mb * (size_t)c->mb_seqs * t;
    pp_io io = {c->mb_seqs, m->batch.ids + tok, m->batch.targets + tok, mask + tok * t,
                1.0 / m->batch.labelled};
    for (int s = 0; s < nstages; s++) {
      double part_loss = 0;
      if (s > 0) /* the send to the next stage */
        K->copy(pp_slot_input(&parts[s], mb), pp_slot_output(&parts[s - 1], mb),
                pp_act_count(c, c->mb_seqs) * es);
      assert_int_equal(pp_forward(&parts[s], mb, &io, &part_loss), 0);
      loss += part_loss;
    }
  }
  for (int mb = c->microbatches - 1; mb >= 0; mb--)
    for (int s = nstages - 1; s >= 0; s--)
      assert_int_equal(
          pp_backward(&parts[s], mb, s + 1 < nstages ? pp_slot_dinput(&parts[s + 1], mb) : NULL),
          0);
  for (int s = 0; s < nstages; s++) {
    memcpy((char *)grads + parts[s].param_begin * es, parts[s].grads, parts[s].nparams * es);
    pp_part_free(&parts[s]);
  }
  free(parts);
  free(mask);
  pp_block_mask_free(&bm);
  return loss;
}

static double max_rel_error(const double *a, const double *ref, size_t n) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < n; i++) {
    err = fmax(err, fabs(a[i] - ref[i]));
    scale = fmax(scale, fabs(ref[i]));
  }
  return err / scale;
}

static void stages_over_microbatches_match_the_whole_batch(void **state) {
  (void)state;
  model_case m;
  pp_config cfg = tiny(PP_F64);
  cfg.layers = 4, cfg.microbatches = 3, cfg.mb_seqs = 2;
  case_init(&m, cfg);
  double *ref = malloc(m.nparams * sizeof *ref), *got = malloc(m.nparams * sizeof *got);
  double want = reference(&m, ref);
  int splits[][4] = {{4}, {1, 3}, {2, 1, 1}, {1, 1, 1, 1}};
  int counts[] = {1, 2, 3, 4};
  for (int i = 0; i < 4; i++) {
    memset(got, 0, m.nparams * sizeof *got);
    double loss = run_stages(&m, splits[i], counts[i], got);
    assert_true(fabs(loss - want) <= 1e-12 * want);
    double err = max_rel_error(got, ref, m.nparams);
    if (err > 1e-12) fail_msg("%d stages: gradients differ by %.3g", counts[i], err);
  }
  free(ref), free(got);
  case_free(&m);
}

static void float32_stays_within_1e4_of_float64(void **state) {
  (void)state;
  model_case m64, m32;
  case_init(&m64, tiny(PP_F64));
  case_init(&m32, tiny(PP_F32));
  double *g64 = malloc(m64.nparams * sizeof *g64), *g32d = malloc(m64.nparams * sizeof *g32d);
  float *g32 = malloc(m32.nparams * sizeof *g32);
  double l64 = reference(&m64, g64), l32 = reference(&m32, g32);
  for (size_t i = 0; i < m32.nparams; i++) g32d[i] = g32[i];
  assert_true(fabs(l32 - l64) / l64 < 1e-5);
  double err = max_rel_error(g32d, g64, m64.nparams);
  print_message("float32: loss error %.2e, gradient error %.2e\n", fabs(l32 - l64) / l64, err);
  assert_true(err < 1e-4);
  free(g64), free(g32), free(g32d);
  case_free(&m64);
  case_free(&m32);
}

int main(void) {
  K = pp_cpu_kernels();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(model_gradients_match_finite_differences),
      cmocka_unit_test(stages_over_microbatches_match_the_whole_batch),
      cmocka_unit_test(float32_stays_within_1e4_of_float64),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
