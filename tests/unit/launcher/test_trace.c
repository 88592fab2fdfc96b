/* test_trace - fgrun --trace FILE (launcher/trace.c): fgrun's own events for workers laid out
 * by hand, merged with the ranks' files of every attempt into one Chrome trace; lines a
 * rank's death cut short left out; FILE.tmp never left behind; and a zeroed timeline off. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "launcher/rundir.h"
#include "launcher/trace.h"
#include "../unit_util.h"

static char err[512];

static fg_worker worker(int rank, double start_s, double end_s, int code) {
  return ended_worker(rank, 200 + rank, code, 0, start_s, end_s);
}

static void put_file(const fg_rundir *rd, int attempt, int rank, const char *text) {
  char *path = fg_rundir_file(rd, attempt, rank, FG_RUNDIR_TRACE);
  write_file(path, text);
  free(path);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) fail_msg("%s: %s", path, strerror(errno));
  char *text = malloc(1 << 20);
  size_t n = fread(text, 1, (1 << 20) - 1, f);
  text[n] = '\0';
  fclose(f);
  return text;
}

static void expect_part(const char *text, const char *want) {
  if (!strstr(text, want)) fail_msg("the trace has no %s:\n%s", want, text);
}

/* One JSON value: strings escaped, brackets balanced, and no comma before a closing one
 * (what a viewer refuses first). */
static void expect_well_formed(const char *text) {
  int depth = 0, in_string = 0;
  char last = 0; /* the last character outside strings that is not white space */
  for (const char *p = text; *p; p++) {
    if (in_string) {
      if ((unsigned char)*p < 0x20) fail_msg("a raw control character in a string at %ld",
                                             (long)(p - text));
      if (*p == '\\')
        p++;
      else if (*p == '"')
        in_string = 0, last = '"';
      continue;
    }
    if (*p == ' ' || *p == '\n') continue;
    if ((*p == '}' || *p == ']') && last == ',')
      fail_msg("a comma before '%c' at %ld", *p, (long)(p - text));
    if (*p == '"') in_string = 1;
    if (*p == '{' || *p == '[') depth++;
    if (*p == '}' || *p == ']') {
      if (--depth < 0) fail_msg("unbalanced at %ld", (long)(p - text));
      if (depth == 0 && p[1] != '\n') fail_msg("text after the value");
    }
    last = *p;
  }
  assert_int_equal(depth, 0);
  assert_false(in_string);
}

static void a_zeroed_timeline_is_off(void **state) {
  (void)state;
  fg_timeline t;
  memset(&t, 0, sizeof t);
  assert_false(fg_timeline_on(&t));
  fg_worker w = worker(0, 1, 2, 0);
  fg_timeline_attempt(&t, 0, &w, 1, "succeeded");
  fg_timeline_restart(&t, 1, "why");
  assert_int_equal(t.events.len, 0);
  assert_int_equal(fg_timeline_finish(&t, NULL, err, sizeof err), 0);
  fg_timeline_close(&t);
}

static void an_unwritable_path_is_refused_at_open(void **state) {
  (void)state;
  fg_timeline t;
  assert_int_equal(fg_timeline_open(&t, "/nonexistent/trace.json", 0, 1, err, sizeof err),
                   -ENOENT);
  assert_string_equal(err, "--trace: cannot create /nonexistent/trace.json.tmp: No such file "
                           "or directory");
  assert_false(fg_timeline_on(&t));
  fg_timeline_close(&t);
}

