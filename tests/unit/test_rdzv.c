/* test_rdzv - the rendezvous of several nodes: --rdzv_conf, the multi-node options, rank
 * assignment, the decisions after a round, and the protocol itself between agents
 * (threads here) on a real store served from a thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

#include "launcher/options.h"
#include "parse_opts.h"
#include "launcher/rdzv.h"
#include "launcher/rdzv_policy.h"
#include "store/server.h"


/* --- options ------------------------------------------------------------------------------ */

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

static void multinode_options_follow_torchrun(void **state) {
  (void)state;
  unsetenv("PET_NODE_RANK");
  fg_launch_opts o;
  assert_int_equal(parse(&o, "--nnodes=2", "--node_rank=1", "--master_addr=10.0.0.1", "x",
                         NULL), 0);
  assert_int_equal(o.nnodes_max, 2);
  assert_int_equal(o.node_rank, 1);
  assert_string_equal(o.store_host, "10.0.0.1");
  assert_string_equal(o.prefix_template, "[node${group_rank} rank${rank}]:");
  fg_opts_free(&o);
  setenv("PET_NODE_RANK", "0", 1); /* an environment variable gives it too */
  assert_int_equal(parse(&o, "--nnodes=2", "x", NULL), 0);
  fg_opts_free(&o);
  unsetenv("PET_NODE_RANK");
  assert_int_equal(parse(&o, "--rdzv_backend=c10d", "--rdzv_endpoint=h:1", "--nnodes=1:4", "x",
                         NULL), 0);
  assert_int_equal(o.nnodes_min, 1);
  assert_int_equal(o.nnodes_max, 4);
  fg_opts_free(&o);
  assert_int_equal(parse(&o, "--nnodes=2", "--node_rank=0", "--log_line_prefix_template=<$rank>",
                         "x", NULL), 0);
  assert_string_equal(o.prefix_template, "<$rank>"); /* the user's template stays */
  fg_opts_free(&o);
  expect_error("give each node its --node_rank (0 to 2)", parse(&o, "--nnodes=3", "x", NULL), &o);
  expect_error("--node_rank 3: must be below --nnodes (3)",
               parse(&o, "--nnodes=3", "--node_rank=3", "x", NULL), &o);
  expect_error("static rendezvous needs a fixed number",
               parse(&o, "--nnodes=2:3", "--node_rank=0", "x", NULL), &o);
  expect_error("--standalone runs one node", parse(&o, "--standalone", "--nnodes=2", "x", NULL),
               &o);
}

static void group_rank_fills_the_prefix(void **state) {
  (void)state;
  char *p = fg_expand_node_prefix("[node${group_rank} rank${rank}]:", 5, 1, "r", 2);
  assert_string_equal(p, "[node2 rank5]:");
  free(p);
  assert_int_equal(fg_check_prefix_template("${group_rank}", err, sizeof err), 0);
}

/* --- ranks -------------------------------------------------------------------------------- */

static fg_rdzv_node node(int id, int pid, int nproc, int rank, const char *addr,
                         const char *role) {
  fg_rdzv_node n = {.id = id, .pid = pid, .nproc = nproc, .node_rank = rank};
  snprintf(n.addr, sizeof n.addr, "%s", addr);
  snprintf(n.role, sizeof n.role, "%s", role);
  return n;
}

static void c10d_orders_nodes_by_address_then_pid(void **state) {
  (void)state;
  fg_rdzv_node nodes[] = {node(1, 50, 2, -1, "10.0.0.10", "a"),
                          node(2, 60, 1, -1, "10.0.0.9", "b"),
                          node(3, 40, 3, -1, "10.0.0.9", "a")};
  fg_rdzv_round r = {.nnodes = 3, .nodes = nodes};
  assert_int_equal(fg_rdzv_assign(&r, 0, 1, err, sizeof err), 0);
  /* 10.0.0.9 (pid 40), 10.0.0.9 (pid 60), 10.0.0.10: numbers, not text */
  assert_int_equal(nodes[0].id, 3);
  assert_int_equal(nodes[1].id, 2);
  assert_int_equal(nodes[2].id, 1);
  assert_int_equal(r.node_rank, 2);
  assert_int_equal(r.rank_base, 4);
  assert_int_equal(r.world_size, 6);
  assert_int_equal(r.role_rank_base, 3); /* role a: node 0 has 3 workers before it */
  assert_int_equal(r.role_world_size, 5);
}

