/* pattern.h - the values ranks put into a collective under test and what it must give
 * back, as nccl-tests' InitData and expected-result code (src/common.cu). fgconform,
 * fgbench's collectives and the comm smoke drivers (tests/drivers) fill and check with it.
 *
 * Element j of rank r's buffer depends on the pattern, r and j only, so every rank knows
 * what every other rank contributed, and so what any collective must produce. */
#ifndef FG_TOOLS_PATTERN_H
#define FG_TOOLS_PATTERN_H

#include <stddef.h>

#include "fg/comm.h"

typedef enum pattern_kind {
  /* Small integers, so every result is exact in doubles and in every dtype (pattern_fold):
   * sums stay within int8 for up to 63 ranks, products are powers of two or their negatives,
   * signed only where the dtype is. In j the values repeat every 100 (data movement), 5 (sum,
   * avg), 20 (prod) and 11 (min, max) elements. */
  PATTERN_EXACT,
  /* Values whose results libfg's own kernels work out (pattern_reduced), to be compared
   * bit for bit: products of ones and twos, values within -5..5 (0..10 for uint8). The smoke drivers' pattern_reduced
   * (tests/drivers/smoke_pattern.h) works them out with libfg's internal kernels. */
  PATTERN_KERNEL
} pattern_kind;

typedef struct pattern {
  pattern_kind kind;
  fg_dtype dt;
  fg_redop op;
  int reduces;    /* EXACT: the values suit op; else they suit data movement (wider) */
  int salt;       /* EXACT: shifts the values, so one call's result cannot pass for another's */
  int twos_ranks; /* EXACT, prod: only ranks below this contribute twos; 0: every rank */
  int wrap;       /* KERNEL: element 0 of int32 and int64 sums is near the top of the
                   * range, so the sum wraps */
} pattern;

double pattern_value(const pattern *p, int rank, size_t j);
/* Elements first .. first + n - 1 of rank's buffer into buf[0 .. n). */
void pattern_fill(void *buf, const pattern *p, int rank, size_t first, size_t n);
/* The same into a new buffer (never of 0 bytes); NULL without memory. */
void *pattern_alloc(const pattern *p, int rank, size_t first, size_t n);

/* The reduction of element j over ranks [0, size) in doubles; avg divides and does not
 * round (integer collectives truncate). */
double pattern_fold(const pattern *p, int size, size_t j);

/* How far a result may be from what it should be: the dtype's rounding. */
typedef double (*pattern_slack)(fg_dtype dt, double want);

/* The elements of got[0 .. n) (in dt) that differ from want[0 .. n) (in want_dt: FG_FLOAT64
 * for computed values, dt for a reduced buffer) by more than slack allows (NULL: any
 * difference), and in *first the index of the first of them. */
size_t pattern_wrong(const void *got, fg_dtype dt, const void *want, fg_dtype want_dt,
                     size_t n, pattern_slack slack, size_t *first);

#endif
