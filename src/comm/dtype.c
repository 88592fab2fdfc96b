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

float fg_half_to_float(uint16_t h) {
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

uint16_t fg_float_to_half(float f) {
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

float fg_bf16_to_float(uint16_t b) {
  uint32_t bits = (uint32_t)b << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t fg_float_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
  x += 0x7fff + ((x >> 16) & 1); /* round to nearest even */
  return (uint16_t)(x >> 16);
}

/* --- kernels ------------------------------------------------------------------------- */

#define APPLY(op, a, b)                                              \
  ((op) == FG_PROD ? (a) * (b)                                       \
   : (op) == FG_MIN ? ((b) < (a) ? (b) : (a))                        \
   : (op) == FG_MAX ? ((b) > (a) ? (b) : (a))                        \
                    : (a) + (b))

#define KERNEL(T)                                                           \
  static void reduce_##T(T *d, const T *a, const T *b, size_t n, fg_redop op) { \
    switch (op) {                                                            \
      case FG_PROD: for (size_t i = 0; i < n; i++) d[i] = (T)(a[i] * b[i]); break; \
      case FG_MIN: for (size_t i = 0; i < n; i++) d[i] = b[i] < a[i] ? b[i] : a[i]; break; \
      case FG_MAX: for (size_t i = 0; i < n; i++) d[i] = b[i] > a[i] ? b[i] : a[i]; break; \
      default: for (size_t i = 0; i < n; i++) d[i] = (T)(a[i] + b[i]); break;  \
    }                                                                        \
  }

KERNEL(int8_t)
KERNEL(uint8_t)
KERNEL(int32_t)
KERNEL(int64_t)
KERNEL(float)
KERNEL(double)

/* Integer sums and products wrap, as in NCCL and MPI; done in unsigned arithmetic so
 * the wrap is defined behaviour. */
static void reduce_wrapping(void *d, const void *a, const void *b, size_t n, fg_dtype dt,
                            fg_redop op) {
  if (dt == FG_INT32) {
    const int32_t *x = a, *y = b;
    int32_t *z = d;
    for (size_t i = 0; i < n; i++)
      z[i] = (int32_t)(op == FG_PROD ? (uint32_t)x[i] * (uint32_t)y[i]
                                     : (uint32_t)x[i] + (uint32_t)y[i]);
  } else {
    const int64_t *x = a, *y = b;
    int64_t *z = d;
    for (size_t i = 0; i < n; i++)
      z[i] = (int64_t)(op == FG_PROD ? (uint64_t)x[i] * (uint64_t)y[i]
                                     : (uint64_t)x[i] + (uint64_t)y[i]);
  }
}

static void reduce_half(uint16_t *d, const uint16_t *a, const uint16_t *b, size_t n,
                        fg_redop op, int bf16) {
  for (size_t i = 0; i < n; i++) {
    float x = bf16 ? fg_bf16_to_float(a[i]) : fg_half_to_float(a[i]);
    float y = bf16 ? fg_bf16_to_float(b[i]) : fg_half_to_float(b[i]);
    float r = APPLY(op, x, y);
    d[i] = bf16 ? fg_float_to_bf16(r) : fg_float_to_half(r);
  }
}

void fg_reduce_local3(void *dst, const void *a, const void *b, size_t n, fg_dtype dt,
                      fg_redop op) {
  switch (dt) {
    case FG_INT8: reduce_int8_t(dst, a, b, n, op); break;
    case FG_UINT8: reduce_uint8_t(dst, a, b, n, op); break;
    case FG_INT32:
    case FG_INT64:
      if (op == FG_SUM || op == FG_AVG || op == FG_PROD)
        reduce_wrapping(dst, a, b, n, dt, op);
      else if (dt == FG_INT32)
        reduce_int32_t(dst, a, b, n, op);
      else
        reduce_int64_t(dst, a, b, n, op);
      break;
    case FG_FLOAT16: reduce_half(dst, a, b, n, op, 0); break;
    case FG_BFLOAT16: reduce_half(dst, a, b, n, op, 1); break;
    case FG_FLOAT32: reduce_float(dst, a, b, n, op); break;
    case FG_FLOAT64: reduce_double(dst, a, b, n, op); break;
    case FG_DTYPE_COUNT: break;
  }
}

void fg_reduce_local(void *dst, const void *src, size_t n, fg_dtype dt, fg_redop op) {
  fg_reduce_local3(dst, dst, src, n, dt, op);
}

void fg_divide_local(void *buf, size_t n, fg_dtype dt, int k) {
  switch (dt) {
    case FG_INT8: for (size_t i = 0; i < n; i++) ((int8_t *)buf)[i] /= k; break;
    case FG_UINT8: for (size_t i = 0; i < n; i++) ((uint8_t *)buf)[i] /= k; break;
    case FG_INT32: for (size_t i = 0; i < n; i++) ((int32_t *)buf)[i] /= k; break;
    case FG_INT64: for (size_t i = 0; i < n; i++) ((int64_t *)buf)[i] /= k; break;
    case FG_FLOAT16:
      for (size_t i = 0; i < n; i++)
        ((uint16_t *)buf)[i] = fg_float_to_half(fg_half_to_float(((uint16_t *)buf)[i]) / k);
      break;
    case FG_BFLOAT16:
      for (size_t i = 0; i < n; i++)
        ((uint16_t *)buf)[i] = fg_float_to_bf16(fg_bf16_to_float(((uint16_t *)buf)[i]) / k);
      break;
    case FG_FLOAT32: for (size_t i = 0; i < n; i++) ((float *)buf)[i] /= (float)k; break;
    case FG_FLOAT64: for (size_t i = 0; i < n; i++) ((double *)buf)[i] /= k; break;
    case FG_DTYPE_COUNT: break;
  }
}
