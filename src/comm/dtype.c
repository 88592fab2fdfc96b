/* dtype.c - element types and reductions: names, sizes, and the local kernels the
 * composed operations and the type-poor backends use. Half types are reduced in
 * float32 and rounded once, as NCCL and torch do for a single pair. */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "comm/comm_internal.h"
#include "common/util.h"

static const struct {
  const char *name;
  const char *alias;
  size_t size;
} dtypes[FG_DTYPE_COUNT] = {
    [FG_INT8] = {"int8", "i8", 1},           [FG_UINT8] = {"uint8", "u8", 1},
    [FG_INT32] = {"int32", "int", 4},        [FG_INT64] = {"int64", "long", 8},
    [FG_FLOAT16] = {"float16", "half", 2},   [FG_BFLOAT16] = {"bfloat16", "bf16", 2},
    [FG_FLOAT32] = {"float32", "float", 4},  [FG_FLOAT64] = {"float64", "double", 8},
};

static const char *const redops[FG_REDOP_COUNT] = {"sum", "prod", "min", "max", "avg"};

size_t fg_dtype_size(fg_dtype dt) { return (unsigned)dt < FG_DTYPE_COUNT ? dtypes[dt].size : 0; }
const char *fg_dtype_name(fg_dtype dt) {
  return (unsigned)dt < FG_DTYPE_COUNT ? dtypes[dt].name : "?";
}
const char *fg_redop_name(fg_redop op) {
  return (unsigned)op < FG_REDOP_COUNT ? redops[op] : "?";
}

int fg_dtype_parse(const char *name) {
  for (int i = 0; i < FG_DTYPE_COUNT; i++)
    if (!strcasecmp(name, dtypes[i].name) || !strcasecmp(name, dtypes[i].alias)) return i;
  if (!strcasecmp(name, "fp16")) return FG_FLOAT16;
  if (!strcasecmp(name, "fp32")) return FG_FLOAT32;
  if (!strcasecmp(name, "fp64")) return FG_FLOAT64;
  return -1;
}

int fg_redop_parse(const char *name) {
  for (int i = 0; i < FG_REDOP_COUNT; i++)
    if (!strcasecmp(name, redops[i])) return i;
  return -1;
}

/* --- half types ---------------------------------------------------------------------- */

float fg__half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000 | (man << 13); /* inf, nan */
  } else if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else { /* subnormal: normalise */
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) {
        man <<= 1;
        exp--;
      }
      bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    }
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t fg__float_to_half(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t exp = (x >> 23) & 0xff, man = x & 0x7fffff;
  if (exp == 0xff) return sign | 0x7c00 | (man ? 0x200 : 0);
  int e = (int)exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    man |= 0x800000;
    uint32_t shift = (uint32_t)(14 - e);
    uint32_t half = man >> shift, rest = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1))) half++;
    return sign | (uint16_t)half;
  }
  uint32_t half = ((uint32_t)e << 10) | (man >> 13), rest = man & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++; /* may carry into inf: right */
  return sign | (uint16_t)half;
}

/* bfloat16 without branches, so that the kernels' loops vectorise: nearest even, NaNs stay
 * NaNs (quiet). */
