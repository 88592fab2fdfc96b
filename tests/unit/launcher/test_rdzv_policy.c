/* test_rdzv_policy - what an agent does after a round (rdzv_policy.c): finish, form a new
 * round (at the cost of a restart or not), fail or leave, and with which exit code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "launcher/options.h"
#include "launcher/rdzv_policy.h"
#include "parse_opts.h"

static void decisions_follow_the_rules(void **state) {
  (void)state;
  fg_launch_opts o;
  assert_int_equal(parse(&o, "--max_restarts=1", "x", NULL), 0);
  fg_rdzv_news quiet = {0}, lost = {.kind = FG_RDZV_PEER_LOST}, waiting = {.kind = FG_RDZV_WAITING},
               closed = {.kind = FG_RDZV_CLOSED, .status = 7};
  fg_rdzv_decision d;
  fg_rdzv_facts f = {.opts = &o, .news = &quiet};
  fg_rdzv_decide(&f, &d);
  assert_int_equal(d.action, FG_RDZV_DONE);
  assert_true(d.wait_s == 300);
  f.hosts_store = 1;
  fg_rdzv_decide(&f, &d);
  assert_true(d.wait_s > 1e6); /* the host waits as long as the others live */
  f.news = &waiting;
  fg_rdzv_decide(&f, &d);
  assert_int_equal(d.action, FG_RDZV_REFORM);
  assert_int_equal(d.costs_restart, 0);
  f.news = &lost;
  fg_rdzv_decide(&f, &d);
  assert_int_equal(d.action, FG_RDZV_REFORM);
  assert_int_equal(d.costs_restart, 1);
  f.restarts = 1;
  fg_rdzv_decide(&f, &d);
  assert_int_equal(d.action, FG_RDZV_FAIL);
  assert_int_equal(d.close_job, 1);
  f.news = &closed;
  fg_rdzv_decide(&f, &d);
  assert_int_equal(d.exit_code, 7); /* the failing node's status */
  f = (fg_rdzv_facts){.opts = &o, .news = &quiet, .failure = "rank 1 exited with code 3",
                      .failure_status = 3, .can_restart_failure = 1};
  fg_rdzv_decide(&f, &d);
  assert_int_equal(d.action, FG_RDZV_REFORM);
  f.refused = "node 0 has finished already";
  fg_rdzv_decide(&f, &d);
  assert_int_equal(d.action, FG_RDZV_FAIL);
  assert_int_equal(d.exit_code, 3);
  f.stop_signal = 15;
  fg_rdzv_decide(&f, &d);
  assert_int_equal(d.action, FG_RDZV_LEAVE);
  assert_int_equal(d.exit_code, 143);
  fg_opts_free(&o);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(decisions_follow_the_rules),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
