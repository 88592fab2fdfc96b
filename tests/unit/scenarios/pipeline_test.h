/* pipeline_test.h - what the tests of the pipeline-split scenario's math share: central
 * finite differences (step, derivative and check), and the tiny model they run. Include after
 * cmocka.h. */
#ifndef FG_TESTS_PIPELINE_TEST_H
#define FG_TESTS_PIPELINE_TEST_H

#include <math.h>

#include "scenarios/pipeline.h"

#define EPS 1e-6

/* |analytic - numeric| within tol relative to max(1, |numeric|). */
static inline void assert_close(double analytic, double numeric, double tol, const char *what,
                                size_t i) {
  double err = fabs(analytic - numeric) / fmax(1.0, fabs(numeric));
  if (err > tol)
    fail_msg("%s[%zu]: analytic %.12g, finite difference %.12g (error %.3g > %.3g)", what, i,
             analytic, numeric, err, tol);
}

/* d loss / d *x by central finite differences: loss(ctx) reads *x, which is put back. */
static inline double central_difference(double *x, double (*loss)(void *ctx), void *ctx) {
  double keep = *x;
  *x = keep + EPS;
  double up = loss(ctx);
  *x = keep - EPS;
  double down = loss(ctx);
  *x = keep;
  return (up - down) / (2 * EPS);
}

static inline pp_config tiny(pp_dtype dt) {
  return (pp_config){.layers = 2, .dim = 8, .heads = 2, .ffn = 16, .seq_len = 8, .vocab = 11,
                     .block_size = 4, .microbatches = 2, .mb_seqs = 1, .dtype = dt,
                     .seed = 1234};
}

#endif
