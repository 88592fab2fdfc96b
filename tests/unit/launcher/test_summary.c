/* test_summary - what fgrun prints when a worker group ends badly (summary.c), for workers
 * laid out by hand: every rank's end, the root cause with its error file or stderr tail, a
 * stop by signal, and a hang report's culprit ahead of the ranks that failed after it. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/util.h"
#include "launcher/output.h"
#include "launcher/summary.h"
#include "../unit_util.h"

static fg_worker ended(int rank, int code, int sig, double start_s, double end_s) {
  return ended_worker(rank, 100 + rank, code, sig, start_s, end_s);
}

/* The summary as a string the caller frees. */
static char *summary(const fg_summary *s) {
  fg_buf b;
  fg__buf_init(&b);
  fg_summary_format(s, &b);
  fg__buf_put_u8(&b, 0);
  assert_false(b.failed);
  return (char *)b.data;
}

static void expect_text(char *got, const char *want) {
  if (strcmp(got, want)) fail_msg("got:\n%s\nwant:\n%s", got, want);
  free(got);
}

static void expect_part(const char *got, const char *want) {
  if (!strstr(got, want)) fail_msg("got:\n%s\nwithout: %s", got, want);
}

/* A file in the scratch directory, as a path the caller frees. */
static char *scratch_file(const char *name, const char *text) {
  char *path = fg__asprintf("%s/%s", scratch_dir, name);
  write_file(path, text);
  return path;
}

static void every_end_is_described(void **state) {
  (void)state;
  char out[128];
  fg_worker w = ended(0, 3, 0, 1, 2);
  fg_describe_end(&w, out, sizeof out);
  assert_string_equal(out, "exited with code 3");
  assert_int_equal(fg_worker_exit_status(&w), 3);
  w = ended(0, 0, SIGSEGV, 1, 2);
  fg_describe_end(&w, out, sizeof out);
  assert_string_equal(out, "killed by SIGSEGV (signal 11)");
  assert_int_equal(fg_worker_exit_status(&w), 128 + SIGSEGV);
  w.state = FG_WORKER_IDLE;
  fg_describe_end(&w, out, sizeof out);
  assert_string_equal(out, "not started");
  assert_int_equal(fg_worker_exit_status(&w), 1);
  w.state = FG_WORKER_RUNNING;
  fg_describe_end(&w, out, sizeof out);
  assert_string_equal(out, "still running");
  assert_int_equal(fg_worker_exit_status(&w), 1);
  w.state = FG_WORKER_LOST;
  fg_describe_end(&w, out, sizeof out);
  assert_string_equal(out, "did not exit after SIGKILL (stuck in the kernel?); left behind");
  assert_int_equal(fg_worker_exit_status(&w), 1);
}

static void the_root_cause_comes_with_its_error_file(void **state) {
  (void)state;
  fg_worker ws[2] = {ended(0, 0, SIGTERM, 1, 3), ended(1, 3, 0, 1, 2.5)};
  ws[1].error_file = scratch_file(
      "error.json",
      "{\"message\": {\"message\": \"ValueError: boom\", \"extraInfo\": {\"py_callstack\": "
      "\"Traceback (most recent call last):\\n  File \\\"x.py\\\", line 3\\nValueError: "
      "boom\\n\\n\", \"timestamp\": \"1700000000\"}}}");
  fg_summary s = {.workers = ws, .nworkers = 2, .root_cause = &ws[1], .attempt = 0,
                  .max_restarts = 3, .exit_code = 3};
  char want[1024];
  snprintf(want, sizeof want,
           "fgrun: error: job failed: rank 1 (local_rank 1, pid 101) exited with code 3 after "
           "1.50s (attempt 0, 3 restarts allowed)\n"
           "fgrun:   rank 0 (local_rank 0, pid 100): killed by SIGTERM (signal 15) after 2.00s\n"
           "fgrun:   rank 1 (local_rank 1, pid 101): exited with code 3 after 1.50s  <- root "
           "cause\n"
           "fgrun: rank 1's error file (%s):\n"
           "  ValueError: boom\n"
           "  Traceback (most recent call last):\n"
           "    File \"x.py\", line 3\n"
           "  ValueError: boom\n",
           ws[1].error_file);
  expect_text(summary(&s), want);

  /* what the PMIx server heard from it follows the first line; one restart is singular */
  s.root_cause_note = "called MPI_Abort(MPI_COMM_WORLD, 5)";
  s.max_restarts = 1;
  char *got = summary(&s);
  expect_part(got, "(attempt 0, 1 restart allowed)\nfgrun: rank 1 called MPI_Abort(MPI_COMM_WORLD, "
                   "5)\nfgrun:   rank 0 ");
  free(got);

  /* a file torch did not write is shown as it is */
  free(ws[1].error_file);
  ws[1].error_file = scratch_file("raw.json", "Segmentation fault\nin libfoo\n");
  got = summary(&s);
  char head[512];
  snprintf(head, sizeof head,
           "fgrun: rank 1's error file (%s), not in torch's format:\n"
           "  Segmentation fault\n"
           "  in libfoo\n",
           ws[1].error_file);
  expect_part(got, head);
  free(got);
  free(ws[1].error_file);
}

