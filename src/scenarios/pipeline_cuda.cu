/* pipeline_cuda.cu - the kernel table on the GPU, for the nccl backend: the same
 * operations as pipeline_cpu.c, one thread per output element (or per softmax row),
 * templated over the element type. Simple on purpose: the scenario checks the
 * pipeline, not the speed. Work goes to the current device's default stream; sync
 * waits for it and reports the first error any call met. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>

#include "scenarios/pipeline.h"

#define THREADS 256

static cudaError_t first_error = cudaSuccess;
static char first_where[64];

static void note(cudaError_t e, const char *where) {
  if (e != cudaSuccess && first_error == cudaSuccess) {
    first_error = e;
    snprintf(first_where, sizeof first_where, "%s", where);
  }
}

static unsigned blocks_for(size_t n) {
  size_t b = (n + THREADS - 1) / THREADS;
  return (unsigned)(b == 0 ? 1 : b > 65535 ? 65535 : b);
}

/* Grid-stride loop over n items. */
#define FOR_EACH(i, n)                                                  \
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); \
       i += (size_t)gridDim.x * blockDim.x)

#define LAUNCH(kernel, n, ...)                                      \
  do {                                                              \
    kernel<<<blocks_for(n), THREADS>>>(__VA_ARGS__);                \
    note(cudaGetLastError(), #kernel);                              \
  } while (0)

__device__ inline double dev_exp(double x) { return exp(x); }
__device__ inline float dev_exp(float x) { return expf(x); }
__device__ inline double dev_log(double x) { return log(x); }
__device__ inline float dev_log(float x) { return logf(x); }
__device__ inline double dev_tanh(double x) { return tanh(x); }
__device__ inline float dev_tanh(float x) { return tanhf(x); }

/* --- kernels ------------------------------------------------------------------------------ */

template <typename T>
__global__ void gemm_kernel(pp_gemm g, size_t total) {
  const T *a0 = (const T *)g.a, *b0 = (const T *)g.b;
  T *c0 = (T *)g.c;
  FOR_EACH(idx, total) {
    size_t j = idx % (size_t)g.n, i = idx / (size_t)g.n % (size_t)g.m;
    size_t bat = idx / ((size_t)g.n * (size_t)g.m);
    size_t i1 = bat % (size_t)g.batch[1], i0 = bat / (size_t)g.batch[1];
    const T *a = a0 + i0 * g.stride_a[0] + i1 * g.stride_a[1];
    const T *b = b0 + i0 * g.stride_b[0] + i1 * g.stride_b[1];
    T *c = c0 + i0 * g.stride_c[0] + i1 * g.stride_c[1] + i * (size_t)g.ldc + j;
    T sum = 0;
    for (size_t l = 0; l < (size_t)g.k; l++) {
      T x = g.trans_a ? a[l * (size_t)g.lda + i] : a[i * (size_t)g.lda + l];
      T y = g.trans_b ? b[j * (size_t)g.ldb + l] : b[l * (size_t)g.ldb + j];
      sum += x * y;
    }
    *c = (T)g.alpha * sum + (g.beta != 0 ? (T)g.beta * *c : (T)0);
  }
}

#define GELU_C 0.7978845608028654 /* sqrt(2 / pi) */

template <typename T>
__global__ void gelu_kernel(size_t n, const T *x, T *y) {
  FOR_EACH(i, n) {
    T u = (T)GELU_C * (x[i] + (T)0.044715 * x[i] * x[i] * x[i]);
    y[i] = (T)0.5 * x[i] * (1 + dev_tanh(u));
  }
}

template <typename T>
__global__ void gelu_bwd_kernel(size_t n, const T *x, const T *dy, T *dx) {
  FOR_EACH(i, n) {
    T u = (T)GELU_C * (x[i] + (T)0.044715 * x[i] * x[i] * x[i]);
    T t = dev_tanh(u);
    T du = (T)GELU_C * (1 + 3 * (T)0.044715 * x[i] * x[i]);
    dx[i] = dy[i] * ((T)0.5 * (1 + t) + (T)0.5 * x[i] * (1 - t * t) * du);
  }
}

template <typename T>
__global__ void softmax_kernel(int nseq, int heads, int t, const uint8_t *mask, T *s) {
  size_t rows = (size_t)nseq * (size_t)heads * (size_t)t;
  FOR_EACH(row, rows) {
    T *r = s + row * (size_t)t;
    const uint8_t *mk = mask + (row / ((size_t)heads * (size_t)t)) * (size_t)t * (size_t)t +
                        (row % (size_t)t) * (size_t)t;
    T max = -INFINITY, sum = 0;
    for (int j = 0; j < t; j++)
      if (mk[j] && r[j] > max) max = r[j];
    for (int j = 0; j < t; j++) {
      r[j] = mk[j] ? dev_exp(r[j] - max) : (T)0;
      sum += r[j];
    }
    for (int j = 0; j < t; j++) r[j] = sum > 0 ? r[j] / sum : (T)0;
  }
}

template <typename T>
__global__ void softmax_bwd_kernel(size_t rows, int cols, const T *p, T *dp) {
  FOR_EACH(row, rows) {
    const T *pr = p + row * (size_t)cols;
    T *d = dp + row * (size_t)cols, dot = 0;
    for (int j = 0; j < cols; j++) dot += pr[j] * d[j];
    for (int j = 0; j < cols; j++) d[j] = pr[j] * (d[j] - dot);
  }
}

template <typename T>
__global__ void embed_kernel(int rows, int t, int dim, const int32_t *ids, const T *wte,
                             const T *wpe, T *x) {
  FOR_EACH(i, (size_t)rows * (size_t)dim) {
    size_t r = i / (size_t)dim, d = i % (size_t)dim;
    x[i] = wte[(size_t)ids[r] * (size_t)dim + d] + wpe[(r % (size_t)t) * (size_t)dim + d];
  }
}

/* One thread per table element, summing the rows that use it: no atomics, and the
 * same order every run. */
template <typename T>
__global__ void embed_bwd_tokens_kernel(int rows, int dim, int vocab, const int32_t *ids,
                                        const T *dx, T *dwte) {
  FOR_EACH(i, (size_t)vocab * (size_t)dim) {
    int v = (int)(i / (size_t)dim);
    size_t d = i % (size_t)dim;
    T sum = 0;
    for (int r = 0; r < rows; r++)
      if (ids[r] == v) sum += dx[(size_t)r * (size_t)dim + d];
    dwte[i] += sum;
  }
}

template <typename T>
__global__ void embed_bwd_positions_kernel(int rows, int t, int dim, const T *dx, T *dwpe) {
  FOR_EACH(i, (size_t)t * (size_t)dim) {
    size_t pos = i / (size_t)dim, d = i % (size_t)dim;
    T sum = 0;
    for (size_t r = pos; r < (size_t)rows; r += (size_t)t) sum += dx[r * (size_t)dim + d];
    dwpe[i] += sum;
  }
}

template <typename T>
__global__ void xent_kernel(int rows, int vocab, const T *logits, const int32_t *targets,
                            T scale, T *loss, T *dl) {
  FOR_EACH(r, (size_t)rows) {
    const T *z = logits + r * (size_t)vocab;
    T *d = dl + r * (size_t)vocab;
    int target = targets[r];
    if (target < 0) {
      loss[r] = 0;
      for (int j = 0; j < vocab; j++) d[j] = 0;
      continue;
    }
    T max = z[0], sum = 0;
    for (int j = 1; j < vocab; j++)
      if (z[j] > max) max = z[j];
    for (int j = 0; j < vocab; j++) sum += dev_exp(z[j] - max);
    loss[r] = scale * (max + dev_log(sum) - z[target]);
    for (int j = 0; j < vocab; j++) d[j] = scale * (dev_exp(z[j] - max) / sum - (T)(j == target));
  }
}

/* --- the table ---------------------------------------------------------------------------- */

static void *cuda_alloc(size_t bytes) {
  void *p = NULL;
  if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) return NULL;
  note(cudaMemset(p, 0, bytes ? bytes : 1), "cudaMemset");
  return p;
}

