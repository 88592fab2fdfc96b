/* test_dtype - element types and the local reduction kernels (src/comm/dtype.c): names
 * and sizes, half and bfloat16 conversions against independent references (the
 * compiler's _Float16, and nearest-even chosen with doubles for bfloat16), and every
 * kernel for every dtype: wrap-around, rounding, aliasing, and the AVG division. Then the
 * vectorised kernels against one element at a time: lengths that leave a tail after every
 * vector width, unaligned starts, dst aliasing either input, and the values vector code
 * gets wrong first (NaN, infinities, signed zeros, subnormals, wrap-around). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "comm/comm_internal.h"

static uint32_t float_bits(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  return x;
}

static float bits_float(uint32_t x) {
  float f;
  memcpy(&f, &x, 4);
  return f;
}

/* --- names and sizes ------------------------------------------------------------------ */

static void test_names_and_sizes(void **state) {
  (void)state;
  static const size_t sizes[FG_DTYPE_COUNT] = {1, 1, 4, 8, 2, 2, 4, 8};
  for (int d = 0; d < FG_DTYPE_COUNT; d++) {
    assert_int_equal(fg_dtype_size((fg_dtype)d), sizes[d]);
    assert_int_equal(fg_dtype_parse(fg_dtype_name((fg_dtype)d)), d);
  }
  assert_int_equal(fg_dtype_size(FG_DTYPE_COUNT), 0);
  assert_string_equal(fg_dtype_name((fg_dtype)99), "?");
  assert_int_equal(fg_dtype_parse("BF16"), FG_BFLOAT16);
  assert_int_equal(fg_dtype_parse("half"), FG_FLOAT16);
  assert_int_equal(fg_dtype_parse("fp16"), FG_FLOAT16);
  assert_int_equal(fg_dtype_parse("fp32"), FG_FLOAT32);
  assert_int_equal(fg_dtype_parse("double"), FG_FLOAT64);
  assert_int_equal(fg_dtype_parse("u8"), FG_UINT8);
  assert_int_equal(fg_dtype_parse("long"), FG_INT64);
  assert_int_equal(fg_dtype_parse("complex64"), -1);
  assert_int_equal(fg_dtype_parse(""), -1);
  for (int r = 0; r < FG_REDOP_COUNT; r++)
    assert_int_equal(fg_redop_parse(fg_redop_name((fg_redop)r)), r);
  assert_int_equal(fg_redop_parse("MAX"), FG_REDOP_MAX);
  assert_int_equal(fg_redop_parse("mean"), -1);
  assert_string_equal(fg_redop_name(FG_REDOP_COUNT), "?");
}

/* --- float16 -------------------------------------------------------------------------- */

static uint16_t ref_to_half(float f) {
  _Float16 h = (_Float16)f;
  uint16_t b;
  memcpy(&b, &h, 2);
  return b;
}

static float ref_from_half(uint16_t b) {
  _Float16 h;
  memcpy(&h, &b, 2);
  return (float)h;
}

/* Every half, subnormals, infinities and NaNs included, widens exactly. */
static void test_half_to_float_every_value(void **state) {
  (void)state;
  for (uint32_t b = 0; b <= 0xffff; b++) {
    float got = fg__half_to_float((uint16_t)b), want = ref_from_half((uint16_t)b);
    if (isnan(want)) {
      assert_true(isnan(got));
      assert_int_equal(signbit(got) != 0, (b & 0x8000) != 0);
    } else if (float_bits(got) != float_bits(want)) {
      fail_msg("half 0x%04x: got %a, expected %a", b, (double)got, (double)want);
    }
  }
}

static void expect_half(float f) {
  uint16_t got = fg__float_to_half(f), want = ref_to_half(f);
  if (isnan(f)) {
    assert_int_equal(got & 0x7c00, 0x7c00);
    assert_int_not_equal(got & 0x03ff, 0); /* still a NaN, not an infinity */
    assert_int_equal(got & 0x8000, float_bits(f) & 0x80000000u ? 0x8000 : 0);
  } else if (got != want) {
    fail_msg("float %a (0x%08x): got half 0x%04x, expected 0x%04x", (double)f, float_bits(f),
             got, want);
  }
}

