/* test_pipeline_cpu - the pipeline-split scenario's CPU kernel table (pipeline_cpu.c): every
 * hand-written backward against central finite differences (GELU, masked softmax,
 * cross-entropy, embedding), and the generic gemm against a naive product. */
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

typedef struct gelu_case {
  const double *x, *w;
  size_t n;
} gelu_case;

static double gelu_loss(void *ctx) {
  const gelu_case *c = ctx;
  double *y = malloc(c->n * sizeof *y);
  K->gelu(PP_F64, c->n, c->x, y);
  double l = dot(y, c->w, c->n);
  free(y);
  return l;
}

static void gelu_backward_matches_finite_differences(void **state) {
  (void)state;
  size_t n = 64;
  double *x = random_vec(n, 1, 3.0), *w = random_vec(n, 2, 1.0), *dx = malloc(n * sizeof *dx);
  K->gelu_bwd(PP_F64, n, x, w, dx);
  gelu_case c = {x, w, n};
  for (size_t i = 0; i < n; i++)
    assert_close(dx[i], central_difference(&x[i], gelu_loss, &c), 1e-8, "gelu dx", i);
  free(x), free(w), free(dx);
}

enum { SM_SEQ = 2, SM_HEADS = 2, SM_T = 6 };

typedef struct softmax_case {
  const double *s, *w;
  const uint8_t *mask;
} softmax_case;

static double softmax_loss(void *ctx) {
  const softmax_case *c = ctx;
  size_t n = SM_SEQ * SM_HEADS * SM_T * SM_T;
  double *p = malloc(n * sizeof *p);
  memcpy(p, c->s, n * sizeof *p);
  K->softmax(PP_F64, SM_SEQ, SM_HEADS, SM_T, c->mask, p);
  double l = dot(p, c->w, n);
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
  softmax_case c = {s, w, mask};
  for (size_t i = 0; i < n; i++)
    assert_close(ds[i], central_difference(&s[i], softmax_loss, &c), 1e-8, "softmax ds", i);
  free(s), free(w), free(p), free(ds);
}

enum { XE_ROWS = 4, XE_VOCAB = 7 };

typedef struct xent_case {
  const double *z;
  const int32_t *targets;
} xent_case;

static double xent_loss(void *ctx) {
  const xent_case *c = ctx;
  double loss[XE_ROWS], dz[XE_ROWS * XE_VOCAB];
  K->xent(PP_F64, XE_ROWS, XE_VOCAB, c->z, c->targets, 0.25, loss, dz);
  return loss[0] + loss[1] + loss[2] + loss[3];
}

static void cross_entropy_backward_matches_finite_differences(void **state) {
  (void)state;
  int32_t targets[XE_ROWS] = {3, -1, 0, 6};
  double *z = random_vec(XE_ROWS * XE_VOCAB, 5, 4.0);
  double loss[XE_ROWS], dz[XE_ROWS * XE_VOCAB];
  K->xent(PP_F64, XE_ROWS, XE_VOCAB, z, targets, 0.25, loss, dz);
  assert_true(loss[1] == 0.0);
  xent_case c = {z, targets};
  for (size_t i = 0; i < XE_ROWS * XE_VOCAB; i++)
    assert_close(dz[i], central_difference(&z[i], xent_loss, &c), 1e-8, "xent dlogits", i);
  free(z);
}

enum { EM_ROWS = 6, EM_T = 3, EM_DIM = 4, EM_VOCAB = 5 };

typedef struct embed_case {
  const double *wte, *wpe, *w;
  const int32_t *ids;
} embed_case;

static double embed_loss(void *ctx) {
  const embed_case *c = ctx;
  double x[EM_ROWS * EM_DIM];
  K->embed(PP_F64, EM_ROWS, EM_T, EM_DIM, c->ids, c->wte, c->wpe, x);
  return dot(x, c->w, EM_ROWS * EM_DIM);
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
  embed_case c = {wte, wpe, w, ids};
  for (int t = 0; t < 2; t++)
    for (size_t i = 0; i < sizes[t]; i++)
      assert_close(grads[t][i], central_difference(&tables[t][i], embed_loss, &c), 1e-8,
                   t ? "dwpe" : "dwte", i);
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

int main(void) {
  K = pp_cpu_kernels();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(gelu_backward_matches_finite_differences),
      cmocka_unit_test(masked_softmax_backward_matches_finite_differences),
      cmocka_unit_test(cross_entropy_backward_matches_finite_differences),
      cmocka_unit_test(embedding_backward_matches_finite_differences),
      cmocka_unit_test(gemm_matches_the_naive_product),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
