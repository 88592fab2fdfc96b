/* rdzv_loop.c - rendezvous steps on libuv's thread pool, keep-alives on a timer. */
#include "launcher/rdzv_loop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "fg/fg.h"

enum step_op { STEP_NONE, STEP_JOIN, STEP_END, STEP_KEEP_ALIVE };

typedef struct step {
  enum step_op op;
  int first_round;
  char state[16];
  int status;
  char reason[512];
  int close_job;
  double wait_s;
  fg_rdzv_step_cb cb;
} step;

struct fg_rdzv_loop {
  uv_loop_t *loop;
  uv_work_t work;
  uv_timer_t timer;
  fg_rdzv *rz;
  fg_rdzv_news_cb on_news;
  void *data;
  step running, pending;
  int busy;       /* a step is on the thread pool */
  int closing;
  int timer_open;
  /* results, written by the thread pool, read on the loop after the step */
  int rc;
  char err[768];
  fg_rdzv_round round;
  fg_rdzv_news news;
};

/* --- who hosts the store ---------------------------------------------------------------- */

static int bind_store(uv_loop_t *loop, const fg_launch_opts *o, fg_server **out, char *err,
                      size_t errlen) {
  fg_server_config sc;
  fg__server_config_init(&sc);
  sc.host = o->store_host;
  sc.port = o->store_port;
  sc.token = o->store_token;
  return fg__server_start(loop, &sc, out, err, errlen);
}

int fg_rdzv_host_store(uv_loop_t *loop, const fg_launch_opts *o, fg_server **out) {
  *out = NULL;
  int is_static = strcmp(o->rdzv_backend, "c10d") != 0;
  int must = is_static ? o->node_rank == 0 : o->rdzv.is_host == 1;
  int may = is_static ? must : o->rdzv.is_host != 0;
  int v6 = strchr(o->store_host, ':') != NULL;
  char where[300];
  snprintf(where, sizeof where, "%s%s%s:%d", v6 ? "[" : "", o->store_host, v6 ? "]" : "",
           o->store_port);
  if (!may) {
    fg_info("rendezvous: joining the store at %s", where);
    return 0;
  }
  char err[512] = "";
  int rc = bind_store(loop, o, out, err, sizeof err);
  if (rc == 0) {
    fg_info("rendezvous: this node hosts the store on %s", where);
    return 0;
  }
  *out = NULL;
  if (!must && (rc == UV_EADDRNOTAVAIL || rc == UV_EADDRINUSE)) {
    fg_info("rendezvous: joining the store at %s (%s here)", where,
            rc == UV_EADDRINUSE ? "the port is taken" : "not an address of this host");
    return 0;
  }
  if (rc == UV_EADDRINUSE)
    fg_error("error: cannot listen on %s: address already in use (another job, or a stale "
             "fgrun, holds it; use another port)", where);
  else if (rc == UV_EADDRNOTAVAIL)
    fg_error("error: cannot listen on %s: not an address of this host (node %d hosts the "
             "store: give it an address of its own with --master_addr)", where, o->node_rank);
  else
    fg_error("error: %s", err[0] ? err : uv_strerror(rc));
  return 2;
}

/* --- steps ------------------------------------------------------------------------------- */

static void run_step(uv_work_t *req) {
  fg_rdzv_loop *rl = req->data;
  const step *s = &rl->running;
  rl->rc = 0;
  rl->err[0] = '\0';
  switch (s->op) {
    case STEP_JOIN:
      fg_rdzv_round_free(&rl->round);
      rl->rc = fg_rdzv_join(rl->rz, s->first_round, &rl->round);
      break;
    case STEP_END:
      rl->rc = fg_rdzv_end(rl->rz, s->state, s->status, s->reason, s->close_job);
      if (rl->rc == 0 && s->wait_s > 0) rl->rc = fg_rdzv_wait_ended(rl->rz, s->wait_s);
      break;
    case STEP_KEEP_ALIVE: fg_rdzv_check(rl->rz, &rl->news); break;
    case STEP_NONE: break;
  }
  if (rl->rc < 0) snprintf(rl->err, sizeof rl->err, "%s", fg_rdzv_errmsg(rl->rz));
}

static void free_loop(fg_rdzv_loop *rl) {
  fg_rdzv_round_free(&rl->round);
  fg_rdzv_free(rl->rz);
  free(rl);
}

static void after_step(uv_work_t *req, int status);

static void log_round(const fg_rdzv_loop *rl) {
  const fg_rdzv_round *r = &rl->round;
  const fg_rdzv_node *me = &r->nodes[r->node_rank];
  fg_info("rendezvous round %d: %d node%s, %d workers; this is node %d (%s) with ranks %d "
          "to %d", r->round, r->nnodes, r->nnodes == 1 ? "" : "s", r->world_size,
          r->node_rank, me->addr, r->rank_base, r->rank_base + me->nproc - 1);
}

static void queue_step(fg_rdzv_loop *rl, const step *s) {
  rl->running = *s;
  rl->busy = 1;
  int rc = uv_queue_work(rl->loop, &rl->work, run_step, after_step);
  if (rc == 0) return;
  rl->busy = 0; /* cannot happen with a valid loop; say so rather than hang */
  fg_error("rendezvous: cannot queue work: %s", uv_strerror(rc));
  if (s->cb) s->cb(rl->data, rc, uv_strerror(rc));
}

