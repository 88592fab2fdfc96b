/* test_rdzv - the rendezvous of several nodes (rdzv.c): rank assignment, and the protocol
 * itself between agents (threads here) on a real store served from a thread. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

#include "launcher/options.h"
#include "launcher/rdzv.h"
#include "parse_opts.h"
#include "store/server.h"

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

/* Frees n agents and their last rounds, then stops the store they met on. */
static void free_agents(agent *agents, int n, store_thread *st) {
  for (int i = 0; i < n; i++) {
    fg_rdzv_round_free(&agents[i].round);
    fg_rdzv_free(agents[i].rz);
  }
  stop_store(st);
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
  free_agents(a, 3, &st);
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
  free_agents(a, 2, &st);
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
  free_agents(a, 3, &st);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(c10d_orders_nodes_by_address_then_pid),
      cmocka_unit_test(static_ranks_are_checked),
      cmocka_unit_test(agents_form_rounds_and_see_each_other_end),
      cmocka_unit_test(a_silent_member_is_declared_lost),
      cmocka_unit_test(a_node_past_max_is_told_the_job_is_full),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
