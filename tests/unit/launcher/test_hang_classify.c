/* test_hang_classify - which rank a hang report names (hang_classify.c), from synthetic
 * progress slots and /proc states, and how its verdicts, rank lists and operations read. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "launcher/hang_classify.h"

#define S(x) ((uint64_t)((x) * 1e9))
static const uint64_t NOW = S(100), TIMEOUT = S(2);

/* A running, sleeping rank whose slot says it is in (or last left) op #seq on group,
 * entered (or left) at t seconds; its slot has not changed since. */
static fg_hang_rank rank_at(int rank, int in, const char *op, uint64_t seq, const char *group,
                            double t) {
  fg_hang_rank r;
  memset(&r, 0, sizeof r);
  r.rank = rank;
  r.pid = 100 + rank;
  r.running = 1;
  r.s.state = in ? FG_PROGRESS_IN : FG_PROGRESS_OUT;
  r.s.seq = seq;
  r.s.t_ns = S(t);
  r.s.count = 1024;
  r.s.root = r.s.peer = FG_PROGRESS_NO_RANK;
  snprintf(r.s.dtype, sizeof r.s.dtype, "float32");
  snprintf(r.s.op, sizeof r.s.op, "%s", op);
  snprintf(r.s.group, sizeof r.s.group, "%s", group);
  r.p.ok = 1;
  r.p.state = 'S';
  r.still_ns = NOW - S(t);
  r.cpu_still_ns = S(0.01);
  return r;
}

static fg_hang_rank in_op(int rank, const char *op, uint64_t seq) {
  return rank_at(rank, 1, op, seq, "world", 95);
}

/* The buffer's text as a string the caller frees; the buffer is spent. */
static char *text_of(fg_buf *b) {
  fg__buf_put_u8(b, 0);
  return (char *)b->data;
}

/* The culprit line for r, checking the kind and the culprits (-1 ends the list). */
static char *verdict(fg_hang_rank *r, int n, int world, enum fg_hang_kind kind, ...) {
  fg_hang_verdict v;
  assert_int_equal(fg_hang_classify(r, n, world, NOW, TIMEOUT, &v), kind);
  va_list ap;
  va_start(ap, kind);
  int c = 0;
  for (int want; (want = va_arg(ap, int)) >= 0; c++) {
    assert_true(c < v.nculprits);
    assert_int_equal(r[v.culprits[c]].rank, want);
  }
  va_end(ap);
  assert_int_equal(v.nculprits, c);
  fg_buf b;
  fg__buf_init(&b);
  fg_hang_format_verdict(r, n, &v, NOW, &b);
  fg_hang_verdict_free(&v);
  return text_of(&b);
}

static void expect_line(char *got, const char *want) {
  if (strcmp(got, want)) fail_msg("got:  %s\nwant: %s", got, want);
  free(got);
}

static void expect_part(char *got, const char *want) {
  if (!strstr(got, want)) fail_msg("got: %s\nwithout: %s", got, want);
  free(got);
}

/* What the summary says of the first culprit. */
static void expect_cause(const fg_hang_rank *r, int n, const char *want) {
  fg_hang_verdict v;
  fg_hang_classify(r, n, n, NOW, TIMEOUT, &v);
  char cause[256];
  assert_true(v.nculprits > 0);
  fg_hang_format_cause(r, &v, v.culprits[0], cause, sizeof cause);
  fg_hang_verdict_free(&v);
  assert_string_equal(cause, want);
}

/* --- collectives ------------------------------------------------------------------------ */