static void every_attempt_and_every_rank_is_merged(void **state) {
  (void)state;
  fg_rundir rd;
  char logs[300];
  snprintf(logs, sizeof logs, "%s/logs", scratch_dir);
  assert_int_equal(fg_rundir_create(&rd, logs, "job", 0, err, sizeof err), 0);
  assert_int_equal(fg_rundir_make_attempt(&rd, 0, 2, err, sizeof err), 0);
  assert_int_equal(fg_rundir_make_attempt(&rd, 1, 2, err, sizeof err), 0);
  put_file(&rd, 0, 0,
           "{\"ph\":\"X\",\"name\":\"allreduce\",\"pid\":3,\"tid\":0,\"ts\":1500000.000,"
           "\"dur\":10.000}\n"
           "{\"ph\":\"X\",\"name\":\"barrier\",\"pid\":3,\"tid\":0,\"ts\":1600000.000,"
           "\"dur\":5.000}\n"
           "{\"ph\":\"X\",\"name\":\"cut sho"); /* the rank died mid-line */
  /* attempt 0's rank 1 and attempt 1's rank 0 traced nothing */
  put_file(&rd, 1, 1, "not an event\n{\"ph\":\"X\",\"name\":\"broadcast\",\"pid\":3,\"tid\":1}\n");

  char path[300];
  snprintf(path, sizeof path, "%s/trace.json", scratch_dir);
  fg_timeline t;
  assert_int_equal(fg_timeline_open(&t, path, 3, 2, err, sizeof err), 0);
  assert_true(fg_timeline_on(&t));
  char tmp[320];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  assert_int_equal(access(tmp, F_OK), 0); /* made before any worker starts */
  fg_worker ws[2] = {worker(0, 1, 2.5, 0), worker(1, 1, 2, 3)};
  fg_timeline_attempt(&t, 0, ws, 2, "failed");
  fg_timeline_restart(&t, 1, "rank 1 \"exited\"\twith code 3");
  ws[0] = worker(0, 3, 4, 0);
  ws[1] = worker(1, 3, 4, 0);
  fg_timeline_attempt(&t, 1, ws, 2, "succeeded");
  assert_int_equal(fg_timeline_finish(&t, &rd, err, sizeof err), 0);
  fg_timeline_close(&t);
  assert_int_not_equal(access(tmp, F_OK), 0);

  char *text = slurp(path);
  expect_well_formed(text);
  assert_memory_equal(text, "{\"displayTimeUnit\":\"ms\",", 24);
  expect_part(text, "\"clock\":\"CLOCK_MONOTONIC\"");
  expect_part(text, "\"traceEvents\":[\n");
  assert_string_equal(text + strlen(text) - 4, "\n]}\n");
  /* fgrun's events: every worker's span and its ends, the attempts and the restart */
  expect_part(text, "{\"ph\":\"X\",\"cat\":\"fgrun\",\"pid\":3,\"tid\":0,\"name\":\"worker\","
                    "\"ts\":1000000.000,\"dur\":1500000.000,\"args\":{\"attempt\":0,\"pid\":200,"
                    "\"local_rank\":0,\"end\":\"exited with code 0\"}},\n");
  expect_part(text, "\"tid\":1,\"name\":\"exit\",\"ts\":2000000.000,\"s\":\"t\",\"args\":"
                    "{\"attempt\":0,\"end\":\"exited with code 3\"}}");
  expect_part(text, "\"tid\":1,\"name\":\"spawn\",\"ts\":3000000.000");
  expect_part(text, "\"name\":\"thread_name\",\"args\":{\"name\":\"rank 1\"}}");
  expect_part(text, "\"tid\":1000000,\"name\":\"attempt 0\",\"ts\":1000000.000,");
  expect_part(text, "\"args\":{\"result\":\"failed\"}}");
  expect_part(text, "\"args\":{\"result\":\"succeeded\"}}");
  expect_part(text, "\"name\":\"restart\"");
  expect_part(text,
              "\"args\":{\"restart\":1,\"why\":\"rank 1 \\\"exited\\\"\\u0009with code 3\"}}");
  expect_part(text, "\"name\":\"process_name\",\"args\":{\"name\":\"node 3\"}}");
  /* the ranks' events, whole lines only, each of them once */
  expect_part(text,
              "\"name\":\"allreduce\",\"pid\":3,\"tid\":0,\"ts\":1500000.000,\"dur\":10.000},\n");
  expect_part(text, "\"name\":\"barrier\"");
  expect_part(text, "\"name\":\"broadcast\",\"pid\":3,\"tid\":1},\n");
  assert_null(strstr(text, "cut sh"));
  assert_null(strstr(text, "not an event"));
  assert_null(strstr(strstr(text, "\"allreduce\"") + 1, "\"allreduce\""));
  free(text);
  fg_rundir_finish(&rd);
}

static void a_failed_finish_leaves_no_tmp_file(void **state) {
  (void)state;
  char path[300], tmp[320], inside[340];
  snprintf(path, sizeof path, "%s/taken", scratch_dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  snprintf(inside, sizeof inside, "%s/file", path);
  /* FILE is a directory that is not empty: the rename into place fails */
  assert_int_equal(mkdir(path, 0755), 0);
  write_file(inside, "");
  fg_rundir rd;
  assert_int_equal(fg_rundir_create(&rd, NULL, "none", 0, err, sizeof err), 0);
  fg_timeline t;
  assert_int_equal(fg_timeline_open(&t, path, 0, 1, err, sizeof err), 0);
  int rc = fg_timeline_finish(&t, &rd, err, sizeof err);
  assert_true(rc < 0);
  char want[400];
  snprintf(want, sizeof want, "writing the trace %s: ", path);
  assert_memory_equal(err, want, strlen(want));
  assert_int_not_equal(access(tmp, F_OK), 0);
  fg_timeline_close(&t);
  fg_rundir_finish(&rd);

  /* closed without finishing: the half-written file goes too */
  snprintf(path, sizeof path, "%s/never.json", scratch_dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  assert_int_equal(fg_timeline_open(&t, path, 0, 1, err, sizeof err), 0);
  assert_int_equal(access(tmp, F_OK), 0);
  fg_timeline_close(&t);
  assert_int_not_equal(access(tmp, F_OK), 0);
  assert_int_not_equal(access(path, F_OK), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_zeroed_timeline_is_off),
      cmocka_unit_test(an_unwritable_path_is_refused_at_open),
      cmocka_unit_test(every_attempt_and_every_rank_is_merged),
      cmocka_unit_test(a_failed_finish_leaves_no_tmp_file),
  };
  return cmocka_run_group_tests(tests, make_scratch_dir, remove_scratch_dir);
}