static void cuda_release(void *p) {
  if (p) note(cudaFree(p), "cudaFree");
}

static void cuda_upload(void *dst, const void *host, size_t bytes) {
  note(cudaMemcpy(dst, host, bytes, cudaMemcpyHostToDevice), "upload");
}

static void cuda_download(void *host, const void *src, size_t bytes) {
  note(cudaMemcpy(host, src, bytes, cudaMemcpyDeviceToHost), "download");
}

static void cuda_zero(void *p, size_t bytes) { note(cudaMemset(p, 0, bytes), "cudaMemset"); }

static void cuda_copy(void *dst, const void *src, size_t bytes) {
  note(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "copy");
}

template <typename T>
static void gemm_t(const pp_gemm *g) {
  size_t total = (size_t)g->batch[0] * (size_t)g->batch[1] * (size_t)g->m * (size_t)g->n;
  LAUNCH(gemm_kernel<T>, total, *g, total);
}

static void cuda_gemm(pp_dtype dt, const pp_gemm *g) {
  if (dt == PP_F64)
    gemm_t<double>(g);
  else
    gemm_t<float>(g);
}

static void cuda_gelu(pp_dtype dt, size_t n, const void *x, void *y) {
  if (dt == PP_F64)
    LAUNCH(gelu_kernel<double>, n, n, (const double *)x, (double *)y);
  else
    LAUNCH(gelu_kernel<float>, n, n, (const float *)x, (float *)y);
}