static void static_ranks_are_checked(void **state) {
  (void)state;
  fg_rdzv_node ok[] = {node(1, 1, 1, 1, "h", "x"), node(2, 2, 2, 0, "h", "x")};
  fg_rdzv_round r = {.nnodes = 2, .nodes = ok};
  assert_int_equal(fg_rdzv_assign(&r, 1, 1, err, sizeof err), 0);
  assert_int_equal(r.node_rank, 1);
  assert_int_equal(r.rank_base, 2);
  fg_rdzv_node twice[] = {node(1, 11, 1, 1, "10.0.0.1", "x"), node(2, 22, 1, 1, "10.0.0.2", "x")};
  r = (fg_rdzv_round){.nnodes = 2, .nodes = twice};
  assert_int_equal(fg_rdzv_assign(&r, 1, 1, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "node rank 1 is claimed by two agents: 10.0.0.1"));
}

/* --- decisions ---------------------------------------------------------------------------- */

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

/* --- the protocol on a real store --------------------------------------------------------- */

typedef struct store_thread {
  uv_loop_t loop;
  uv_async_t stop;
  uv_thread_t thread;
  fg_server *server;
  int port;
} store_thread;

static void store_run(void *arg) { uv_run(&((store_thread *)arg)->loop, UV_RUN_DEFAULT); }

static void store_stop(uv_async_t *a) {
  store_thread *st = a->data;
  fg__server_close(st->server);
  uv_close((uv_handle_t *)a, NULL);
}

static void start_store(store_thread *st) {
  uv_loop_init(&st->loop);
  fg_server_config cfg;
  fg__server_config_init(&cfg);
  cfg.port = 0;
  assert_int_equal(fg__server_start(&st->loop, &cfg, &st->server, err, sizeof err), 0);
  st->port = fg__server_port(st->server);
  uv_async_init(&st->loop, &st->stop, store_stop);
  st->stop.data = st;
  assert_int_equal(uv_thread_create(&st->thread, store_run, st), 0);
}

static void stop_store(store_thread *st) {
  uv_async_send(&st->stop);
  uv_thread_join(&st->thread);
  uv_loop_close(&st->loop);
}

typedef struct agent {
  pthread_t tid;
  fg_rdzv *rz;
  int first_round;
  int rc;
  fg_rdzv_round round;
} agent;

static void *join_main(void *arg) {
  agent *a = arg;
  a->rc = fg_rdzv_join(a->rz, a->first_round, &a->round);
  return NULL;
}

static fg_rdzv *new_agent_conf(const store_thread *st, int min, int max, int static_rank,
                               const char *conf) {
  fg_launch_opts o;
  assert_int_equal(parse(&o, conf, "x", NULL), 0);
  fg_rdzv_settings s = {.host = "127.0.0.1", .port = st->port, .run_id = "unit",
                        .min_nodes = min, .max_nodes = max, .static_rank = static_rank,
                        .nproc = 2, .role = "default", .conf = o.rdzv};
  fg_opts_free(&o);
  fg_rdzv *rz;
  assert_int_equal(fg_rdzv_new(&rz, &s), 0);
  return rz;
}

static fg_rdzv *new_agent(const store_thread *st, int min, int max, int static_rank) {
  return new_agent_conf(st, min, max, static_rank,
                        "--rdzv_conf=keep_alive_interval=0.05,keep_alive_max_attempt=2,"
                        "last_call_timeout=0.2,join_timeout=3");
}

static void join_all(agent *agents, int n) {
  for (int i = 0; i < n; i++) pthread_create(&agents[i].tid, NULL, join_main, &agents[i]);
  for (int i = 0; i < n; i++) pthread_join(agents[i].tid, NULL);
}