static void a_stopped_rank_inside_the_collective_is_named(void **state) {
  (void)state;
  fg_hang_rank r[4] = {in_op(0, "allreduce", 290), in_op(1, "allreduce", 290),
                       in_op(2, "allreduce", 290), in_op(3, "allreduce", 290)};
  r[2].p.state = 'T';
  r[2].p.stop_signal = SIGSTOP;
  r[2].s.t_ns = S(96); /* not the longest waiter: the state decides, not the order */
  expect_line(verdict(r, 4, 4, FG_HANG_CULPRIT, 2, -1),
              "rank 2 (pid 102) is stopped (SIGSTOP) in allreduce #290 on world; ranks 0,1,3 "
              "wait for it there for 5.0 s");
  /* stopped late in the ring: two ranks got through #290 and wait in #291 */
  r[0] = rank_at(0, 1, "allreduce", 291, "world", 96.5);
  r[3] = rank_at(3, 1, "allreduce", 291, "world", 96.5);
  expect_line(verdict(r, 4, 4, FG_HANG_CULPRIT, 2, -1),
              "rank 2 (pid 102) is stopped (SIGSTOP) in allreduce #290 on world; rank 1 waits "
              "for it there for 5.0 s; ranks 0,3 wait further on, in allreduce #291 on world for "
              "3.5 s");
  /* stopped after its last send: all the others got through #290 */
  r[1] = rank_at(1, 1, "allreduce", 291, "world", 97);
  expect_line(verdict(r, 4, 4, FG_HANG_CULPRIT, 2, -1),
              "rank 2 (pid 102) is stopped (SIGSTOP) in allreduce #290 on world; ranks 0,1,3 "
              "wait further on, in allreduce #291 on world for 3.5 s");
}

static void a_rank_that_has_not_arrived_is_named_with_where_it_was(void **state) {
  (void)state;
  fg_hang_rank r[4] = {in_op(0, "allreduce", 4), in_op(1, "allreduce", 4),
                       rank_at(2, 0, "allreduce", 3, "world", 95), in_op(3, "allreduce", 4)};
  expect_line(verdict(r, 4, 4, FG_HANG_CULPRIT, 2, -1),
              "rank 2 (pid 102) is sleeping and has not arrived at allreduce #4 on world (last: "
              "allreduce #3 on world, left 5.0 s ago); ranks 0,1,3 wait for it there for 5.0 s");
  expect_cause(r, 4,
                      "held the others up: it never arrived at allreduce #4 on world; it was "
                      "sleeping");
}

static void a_rank_burning_cpu_before_the_barrier_is_busy(void **state) {
  (void)state;
  fg_hang_rank r[4] = {in_op(0, "barrier", 4), in_op(1, "barrier", 4),
                       rank_at(2, 0, "barrier", 3, "world", 95), in_op(3, "barrier", 4)};
  r[2].p.state = 'R';
  r[2].cpu_still_ns = S(4.9);
  expect_part(verdict(r, 4, 4, FG_HANG_CULPRIT, 2, -1),
              "rank 2 (pid 102) is busy (running, 4.9 s CPU in 5.0 s) and has not arrived at "
              "barrier #4 on world");
  /* caught between two bursts, sleeping, but with most of the time spent on CPU */
  r[2].p.state = 'S';
  r[2].cpu_still_ns = S(3);
  expect_part(verdict(r, 4, 4, FG_HANG_CULPRIT, 2, -1), "is busy (sleeping, 3.0 s CPU in 5.0 s)");
  /* a little CPU is not busy, even caught running for an instant */
  r[2].cpu_still_ns = S(1);
  expect_part(verdict(r, 4, 4, FG_HANG_CULPRIT, 2, -1), "rank 2 (pid 102) is sleeping and");
  r[2].p.state = 'R';
  expect_part(verdict(r, 4, 4, FG_HANG_CULPRIT, 2, -1), "rank 2 (pid 102) is running and");
  /* on a loaded machine, a spinning rank waits for a CPU more than it gets one */
  r[2].runq_still_ns = S(2);
  expect_part(verdict(r, 4, 4, FG_HANG_CULPRIT, 2, -1),
              "rank 2 (pid 102) is busy (running, 1.0 s CPU in 5.0 s, 2.0 s more waiting for a "
              "CPU) and has not arrived");
}

