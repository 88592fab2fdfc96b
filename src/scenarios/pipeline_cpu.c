/* pipeline_cpu.c - the kernel table on host memory: the reference run, and every
 * stage on the host-memory backends (gloo, mpi). Plain loops, one element type at a
 * time (pipeline_cpu_t.h), written for being obviously right rather than fast (gemm
 * aside: its loops walk memory in order, as the time is all there). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scenarios/pipeline.h"

#define GELU_C 0.7978845608028654 /* sqrt(2 / pi) */

/* gemm is nearly all of a CPU stage's time; gcc vectorizes its row updates at -O3 only,
 * which halves a pipeline case's run time. */
#if defined(__GNUC__) && !defined(__clang__)
#define PP_HOT __attribute__((optimize("O3")))
#else
#define PP_HOT
#endif

#define REAL double
#define SUFFIX f64
#define TANH tanh
#define EXP exp
#define LOG log
#include "scenarios/pipeline_cpu_t.h"
#undef REAL
#undef SUFFIX
#undef TANH
#undef EXP
#undef LOG

#define REAL float
#define SUFFIX f32
#define TANH tanhf
#define EXP expf
#define LOG logf
#include "scenarios/pipeline_cpu_t.h"
#undef REAL
#undef SUFFIX
#undef TANH
#undef EXP
#undef LOG

static void *cpu_alloc(size_t bytes) { return calloc(1, bytes ? bytes : 1); }
static void cpu_release(void *p) { free(p); }

static void cpu_copy(void *dst, const void *src, size_t bytes) {
  if (bytes) memmove(dst, src, bytes);
}

static void cpu_zero(void *p, size_t bytes) {
  if (bytes) memset(p, 0, bytes);
}

static void cpu_gemm(pp_dtype dt, const pp_gemm *g) {
  if (dt == PP_F64)
    gemm_f64(g);
  else
    gemm_f32(g);
}

static void cpu_gelu(pp_dtype dt, size_t n, const void *x, void *y) {
  if (dt == PP_F64)
    gelu_f64(n, x, y);
  else
    gelu_f32(n, x, y);
}

static void cpu_gelu_bwd(pp_dtype dt, size_t n, const void *x, const void *dy, void *dx) {
  if (dt == PP_F64)
    gelu_bwd_f64(n, x, dy, dx);
  else
    gelu_bwd_f32(n, x, dy, dx);
}

static void cpu_softmax(pp_dtype dt, int nseq, int heads, int t, const uint8_t *mask, void *s) {
  if (dt == PP_F64)
    softmax_f64(nseq, heads, t, mask, s);
  else
    softmax_f32(nseq, heads, t, mask, s);
}

static void cpu_softmax_bwd(pp_dtype dt, size_t rows, int cols, const void *p, void *dp) {
  if (dt == PP_F64)
    softmax_bwd_f64(rows, cols, p, dp);
  else
    softmax_bwd_f32(rows, cols, p, dp);
}

static void cpu_embed(pp_dtype dt, int rows, int t, int dim, const int32_t *ids, const void *wte,
                      const void *wpe, void *x) {
  if (dt == PP_F64)
    embed_f64(rows, t, dim, ids, wte, wpe, x);
  else
    embed_f32(rows, t, dim, ids, wte, wpe, x);
}

static void cpu_embed_bwd(pp_dtype dt, int rows, int t, int dim, int vocab, const int32_t *ids,
                          const void *dx, void *dwte, void *dwpe) {
  if (dt == PP_F64)
    embed_bwd_f64(rows, t, dim, vocab, ids, dx, dwte, dwpe);
  else
    embed_bwd_f32(rows, t, dim, vocab, ids, dx, dwte, dwpe);
}

static void cpu_xent(pp_dtype dt, int rows, int vocab, const void *logits,
                     const int32_t *targets, double scale, void *loss, void *dlogits) {
  if (dt == PP_F64)
    xent_f64(rows, vocab, logits, targets, scale, loss, dlogits);
  else
    xent_f32(rows, vocab, logits, targets, scale, loss, dlogits);
}

static int cpu_sync(char *err, size_t errlen) {
  (void)err, (void)errlen;
  return 0;
}

static const pp_kernels cpu_kernels = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_copy,
    .download = cpu_copy,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .gemm = cpu_gemm,
    .gelu = cpu_gelu,
    .gelu_bwd = cpu_gelu_bwd,
    .softmax = cpu_softmax,
    .softmax_bwd = cpu_softmax_bwd,
    .embed = cpu_embed,
    .embed_bwd = cpu_embed_bwd,
    .xent = cpu_xent,
    .sync = cpu_sync,
};

const pp_kernels *pp_cpu_kernels(void) { return &cpu_kernels; }

#ifndef FG_HAVE_CUDA_KERNELS
/* nvcc builds pipeline_cuda.cu only alongside the nccl backend: without it no
 * communicator hands out device memory, so there is nothing to run kernels on. */
const pp_kernels *pp_cuda_kernels(char *err, size_t errlen) {
  snprintf(err, errlen, "no CUDA kernels in this build");
  return NULL;
}
#endif
