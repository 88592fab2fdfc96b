/* fault_overhead - what the progress marks (src/common/progress.h) cost, for the figures in
 * the hang-attribution work; not run by the tests.
 *
 *   fault_overhead marks N        N enter/leave pairs; ns per pair. With FG_PROGRESS_FILE
 *                                 unset the marks are off; `fault_overhead --own-file marks N`
 *                                 makes a progress file first (as fgrun would) to time them on.
 *   fault_overhead allreduce N [BYTES] [--off]
 *                                 under fgrun: N float allreduces of BYTES (4096) after a
 *                                 warm-up; rank 0 prints the median and mean in us. --off
 *                                 unsets FG_PROGRESS_FILE before init: the marks are off. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "comm/comm_internal.h"
#include "common/progress.h"
#include "common/util.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* A one-slot progress file, as fgrun makes them. */
static void own_file(void) {
  int fd = memfd_create("fault-overhead", 0);
  if (fd < 0 || ftruncate(fd, (off_t)fg_progress_file_size(1)) != 0) exit(1);
  fg_progress_header h = {FG_PROGRESS_MAGIC, FG_PROGRESS_VERSION, FG_PROGRESS_SLOT_SIZE, 1};
  if (pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h) exit(1);
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  setenv("FG_PROGRESS_FILE", path, 1);
  setenv("LOCAL_RANK", "0", 1);
}

static int marks(long n) {
  uint64_t t0 = fg__now_ns();
  for (long i = 0; i < n; i++) {
    fg_op_mark m = {0};
    fg_op_args a = {1024, "float32", FG_PROGRESS_NO_RANK, FG_PROGRESS_NO_RANK};
    fg__op_enter(&m, "allreduce", "world", (uint64_t)i + 1, NULL, &a);
    fg__op_leave(&m);
  }
  printf("marks: %.1f ns per enter/leave pair (progress file %s)\n",
         (double)(fg__now_ns() - t0) / (double)n, getenv("FG_PROGRESS_FILE") ? "on" : "off");
  return 0;
}

static int allreduce(long n, size_t bytes) {
  fg_comm *c;
  char err[256];
  if (fg_comm_init(&c, NULL, err, sizeof err) != 0) {
    fprintf(stderr, "init: %s\n", err);
    return 1;
  }
  size_t count = bytes / sizeof(float);
  float *buf = calloc(count, sizeof *buf);
  double *us = calloc((size_t)n, sizeof *us);
  for (long i = -n / 10 - 10; i < n; i++) { /* the first tenth warms up */
    uint64_t t0 = fg__now_ns();
    if (fg_allreduce(c, buf, buf, count, FG_FLOAT32, FG_REDOP_SUM) != 0) {
      fprintf(stderr, "allreduce: %s\n", fg_comm_errmsg(c));
      return 1;
    }
    if (i >= 0) us[i] = (double)(fg__now_ns() - t0) / 1e3;
  }
  double sum = 0;
  for (long i = 0; i < n; i++) sum += us[i];
  qsort(us, (size_t)n, sizeof *us, cmp_double);
  if (fg_comm_rank(c) == 0)
    printf("allreduce %zu B x %ld on %d ranks: median %.2f us, mean %.2f us (progress %s)\n",
           bytes, n, fg_comm_size(c), us[n / 2], sum / (double)n,
           getenv("FG_PROGRESS_FILE") ? "on" : "off");
  free(us);
  free(buf);
  fg_comm_destroy(c);
  return 0;
}

int main(int argc, char **argv) {
  int a = 1;
  if (a < argc && !strcmp(argv[a], "--own-file")) {
    own_file();
    a++;
  }
  if (argc - a >= 2 && !strcmp(argv[a], "marks")) return marks(atol(argv[a + 1]));
  if (argc - a >= 2 && !strcmp(argv[a], "allreduce")) {
    size_t bytes = 4096;
    for (int i = a + 2; i < argc; i++) {
      if (!strcmp(argv[i], "--off"))
        unsetenv("FG_PROGRESS_FILE");
      else
        bytes = (size_t)atol(argv[i]);
    }
    return allreduce(atol(argv[a + 1]), bytes);
  }
  fprintf(stderr, "usage: fault_overhead [--own-file] marks N | allreduce N [BYTES] [--off]\n");
  return 2;
}