static void of_several_missing_ranks_the_most_telling_is_named(void **state) {
  (void)state;
  fg_hang_rank r[4] = {in_op(0, "allreduce", 4), rank_at(1, 0, "allreduce", 3, "world", 95),
                       rank_at(2, 0, "allreduce", 3, "world", 95), in_op(3, "allreduce", 4)};
  r[2].p.state = 'R';
  r[2].cpu_still_ns = S(2);
  expect_part(verdict(r, 4, 4, FG_HANG_CULPRIT, 2, -1), "rank 2 (pid 102) is busy");
  r[1].running = 0;
  r[1].end = "exited with code 0";
  r[2].cpu_still_ns = S(0.01);
  expect_line(verdict(r, 4, 4, FG_HANG_CULPRIT, 1, -1),
              "rank 1 (pid 101) exited with code 0 and has not arrived at allreduce #4 on world "
              "(last: allreduce #3 on world, left 5.0 s ago); ranks 0,3 wait for it there for "
              "5.0 s");
  /* two alike: both named */
  r[1] = rank_at(1, 0, "allreduce", 3, "world", 95);
  r[2].p.state = 'S';
  expect_part(verdict(r, 4, 4, FG_HANG_CULPRIT, 1, 2, -1),
              "ranks 1,2 are sleeping and have not arrived");
}

static void a_rank_that_gave_up_in_the_operation_has_arrived(void **state) {
  (void)state;
  /* rank 0 timed out in allreduce #4 (its library's timeout) and is on its way out */
  fg_hang_rank r[4] = {rank_at(0, 0, "allreduce", 4, "world", 99), in_op(1, "allreduce", 4),
                       in_op(2, "allreduce", 4), rank_at(3, 0, "allreduce", 3, "world", 95)};
  r[0].s.flags = FG_PROGRESS_FAILED;
  expect_part(verdict(r, 4, 4, FG_HANG_CULPRIT, 3, -1),
              "rank 3 (pid 103) is sleeping and has not arrived at allreduce #4 on world");
  r[0].s.flags = 0; /* left it without an error: it got through #4, and 3 is still the one */
  expect_part(verdict(r, 4, 4, FG_HANG_CULPRIT, 3, -1), "rank 3 (pid 103) is sleeping");
  r[0] = rank_at(0, 1, "allreduce", 5, "world", 99); /* or waits in the next one */
  expect_part(verdict(r, 4, 4, FG_HANG_CULPRIT, 3, -1), "rank 3 (pid 103) is sleeping");
}

static void a_stopped_waiter_outranks_a_sleeping_latecomer(void **state) {
  (void)state;
  fg_hang_rank r[4] = {in_op(0, "allreduce", 4), in_op(1, "allreduce", 4),
                       rank_at(2, 0, "allreduce", 3, "world", 95), in_op(3, "allreduce", 4)};
  r[3].p.state = 'T';
  expect_part(verdict(r, 4, 4, FG_HANG_CULPRIT, 3, -1), "rank 3 (pid 103) is stopped in allreduce");
}

static void process_states_are_named(void **state) {
  (void)state;
  static const struct {
    char st;
    int tracer;
    const char *words;
  } cases[] = {{'D', 0, "is in uninterruptible sleep (D) in allreduce #4"},
               {'t', 77, "is traced by pid 77 (a debugger) in allreduce #4"},
               {'Z', 0, "is a zombie in allreduce #4"},
               {'T', 0, "is stopped in allreduce #4"}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    fg_hang_rank r[3] = {in_op(0, "allreduce", 4), in_op(1, "allreduce", 4),
                         in_op(2, "allreduce", 4)};
    r[1].p.state = cases[i].st;
    r[1].p.tracer = cases[i].tracer;
    expect_part(verdict(r, 3, 3, FG_HANG_CULPRIT, 1, -1), cases[i].words);
  }
}

static void everyone_arrived_and_nobody_is_stuck(void **state) {
  (void)state;
  fg_hang_rank r[2] = {in_op(0, "allreduce", 9), in_op(1, "allreduce", 9)};
  expect_line(verdict(r, 2, 2, FG_HANG_UNCLEAR, -1),
              "ranks 0,1 have been in allreduce #9 on world for 5.0 s; no rank on this node "
              "stands out");
  /* the world is bigger than this node: the others are elsewhere */
  expect_part(verdict(r, 2, 4, FG_HANG_REMOTE, -1), "the ranks they wait for are on other nodes");
}

