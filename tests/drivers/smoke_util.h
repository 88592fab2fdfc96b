/* smoke_util.h - what the comm smoke drivers (mpi_smoke, nccl_smoke) share besides their
 * reference reductions (smoke_pattern.h): failing with the rank named, checking a call, the
 * options both take, every dtype's checks, the layouts of alltoall and allgatherv, and the
 * blob broadcast. Each driver defines code_name, how its messages name an error code. */
#ifndef FG_TESTS_SMOKE_UTIL_H
#define FG_TESTS_SMOKE_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm_internal.h"
#include "tools/pattern.h"

enum { COUNT = 37 };

static int g_rank;
static long g_checks;

static const char *code_name(int rc);

#define DIE(...)                                \
  do {                                          \
    fprintf(stderr, "rank %d: ", g_rank);       \
    fprintf(stderr, __VA_ARGS__);               \
    fputc('\n', stderr);                        \
    exit(1);                                    \
  } while (0)

#define CHECK(c, call)                                                                   \
  do {                                                                                   \
    int rc_ = (call);                                                                    \
    if (rc_ != 0) DIE("%s failed: %s: %s", #call, code_name(rc_), fg_comm_errmsg(c));     \
  } while (0)

/* Takes argv[*i], and its value, when it is an option of every driver: --backend B or
 * --timeout-ms MS. */
static inline int common_option(int argc, char **argv, int *i, fg_comm_options *o) {
  if (*i + 1 >= argc) return 0;
  if (!strcmp(argv[*i], "--backend"))
    o->backend = argv[++*i];
  else if (!strcmp(argv[*i], "--timeout-ms"))
    o->timeout_ms = atoi(argv[++*i]);
  else
    return 0;
  return 1;
}

/* The line the failure cases print for every call that should fail (and does not stop). */
static inline int report(fg_comm *c, int rc) {
  printf("rank %d: err %s: %s\n", g_rank, code_name(rc), rc ? fg_comm_errmsg(c) : "");
  fflush(stdout);
  return rc;
}

/* alltoall's n blocks of COUNT: block r of rank me's send is me*n+r, so rank me receives
 * block s = s*n+me (mod 50, which every dtype holds). */
static inline void alltoall_values(void *send, void *want, fg_dtype dt, int me, int n) {
  for (size_t i = 0; i < COUNT * (size_t)n; i++) {
    fg_dtype_set(send, dt, i, (double)((me * n + (int)(i / COUNT)) % 50));
    fg_dtype_set(want, dt, i, (double)(((int)(i / COUNT) * n + me) % 50));
  }
}

/* allgatherv over n ranks, rank r contributing its first r+1 values of p: the counts, and in
 * *want the gathered values, *total of them (the caller frees both). */
static inline size_t *allgatherv_layout(const pattern *p, int n, void **want, size_t *total) {
  size_t esz = fg_dtype_size(p->dt), *counts = calloc((size_t)n, sizeof *counts);
  *total = 0;
  for (int r = 0; r < n; r++) *total += counts[r] = (size_t)r + 1;
  *want = calloc(*total, esz);
  for (int r = 0, off = 0; r < n; off += r + 1, r++)
    pattern_fill((char *)*want + (size_t)off * esz, p, r, 0, (size_t)r + 1);
  return counts;
}

/* After a barrier, the driver's reductions of every dtype with every op, and its data
 * movement of every dtype. */
static inline void every_dtype(fg_comm *c, void (*reductions)(fg_comm *, fg_dtype, fg_redop),
                               void (*movement)(fg_comm *, fg_dtype)) {
  CHECK(c, fg_barrier(c));
  for (int dt = 0; dt < FG_DTYPE_COUNT; dt++) {
    for (int op = 0; op < FG_REDOP_COUNT; op++) reductions(c, (fg_dtype)dt, (fg_redop)op);
    movement(c, (fg_dtype)dt);
  }
}

static inline void broadcast_blob(fg_comm *c) {
  int me = fg_comm_rank(c);
  char text[] = "a blob of any length";
  void *data = me == 0 ? text : NULL;
  size_t len = me == 0 ? sizeof text : 0;
  CHECK(c, fg_broadcast_bytes(c, &data, &len, 0));
  if (len != sizeof text || memcmp(data, text, len)) DIE("broadcast_bytes: wrong blob");
  if (me != 0) free(data);
}

#endif
