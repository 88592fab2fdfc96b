/* conform_check.c - the values ranks contribute (pattern.h's exact ones), the
 * comparisons, the failure lines and the digest; and buffers in the backend's memory. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/conform.h"
#include "tools/pattern.h"

/* Enough lines to see a pattern, not so many that a broken backend floods the log. */
#define MAX_REPORTED 40

static int is_float(fg_dtype dt) { return dt >= FG_FLOAT16; }

static pattern values_of(const tcase *t) {
  return (pattern){.kind = PATTERN_EXACT, .dt = t->dt, .op = t->rop, .reduces = t->reducing,
                   .salt = t->salt};
}

double cf_input(const tcase *t, int rank, size_t j) {
  pattern p = values_of(t);
  return pattern_value(&p, rank, j);
}

double cf_fold(const tcase *t, int size, size_t j) {
  pattern p = values_of(t);
  return pattern_fold(&p, size, j);
}

void cf_fill_input(const conform *cf, const fg_comm *c, const tcase *t, void *host, size_t n) {
  int rank = fg_comm_rank(c);
  pattern p = values_of(t);
  pattern_fill(host, &p, rank, 0, n);
  if (cf->fault && rank == fg_comm_size(c) - 1 && n > 0)
    fg_dtype_set(host, t->dt, 0, fg_dtype_get(host, t->dt, 0) + 1);
}

/* --- checking ----------------------------------------------------------------------- */

uint64_t cf_fnv1a(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

void cf_hash(conform *cf, const void *data, size_t len) {
  cf->digest = cf_fnv1a(cf->digest, data, len);
}

void cf_describe(const tcase *t, char *out, size_t len) {
  char root[24] = "";
  if (t->root >= 0) snprintf(root, sizeof root, " root %d", t->root);
  snprintf(out, len, "%s %s%s%s count %zu%s%s", t->op, fg_dtype_name(t->dt),
           t->reducing ? " " : "", t->reducing ? fg_redop_name(t->rop) : "", t->count, root,
           t->in_place ? " in place" : "");
}

static void report(conform *cf, const fg_comm *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(conform *cf, const fg_comm *c, const char *fmt, ...) {
  cf->failures++;
  if (cf->reported++ >= MAX_REPORTED) {
    if (cf->reported == MAX_REPORTED + 1)
      fprintf(stderr, "fgconform: FAIL rank %d: more failures, not shown\n",
              fg_comm_rank(cf->world));
    return;
  }
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  int rank = fg_comm_rank(c), world = fg_comm_world_rank(c, rank);
  char who[48];
  if (c == cf->world)
    snprintf(who, sizeof who, "rank %d", rank);
  else
    snprintf(who, sizeof who, "rank %d (world rank %d)", rank, world);
  fprintf(stderr, "fgconform: FAIL %s on %s: %s\n", who, fg_comm_name(c), msg);
}

/* AVG of small integers over a size that is not a power of two is a fraction: allow the
 * dtype's rounding, and keep it out of the digest (libraries round it differently). */
static int exact(const fg_comm *c, const tcase *t) {
  int n = fg_comm_size(c);
  return !(t->reducing && t->rop == FG_REDOP_AVG) || (n & (n - 1)) == 0;
}

static double slack(fg_dtype dt, double want) {
  double rel = dt == FG_BFLOAT16 ? 1.0 / 128 : dt == FG_FLOAT16 ? 1.0 / 1024
               : dt == FG_FLOAT32 ? 1e-6 : 1e-12;
  return is_float(dt) ? rel * (fabs(want) + 1) : 0;
}

int cf_expect(conform *cf, const fg_comm *c, const tcase *t, const char *what,
              const void *got, const double *want, size_t n, int hash) {
  int precise = exact(c, t);
  size_t first = 0;
  size_t wrong = pattern_wrong(got, t->dt, want, FG_FLOAT64, n, precise ? NULL : slack, &first);
  cf->checks++;
  if (hash && precise) cf_hash(cf, got, n * fg_dtype_size(t->dt));
  if (wrong == 0) return 1;
  char desc[160];
  cf_describe(t, desc, sizeof desc);
  report(cf, c, "%s: %s index %zu: expected %g, got %g (%zu of %zu elements wrong)", desc, what,
         first, want[first], fg_dtype_get(got, t->dt, first), wrong, n);
  return 0;
}

int cf_true(conform *cf, const fg_comm *c, int ok, const char *fmt, ...) {
  cf->checks++;
  if (ok) return 1;
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  report(cf, c, "%s", msg);
  return 0;
}

int cf_call_failed(conform *cf, const fg_comm *c, const char *what, int rc) {
  cf->broken = 1;
  cf->failures++;
  fprintf(stderr, "fgconform: rank %d: %s failed (%s): %s\n", fg_comm_rank(cf->world), what,
          fg_strerror(rc), fg_comm_errmsg(c));
  return rc;
}

/* --- buffers ------------------------------------------------------------------------ */

int cf_buf_alloc(fg_comm *c, cf_buf *b, size_t bytes) {
  /* Never ask for 0 bytes: what a zero-sized allocation means is not what we test. */
  size_t room = bytes ? bytes : 8;
  b->bytes = bytes;
  b->dev = NULL;
  b->host = calloc(1, room);
  if (!b->host) return -ENOMEM;
  return fg_comm_malloc(c, room, &b->dev);
}

int cf_buf_upload(fg_comm *c, cf_buf *b) { return fg_comm_upload(c, b->dev, b->host, b->bytes); }

int cf_buf_download(fg_comm *c, cf_buf *b) {
  return fg_comm_download(c, b->host, b->dev, b->bytes);
}

void cf_buf_free(fg_comm *c, cf_buf *b) {
  fg_comm_free(c, b->dev);
  free(b->host);
  b->dev = b->host = NULL;
}
