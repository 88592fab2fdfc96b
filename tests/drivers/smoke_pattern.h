/* smoke_pattern.h - what the comm smoke drivers compare a reduction with: the same
 * PATTERN_KERNEL values (src/tools/pattern.h) reduced through libfg's own kernels, so the
 * check is bit for bit. It lives with the drivers, not in src/tools, because it uses libfg's
 * internals, which the tools do not. */
#ifndef FG_TESTS_SMOKE_PATTERN_H
#define FG_TESTS_SMOKE_PATTERN_H

#include <stdlib.h>

#include "comm/comm_internal.h"
#include "tools/pattern.h"

/* The reduction of elements first .. first + n - 1 over ranks [0, size), in p->dt (wrapping
 * as the kernels do), as a new buffer; NULL without memory. */
static inline void *pattern_reduced(const pattern *p, int size, size_t first, size_t n) {
  void *acc = pattern_alloc(p, 0, first, n), *x = pattern_alloc(p, 0, first, n);
  if (!acc || !x) {
    free(acc);
    free(x);
    return NULL;
  }
  for (int r = 1; r < size; r++) {
    pattern_fill(x, p, r, first, n);
    fg__reduce_local(acc, x, n, p->dt, p->op);
  }
  if (p->op == FG_REDOP_AVG) fg__divide_local(acc, n, p->dt, size);
  free(x);
  return acc;
}

#endif