static void no_hang_before_the_timeout(void **state) {
  (void)state;
  fg_hang_rank r[2] = {rank_at(0, 1, "allreduce", 3, "world", 99),
                       rank_at(1, 0, "allreduce", 2, "world", 90)};
  fg_hang_verdict v;
  assert_int_equal(fg_hang_classify(r, 2, 2, NOW, TIMEOUT, &v), FG_HANG_NONE);
  fg_hang_verdict_free(&v);
  r[0].running = 0; /* an ended rank's slot is no wait */
  r[0].s.t_ns = S(1);
  assert_int_equal(fg_hang_classify(r, 2, 2, NOW, TIMEOUT, &v), FG_HANG_NONE);
  fg_hang_verdict_free(&v);
}

static void only_the_groups_members_can_hold_it_up(void **state) {
  (void)state;
  fg_hang_rank r[4] = {rank_at(0, 1, "allreduce", 2, "group [0, 2]", 95),
                       rank_at(1, 0, "barrier", 7, "world", 95),
                       rank_at(2, 0, "allreduce", 1, "group [0, 2]", 95),
                       rank_at(3, 0, "barrier", 7, "world", 95)};
  r[1].p.state = r[3].p.state = 'R'; /* busy, but not in the group */
  expect_line(verdict(r, 4, 4, FG_HANG_CULPRIT, 2, -1),
              "rank 2 (pid 102) is sleeping and has not arrived at allreduce #2 on group [0, 2] "
              "(last: allreduce #1 on group [0, 2], left 5.0 s ago); rank 0 waits for it there "
              "for 5.0 s");
  /* a member on another node: nobody here */
  snprintf(r[0].s.group, sizeof r[0].s.group, "group [0, 5]");
  expect_part(verdict(r, 4, 8, FG_HANG_REMOTE, -1), "rank 0 has been in allreduce #2 on group [0, 5]");
}

/* --- mismatches -------------------------------------------------------------------------- */

static void a_different_count_at_the_same_number_is_a_mismatch(void **state) {
  (void)state;
  fg_hang_rank r[4] = {in_op(0, "allreduce", 5), in_op(1, "allreduce", 5),
                       in_op(2, "allreduce", 5), in_op(3, "allreduce", 5)};
  r[1].s.count = 512;
  expect_line(verdict(r, 4, 4, FG_HANG_MISMATCH, 1, -1),
              "rank 1 (pid 101) called allreduce #5 on world with count 512, ranks 0,2,3 with "
              "count 1024: a mismatch at the same number; all wait there for 5.0 s");
  fg_hang_verdict v;
  fg_hang_classify(r, 4, 4, NOW, TIMEOUT, &v);
  assert_string_equal(v.field, "count");
  char cause[256];
  fg_hang_format_cause(r, &v, v.culprits[0], cause, sizeof cause);
  assert_string_equal(cause,
                      "called allreduce #5 on world with count 512 where ranks 0,2,3 passed "
                      "count 1024");
  fg_hang_verdict_free(&v);
}

static void other_mismatches_name_their_field(void **state) {
  (void)state;
  fg_hang_rank r[3] = {in_op(0, "broadcast", 5), in_op(1, "broadcast", 5),
                       in_op(2, "broadcast", 5)};
  r[0].s.root = r[1].s.root = r[2].s.root = 0;
  r[2].s.root = 1;
  expect_part(verdict(r, 3, 3, FG_HANG_MISMATCH, 2, -1),
              "rank 2 (pid 102) called broadcast #5 on world with root 1, ranks 0,1 with root 0");
  r[2].s.root = 0;
  snprintf(r[0].s.dtype, sizeof r[0].s.dtype, "float64");
  expect_part(verdict(r, 3, 3, FG_HANG_MISMATCH, 0, -1), "with dtype float64, ranks 1,2 with dtype float32");
  snprintf(r[0].s.dtype, sizeof r[0].s.dtype, "float32");
  snprintf(r[1].s.op, sizeof r[1].s.op, "allreduce");
  r[1].s.root = FG_PROGRESS_NO_RANK;
  expect_part(verdict(r, 3, 3, FG_HANG_MISMATCH, 1, -1),
              "rank 1 (pid 101) called allreduce #5 on world, ranks 0,2 broadcast");
}