/* A spread of floats over every exponent, each way of rounding, both signs. */
static void test_float_to_half_sweep(void **state) {
  (void)state;
  for (uint64_t x = 0; x <= 0xffffffffu; x += 0x1003) expect_half(bits_float((uint32_t)x));
  /* Every float near the half range's edges, bit by bit. */
  for (uint32_t x = 0x33000000u - 64; x < 0x33000000u + 64; x++) expect_half(bits_float(x));
  for (uint32_t x = 0x477fe000u - 64; x < 0x477fe000u + 64; x++) expect_half(bits_float(x));
  for (uint32_t x = 0x38800000u - 64; x < 0x38800000u + 64; x++) expect_half(bits_float(x));
}

static void test_half_rounding_cases(void **state) {
  (void)state;
  assert_int_equal(fg__float_to_half(2049.0f), fg__float_to_half(2048.0f)); /* tie: even */
  assert_int_equal(fg__float_to_half(2051.0f), fg__float_to_half(2052.0f)); /* tie: even */
  assert_int_equal(fg__float_to_half(65504.0f), 0x7bff);                    /* the largest */
  assert_int_equal(fg__float_to_half(65519.0f), 0x7bff);
  assert_int_equal(fg__float_to_half(65520.0f), 0x7c00); /* rounds to infinity */
  assert_int_equal(fg__float_to_half(-1e9f), 0xfc00);
  assert_int_equal(fg__float_to_half(ldexpf(1, -24)), 0x0001); /* the smallest subnormal */
  assert_int_equal(fg__float_to_half(ldexpf(1, -25)), 0x0000); /* half of it: tie to 0 */
  assert_int_equal(fg__float_to_half(ldexpf(1.5f, -25)), 0x0001);
  assert_int_equal(fg__float_to_half(ldexpf(3, -25)), 0x0002); /* 1.5 ulp: tie to even */
  assert_int_equal(fg__float_to_half(ldexpf(1023, -24)), 0x03ff);
  assert_int_equal(fg__float_to_half(ldexpf(2047, -25)), 0x0400); /* carries into normal */
  assert_int_equal(fg__float_to_half(-0.0f), 0x8000);
  assert_int_equal(fg__float_to_half(INFINITY), 0x7c00);
  assert_true(fg__half_to_float(0x0001) == ldexpf(1, -24));
  assert_true(fg__half_to_float(0x8000) == 0 && signbit(fg__half_to_float(0x8000)));
  assert_true(isinf(fg__half_to_float(0x7c00)));
  assert_true(isnan(fg__half_to_float(0x7e00)));
}

/* --- bfloat16 ------------------------------------------------------------------------- */

/* The nearest bfloat16, ties to even, chosen by comparing distances in double. */
static uint16_t ref_to_bf16(float f) {
  uint32_t x = float_bits(f);
  uint16_t lo = (uint16_t)(x >> 16);
  if ((x & 0xffff) == 0) return lo;
  uint16_t hi = (uint16_t)(lo + 1);
  double v = f, a = fg__bf16_to_float(lo), b;
  if (((hi >> 7) & 0xff) == 0xff && (hi & 0x7f) == 0)
    b = signbit(f) ? -ldexp(2, 127) : ldexp(2, 127); /* what infinity stands for here */
  else
    b = fg__bf16_to_float(hi);
  double da = fabs(v - a), db = fabs(v - b);
  if (da < db) return lo;
  if (db < da) return hi;
  return (lo & 1) ? hi : lo;
}

static void expect_bf16(float f) {
  uint16_t got = fg__float_to_bf16(f);
  if (isnan(f)) {
    assert_true(isnan(fg__bf16_to_float(got)));
    assert_int_equal(got & 0x8000, float_bits(f) >> 16 & 0x8000);
    return;
  }
  uint16_t want = ref_to_bf16(f);
  if (got != want)
    fail_msg("float %a (0x%08x): got bf16 0x%04x, expected 0x%04x", (double)f, float_bits(f),
             got, want);
}

static void test_bf16_sweep(void **state) {
  (void)state;
  for (uint64_t x = 0; x <= 0xffffffffu; x += 0x1003) expect_bf16(bits_float((uint32_t)x));
  /* NaNs whose top half alone would read as infinity must stay NaN. */
  expect_bf16(bits_float(0x7f800001u));
  expect_bf16(bits_float(0xff800001u));
  expect_bf16(bits_float(0x7fc00000u));
  for (uint32_t b = 0; b <= 0xffff; b++) {
    float f = fg__bf16_to_float((uint16_t)b);
    assert_int_equal(float_bits(f), b << 16); /* widening is exact */
    if (!isnan(f)) assert_int_equal(fg__float_to_bf16(f), b);
  }
}

