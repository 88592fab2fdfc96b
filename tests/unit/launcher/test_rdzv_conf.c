/* test_rdzv_conf - --rdzv_conf's keys (rdzv_conf.c): torchrun's names and defaults, and the
 * values that stop fgrun before anything starts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "launcher/options.h"
#include "parse_opts.h"

static void rdzv_conf_has_torchruns_defaults(void **state) {
  (void)state;
  fg_launch_opts o;
  assert_int_equal(parse(&o, "x", NULL), 0);
  assert_true(o.rdzv.join_timeout == 600 && o.rdzv.last_call_timeout == 30);
  assert_true(o.rdzv.close_timeout == 30 && o.rdzv.read_timeout == 60);
  assert_true(o.rdzv.keep_alive_interval == 5 && o.rdzv.keep_alive_max_attempt == 3);
  assert_int_equal(o.rdzv.is_host, -1);
  fg_opts_free(&o);
  assert_int_equal(parse(&o, "--rdzv_conf=timeout=7,last_call_timeout=0.5,heartbeat=2,"
                         "keep_alive_max_attempt=4,is_host=0,read_timeout=9,store_type=tcp",
                         "x", NULL), 0);
  assert_true(o.rdzv.join_timeout == 7 && o.rdzv.last_call_timeout == 0.5);
  assert_true(o.rdzv.keep_alive_interval == 2 && o.rdzv.keep_alive_max_attempt == 4);
  assert_true(o.rdzv.read_timeout == 9);
  assert_int_equal(o.rdzv.is_host, 0);
  fg_opts_free(&o);
  expect_error("join_timeout=0: expected a positive", parse(&o, "--rdzv_conf=join_timeout=0",
                                                            "x", NULL), &o);
  expect_error("close_timeout=-1", parse(&o, "--rdzv_conf=close_timeout=-1", "x", NULL), &o);
  expect_error("is_host=2", parse(&o, "--rdzv_conf=is_host=2", "x", NULL), &o);
  expect_error("store_type=file", parse(&o, "--rdzv_conf=store_type=file", "x", NULL), &o);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(rdzv_conf_has_torchruns_defaults),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