static inline float bf16_in(uint16_t b) {
  uint32_t bits = (uint32_t)b << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static inline uint16_t bf16_out(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t rounded = (x + 0x7fff + ((x >> 16) & 1)) >> 16, quiet = (x >> 16) | 0x40;
  return (uint16_t)((x & 0x7fffffff) > 0x7f800000 ? quiet : rounded);
}

float fg__bf16_to_float(uint16_t b) { return bf16_in(b); }

uint16_t fg__float_to_bf16(float f) { return bf16_out(f); }

void fg_dtype_set(void *buf, fg_dtype dt, size_t i, double v) {
  switch (dt) {
    case FG_INT8: ((int8_t *)buf)[i] = (int8_t)v; break;
    case FG_UINT8: ((uint8_t *)buf)[i] = (uint8_t)v; break;
    case FG_INT32: ((int32_t *)buf)[i] = (int32_t)v; break;
    case FG_INT64: ((int64_t *)buf)[i] = (int64_t)v; break;
    case FG_FLOAT16: ((uint16_t *)buf)[i] = fg__float_to_half((float)v); break;
    case FG_BFLOAT16: ((uint16_t *)buf)[i] = fg__float_to_bf16((float)v); break;
    case FG_FLOAT32: ((float *)buf)[i] = (float)v; break;
    case FG_FLOAT64: ((double *)buf)[i] = v; break;
    case FG_DTYPE_COUNT: break;
  }
}

double fg_dtype_get(const void *buf, fg_dtype dt, size_t i) {
  switch (dt) {
    case FG_INT8: return ((const int8_t *)buf)[i];
    case FG_UINT8: return ((const uint8_t *)buf)[i];
    case FG_INT32: return ((const int32_t *)buf)[i];
    case FG_INT64: return (double)((const int64_t *)buf)[i];
    case FG_FLOAT16: return fg__half_to_float(((const uint16_t *)buf)[i]);
    case FG_BFLOAT16: return fg__bf16_to_float(((const uint16_t *)buf)[i]);
    case FG_FLOAT32: return ((const float *)buf)[i];
    case FG_FLOAT64: return ((const double *)buf)[i];
    case FG_DTYPE_COUNT: break;
  }
  return NAN;
}

/* --- kernels -------------------------------------------------------------------------
 *
 * One loop per type and operation, so that the compiler vectorises each (dtype.o is built
 * with -O3). dst may be a or b, but only element for element, which no vector order can
 * break: ivdep says so, and spares the overlap checks. */

#define EACH(expr) _Pragma("GCC ivdep") for (size_t i = 0; i < n; i++) d[i] = (expr)

/* Integer sums and products wrap, as in NCCL and MPI: int8 and uint8 promote to int, the
 * wider types go through their unsigned twin (u##T) so the wrap is defined behaviour. */
#define NARROW_ADD(T, x, y) (T)((x) + (y))
#define NARROW_MUL(T, x, y) (T)((x) * (y))
#define WIDE_ADD(T, x, y) (T)((u##T)(x) + (u##T)(y))
#define WIDE_MUL(T, x, y) (T)((u##T)(x) * (u##T)(y))
#define FLOAT_ADD(T, x, y) ((x) + (y))
#define FLOAT_MUL(T, x, y) ((x) * (y))

#define KERNEL(T, ADD, MUL)                                                               \
  static void reduce_##T(T *d, const T *a, const T *b, size_t n, fg_redop op) {          \
    switch (op) {                                                                         \
      case FG_REDOP_PROD: EACH(MUL(T, a[i], b[i])); break;                                \
      case FG_REDOP_MIN: EACH(b[i] < a[i] ? b[i] : a[i]); break;                          \
      case FG_REDOP_MAX: EACH(b[i] > a[i] ? b[i] : a[i]); break;                          \
      default: EACH(ADD(T, a[i], b[i])); break;                                           \
    }                                                                                     \
  }

KERNEL(int8_t, NARROW_ADD, NARROW_MUL)
KERNEL(uint8_t, NARROW_ADD, NARROW_MUL)
KERNEL(int32_t, WIDE_ADD, WIDE_MUL)
KERNEL(int64_t, WIDE_ADD, WIDE_MUL)
KERNEL(float, FLOAT_ADD, FLOAT_MUL)
KERNEL(double, FLOAT_ADD, FLOAT_MUL)

/* Half types reduce in float32 and round once per pair. */
#define APPLY(op, x, y)                            \
  ((op) == FG_REDOP_PROD  ? (x) * (y)              \
   : (op) == FG_REDOP_MIN ? ((y) < (x) ? (y) : (x)) \
   : (op) == FG_REDOP_MAX ? ((y) > (x) ? (y) : (x)) \
                          : (x) + (y))

static void reduce_bf16(uint16_t *d, const uint16_t *a, const uint16_t *b, size_t n,
                        fg_redop op) {
  switch (op) {
    case FG_REDOP_PROD: EACH(bf16_out(bf16_in(a[i]) * bf16_in(b[i]))); break;
    case FG_REDOP_MIN: EACH(bf16_out(APPLY(FG_REDOP_MIN, bf16_in(a[i]), bf16_in(b[i])))); break;
    case FG_REDOP_MAX: EACH(bf16_out(APPLY(FG_REDOP_MAX, bf16_in(a[i]), bf16_in(b[i])))); break;
    default: EACH(bf16_out(bf16_in(a[i]) + bf16_in(b[i]))); break;
  }
}