static void agents_form_rounds_and_see_each_other_end(void **state) {
  (void)state;
  store_thread st;
  start_store(&st);
  agent a[3] = {{.rz = new_agent(&st, 2, 2, 1)}, {.rz = new_agent(&st, 2, 2, 0)}};
  join_all(a, 2);
  assert_int_equal(a[0].rc, 0);
  assert_int_equal(a[1].rc, 0);
  assert_int_equal(a[0].round.node_rank, 1);
  assert_int_equal(a[0].round.rank_base, 2);
  assert_int_equal(a[1].round.world_size, 4);

  /* node 1 restarts: node 0 hears it at its next keep-alive */
  fg_rdzv_news news;
  assert_int_equal(fg_rdzv_end(a[0].rz, "restart", 3, "rank 2 exited with code 3", 0), 0);
  fg_rdzv_check(a[1].rz, &news);
  assert_int_equal(news.kind, FG_RDZV_RESTARTING);
  assert_non_null(strstr(news.text, "is restarting (rank 2 exited with code 3)"));
  assert_int_equal(fg_rdzv_end(a[1].rz, "restart", 0, news.text, 0), 0);
  for (int i = 0; i < 2; i++) fg_rdzv_round_free(&a[i].round);
  a[0].first_round = a[1].first_round = 1;
  join_all(a, 2);
  assert_int_equal(a[0].round.round, 1);

  /* both finish; the second to wait closes the job as finished */
  assert_int_equal(fg_rdzv_end(a[0].rz, "done", 0, "finished", 0), 0);
  assert_int_equal(fg_rdzv_end(a[1].rz, "done", 0, "finished", 0), 0);
  assert_int_equal(fg_rdzv_wait_ended(a[0].rz, 5), 0);
  /* a late agent learns that the job is over instead of waiting */
  a[2].rz = new_agent(&st, 2, 2, 0);
  join_all(&a[2], 1);
  assert_int_equal(a[2].rc, -ESHUTDOWN);
  assert_non_null(strstr(fg_rdzv_errmsg(a[2].rz), "the job is over: finished"));
  for (int i = 0; i < 3; i++) {
    fg_rdzv_round_free(&a[i].round);
    fg_rdzv_free(a[i].rz);
  }
  stop_store(&st);
}

static void a_silent_member_is_declared_lost(void **state) {
  (void)state;
  store_thread st;
  start_store(&st);
  agent a[2] = {{.rz = new_agent(&st, 1, 3, -1)}, {.rz = new_agent(&st, 1, 3, -1)}};
  join_all(a, 2); /* MIN 1, MAX 3: the last call closes it with both */
  assert_int_equal(a[0].rc, 0);
  assert_int_equal(a[0].round.nnodes, 2);
  fg_rdzv_news news = {0};
  for (int i = 0; i < 100 && news.kind == FG_RDZV_QUIET; i++) {
    fg_rdzv_check(a[0].rz, &news); /* a[1] never sends a keep-alive again */
    uv_sleep(20);
  }
  assert_int_equal(news.kind, FG_RDZV_PEER_LOST);
  assert_non_null(strstr(news.text, "sent no keep-alive for 0.1 s"));
  for (int i = 0; i < 2; i++) {
    fg_rdzv_round_free(&a[i].round);
    fg_rdzv_free(a[i].rz);
  }
  stop_store(&st);
}

static void a_node_past_max_is_told_the_job_is_full(void **state) {
  (void)state;
  store_thread st;
  start_store(&st);
  agent a[3] = {{.rz = new_agent(&st, 2, 2, -1)}, {.rz = new_agent(&st, 2, 2, -1)}};
  join_all(a, 2);
  assert_int_equal(a[0].round.nnodes, 2);
  a[2].rz = new_agent_conf(&st, 2, 2, -1, "--rdzv_conf=join_timeout=0.3");
  join_all(&a[2], 1);
  assert_int_equal(a[2].rc, -ETIMEDOUT);
  assert_non_null(strstr(fg_rdzv_errmsg(a[2].rz), "round 0 runs with the most nodes --nnodes "
                                                  "allows (2), so this node was not let in"));
  for (int i = 0; i < 3; i++) {
    fg_rdzv_round_free(&a[i].round);
    fg_rdzv_free(a[i].rz);
  }
  stop_store(&st);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(rdzv_conf_has_torchruns_defaults),
      cmocka_unit_test(multinode_options_follow_torchrun),
      cmocka_unit_test(group_rank_fills_the_prefix),
      cmocka_unit_test(c10d_orders_nodes_by_address_then_pid),
      cmocka_unit_test(static_ranks_are_checked),
      cmocka_unit_test(decisions_follow_the_rules),
      cmocka_unit_test(agents_form_rounds_and_see_each_other_end),
      cmocka_unit_test(a_silent_member_is_declared_lost),
      cmocka_unit_test(a_node_past_max_is_told_the_job_is_full),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