static void test_bf16_rounding_cases(void **state) {
  (void)state;
  assert_int_equal(fg__float_to_bf16(1.0f + ldexpf(1, -8)), 0x3f80); /* tie: even (down) */
  assert_int_equal(fg__float_to_bf16(1.0f + ldexpf(3, -8)), 0x3f82); /* tie: even (up) */
  assert_int_equal(fg__float_to_bf16(257.0f), fg__float_to_bf16(256.0f));
  assert_int_equal(fg__float_to_bf16(bits_float(0x7f7fffffu)), 0x7f80); /* max float: inf */
  assert_int_equal(fg__float_to_bf16(bits_float(0x00010000u)), 0x0001);   /* subnormal */
  assert_int_equal(fg__float_to_bf16(bits_float(0x00008000u)), 0x0000);   /* tie to 0 */
  assert_int_equal(fg__float_to_bf16(bits_float(0x00018000u)), 0x0002);   /* tie to even */
  assert_int_equal(fg__float_to_bf16(-0.0f), 0x8000);
  assert_int_equal(fg__float_to_bf16(-INFINITY), 0xff80);
}

/* --- kernels -------------------------------------------------------------------------- */

static void test_int8_uint8_wrap(void **state) {
  (void)state;
  int8_t a[4] = {127, -128, 3, -4}, b[4] = {1, -1, -5, 2}, d[4];
  fg__reduce_local3(d, a, b, 4, FG_INT8, FG_REDOP_SUM);
  assert_int_equal(d[0], -128);
  assert_int_equal(d[1], 127);
  assert_int_equal(d[2], -2);
  fg__reduce_local3(d, a, b, 4, FG_INT8, FG_REDOP_PROD);
  assert_int_equal(d[0], 127);
  assert_int_equal(d[1], -128); /* 128 wraps */
  assert_int_equal(d[3], -8);
  fg__reduce_local3(d, a, b, 4, FG_INT8, FG_REDOP_MIN);
  assert_int_equal(d[2], -5);
  fg__reduce_local3(d, a, b, 4, FG_INT8, FG_REDOP_MAX);
  assert_int_equal(d[3], 2);
  uint8_t u[3] = {255, 16, 7}, v[3] = {1, 16, 200}, w[3];
  fg__reduce_local3(w, u, v, 3, FG_UINT8, FG_REDOP_SUM);
  assert_int_equal(w[0], 0);
  assert_int_equal(w[2], 207);
  fg__reduce_local3(w, u, v, 3, FG_UINT8, FG_REDOP_PROD);
  assert_int_equal(w[1], 0); /* 256 wraps */
  fg__reduce_local3(w, u, v, 3, FG_UINT8, FG_REDOP_MIN);
  assert_int_equal(w[0], 1);
  fg__reduce_local3(w, u, v, 3, FG_UINT8, FG_REDOP_MAX);
  assert_int_equal(w[2], 200);
}

/* Wider sums and products wrap as two's complement, without undefined behaviour (the
 * sanitizer build would stop here otherwise). */
static void test_int32_int64_wrap(void **state) {
  (void)state;
  int32_t a[3] = {INT32_MAX, INT32_MIN, -7}, b[3] = {1, -1, 3}, d[3];
  fg__reduce_local3(d, a, b, 3, FG_INT32, FG_REDOP_SUM);
  assert_int_equal(d[0], INT32_MIN);
  assert_int_equal(d[1], INT32_MAX);
  assert_int_equal(d[2], -4);
  fg__reduce_local3(d, a, b, 3, FG_INT32, FG_REDOP_AVG); /* AVG reduces as SUM */
  assert_int_equal(d[2], -4);
  int32_t big[1] = {65536}, sq[1];
  fg__reduce_local3(sq, big, big, 1, FG_INT32, FG_REDOP_PROD);
  assert_int_equal(sq[0], 0);
  fg__reduce_local3(d, a, b, 3, FG_INT32, FG_REDOP_MIN);
  assert_int_equal(d[0], 1);
  assert_int_equal(d[1], INT32_MIN);
  fg__reduce_local3(d, a, b, 3, FG_INT32, FG_REDOP_MAX);
  assert_int_equal(d[2], 3);

  int64_t x[3] = {INT64_MAX, INT64_MIN, (int64_t)1 << 40}, y[3] = {1, -1, (int64_t)1 << 30}, z[3];
  fg__reduce_local3(z, x, y, 3, FG_INT64, FG_REDOP_SUM);
  assert_true(z[0] == INT64_MIN && z[1] == INT64_MAX);
  fg__reduce_local3(z, x, y, 3, FG_INT64, FG_REDOP_PROD);
  assert_true(z[0] == INT64_MAX);
  assert_true(z[1] == INT64_MIN); /* -INT64_MIN wraps back */
  assert_true(z[2] == 0);         /* 2^70 wraps to 0 */
  fg__reduce_local3(z, x, y, 3, FG_INT64, FG_REDOP_MIN);
  assert_true(z[1] == INT64_MIN && z[2] == (int64_t)1 << 30);
  fg__reduce_local3(z, x, y, 3, FG_INT64, FG_REDOP_MAX);
  assert_true(z[0] == INT64_MAX && z[1] == -1);
}

