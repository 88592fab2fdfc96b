/* rdzv_policy.c - leave, finish, re-form or fail: the rules of rdzv_policy.h. */
#include "launcher/rdzv_policy.h"

#include <stdio.h>
#include <string.h>

#include "common/util.h"

/* torchrun's exit barrier: how long a member that finished waits for the others. The
 * agent hosting the store waits for as long as they live: they still use its store. */
#define EXIT_BARRIER_S 300.0
#define HOST_WAIT_S 1e9

/* A member that failed for good waits for the others to see it and stop: a keep-alive
 * or two, the grace they give their workers, and the close. */
static double failure_wait_s(const fg_launch_opts *o) {
  return o->rdzv.keep_alive_interval * (o->rdzv.keep_alive_max_attempt + 1) + o->term_grace +
         o->rdzv.close_timeout;
}

static int reform_costs(const fg_rdzv_facts *f) {
  return f->failure != NULL || f->news->kind == FG_RDZV_PEER_LOST;
}

static int can_reform(const fg_rdzv_facts *f) {
  enum fg_rdzv_news_kind k = f->news->kind;
  if (f->refused || (f->failure && !f->can_restart_failure) || k == FG_RDZV_CLOSED ||
      k == FG_RDZV_STORE_LOST)
    return 0;
  if (!f->failure && k == FG_RDZV_QUIET) return 0; /* nothing to re-form for */
  return !reform_costs(f) || f->restarts < f->opts->max_restarts;
}

static void fail(const fg_rdzv_facts *f, fg_rdzv_decision *d) {
  d->action = FG_RDZV_FAIL;
  d->state = "failed";
  d->close_job = 1;
  d->wait_s = failure_wait_s(f->opts);
  const fg_rdzv_news *n = f->news;
  if (f->failure) {
    d->exit_code = f->failure_status ? f->failure_status : 1;
    d->summary = 1;
    snprintf(d->reason, sizeof d->reason, "%s", f->failure);
  } else {
    d->exit_code = n->kind == FG_RDZV_CLOSED && n->status ? n->status : 1;
    snprintf(d->reason, sizeof d->reason, "%s", n->text);
  }
  if (f->refused)
    snprintf(d->message, sizeof d->message, "error: cannot restart: %s", f->refused);
  else if (!f->failure)
    snprintf(d->message, sizeof d->message, "error: job failed: %s%s", n->text,
             n->kind == FG_RDZV_PEER_LOST ? " (no restarts left)" : "");
}

void fg_rdzv_decide(const fg_rdzv_facts *f, fg_rdzv_decision *d) {
  memset(d, 0, sizeof *d);
  const fg_launch_opts *o = f->opts;
  if (f->stop_signal) {
    d->action = FG_RDZV_LEAVE;
    d->state = "left";
    d->exit_code = 128 + f->stop_signal;
    d->summary = 1;
    snprintf(d->reason, sizeof d->reason, "stopped by SIG%s", fg__signame(f->stop_signal));
  } else if (!f->failure && f->news->kind == FG_RDZV_QUIET) {
    d->action = FG_RDZV_DONE;
    d->state = "done";
    d->wait_s = f->hosts_store ? HOST_WAIT_S : EXIT_BARRIER_S;
    snprintf(d->reason, sizeof d->reason, "finished");
  } else if (can_reform(f)) {
    d->action = FG_RDZV_REFORM;
    d->state = "restart";
    d->costs_restart = reform_costs(f);
    snprintf(d->reason, sizeof d->reason, "%s", f->failure ? f->failure : f->news->text);
    char left[64] = "";
    if (d->costs_restart)
      snprintf(left, sizeof left, " (restart %d of %d)", f->restarts + 1, o->max_restarts);
    snprintf(d->message, sizeof d->message, "%s; forming a new round%s", d->reason, left);
  } else {
    fail(f, d);
  }
}
