/* test_slurm - Slurm's lists as srun writes them into a task's environment: the first host of
 * a hostlist, a node's count in a compressed list, and the port derived from a job id. */
#include <setjmp.h>
#include <stdarg.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "common/slurm.h"

static void first_host_of_hostlists(void **state) {
  (void)state;
  static const char *const cases[][2] = {
      {"n1", "n1"},
      {"n[1-2]", "n1"},
      {"gpu[03-05,09],cpu1", "gpu03"},
      {"cpu1,gpu[03-05]", "cpu1"},
      {"n[7,3-4]", "n7"},
      {"rack[2-3]n[010-012]", "rack2n010"},
      {"n[1-2]-ib", "n1-ib"},
      {"node-a.example.org", "node-a.example.org"},
      {"10.0.0.[5-6]", "10.0.0.5"},
  };
  char host[64];
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    assert_int_equal(fg__slurm_first_host(cases[i][0], host, sizeof host), 0);
    assert_string_equal(host, cases[i][1]);
  }
  static const char *const bad[] = {"", ",n1", "n[", "n[]", "n[a-b]", "n]1", "n[1-2",
                                    "n[[1]]", "[", "n[1x]"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (fg__slurm_first_host(bad[i], host, sizeof host) != -EINVAL)
      fail_msg("accepted '%s' (got '%s')", bad[i], host);
  char small[4];
  assert_int_equal(fg__slurm_first_host("node[1-2]", small, sizeof small), -ENAMETOOLONG);
  assert_int_equal(fg__slurm_first_host("n[100-101]", small, sizeof small), -ENAMETOOLONG);
  assert_int_equal(fg__slurm_first_host("n[10-11]", small, sizeof small), 0);
  assert_string_equal(small, "n10");
}

static void counts_of_compressed_lists(void **state) {
  (void)state;
  int n = -1;
  static const struct {
    const char *list;
    int node, count;
  } cases[] = {{"4", 0, 4},          {"2(x3),1", 0, 2}, {"2(x3),1", 2, 2}, {"2(x3),1", 3, 1},
               {"3,1", 1, 1},        {"1,2(x2),5", 2, 2}, {"1,2(x2),5", 3, 5},
               {"16(x100)", 99, 16}, {"0,3", 0, 0}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    assert_int_equal(fg__slurm_count_on_node(cases[i].list, cases[i].node, &n), 0);
    assert_int_equal(n, cases[i].count);
  }
  assert_int_equal(fg__slurm_count_on_node("2(x3),1", 4, &n), -ERANGE);
  assert_int_equal(fg__slurm_count_on_node("4", 1, &n), -ERANGE);
  static const char *const bad[] = {"", ",", "2,", ",2", "2(x)", "2(3)", "2(x0)", "2(x3",
                                    "-1", " 2", "2 ", "a", "2(x3)1", "99999999"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (fg__slurm_count_on_node(bad[i], 0, &n) != -EINVAL) fail_msg("accepted '%s'", bad[i]);
  assert_int_equal(fg__slurm_count_on_node("2", -1, &n), -EINVAL);
}

static void ports_from_job_ids(void **state) {
  (void)state;
  int port = 0;
  assert_int_equal(fg__slurm_job_port("4242", &port), 0);
  assert_int_equal(port, 19242);
  assert_int_equal(fg__slurm_job_port("1", &port), 0);
  assert_int_equal(port, FG_SLURM_PORT_BASE + 1);
  assert_int_equal(fg__slurm_job_port("123459999", &port), 0);
  assert_int_equal(port, FG_SLURM_PORT_BASE + FG_SLURM_PORT_SPAN - 1);
  assert_int_equal(fg__slurm_job_port("10000", &port), 0);
  assert_int_equal(port, FG_SLURM_PORT_BASE);
  static const char *const bad[] = {"", "-1", "12a", "4242_3", " 1"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (fg__slurm_job_port(bad[i], &port) != -EINVAL) fail_msg("accepted '%s'", bad[i]);
  assert_int_equal(fg__slurm_job_port(NULL, &port), -EINVAL);
}

static void steps_are_told_from_batch_scripts(void **state) {
  (void)state;
  unsetenv("SLURM_STEP_ID");
  setenv("SLURM_PROCID", "0", 1); /* what a batch script sees too */
  assert_false(fg__slurm_in_step());
  setenv("SLURM_STEP_ID", "0", 1);
  assert_true(fg__slurm_in_step());
  unsetenv("SLURM_STEP_ID");
  unsetenv("SLURM_PROCID");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(first_host_of_hostlists),
      cmocka_unit_test(counts_of_compressed_lists),
      cmocka_unit_test(ports_from_job_ids),
      cmocka_unit_test(steps_are_told_from_batch_scripts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