static void a_tie_names_the_side_without_the_lowest_rank(void **state) {
  (void)state;
  fg_hang_rank r[2] = {in_op(0, "allreduce", 5), in_op(1, "allreduce", 5)};
  r[0].s.count = 4;
  r[1].s.count = 8;
  expect_part(verdict(r, 2, 2, FG_HANG_MISMATCH, 1, -1), "rank 1 (pid 101) called allreduce #5 on world with count 8");
}

/* gloo aborts the odd rank on the size; its peers' calls fail with it (OUT, failed), and
 * those still in the one before have not arrived: both tell the usual count. */
static void after_an_abort_the_others_calls_outvote_the_odd_one(void **state) {
  (void)state;
  fg_hang_rank r[4] = {rank_at(0, 0, "allreduce", 4, "world", 99),
                       rank_at(1, 0, "allreduce", 4, "world", 99), in_op(2, "allreduce", 4),
                       in_op(3, "allreduce", 4)};
  r[0].s.flags = r[1].s.flags = FG_PROGRESS_FAILED;
  r[2].s.count = 512;
  r[2].running = 0;
  fg_hang_verdict v;
  assert_int_equal(fg_hang_find_mismatch(r, 4, &v), FG_HANG_MISMATCH);
  assert_int_equal(v.nculprits, 1);
  assert_int_equal(r[v.culprits[0]].rank, 2);
  char cause[256];
  fg_hang_format_cause(r, &v, v.culprits[0], cause, sizeof cause);
  assert_string_equal(cause, "called allreduce #4 on world with count 512 where ranks 0,1,3 "
                             "passed count 1024");
  fg_hang_verdict_free(&v);
  /* ranks 0 and 1 not there yet: one against one, and their last allreduce (#3) had the
   * whole count, so rank 2 is still the odd one */
  r[0] = rank_at(0, 0, "allreduce", 3, "world", 99);
  r[1] = rank_at(1, 1, "allreduce", 3, "world", 99);
  assert_int_equal(fg_hang_find_mismatch(r, 4, &v), FG_HANG_MISMATCH);
  assert_int_equal(v.nculprits, 1);
  assert_int_equal(r[v.culprits[0]].rank, 2);
  fg_hang_verdict_free(&v);
  /* an earlier call of another operation says nothing: the lowest rank's side wins the tie */
  snprintf(r[0].s.op, sizeof r[0].s.op, "barrier");
  snprintf(r[1].s.op, sizeof r[1].s.op, "barrier");
  assert_int_equal(fg_hang_find_mismatch(r, 4, &v), FG_HANG_MISMATCH);
  assert_int_equal(r[v.culprits[0]].rank, 3);
  fg_hang_verdict_free(&v);
}

/* --- point-to-point ------------------------------------------------------------------------ */

static fg_hang_rank receiving(int rank, const char *op, uint64_t seq, int peer, double t) {
  fg_hang_rank r = rank_at(rank, 1, op, seq, "world", t);
  r.s.peer = peer;
  return r;
}

static void a_blocked_receive_names_the_peer_it_waits_for(void **state) {
  (void)state;
  fg_hang_rank r[3] = {receiving(0, "recv", 4, 1, 95), rank_at(1, 0, "barrier", 3, "world", 95),
                       rank_at(2, 0, "barrier", 3, "world", 95)};
  r[2].p.state = 'R'; /* busy, but nobody waits for rank 2 */
  expect_line(verdict(r, 3, 3, FG_HANG_CULPRIT, 1, -1),
              "rank 1 (pid 101) is sleeping outside any operation (last: barrier #3 on world, "
              "left 5.0 s ago); rank 0 waits for a message from it in recv #4 on world for 5.0 s");
  expect_cause(r, 3,
                      "held the others up: it never sent what rank 0 waited for in recv #4 on "
                      "world; it was sleeping");
  /* the peer sits in another operation */
  r[1] = rank_at(1, 1, "allreduce", 9, "world", 97);
  expect_part(verdict(r, 3, 3, FG_HANG_CULPRIT, 1, -1),
              "rank 1 (pid 101) is sleeping in allreduce #9 on world; rank 0 waits for a message");
}

