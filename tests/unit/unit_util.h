/* unit_util.h - what several unit tests share: a scratch directory for a group of tests,
 * writing a file, and a worker laid out by hand as if it had ended. Include after cmocka.h;
 * inline, so that a test using part of it compiles without warnings. */
#ifndef FG_TESTS_UNIT_UTIL_H
#define FG_TESTS_UNIT_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/rundir.h"
#include "launcher/worker.h"

/* The scratch directory of a test file whose group runs as
 * cmocka_run_group_tests(tests, make_scratch_dir, remove_scratch_dir). */
static char scratch_dir[] = "/tmp/fgrun-test-XXXXXX";

static inline int make_scratch_dir(void **state) {
  (void)state;
  return mkdtemp(scratch_dir) ? 0 : -1;
}

static inline int remove_scratch_dir(void **state) {
  (void)state;
  return fg_remove_tree(scratch_dir);
}

/* Writes text to path, replacing what was there; the test fails when it cannot. */
static inline void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* A worker that ran from start_s to end_s (seconds) as rank (its local rank too) with pid,
 * and exited with code or, where sig is not 0, was killed by sig. */
static inline fg_worker ended_worker(int rank, int pid, int code, int sig, double start_s,
                                     double end_s) {
  fg_worker w;
  memset(&w, 0, sizeof w);
  w.rank = w.local_rank = rank;
  w.pid = pid;
  w.state = FG_WORKER_EXITED;
  w.exit_code = code;
  w.term_signal = sig;
  w.start_ns = (uint64_t)(start_s * 1e9);
  w.end_ns = (uint64_t)(end_s * 1e9);
  return w;
}

#endif
