/* pattern.c - the values ranks contribute to a collective under test, the results those
 * must give, and the count of elements that came out wrong (see pattern.h). */
#include <math.h>
#include <stdlib.h>

#include "tools/pattern.h"

static double exact_value(const pattern *p, size_t r, size_t j) {
  double neg = p->dt != FG_UINT8;
  size_t salt = (size_t)p->salt;
  if (!p->reduces) return (double)((r * 31 + j * 7 + salt) % 100) - 50 * neg;
  switch (p->op) {
    case FG_REDOP_PROD:
      /* Few twos per element and the odd -1: the product of 16 ranks is at most 16. */
      if ((r + j) % 4 == 0 && (p->twos_ranks == 0 || r < (size_t)p->twos_ranks)) return 2;
      return neg && (r + 2 * j) % 5 == 1 ? -1 : 1;
    case FG_REDOP_MIN:
    case FG_REDOP_MAX: return (double)((r * 5 + j * 3 + salt) % 11) - 5 * neg;
    default: return (double)((r * 3 + j * 7 + salt) % 5) - 2 * neg;
  }
}

static double kernel_value(const pattern *p, size_t r, size_t j) {
  if (p->op == FG_REDOP_PROD) return 1 + (double)((r + j) % 2);
  int wraps = p->wrap && j == 0 && p->op == FG_REDOP_SUM;
  if (wraps && p->dt == FG_INT32) return 2147483000.0;
  if (wraps && p->dt == FG_INT64) return 9223372036854000000.0;
  double v = (double)((r * 7 + j * 3) % 11);
  return p->dt == FG_UINT8 ? v : v - 5;
}

double pattern_value(const pattern *p, int rank, size_t j) {
  size_t r = (size_t)rank;
  return p->kind == PATTERN_KERNEL ? kernel_value(p, r, j) : exact_value(p, r, j);
}

void pattern_fill(void *buf, const pattern *p, int rank, size_t first, size_t n) {
  for (size_t i = 0; i < n; i++) fg_dtype_set(buf, p->dt, i, pattern_value(p, rank, first + i));
}

void *pattern_alloc(const pattern *p, int rank, size_t first, size_t n) {
  void *buf = calloc(n ? n : 1, fg_dtype_size(p->dt));
  if (buf) pattern_fill(buf, p, rank, first, n);
  return buf;
}

/* --- results ----------------------------------------------------------------------------- */

static double combine(fg_redop op, double acc, double v) {
  switch (op) {
    case FG_REDOP_PROD: return acc * v;
    case FG_REDOP_MIN: return v < acc ? v : acc;
    case FG_REDOP_MAX: return v > acc ? v : acc;
    default: return acc + v;
  }
}

double pattern_fold(const pattern *p, int size, size_t j) {
  double acc = pattern_value(p, 0, j);
  for (int r = 1; r < size; r++) acc = combine(p->op, acc, pattern_value(p, r, j));
  return p->op == FG_REDOP_AVG ? acc / size : acc;
}

/* --- checking ---------------------------------------------------------------------------- */

size_t pattern_wrong(const void *got, fg_dtype dt, const void *want, fg_dtype want_dt,
                     size_t n, pattern_slack slack, size_t *first) {
  size_t wrong = 0;
  for (size_t i = 0; i < n; i++) {
    double g = fg_dtype_get(got, dt, i), w = fg_dtype_get(want, want_dt, i);
    int ok = slack ? fabs(g - w) <= slack(dt, w) : g == w;
    if (!ok && wrong++ == 0) *first = i;
  }
  return wrong;
}