static void the_chain_of_receives_is_followed_to_its_end(void **state) {
  (void)state;
  /* ring: 0 waits for 3, 3 for 2, 2 never entered batch #4 */
  fg_hang_rank r[4] = {receiving(0, "batch", 5, 3, 95), receiving(1, "batch", 5, 0, 96),
                       rank_at(2, 0, "batch", 3, "world", 95), receiving(3, "batch", 4, 2, 95.5)};
  expect_part(verdict(r, 4, 4, FG_HANG_CULPRIT, 2, -1),
              "rank 2 (pid 102) is sleeping outside any operation (last: batch #3 on world, "
              "left 5.0 s ago); rank 3 waits for a message from it in batch #4 on world for 4.5 s");
  /* a stopped rank inside its own receive is the end too */
  r[2] = receiving(2, "batch", 4, 1, 95);
  r[2].p.state = 'T';
  r[2].p.stop_signal = SIGSTOP;
  expect_part(verdict(r, 4, 4, FG_HANG_CULPRIT, 2, -1), "rank 2 (pid 102) is stopped (SIGSTOP) in batch #4");
}

static void receives_that_wait_for_each_other_are_a_cycle(void **state) {
  (void)state;
  fg_hang_rank r[3] = {receiving(0, "recv", 4, 1, 95), receiving(1, "recv", 4, 0, 95),
                       rank_at(2, 0, "barrier", 3, "world", 95)};
  expect_line(verdict(r, 3, 3, FG_HANG_CYCLE, -1),
              "ranks 0,1 wait for each other's messages (a cycle) in recv #4 on world for 5.0 s");
}

static void a_peer_on_another_node_is_said_to_be_there(void **state) {
  (void)state;
  fg_hang_rank r[2] = {receiving(0, "recv", 4, 5, 95), rank_at(1, 0, "barrier", 3, "world", 95)};
  expect_part(verdict(r, 2, 8, FG_HANG_REMOTE, -1),
              "rank 0 has been in recv #4 on world for 5.0 s, waiting for a message from rank 5, "
              "on another node");
}

/* --- formatting -------------------------------------------------------------------------- */

static void rank_lists_fold_runs(void **state) {
  (void)state;
  int ranks[] = {0, 1, 2, 3, 5, 7, 8};
  char out[64];
  fg_hang_format_ranks(ranks, 7, out, sizeof out);
  assert_string_equal(out, "0-3,5,7,8");
}

static void operations_show_their_arguments(void **state) {
  (void)state;
  fg_hang_rank r = receiving(1, "recv", 4, 3, 95);
  r.s.count = 1;
  fg_buf b;
  fg__buf_init(&b);
  fg_hang_put_op(&b, &r.s, 1);
  expect_line(text_of(&b), "recv #4 on world (count 1 float32, from rank 3)");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_stopped_rank_inside_the_collective_is_named),
      cmocka_unit_test(a_rank_that_has_not_arrived_is_named_with_where_it_was),
      cmocka_unit_test(a_rank_burning_cpu_before_the_barrier_is_busy),
      cmocka_unit_test(of_several_missing_ranks_the_most_telling_is_named),
      cmocka_unit_test(a_rank_that_gave_up_in_the_operation_has_arrived),
      cmocka_unit_test(a_stopped_waiter_outranks_a_sleeping_latecomer),
      cmocka_unit_test(process_states_are_named),
      cmocka_unit_test(everyone_arrived_and_nobody_is_stuck),
      cmocka_unit_test(no_hang_before_the_timeout),
      cmocka_unit_test(only_the_groups_members_can_hold_it_up),
      cmocka_unit_test(a_different_count_at_the_same_number_is_a_mismatch),
      cmocka_unit_test(other_mismatches_name_their_field),
      cmocka_unit_test(a_tie_names_the_side_without_the_lowest_rank),
      cmocka_unit_test(after_an_abort_the_others_calls_outvote_the_odd_one),
      cmocka_unit_test(a_blocked_receive_names_the_peer_it_waits_for),
      cmocka_unit_test(the_chain_of_receives_is_followed_to_its_end),
      cmocka_unit_test(receives_that_wait_for_each_other_are_a_cycle),
      cmocka_unit_test(a_peer_on_another_node_is_said_to_be_there),
      cmocka_unit_test(rank_lists_fold_runs),
      cmocka_unit_test(operations_show_their_arguments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
