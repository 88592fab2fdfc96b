/* agent_nodes.c - several nodes: rounds come from rdzv_loop.c, decisions from
 * rdzv_policy.c; the agent joins, runs an attempt, then publishes how it ended. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/log.h"
#include "common/util.h"
#include "fg/fg.h"
#include "launcher/agent_internal.h"

static void on_round_joined(void *data, int rc, const char *err) {
  fg_agent *a = data;
  if (rc != 0) {
    a->exit_code = a->stop_signal ? 128 + a->stop_signal : 1;
    if (a->stop_signal)
      fg_warn("stopped by SIG%s while joining the rendezvous", fg__signame(a->stop_signal));
    else
      fg_error("error: %s", err);
    fg_agent_shutdown(a);
    return;
  }
  const fg_rdzv_round *r = fg_rdzv_loop_round(a->rdzv);
  if (a->store && a->next_round > 0) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "//worker/attempt_%d/", a->attempt);
    fg__server_erase_prefix(a->store, prefix);
  }
  a->attempt = r->round; /* TORCHELASTIC_RESTART_COUNT: every member agrees on it */
  a->next_round = r->round + 1;
  fg_rdzv_round_env(r, &a->env);
  fg_agent_start_attempt(a);
}

void fg_agent_join_round(fg_agent *a) {
  a->phase = PHASE_JOINING;
  a->news.kind = FG_RDZV_QUIET;
  a->root_cause = NULL;
  a->hang_stopped = 0;
  fg_rdzv_loop_join(a->rdzv, a->next_round, on_round_joined);
}

/* The most urgent news counts, up to the decision at the end of the round. */
void fg_agent_on_rdzv_news(void *data, const fg_rdzv_news *news) {
  fg_agent *a = data;
  if (a->phase > PHASE_DRAINING) return;
  if (a->news.kind != FG_RDZV_QUIET && a->news.kind <= news->kind) return;
  a->news = *news;
  if (a->phase != PHASE_RUNNING) return;
  fg_warn("%s; stopping the workers", news->text);
  fg_agent_begin_stop(a, SIGTERM);
}

static void decide_and_act(fg_agent *a, const char *refused);

static void on_end_published(void *data, int rc, const char *err) {
  fg_agent *a = data;
  const fg_rdzv_decision *d = &a->decision;
  if (rc == -EALREADY || (d->action == FG_RDZV_REFORM && a->stop_signal)) {
    decide_and_act(a, rc == -EALREADY ? err : NULL); /* fail, or leave on the signal */
    return;
  }
  if (rc < 0 && rc != -ECANCELED) fg_warn("rendezvous: %s", err);
  if (d->action == FG_RDZV_REFORM) fg_warn("round %d ends: %s", a->attempt, d->message);
  fg_agent_close_workers(a, d->action == FG_RDZV_REFORM ? fg_agent_join_round : fg_agent_shutdown);
}

static void decide_and_act(fg_agent *a, const char *refused) {
  char failure[400];
  fg_agent_describe_attempt(a, failure, sizeof failure);
  int failed = a->root_cause || a->start_failed || a->hang_stopped;
  fg_rdzv_facts f = {
      .opts = a->opts, .stop_signal = a->stop_signal, .failure = failed ? failure : NULL,
      .failure_status = a->root_cause  ? fg_agent_root_status(a)
                        : a->hang_stopped ? FG_HANG_EXIT_STATUS : 1,
      .can_restart_failure = !a->start_failed, .news = &a->news, .refused = refused,
      .restarts = a->restarts, .hosts_store = a->store != NULL};
  fg_rdzv_decision *d = &a->decision;
  fg_rdzv_decide(&f, d);
  a->exit_code = d->exit_code;
  a->restarts += d->costs_restart;
  if (d->message[0] && d->action != FG_RDZV_REFORM) fg_error("%s", d->message);
  if (d->summary) fg_agent_print_summary(a);
  if (d->action == FG_RDZV_DONE && a->restarts > 0)
    fg_info("all %d workers succeeded after %d restart%s", a->nworkers, a->restarts,
            a->restarts == 1 ? "" : "s");
  if (a->news.kind == FG_RDZV_STORE_LOST) { /* nowhere to publish the end: do not retry */
    on_end_published(a, -ECANCELED, "");
    return;
  }
  fg_rdzv_loop_end(a->rdzv, d->state, d->exit_code, d->reason, d->close_job, d->wait_s,
                   on_end_published);
}

void fg_agent_after_drain_nodes(fg_agent *a) {
  char result[400];
  fg_agent_describe_attempt(a, result, sizeof result);
  fg_agent_record_attempt(a, result);
  decide_and_act(a, NULL);
}