static void without_an_error_file_the_stderr_tail_is_quoted(void **state) {
  (void)state;
  fg_worker ws[1] = {ended(0, 1, 0, 1, 2)};
  fg_summary s = {.workers = ws, .nworkers = 1, .root_cause = &ws[0], .attempt = 0,
                  .exit_code = 1};
  char *got = summary(&s);
  expect_part(got, "fgrun: rank 0 wrote no error file and nothing on stderr\n");
  free(got);

  fg_tail *t = calloc(1, sizeof *t);
  for (int i = 0; i < 30; i++) {
    char line[32];
    int n = snprintf(line, sizeof line, "line %d\n", i);
    fg_tail_write(t, line, (size_t)n);
  }
  ws[0].err.tail = t;
  ws[0].error_file = "/nonexistent/error.json";
  got = summary(&s);
  expect_part(got, "fgrun: last 20 lines of rank 0's stderr:\n  | line 10\n  | line 11\n");
  const char *end = "  | line 29\n";
  assert_string_equal(got + strlen(got) - strlen(end), end);
  assert_null(strstr(got, "line 9\n"));
  free(got);
  free(t);
}

static void a_stop_by_signal_names_the_signal(void **state) {
  (void)state;
  fg_worker ws[2] = {ended(0, 0, SIGTERM, 1, 2), ended(1, 0, SIGTERM, 1, 2)};
  fg_summary s = {.workers = ws, .nworkers = 2, .stop_signal = SIGTERM, .attempt = 1,
                  .exit_code = 143};
  expect_text(summary(&s),
              "fgrun: stopped by SIGTERM (attempt 1); exit status 143\n"
              "fgrun:   rank 0 (local_rank 0, pid 100): killed by SIGTERM (signal 15) after "
              "1.00s\n"
              "fgrun:   rank 1 (local_rank 1, pid 101): killed by SIGTERM (signal 15) after "
              "1.00s\n");

  /* no root cause, no signal: only that it failed */
  ws[1].state = FG_WORKER_IDLE;
  ws[1].start_ns = ws[1].end_ns = 0;
  s.stop_signal = 0;
  s.attempt = 2;
  expect_text(summary(&s),
              "fgrun: error: job failed (attempt 2)\n"
              "fgrun:   rank 0 (local_rank 0, pid 100): killed by SIGTERM (signal 15) after 1.00s\n"
              "fgrun:   rank 1 (local_rank 1, pid 101): not started after 0.00s\n");
}

static void a_hang_reports_culprit_goes_before_who_failed_after_it(void **state) {
  (void)state;
  fg_worker ws[4] = {ended(0, 1, 0, 1, 5), ended(1, 1, 0, 1, 5.5), ended(2, 0, SIGKILL, 1, 6),
                     ended(3, 0, SIGTERM, 1, 6)};
  fg_summary s = {.workers = ws, .nworkers = 4, .root_cause = &ws[0], .attempt = 0,
                  .max_restarts = 1, .exit_code = 1, .hang_cause = &ws[2],
                  .hang_what = "held the others up: it never arrived at allreduce #3 on world"};
  expect_text(summary(&s),
              "fgrun: error: job failed: rank 2 (local_rank 2, pid 102) held the others up: it "
              "never arrived at allreduce #3 on world (attempt 0, 1 restart allowed)\n"
              "fgrun: what followed: ranks 0,1 failed, rank 0 first (exited with code 1 after "
              "4.00s)\n"
              "fgrun:   rank 0 (local_rank 0, pid 100): exited with code 1 after 4.00s  <- first "
              "to fail\n"
              "fgrun:   rank 1 (local_rank 1, pid 101): exited with code 1 after 4.50s\n"
              "fgrun:   rank 2 (local_rank 2, pid 102): killed by SIGKILL (signal 9) after 5.00s  "
              "<- root cause\n"
              "fgrun:   rank 3 (local_rank 3, pid 103): killed by SIGTERM (signal 15) after 5.00s\n"
              "fgrun: rank 0 wrote no error file and nothing on stderr\n");

  ws[1] = ended(1, 0, SIGTERM, 1, 5.5); /* one rank failed on its own */
  char *got = summary(&s);
  expect_part(got, "\nfgrun: what followed: rank 0 failed (exited with code 1 after 4.00s)\n");
  free(got);

  /* --hang_action kill ended it, and nobody failed first */
  s.root_cause = NULL;
  s.hang_killed = 1;
  got = summary(&s);
  expect_part(got, "1 restart allowed)\nfgrun: what followed: --hang_action kill stopped the job\n"
                   "fgrun:   rank 0 ");
  assert_null(strstr(got, "first to fail"));
  free(got);

  /* a stop by signal outranks the report */
  s.stop_signal = SIGINT;
  s.exit_code = 130;
  got = summary(&s);
  expect_part(got, "fgrun: stopped by SIGINT (attempt 0); exit status 130\n");
  assert_null(strstr(got, "held the others up"));
  free(got);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_end_is_described),
      cmocka_unit_test(the_root_cause_comes_with_its_error_file),
      cmocka_unit_test(without_an_error_file_the_stderr_tail_is_quoted),
      cmocka_unit_test(a_stop_by_signal_names_the_signal),
      cmocka_unit_test(a_hang_reports_culprit_goes_before_who_failed_after_it),
  };
  return cmocka_run_group_tests(tests, make_scratch_dir, remove_scratch_dir);
}
