/* test_pipeline_grad - the pipeline-split scenario's math on the CPU kernel table:
 * every hand-written backward against central finite differences (GELU, masked
 * softmax, cross-entropy, embedding, and the whole model, which composes them with
 * the matmuls and attention), the generic gemm against a naive product, a chain of
 * stages run microbatch by microbatch against the whole-batch reference, float32
 * against float64, and the block mask against the element mask it stands for. */
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

#define EPS 1e-6

static const pp_kernels *K;

static double *random_vec(size_t n, uint64_t seed, double scale) {
  double *v = malloc(n * sizeof *v);
  assert_non_null(v);
  for (size_t i = 0; i < n; i++) v[i] = scale * pp_rand_unit(&seed);
  return v;
}

static double dot(const double *a, const double *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* |analytic - numeric| within tol relative to max(1, |numeric|). */
static void assert_close(double analytic, double numeric, double tol, const char *what,
                         size_t i) {
  double err = fabs(analytic - numeric) / fmax(1.0, fabs(numeric));
  if (err > tol)
    fail_msg("%s[%zu]: analytic %.12g, finite difference %.12g (error %.3g > %.3g)", what, i,
             analytic, numeric, err, tol);
}

/* --- single ops --------------------------------------------------------------------------- */

static double gelu_loss(const double *x, const double *w, size_t n) {
  double *y = malloc(n * sizeof *y);
  K->gelu(PP_F64, n, x, y);
  double l = dot(y, w, n);
  free(y);
  return l;
}

static void gelu_backward_matches_finite_differences(void **state) {
  (void)state;
  size_t n = 64;
  double *x = random_vec(n, 1, 3.0), *w = random_vec(n, 2, 1.0), *dx = malloc(n * sizeof *dx);
  K->gelu_bwd(PP_F64, n, x, w, dx);
  for (size_t i = 0; i < n; i++) {
    double keep = x[i];
    x[i] = keep + EPS;
    double up = gelu_loss(x, w, n);
    x[i] = keep - EPS;
    double down = gelu_loss(x, w, n);
    x[i] = keep;
    assert_close(dx[i], (up - down) / (2 * EPS), 1e-8, "gelu dx", i);
  }
  free(x), free(w), free(dx);
}

enum { SM_SEQ = 2, SM_HEADS = 2, SM_T = 6 };

static double softmax_loss(const double *s, const uint8_t *mask, const double *w) {
  size_t n = SM_SEQ * SM_HEADS * SM_T * SM_T;
  double *p = malloc(n * sizeof *p);
  memcpy(p, s, n * sizeof *p);
  K->softmax(PP_F64, SM_SEQ, SM_HEADS, SM_T, mask, p);
  double l = dot(p, w, n);
  free(p);
  return l;
}

static void masked_softmax_backward_matches_finite_differences(void **state) {
  (void)state;
  size_t n = SM_SEQ * SM_HEADS * SM_T * SM_T;
  int32_t ids[SM_SEQ * SM_T] = {5, 0, 3, 4, 0, 7, 1, 2, 3, 0, 4, 5};
  uint8_t mask[SM_SEQ * SM_T * SM_T];
  assert_int_equal(pp_dense_mask(ids, SM_SEQ, SM_T, mask), 0);
  double *s = random_vec(n, 3, 2.0), *w = random_vec(n, 4, 1.0);
  double *p = malloc(n * sizeof *p), *ds = malloc(n * sizeof *ds);
  memcpy(p, s, n * sizeof *p);
  K->softmax(PP_F64, SM_SEQ, SM_HEADS, SM_T, mask, p);
  for (size_t i = 0; i < n; i++) {
    size_t row = i / SM_T, seq = row / (SM_HEADS * SM_T);
    size_t q = row % SM_T, k = i % SM_T;
    if (!mask[seq * SM_T * SM_T + q * SM_T + k]) assert_true(p[i] == 0.0);
  }
  memcpy(ds, w, n * sizeof *ds);
  K->softmax_bwd(PP_F64, n / SM_T, SM_T, p, ds);
  for (size_t i = 0; i < n; i++) {
    double keep = s[i];
    s[i] = keep + EPS;
    double up = softmax_loss(s, mask, w);
    s[i] = keep - EPS;
    double down = softmax_loss(s, mask, w);
    s[i] = keep;
    assert_close(ds[i], (up - down) / (2 * EPS), 1e-8, "softmax ds", i);
  }
  free(s), free(w), free(p), free(ds);
}

enum { XE_ROWS = 4, XE_VOCAB = 7 };

static double xent_loss(const double *z, const int32_t *targets) {
  double loss[XE_ROWS], dz[XE_ROWS * XE_VOCAB];
  K->xent(PP_F64, XE_ROWS, XE_VOCAB, z, targets, 0.25, loss, dz);
  return loss[0] + loss[1] + loss[2] + loss[3];
}

static void cross_entropy_backward_matches_finite_differences(void **state) {
  (void)state;
  int32_t targets[XE_ROWS] = {3, -1, 0, 6};
  double *z = random_vec(XE_ROWS * XE_VOCAB, 5, 4.0);
  double loss[XE_ROWS], dz[XE_ROWS * XE_VOCAB];
  K->xent(PP_F64, XE_ROWS, XE_VOCAB, z, targets, 0.25, loss, dz);
  assert_true(loss[1] == 0.0);
  for (size_t i = 0; i < XE_ROWS * XE_VOCAB; i++) {
    double keep = z[i];
    z[i] = keep + EPS;
    double up = xent_loss(z, targets);
    z[i] = keep - EPS;
    double down = xent_loss(z, targets);
    z[i] = keep;
    assert_close(dz[i], (up - down) / (2 * EPS), 1e-8, "xent dlogits", i);
  }
  free(z);
}

enum { EM_ROWS = 6, EM_T = 3, EM_DIM = 4, EM_VOCAB = 5 };

static double embed_loss(const double *wte, const double *wpe, const int32_t *ids,
                         const double *w) {
  double x[EM_ROWS * EM_DIM];
  K->embed(PP_F64, EM_ROWS, EM_T, EM_DIM, ids, wte, wpe, x);
  return dot(x, w, EM_ROWS * EM_DIM);
}

static void embedding_backward_matches_finite_differences(void **state) {
  (void)state;
  int32_t ids[EM_ROWS] = {1, 4, 1, 0, 2, 1}; /* repeats: the scatter must add */
  double *wte = random_vec(EM_VOCAB * EM_DIM, 6, 1.0), *wpe = random_vec(EM_T * EM_DIM, 7, 1.0);
  double *w = random_vec(EM_ROWS * EM_DIM, 8, 1.0);
  double dwte[EM_VOCAB * EM_DIM] = {0}, dwpe[EM_T * EM_DIM] = {0};
  K->embed_bwd(PP_F64, EM_ROWS, EM_T, EM_DIM, EM_VOCAB, ids, w, dwte, dwpe);
  double *tables[] = {wte, wpe}, *grads[] = {dwte, dwpe};
  size_t sizes[] = {EM_VOCAB * EM_DIM, EM_T * EM_DIM};
  for (int t = 0; t < 2; t++) {
    for (size_t i = 0; i < sizes[t]; i++) {
      double keep = tables[t][i];
      tables[t][i] = keep + EPS;
      double up = embed_loss(wte, wpe, ids, w);
      tables[t][i] = keep - EPS;
      double down = embed_loss(wte, wpe, ids, w);
      tables[t][i] = keep;
      assert_close(grads[t][i], (up - down) / (2 * EPS), 1e-8, t ? "dwpe" : "dwte", i);
    }
  }
  free(wte), free(wpe), free(w);
}

/* C = 0.5 op(A) op(B) + 2 C for one batch entry, by the definition. */
static void naive_gemm(const pp_gemm *g, const double *a, const double *b, double *c) {
  for (int i = 0; i < g->m; i++) {
    for (int j = 0; j < g->n; j++) {
      double s = 0;
      for (int l = 0; l < g->k; l++) {
        double x = g->trans_a ? a[l * g->lda + i] : a[i * g->lda + l];
        double y = g->trans_b ? b[j * g->ldb + l] : b[l * g->ldb + j];
        s += x * y;
      }
      c[i * g->ldc + j] = g->alpha * s + g->beta * c[i * g->ldc + j];
    }
  }
}

/* The generic gemm, every transpose and two batch levels, against the definition. */
static void gemm_matches_the_naive_product(void **state) {
  (void)state;
  int b0 = 2, b1 = 3;
  size_t sa[2] = {3 * 7 * 5, 7 * 5}, sb[2] = {3 * 6 * 5, 6 * 5}, sc[2] = {3 * 5 * 4, 5 * 4};
  size_t nc = sc[0] * (size_t)b0;
  double *a = random_vec(sa[0] * (size_t)b0, 9, 1.0), *b = random_vec(sb[0] * (size_t)b0, 10, 1.0);
  for (int ta = 0; ta < 2; ta++) {
    for (int tb = 0; tb < 2; tb++) {
      double *c = random_vec(nc, 11, 1.0), *want = malloc(nc * sizeof *want);
      memcpy(want, c, nc * sizeof *want);
      pp_gemm g = {ta, tb, 3, 4, 5, 0.5, 2.0, a, b, c, 7, 6, 5, {b0, b1},
                   {sa[0], sa[1]}, {sb[0], sb[1]}, {sc[0], sc[1]}};
      K->gemm(PP_F64, &g);
      for (size_t x = 0; x < (size_t)b0; x++)
        for (size_t y = 0; y < (size_t)b1; y++)
          naive_gemm(&g, a + x * sa[0] + y * sa[1], b + x * sb[0] + y * sb[1],
                     want + x * sc[0] + y * sc[1]);
      for (size_t i = 0; i < nc; i++)
        if (fabs(c[i] - want[i]) > 1e-12)
          fail_msg("ta %d tb %d: c[%zu] %g, want %g", ta, tb, i, c[i], want[i]);
      free(c), free(want);
    }
  }
  free(a), free(b);
}

/* --- the whole model ------------------------------------------------------------------------ */

static pp_config tiny(pp_dtype dt) {
  return (pp_config){.layers = 2, .dim = 8, .heads = 2, .ffn = 16, .seq_len = 8, .vocab = 11,
                     .block_size = 4, .microbatches = 2, .mb_seqs = 1, .dtype = dt,
                     .seed = 1234};
}

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
      double keep = p[i];
      p[i] = keep + EPS;
      double up = reference(&m, NULL);
      p[i] = keep - EPS;
      double down = reference(&m, NULL);
      p[i] = keep;
      double fd = (up - down) / (2 * EPS);
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

/* --- the block mask ------------------------------------------------------------------------- */

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
  K = pp_cpu_kernels();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(gelu_backward_matches_finite_differences),
      cmocka_unit_test(masked_softmax_backward_matches_finite_differences),
      cmocka_unit_test(cross_entropy_backward_matches_finite_differences),
      cmocka_unit_test(embedding_backward_matches_finite_differences),
      cmocka_unit_test(gemm_matches_the_naive_product),
      cmocka_unit_test(model_gradients_match_finite_differences),
      cmocka_unit_test(stages_over_microbatches_match_the_whole_batch),
      cmocka_unit_test(float32_stays_within_1e4_of_float64),
      cmocka_unit_test(block_mask_stands_for_the_element_mask),
      cmocka_unit_test(block_mask_survives_serialisation_and_rejects_damage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
