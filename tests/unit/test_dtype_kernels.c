/* test_dtype_kernels - the vectorised reduction kernels (src/comm/dtype.c) against one
 * element at a time: lengths that leave a tail after every vector width, unaligned starts,
 * dst aliasing either input, and the values vector code gets wrong first (NaN, infinities,
 * signed zeros, subnormals, wrap-around). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "comm/comm_internal.h"

enum { N = 1003, SPECIALS = 9 };

/* 3e-6 is a float16 subnormal, 1e-40 a float32 one; 65504 is float16's largest. */
static const float specials[SPECIALS] = {NAN, INFINITY, -INFINITY, -0.0f, 0.0f, 1e-40f,
                                         3e-6f, 65504.0f, -3.0e38f};

/* Element i of an input: mostly ordinary values, with the specials mixed in. */
static double value(int which, size_t i) {
  if ((i * 7 + (size_t)which) % 13 == 0) return specials[(i + (size_t)which) % SPECIALS];
  return (double)(((i * 31 + (size_t)which * 17) % 201)) - 100 + (which ? 0.25 : 0.5);
}

/* Integers take the ordinary values scaled to reach past their range (so sums and
 * products wrap), and their extremes where the floats take the specials. */
static double pick(fg_redop op, double x, double y) {
  return op == FG_REDOP_MIN ? (y < x ? y : x) : (y > x ? y : x);
}

/* The reference: one element, in the type's own arithmetic. */
static void reference(void *d, const void *a, const void *b, size_t i, fg_dtype dt, fg_redop op) {
  int mul = op == FG_REDOP_PROD, minmax = op == FG_REDOP_MIN || op == FG_REDOP_MAX;
#define INTS(T, U)                                                                        \
  {                                                                                       \
    T x = ((const T *)a)[i], y = ((const T *)b)[i];                                       \
    ((T *)d)[i] = minmax ? (T)pick(op, (double)x, (double)y)                              \
                         : (T)(mul ? (U)x * (U)y : (U)x + (U)y);                          \
  }                                                                                       \
  break
  switch (dt) {
    case FG_INT8: INTS(int8_t, uint8_t);
    case FG_UINT8: INTS(uint8_t, uint8_t);
    case FG_INT32: INTS(int32_t, uint32_t);
    case FG_INT64: { /* through double would lose bits: compare directly */
      int64_t x = ((const int64_t *)a)[i], y = ((const int64_t *)b)[i];
      ((int64_t *)d)[i] = op == FG_REDOP_MIN   ? (y < x ? y : x)
                          : op == FG_REDOP_MAX ? (y > x ? y : x)
                                         : (int64_t)(mul ? (uint64_t)x * (uint64_t)y
                                                         : (uint64_t)x + (uint64_t)y);
      break;
    }
    case FG_FLOAT16:
    case FG_BFLOAT16: {
      int bf = dt == FG_BFLOAT16;
      uint16_t hx = ((const uint16_t *)a)[i], hy = ((const uint16_t *)b)[i];
      float x = bf ? fg__bf16_to_float(hx) : fg__half_to_float(hx);
      float y = bf ? fg__bf16_to_float(hy) : fg__half_to_float(hy);
      float r = minmax ? (op == FG_REDOP_MIN ? (y < x ? y : x) : (y > x ? y : x))
                       : mul  ? x * y
                              : x + y;
      ((uint16_t *)d)[i] = bf ? fg__float_to_bf16(r) : fg__float_to_half(r);
      break;
    }
    case FG_FLOAT32: {
      float x = ((const float *)a)[i], y = ((const float *)b)[i];
      ((float *)d)[i] = minmax ? (op == FG_REDOP_MIN ? (y < x ? y : x) : (y > x ? y : x))
                        : mul  ? x * y
                               : x + y;
      break;
    }
    case FG_FLOAT64: {
      double x = ((const double *)a)[i], y = ((const double *)b)[i];
      ((double *)d)[i] = minmax ? pick(op, x, y) : mul ? x * y : x + y;
      break;
    }
    case FG_DTYPE_COUNT: break;
  }
#undef INTS
}

/* Bit for bit, except that any NaN matches any NaN (payloads are the CPU's business). */
static void expect_same(const void *got, const void *want, size_t n, fg_dtype dt, fg_redop op,
                        const char *how) {
  size_t esz = fg_dtype_size(dt);
  for (size_t i = 0; i < n; i++) {
    const char *g = (const char *)got + i * esz, *w = (const char *)want + i * esz;
    if (!memcmp(g, w, esz)) continue;
    if (dt >= FG_FLOAT16 && isnan(fg_dtype_get(got, dt, i)) && isnan(fg_dtype_get(want, dt, i)))
      continue;
    fail_msg("%s %s (%s): element %zu of %zu differs: got %g, expected %g", fg_dtype_name(dt),
             fg_redop_name(op), how, i, n, fg_dtype_get(got, dt, i), fg_dtype_get(want, dt, i));
  }
}

static void check(fg_dtype dt, fg_redop op, size_t n, size_t skew) {
  size_t esz = fg_dtype_size(dt), bytes = (n + skew) * esz;
  char *a = malloc(bytes), *b = malloc(bytes), *d = malloc(bytes), *want = malloc(bytes);
  assert_non_null(a && b && d && want);
  char *x = a + skew * esz, *y = b + skew * esz, *z = d + skew * esz, *r = want + skew * esz;
  for (size_t i = 0; i < n; i++) {
    fg_dtype_set(x, dt, i, value(0, i));
    fg_dtype_set(y, dt, i, value(1, i));
  }
  for (size_t i = 0; i < n; i++) reference(r, x, y, i, dt, op);
  fg__reduce_local3(z, x, y, n, dt, op);
  expect_same(z, r, n, dt, op, "separate");
  memcpy(z, x, n * esz);
  fg__reduce_local3(z, z, y, n, dt, op);
  expect_same(z, r, n, dt, op, "dst is a");
  memcpy(z, y, n * esz);
  fg__reduce_local3(z, x, z, n, dt, op);
  expect_same(z, r, n, dt, op, "dst is b");
  free(a);
  free(b);
  free(d);
  free(want);
}

static void test_every_kernel_matches_one_element_at_a_time(void **state) {
  (void)state;
  static const size_t lengths[] = {1, 7, 8, 9, 31, 33, 64, N};
  for (int dt = 0; dt < FG_DTYPE_COUNT; dt++)
    for (int op = 0; op < FG_REDOP_AVG; op++)
      for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++)
        for (size_t skew = 0; skew < 2; skew++) check((fg_dtype)dt, (fg_redop)op, lengths[l], skew);
}

/* AVG reduces as SUM: the division comes later, once. */
static void test_avg_reduces_as_sum(void **state) {
  (void)state;
  float a[40], b[40], s[40], v[40];
  for (int i = 0; i < 40; i++) a[i] = (float)i, b[i] = (float)(3 * i);
  fg__reduce_local3(s, a, b, 40, FG_FLOAT32, FG_REDOP_SUM);
  fg__reduce_local3(v, a, b, 40, FG_FLOAT32, FG_REDOP_AVG);
  assert_memory_equal(s, v, sizeof s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_kernel_matches_one_element_at_a_time),
      cmocka_unit_test(test_avg_reduces_as_sum),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
