/* test_optvalues - the option values with a little syntax of their own (optvalues.c): --tee
 * and --redirects maps, --nnodes ranges and the log line prefix template. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "launcher/options.h"

static char err[1024];

static void std_specs_follow_torchrun(void **state) {
  (void)state;
  fg_std_spec s = {0};
  assert_int_equal(fg_parse_std_spec("3", &s, err, sizeof err), 0);
  assert_int_equal(fg_std_for(&s, 0), FG_STD_ALL);
  assert_int_equal(fg_std_for(&s, 99), FG_STD_ALL);
  assert_int_equal(fg_parse_std_spec("0:1,2:2,12:3", &s, err, sizeof err), 0);
  assert_int_equal(fg_std_for(&s, 0), FG_STD_OUT);
  assert_int_equal(fg_std_for(&s, 1), FG_STD_NONE);
  assert_int_equal(fg_std_for(&s, 2), FG_STD_ERR);
  assert_int_equal(fg_std_for(&s, 12), FG_STD_ALL);
  const char *bad[] = {"", "4", "-1", "0:", ":1", "0:1,", "0:1;1:2", "a:1", "1:4", "stdout"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (fg_parse_std_spec(bad[i], &s, err, sizeof err) == 0) fail_msg("accepted '%s'", bad[i]);
  free(s.map);
}

static void nnodes_forms(void **state) {
  (void)state;
  int lo, hi;
  assert_int_equal(fg_parse_nnodes("1", &lo, &hi, err, sizeof err), 0);
  assert_true(lo == 1 && hi == 1);
  assert_int_equal(fg_parse_nnodes("2:8", &lo, &hi, err, sizeof err), 0);
  assert_true(lo == 2 && hi == 8);
  assert_int_not_equal(fg_parse_nnodes("3:2", &lo, &hi, err, sizeof err), 0);
  assert_int_not_equal(fg_parse_nnodes("1:2:3", &lo, &hi, err, sizeof err), 0);
  assert_int_not_equal(fg_parse_nnodes("", &lo, &hi, err, sizeof err), 0);
  assert_int_not_equal(fg_parse_nnodes("x", &lo, &hi, err, sizeof err), 0);
}

static void prefix_templates_expand(void **state) {
  (void)state;
  char *p = fg_expand_prefix("[rank${rank}]:", 3, 1, "trainer");
  assert_string_equal(p, "[rank3]:");
  free(p);
  p = fg_expand_prefix("${role_name}/${local_rank}|$rank $$ ", 12, 4, "trainer");
  assert_string_equal(p, "trainer/4|12 $ ");
  free(p);
  assert_int_equal(fg_check_prefix_template("${rank}-${local_rank}-${role_name}", err, sizeof err),
                   0);
  assert_int_not_equal(fg_check_prefix_template("${hostname}", err, sizeof err), 0);
  assert_int_not_equal(fg_check_prefix_template("${rank", err, sizeof err), 0);
  assert_int_not_equal(fg_check_prefix_template("cost: $5", err, sizeof err), 0);
}

static void group_rank_fills_the_prefix(void **state) {
  (void)state;
  char *p = fg_expand_node_prefix("[node${group_rank} rank${rank}]:", 5, 1, "r", 2);
  assert_string_equal(p, "[node2 rank5]:");
  free(p);
  assert_int_equal(fg_check_prefix_template("${group_rank}", err, sizeof err), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(std_specs_follow_torchrun),
      cmocka_unit_test(nnodes_forms),
      cmocka_unit_test(prefix_templates_expand),
      cmocka_unit_test(group_rank_fills_the_prefix),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
