/* test_hang_python - where a Python rank is, from the traceback fgrun-stack printed
 * (hang_python.c): the innermost user frame of the main thread, and ranks grouped by it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "launcher/hang_python.h"

/* The buffer's text as a string the caller frees; the buffer is spent. */
static char *text_of(fg_buf *b) {
  fg__buf_put_u8(b, 0);
  return (char *)b->data;
}

static void expect_line(char *got, const char *want) {
  if (strcmp(got, want)) fail_msg("got:  %s\nwant: %s", got, want);
  free(got);
}

static const char TRACEBACK[] =
    "Python (faulthandler; every thread, most recent call first):\n"
    "  Thread 0x00007f0000000001 (most recent call first):\n"
    "    File \"/usr/lib/python3.11/threading.py\", line 320 in wait\n"
    "    File \"/tmp/job/train.py\", line 7 in worker\n"
    "  Current thread 0x00007f0000000002 (most recent call first):\n"
    "    File \"/usr/lib/python3/dist-packages/torch/distributed/distributed_c10d.py\", line "
    "1536 in all_reduce\n"
    "        work = default_pg.allreduce([tensor], opts)\n"
    "    File \"/tmp/job/train.py\", line 42 in step\n"
    "        dist.all_reduce(t)\n"
    "    File \"/tmp/job/train.py\", line 50 in <module>\n"
    "        step()\n"
    "native stacks (libdw; threads held 1.0 ms, then let go):\n"
    "  thread 5 (python3), main:\n";

static void a_traceback_gives_the_innermost_user_frame(void **state) {
  (void)state;
  fg_py_where w;
  assert_int_equal(fg_py_parse(TRACEBACK, strlen(TRACEBACK), &w), 0);
  assert_string_equal(w.file, "/tmp/job/train.py");
  assert_int_equal(w.line, 42);
  assert_string_equal(w.func, "step");
  assert_string_equal(w.src, "dist.all_reduce(t)");
  assert_string_equal(w.lib_func, "all_reduce");
  assert_true(w.in_torch_dist);
  fg_buf b;
  fg__buf_init(&b);
  fg_py_put_where(&b, &w);
  expect_line(text_of(&b), "train.py:42 in step `dist.all_reduce(t)` (in all_reduce)");
  /* without a current thread, the last one listed is the main thread */
  static const char plain[] =
      "Python (faulthandler; every thread, most recent call first):\n"
      "  Thread 0x01 (most recent call first):\n"
      "    File \"/tmp/job/helper.py\", line 3 in spin\n"
      "  Thread 0x02 (most recent call first):\n"
      "    File \"/tmp/job/hang.py\", line 8 in <module>\n"
      "        time.sleep(100)\n";
  assert_int_equal(fg_py_parse(plain, strlen(plain), &w), 0);
  assert_int_equal(w.line, 8);
  assert_false(w.in_torch_dist);
  assert_string_equal(w.src, "time.sleep(100)");
  assert_int_equal(fg_py_parse("Python: no traceback: it is stopped\n", 36, &w), -1);
}

static void ranks_are_grouped_by_place(void **state) {
  (void)state;
  fg_py_where w[4];
  for (int i = 0; i < 4; i++) fg_py_parse(TRACEBACK, strlen(TRACEBACK), &w[i]);
  w[3].line = 40;
  snprintf(w[3].src, sizeof w[3].src, "time.sleep(60)");
  w[3].lib_func[0] = '\0';
  int ranks[4] = {0, 1, 2, 3};
  fg_buf b;
  fg__buf_init(&b);
  fg_py_put_groups(&b, ranks, w, 4);
  expect_line(text_of(&b), "ranks 0-2 at train.py:42 in step `dist.all_reduce(t)` (in "
                           "all_reduce); rank 3 at train.py:40 in step `time.sleep(60)`");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_traceback_gives_the_innermost_user_frame),
      cmocka_unit_test(ranks_are_grouped_by_place),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
