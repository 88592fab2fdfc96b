/* test_output - the stderr tail a failed rank's report quotes (output.c): the last lines,
 * a partial last line, and more than the ring holds in one write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "launcher/output.h"

static void the_tail_keeps_the_last_lines(void **state) {
  (void)state;
  fg_tail *t = calloc(1, sizeof *t);
  fg_buf out;
  fg__buf_init(&out);
  for (int i = 0; i < 5000; i++) {
    char line[32];
    int n = snprintf(line, sizeof line, "line %d\n", i);
    fg_tail_write(t, line, (size_t)n);
  }
  fg_tail_lines(t, 3, &out);
  assert_int_equal(out.len, strlen("line 4997\nline 4998\nline 4999"));
  assert_memory_equal(out.data, "line 4997\nline 4998\nline 4999", out.len);

  fg__buf_reset(&out);
  fg_tail_write(t, "partial", 7);
  fg_tail_lines(t, 2, &out);
  assert_memory_equal(out.data, "line 4999\npartial", out.len);

  /* more than the ring holds in one write */
  char *big = malloc(3 * FG_TAIL_BYTES);
  memset(big, 'x', 3 * FG_TAIL_BYTES);
  big[3 * FG_TAIL_BYTES - 1] = '\n';
  fg_tail_write(t, big, 3 * FG_TAIL_BYTES);
  fg__buf_reset(&out);
  fg_tail_lines(t, 20, &out);
  assert_int_equal(out.len, FG_TAIL_BYTES - 1);
  free(big);
  fg__buf_free(&out);
  free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(the_tail_keeps_the_last_lines),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