static void reduce_half_scalar(uint16_t *d, const uint16_t *a, const uint16_t *b, size_t n,
                               fg_redop op) {
  for (size_t i = 0; i < n; i++)
    d[i] = fg__float_to_half(APPLY(op, fg__half_to_float(a[i]), fg__half_to_float(b[i])));
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* float16 through the CPU's own conversions (F16C, every x86-64 since 2012): they round to
 * nearest even, as fg__float_to_half does. minps(y, x) is exactly "y < x ? y : x". */
__attribute__((target("avx,f16c"))) static void reduce_half_f16c(uint16_t *d, const uint16_t *a,
                                                                  const uint16_t *b, size_t n,
                                                                  fg_redop op) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i)));
    __m256 y = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i)));
    __m256 r = op == FG_REDOP_PROD  ? _mm256_mul_ps(x, y)
               : op == FG_REDOP_MIN ? _mm256_min_ps(y, x)
               : op == FG_REDOP_MAX ? _mm256_max_ps(y, x)
                              : _mm256_add_ps(x, y);
    _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(r, _MM_FROUND_TO_NEAREST_INT));
  }
  reduce_half_scalar(d + i, a + i, b + i, n - i, op);
}

static void reduce_half(uint16_t *d, const uint16_t *a, const uint16_t *b, size_t n,
                        fg_redop op) {
  static int f16c = -1;
  if (f16c < 0) f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  (f16c ? reduce_half_f16c : reduce_half_scalar)(d, a, b, n, op);
}
#else
#define reduce_half reduce_half_scalar
#endif

void fg__reduce_local3(void *dst, const void *a, const void *b, size_t n, fg_dtype dt,
                      fg_redop op) {
  switch (dt) {
    case FG_INT8: reduce_int8_t(dst, a, b, n, op); break;
    case FG_UINT8: reduce_uint8_t(dst, a, b, n, op); break;
    case FG_INT32: reduce_int32_t(dst, a, b, n, op); break;
    case FG_INT64: reduce_int64_t(dst, a, b, n, op); break;
    case FG_FLOAT16: reduce_half(dst, a, b, n, op); break;
    case FG_BFLOAT16: reduce_bf16(dst, a, b, n, op); break;
    case FG_FLOAT32: reduce_float(dst, a, b, n, op); break;
    case FG_FLOAT64: reduce_double(dst, a, b, n, op); break;
    case FG_DTYPE_COUNT: break;
  }
}

void fg__reduce_local(void *dst, const void *src, size_t n, fg_dtype dt, fg_redop op) {
  fg__reduce_local3(dst, dst, src, n, dt, op);
}

void fg__divide_local(void *buf, size_t n, fg_dtype dt, int k) {
  switch (dt) {
    case FG_INT8: for (size_t i = 0; i < n; i++) ((int8_t *)buf)[i] /= k; break;
    case FG_UINT8: for (size_t i = 0; i < n; i++) ((uint8_t *)buf)[i] /= k; break;
    case FG_INT32: for (size_t i = 0; i < n; i++) ((int32_t *)buf)[i] /= k; break;
    case FG_INT64: for (size_t i = 0; i < n; i++) ((int64_t *)buf)[i] /= k; break;
    case FG_FLOAT16:
      for (size_t i = 0; i < n; i++)
        ((uint16_t *)buf)[i] = fg__float_to_half(fg__half_to_float(((uint16_t *)buf)[i]) / k);
      break;
    case FG_BFLOAT16:
      for (size_t i = 0; i < n; i++)
        ((uint16_t *)buf)[i] = fg__float_to_bf16(fg__bf16_to_float(((uint16_t *)buf)[i]) / k);
      break;
    case FG_FLOAT32: for (size_t i = 0; i < n; i++) ((float *)buf)[i] /= (float)k; break;
    case FG_FLOAT64: for (size_t i = 0; i < n; i++) ((double *)buf)[i] /= k; break;
    case FG_DTYPE_COUNT: break;
  }
}