static void after_step(uv_work_t *req, int status) {
  (void)status; /* steps are never cancelled with uv_cancel */
  fg_rdzv_loop *rl = req->data;
  step done = rl->running;
  rl->busy = 0;
  if (rl->closing) {
    if (!rl->timer_open) free_loop(rl);
    return;
  }
  if (done.op == STEP_JOIN && rl->rc == 0) log_round(rl);
  /* After its last word no keep-alive may start: one against a store that has gone would
   * spend read_timeout reconnecting before fgrun could exit. */
  if (done.op == STEP_END && strcmp(done.state, "restart") != 0) uv_timer_stop(&rl->timer);
  if (done.op == STEP_KEEP_ALIVE && rl->news.kind != FG_RDZV_QUIET)
    rl->on_news(rl->data, &rl->news);
  else if (done.op != STEP_KEEP_ALIVE && done.cb)
    done.cb(rl->data, rl->rc, rl->err);
  if (!rl->busy && !rl->closing && rl->pending.op != STEP_NONE) {
    step next = rl->pending;
    rl->pending.op = STEP_NONE;
    queue_step(rl, &next);
  }
}

/* A step asked for while a keep-alive runs waits for it. */
static void request(fg_rdzv_loop *rl, const step *s) {
  if (!rl->busy) {
    queue_step(rl, s);
    return;
  }
  if (rl->running.op != STEP_KEEP_ALIVE || rl->pending.op != STEP_NONE)
    fg_error("rendezvous: a step was asked for while another runs (a bug); it waits");
  rl->pending = *s;
}

static void on_keep_alive(uv_timer_t *t) {
  fg_rdzv_loop *rl = t->data;
  if (rl->busy || rl->closing) return;
  step s = {.op = STEP_KEEP_ALIVE};
  queue_step(rl, &s);
}

int fg_rdzv_loop_start(fg_rdzv_loop **out, uv_loop_t *loop, const fg_launch_opts *o,
                       int hosts_store, fg_rdzv_news_cb on_news, void *data) {
  fg_rdzv_loop *rl = calloc(1, sizeof *rl);
  if (!rl) return -ENOMEM;
  fg_rdzv_settings s = {
      .host = o->store_host, .port = o->store_port, .run_id = o->rdzv_id,
      .min_nodes = o->nnodes_min, .max_nodes = o->nnodes_max,
      .static_rank = strcmp(o->rdzv_backend, "c10d") == 0 ? -1 : o->node_rank,
      .nproc = o->nproc, .role = o->role, .hosts_store = hosts_store, .local_addr = o->local_addr,
      .conf = o->rdzv};
  /* The store client presents $FG_STORE_TOKEN; --store_token may have come from argv. Set
   * before any rendezvous thread runs. */
  if (o->store_token && !getenv("FG_STORE_TOKEN")) setenv("FG_STORE_TOKEN", o->store_token, 1);
  int rc = fg_rdzv_new(&rl->rz, &s);
  if (rc != 0) {
    free(rl);
    return rc;
  }
  rl->loop = loop;
  rl->on_news = on_news;
  rl->data = data;
  rl->work.data = rl;
  uv_timer_init(loop, &rl->timer);
  rl->timer.data = rl;
  rl->timer_open = 1;
  uint64_t every = (uint64_t)(o->rdzv.keep_alive_interval * 1000);
  if (every == 0) every = 1;
  uv_timer_start(&rl->timer, on_keep_alive, every, every);
  *out = rl;
  return 0;
}

void fg_rdzv_loop_join(fg_rdzv_loop *rl, int first_round, fg_rdzv_step_cb cb) {
  step s = {.op = STEP_JOIN, .first_round = first_round, .cb = cb};
  request(rl, &s);
}

const fg_rdzv_round *fg_rdzv_loop_round(const fg_rdzv_loop *rl) { return &rl->round; }

void fg_rdzv_round_env(const fg_rdzv_round *r, fg_env_spec *env) {
  env->node_rank = r->node_rank;
  env->nnodes = r->nnodes;
  env->rank_base = r->rank_base;
  env->world_size = r->world_size;
  env->role_rank_base = r->role_rank_base;
  env->role_world_size = r->role_world_size;
}

void fg_rdzv_loop_end(fg_rdzv_loop *rl, const char *state, int status, const char *reason,
                      int close_job, double wait_s, fg_rdzv_step_cb cb) {
  step s = {.op = STEP_END, .status = status, .close_job = close_job, .wait_s = wait_s,
            .cb = cb};
  snprintf(s.state, sizeof s.state, "%s", state);
  snprintf(s.reason, sizeof s.reason, "%s", reason);
  request(rl, &s);
}

void fg_rdzv_loop_cancel(fg_rdzv_loop *rl) { fg_rdzv_cancel(rl->rz); }

static void on_timer_closed(uv_handle_t *h) {
  fg_rdzv_loop *rl = h->data;
  rl->timer_open = 0;
  if (!rl->busy) free_loop(rl);
}

void fg_rdzv_loop_close(fg_rdzv_loop *rl) {
  if (rl->closing) return;
  rl->closing = 1;
  fg_rdzv_cancel(rl->rz);
  uv_close((uv_handle_t *)&rl->timer, on_timer_closed);
}