static void test_floats(void **state) {
  (void)state;
  float a[3] = {1.5f, -2.0f, 1e30f}, b[3] = {2.0f, 3.0f, 1e30f}, d[3];
  fg__reduce_local3(d, a, b, 3, FG_FLOAT32, FG_REDOP_SUM);
  assert_true(d[0] == 3.5f && d[1] == 1.0f && d[2] == 2e30f);
  fg__reduce_local3(d, a, b, 3, FG_FLOAT32, FG_REDOP_PROD);
  assert_true(d[0] == 3.0f && d[1] == -6.0f && isinf(d[2]));
  fg__reduce_local3(d, a, b, 3, FG_FLOAT32, FG_REDOP_MIN);
  assert_true(d[0] == 1.5f && d[1] == -2.0f);
  fg__reduce_local3(d, a, b, 3, FG_FLOAT32, FG_REDOP_MAX);
  assert_true(d[0] == 2.0f && d[1] == 3.0f);
  double x[2] = {0.1, -1e308}, y[2] = {0.2, -1e308}, z[2];
  fg__reduce_local3(z, x, y, 2, FG_FLOAT64, FG_REDOP_SUM);
  assert_true(z[0] == 0.1 + 0.2 && isinf(z[1]) && z[1] < 0);
  fg__reduce_local3(z, x, y, 2, FG_FLOAT64, FG_REDOP_MAX);
  assert_true(z[0] == 0.2);
}

static void put_halves(uint16_t *out, const float *in, size_t n, int bf16) {
  for (size_t i = 0; i < n; i++) out[i] = bf16 ? fg__float_to_bf16(in[i]) : fg__float_to_half(in[i]);
}

/* Half types reduce in float and round once per pair. */
static void test_half_kernels(void **state) {
  (void)state;
  static const float af[4] = {2048, 1.5f, -3, 60000}, bf[4] = {1, 2.25f, 4, 60000};
  uint16_t a[4], b[4], d[4];
  put_halves(a, af, 4, 0);
  put_halves(b, bf, 4, 0);
  fg__reduce_local3(d, a, b, 4, FG_FLOAT16, FG_REDOP_SUM);
  assert_true(fg__half_to_float(d[0]) == 2048); /* 2049 rounds to even */
  assert_true(fg__half_to_float(d[1]) == 3.75f);
  assert_true(fg__half_to_float(d[2]) == 1);
  assert_int_equal(d[3], 0x7c00); /* overflows to infinity */
  fg__reduce_local3(d, a, b, 4, FG_FLOAT16, FG_REDOP_PROD);
  assert_true(fg__half_to_float(d[1]) == 3.375f && fg__half_to_float(d[2]) == -12);
  fg__reduce_local3(d, a, b, 4, FG_FLOAT16, FG_REDOP_MIN);
  assert_true(fg__half_to_float(d[0]) == 1 && fg__half_to_float(d[2]) == -3);
  fg__reduce_local3(d, a, b, 4, FG_FLOAT16, FG_REDOP_MAX);
  assert_true(fg__half_to_float(d[1]) == 2.25f);

  static const float xf[3] = {256, 1, -0.5f}, yf[3] = {1, 1.0f / 128, 0.25f};
  uint16_t x[3], y[3], z[3];
  put_halves(x, xf, 3, 1);
  put_halves(y, yf, 3, 1);
  fg__reduce_local3(z, x, y, 3, FG_BFLOAT16, FG_REDOP_SUM);
  assert_true(fg__bf16_to_float(z[0]) == 256); /* 257 rounds to even */
  assert_true(fg__bf16_to_float(z[1]) == 1 + 1.0f / 128);
  assert_true(fg__bf16_to_float(z[2]) == -0.25f);
  fg__reduce_local3(z, x, y, 3, FG_BFLOAT16, FG_REDOP_PROD);
  assert_true(fg__bf16_to_float(z[0]) == 256 && fg__bf16_to_float(z[2]) == -0.125f);
  fg__reduce_local3(z, x, y, 3, FG_BFLOAT16, FG_REDOP_MIN);
  assert_true(fg__bf16_to_float(z[2]) == -0.5f);
  fg__reduce_local3(z, x, y, 3, FG_BFLOAT16, FG_REDOP_MAX);
  assert_true(fg__bf16_to_float(z[0]) == 256);
}

