/* pipeline_cpu_t.h - the CPU kernels for one element type. pipeline_cpu.c includes
 * this once per type with REAL (the C type) and SUFFIX (f64, f32) defined, so both
 * precisions compute in their own type, as the GPU does, from one source. */
#define PP_CAT2(a, b) a##_##b
#define PP_CAT(a, b) PP_CAT2(a, b)
#define FN(name) PP_CAT(name, SUFFIX)

/* c = alpha * op(a) op(b) + beta * c for one matrix of the batch. The loops are ordered
 * so the innermost one walks memory in a row (a dot product with b transposed, a row
 * update otherwise): the same arithmetic as the textbook triple loop, several times
 * faster, which keeps the pipeline cases well under a second. */
PP_HOT static void FN(gemm_one)(const pp_gemm *g, const REAL *a, const REAL *b, REAL *restrict c) {
  size_t m = (size_t)g->m, n = (size_t)g->n, k = (size_t)g->k;
  size_t lda = (size_t)g->lda, ldb = (size_t)g->ldb, ldc = (size_t)g->ldc;
  REAL alpha = (REAL)g->alpha, beta = (REAL)g->beta;
  for (size_t i = 0; i < m; i++) {
    REAL *restrict out = c + i * ldc;
    if (g->trans_b) {
      for (size_t j = 0; j < n; j++) {
        const REAL *bj = b + j * ldb;
        REAL sum = 0;
        for (size_t l = 0; l < k; l++) sum += (g->trans_a ? a[l * lda + i] : a[i * lda + l]) * bj[l];
        /* beta 0 overwrites, so uninitialised memory never leaks in as NaN */
        out[j] = alpha * sum + (beta != 0 ? beta * out[j] : 0);
      }
      continue;
    }
    for (size_t j = 0; j < n; j++) out[j] = beta != 0 ? beta * out[j] : 0;
    for (size_t l = 0; l < k; l++) {
      REAL x = alpha * (g->trans_a ? a[l * lda + i] : a[i * lda + l]);
      const REAL *restrict bl = b + l * ldb;
      for (size_t j = 0; j < n; j++) out[j] += x * bl[j];
    }
  }
}

static void FN(gemm)(const pp_gemm *g) {
  for (int i0 = 0; i0 < g->batch[0]; i0++)
    for (int i1 = 0; i1 < g->batch[1]; i1++)
      FN(gemm_one)(g, (const REAL *)g->a + (size_t)i0 * g->stride_a[0] + (size_t)i1 * g->stride_a[1],
                   (const REAL *)g->b + (size_t)i0 * g->stride_b[0] + (size_t)i1 * g->stride_b[1],
                   (REAL *)g->c + (size_t)i0 * g->stride_c[0] + (size_t)i1 * g->stride_c[1]);
}

static void FN(gelu)(size_t n, const void *xv, void *yv) {
  const REAL *x = xv;
  REAL *y = yv;
  for (size_t i = 0; i < n; i++) {
    REAL u = (REAL)GELU_C * (x[i] + (REAL)0.044715 * x[i] * x[i] * x[i]);
    y[i] = (REAL)0.5 * x[i] * (1 + TANH(u));
  }
}

static void FN(gelu_bwd)(size_t n, const void *xv, const void *dyv, void *dxv) {
  const REAL *x = xv, *dy = dyv;
  REAL *dx = dxv;
  for (size_t i = 0; i < n; i++) {
    REAL u = (REAL)GELU_C * (x[i] + (REAL)0.044715 * x[i] * x[i] * x[i]);
    REAL t = TANH(u);
    REAL du = (REAL)GELU_C * (1 + 3 * (REAL)0.044715 * x[i] * x[i]);
    dx[i] = dy[i] * ((REAL)0.5 * (1 + t) + (REAL)0.5 * x[i] * (1 - t * t) * du);
  }
}

static void FN(softmax)(int nseq, int heads, int t, const uint8_t *mask, void *sv) {
  REAL *s = sv;
  for (size_t row = 0; row < (size_t)nseq * (size_t)heads * (size_t)t; row++) {
    REAL *r = s + row * (size_t)t;
    const uint8_t *mk = mask + (row / ((size_t)heads * (size_t)t)) * (size_t)t * (size_t)t +
                        (row % (size_t)t) * (size_t)t;
    REAL max = -INFINITY, sum = 0;
    for (int j = 0; j < t; j++)
      if (mk[j] && r[j] > max) max = r[j];
    for (int j = 0; j < t; j++) {
      r[j] = mk[j] ? EXP(r[j] - max) : 0;
      sum += r[j];
    }
    for (int j = 0; j < t; j++) r[j] = sum > 0 ? r[j] / sum : 0; /* a row with no key: 0 */
  }
}

static void FN(softmax_bwd)(size_t rows, int cols, const void *pv, void *dpv) {
  const REAL *p = pv;
  REAL *dp = dpv;
  for (size_t row = 0; row < rows; row++) {
    const REAL *pr = p + row * (size_t)cols;
    REAL *d = dp + row * (size_t)cols, dot = 0;
    for (int j = 0; j < cols; j++) dot += pr[j] * d[j];
    for (int j = 0; j < cols; j++) d[j] = pr[j] * (d[j] - dot);
  }
}

static void FN(embed)(int rows, int t, int dim, const int32_t *ids, const void *wtev,
                      const void *wpev, void *xv) {
  const REAL *wte = wtev, *wpe = wpev;
  REAL *x = xv;
  size_t width = (size_t)dim;
  for (int r = 0; r < rows; r++)
    for (size_t d = 0; d < width; d++)
      x[(size_t)r * width + d] = wte[(size_t)ids[r] * width + d] + wpe[(size_t)(r % t) * width + d];
}

static void FN(embed_bwd)(int rows, int t, int dim, int vocab, const int32_t *ids,
                          const void *dxv, void *dwtev, void *dwpev) {
  const REAL *dx = dxv;
  REAL *dwte = dwtev, *dwpe = dwpev;
  (void)vocab;
  for (int r = 0; r < rows; r++) {
    for (int d = 0; d < dim; d++) {
      REAL g = dx[(size_t)r * (size_t)dim + (size_t)d];
      dwte[(size_t)ids[r] * (size_t)dim + (size_t)d] += g;
      dwpe[(size_t)(r % t) * (size_t)dim + (size_t)d] += g;
    }
  }
}

static void FN(xent)(int rows, int vocab, const void *logitsv, const int32_t *targets,
                     double scale, void *lossv, void *dlv) {
  const REAL *logits = logitsv;
  REAL *loss = lossv, *dl = dlv;
  for (int r = 0; r < rows; r++) {
    const REAL *z = logits + (size_t)r * (size_t)vocab;
    REAL *d = dl + (size_t)r * (size_t)vocab;
    int target = targets[r];
    if (target < 0) {
      loss[r] = 0;
      for (int j = 0; j < vocab; j++) d[j] = 0;
      continue;
    }
    REAL max = z[0], sum = 0;
    for (int j = 1; j < vocab; j++)
      if (z[j] > max) max = z[j];
    for (int j = 0; j < vocab; j++) sum += EXP(z[j] - max);
    loss[r] = (REAL)scale * (max + LOG(sum) - z[target]);
    for (int j = 0; j < vocab; j++)
      d[j] = (REAL)scale * (EXP(z[j] - max) / sum - (j == target));
  }
}

#undef FN
#undef PP_CAT
#undef PP_CAT2