static void cuda_gelu_bwd(pp_dtype dt, size_t n, const void *x, const void *dy, void *dx) {
  if (dt == PP_F64)
    LAUNCH(gelu_bwd_kernel<double>, n, n, (const double *)x, (const double *)dy, (double *)dx);
  else
    LAUNCH(gelu_bwd_kernel<float>, n, n, (const float *)x, (const float *)dy, (float *)dx);
}

static void cuda_softmax(pp_dtype dt, int nseq, int heads, int t, const uint8_t *mask, void *s) {
  size_t rows = (size_t)nseq * (size_t)heads * (size_t)t;
  if (dt == PP_F64)
    LAUNCH(softmax_kernel<double>, rows, nseq, heads, t, mask, (double *)s);
  else
    LAUNCH(softmax_kernel<float>, rows, nseq, heads, t, mask, (float *)s);
}

static void cuda_softmax_bwd(pp_dtype dt, size_t rows, int cols, const void *p, void *dp) {
  if (dt == PP_F64)
    LAUNCH(softmax_bwd_kernel<double>, rows, rows, cols, (const double *)p, (double *)dp);
  else
    LAUNCH(softmax_bwd_kernel<float>, rows, rows, cols, (const float *)p, (float *)dp);
}

static void cuda_embed(pp_dtype dt, int rows, int t, int dim, const int32_t *ids, const void *wte,
                       const void *wpe, void *x) {
  size_t n = (size_t)rows * (size_t)dim;
  if (dt == PP_F64)
    LAUNCH(embed_kernel<double>, n, rows, t, dim, ids, (const double *)wte, (const double *)wpe,
           (double *)x);
  else
    LAUNCH(embed_kernel<float>, n, rows, t, dim, ids, (const float *)wte, (const float *)wpe,
           (float *)x);
}

template <typename T>
static void embed_bwd_t(int rows, int t, int dim, int vocab, const int32_t *ids, const void *dx,
                        void *dwte, void *dwpe) {
  LAUNCH(embed_bwd_tokens_kernel<T>, (size_t)vocab * (size_t)dim, rows, dim, vocab, ids,
         (const T *)dx, (T *)dwte);
  LAUNCH(embed_bwd_positions_kernel<T>, (size_t)t * (size_t)dim, rows, t, dim, (const T *)dx,
         (T *)dwpe);
}

static void cuda_embed_bwd(pp_dtype dt, int rows, int t, int dim, int vocab, const int32_t *ids,
                           const void *dx, void *dwte, void *dwpe) {
  if (dt == PP_F64)
    embed_bwd_t<double>(rows, t, dim, vocab, ids, dx, dwte, dwpe);
  else
    embed_bwd_t<float>(rows, t, dim, vocab, ids, dx, dwte, dwpe);
}

static void cuda_xent(pp_dtype dt, int rows, int vocab, const void *logits,
                      const int32_t *targets, double scale, void *loss, void *dlogits) {
  if (dt == PP_F64)
    LAUNCH(xent_kernel<double>, (size_t)rows, rows, vocab, (const double *)logits, targets,
           scale, (double *)loss, (double *)dlogits);
  else
    LAUNCH(xent_kernel<float>, (size_t)rows, rows, vocab, (const float *)logits, targets,
           (float)scale, (float *)loss, (float *)dlogits);
}

static int cuda_sync(char *err, size_t errlen) {
  note(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  if (first_error == cudaSuccess) return 0;
  snprintf(err, errlen, "CUDA error in %s: %s", first_where, cudaGetErrorString(first_error));
  return -5; /* -EIO */
}

static pp_kernels make_table(void) {
  pp_kernels k = {};
  k.name = "cuda";
  k.alloc = cuda_alloc;
  k.release = cuda_release;
  k.upload = cuda_upload;
  k.download = cuda_download;
  k.zero = cuda_zero;
  k.copy = cuda_copy;
  k.gemm = cuda_gemm;
  k.gelu = cuda_gelu;
  k.gelu_bwd = cuda_gelu_bwd;
  k.softmax = cuda_softmax;
  k.softmax_bwd = cuda_softmax_bwd;
  k.embed = cuda_embed;
  k.embed_bwd = cuda_embed_bwd;
  k.xent = cuda_xent;
  k.sync = cuda_sync;
  return k;
}

static const pp_kernels cuda_kernels = make_table();

extern "C" const pp_kernels *pp_cuda_kernels(char *err, size_t errlen) {
  int device = -1, count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e == cudaSuccess && count == 0) e = cudaErrorNoDevice;
  if (e == cudaSuccess) e = cudaGetDevice(&device);
  if (e != cudaSuccess) {
    snprintf(err, errlen, "no CUDA device: %s", cudaGetErrorString(e));
    return NULL;
  }
  return &cuda_kernels;
}