/* dst may be either input, as gloo and the composed operations call it. */
static void test_aliasing(void **state) {
  (void)state;
  int32_t a[3] = {1, 2, 3}, b[3] = {10, 20, 30};
  fg__reduce_local(a, b, 3, FG_INT32, FG_REDOP_SUM);
  assert_true(a[0] == 11 && a[1] == 22 && a[2] == 33);
  fg__reduce_local3(b, a, b, 3, FG_INT32, FG_REDOP_MAX);
  assert_true(b[0] == 11 && b[2] == 33);
  uint16_t h[2], g[2];
  put_halves(h, (const float[]){1, 2}, 2, 0);
  put_halves(g, (const float[]){3, 4}, 2, 0);
  fg__reduce_local3(g, h, g, 2, FG_FLOAT16, FG_REDOP_SUM);
  assert_true(fg__half_to_float(g[0]) == 4 && fg__half_to_float(g[1]) == 6);
}

static void test_divide(void **state) {
  (void)state;
  int8_t i8[2] = {7, -7};
  fg__divide_local(i8, 2, FG_INT8, 2);
  assert_true(i8[0] == 3 && i8[1] == -3); /* truncates, as NCCL's integer AVG */
  uint8_t u8[1] = {255};
  fg__divide_local(u8, 1, FG_UINT8, 4);
  assert_int_equal(u8[0], 63);
  int32_t i32[1] = {-9};
  fg__divide_local(i32, 1, FG_INT32, 3);
  assert_int_equal(i32[0], -3);
  int64_t i64[1] = {INT64_MAX};
  fg__divide_local(i64, 1, FG_INT64, 2);
  assert_true(i64[0] == INT64_MAX / 2);
  uint16_t h[2], b[2];
  put_halves(h, (const float[]){1, 3}, 2, 0);
  put_halves(b, (const float[]){1, 3}, 2, 1);
  fg__divide_local(h, 2, FG_FLOAT16, 3);
  fg__divide_local(b, 2, FG_BFLOAT16, 3);
  assert_int_equal(h[0], fg__float_to_half(1.0f / 3));
  assert_true(fg__half_to_float(h[1]) == 1);
  assert_int_equal(b[0], fg__float_to_bf16(1.0f / 3));
  float f[1] = {1};
  fg__divide_local(f, 1, FG_FLOAT32, 3);
  assert_true(f[0] == 1.0f / 3);
  double g[1] = {1};
  fg__divide_local(g, 1, FG_FLOAT64, 4);
  assert_true(g[0] == 0.25);
}

/* --- the vectorised kernels against one element at a time -------------------------------- */

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
      cmocka_unit_test(test_names_and_sizes),   cmocka_unit_test(test_half_to_float_every_value),
      cmocka_unit_test(test_float_to_half_sweep), cmocka_unit_test(test_half_rounding_cases),
      cmocka_unit_test(test_bf16_sweep),         cmocka_unit_test(test_bf16_rounding_cases),
      cmocka_unit_test(test_int8_uint8_wrap),    cmocka_unit_test(test_int32_int64_wrap),
      cmocka_unit_test(test_floats),             cmocka_unit_test(test_half_kernels),
      cmocka_unit_test(test_aliasing),           cmocka_unit_test(test_divide),
      cmocka_unit_test(test_every_kernel_matches_one_element_at_a_time),
      cmocka_unit_test(test_avg_reduces_as_sum),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
