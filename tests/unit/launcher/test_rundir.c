/* test_rundir - the run directory (rundir.c): --log_dir runs never clobber one another and
 * stay, a private one goes at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "launcher/rundir.h"
#include "../unit_util.h"

static char err[1024];

static void run_dirs_never_clobber(void **state) {
  (void)state;
  char dir[] = "/tmp/fgrun-logs-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char logdir[300];
  snprintf(logdir, sizeof logdir, "%s/deep/logs", dir);
  fg_rundir a, b, c;
  assert_int_equal(fg_rundir_create(&a, logdir, "job", 0, err, sizeof err), 0);
  assert_int_equal(fg_rundir_create(&b, logdir, "job", 0, err, sizeof err), 0);
  assert_int_equal(fg_rundir_create(&c, logdir, "a/b", 0, err, sizeof err), 0);
  char want[400];
  snprintf(want, sizeof want, "%s/job", logdir);
  assert_string_equal(a.path, want);
  snprintf(want, sizeof want, "%s/job.1", logdir);
  assert_string_equal(b.path, want);
  snprintf(want, sizeof want, "%s/a_b", logdir);
  assert_string_equal(c.path, want);
  assert_int_equal(fg_rundir_make_attempt(&a, 0, 3, err, sizeof err), 0);
  char *f = fg_rundir_file(&a, 0, 2, "error.json");
  snprintf(want, sizeof want, "%s/job/attempt_0/2/error.json", logdir);
  assert_string_equal(f, want);
  write_file(f, "");
  free(f);
  fg_rundir_finish(&a);
  fg_rundir_finish(&b);
  fg_rundir_finish(&c);
  snprintf(want, sizeof want, "%s/job/attempt_0/2/error.json", logdir);
  assert_int_equal(access(want, F_OK), 0); /* --log_dir runs stay */

  fg_rundir t;
  assert_int_equal(fg_rundir_create(&t, NULL, "none", 0, err, sizeof err), 0);
  char *kept = strdup(t.path);
  fg_rundir_finish(&t);
  assert_int_not_equal(access(kept, F_OK), 0); /* a private one goes */
  free(kept);
  assert_int_equal(fg_remove_tree(dir), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(run_dirs_never_clobber),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
