/* agent_attempt.c - one attempt of the worker group: start it, watch it, stop it on the
 * first failure or a signal, and decide between a restart and the end. */
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

static int worker_failed(const fg_worker *w) {
  return w->state == FG_WORKER_EXITED && (w->exit_code != 0 || w->term_signal != 0);
}

static void signal_running(fg_agent *a, int sig) {
  for (int i = 0; i < a->nworkers; i++)
    if (a->workers[i].state == FG_WORKER_RUNNING) fg_worker_kill_group(&a->workers[i], sig);
}

/* --- worker events ----------------------------------------------------------------------- */

/* Workers that died close together are reaped in one pass in the order of libuv's handle
 * queue, not the order they died in. So, within that pass, a worker killed by a signal
 * fgrun did not send is the likelier origin than one that exited with an error: typically
 * its peer, reporting the loss (a SIGKILLed rank 2 and a rank 0 exiting 1 on "peer rank 2
 * closed the connection"). */
static int likelier_cause(const fg_worker *w, const fg_worker *cause) {
  return cause && !cause->term_signal && w->term_signal && w->term_signal != SIGTERM &&
         w->end_ns - cause->end_ns < 2000000;
}

static void on_worker_exit(fg_worker *w) {
  fg_agent *a = w->data;
  a->running--;
  if (a->phase == PHASE_STOPPING && likelier_cause(w, a->root_cause)) a->root_cause = w;
  int mpi_failed = fg_agent_pmix_failed(a, w); /* MPI_Abort, or no MPI_Finalize */
  if (a->phase == PHASE_RUNNING && (worker_failed(w) || mpi_failed)) {
    a->root_cause = w;
    fg_agent_begin_stop(a, SIGTERM);
  } else if (a->running == 0 && (a->phase == PHASE_RUNNING || a->phase == PHASE_STOPPING)) {
    fg_agent_attempt_finished(a);
  }
}

static int all_drained(const fg_agent *a) {
  for (int i = 0; i < a->nworkers; i++)
    if (!a->workers[i].drained) return 0;
  return 1;
}

static void after_drain(fg_agent *a);

static void on_worker_drained(fg_worker *w) {
  fg_agent *a = w->data;
  if (a->phase == PHASE_DRAINING && all_drained(a)) after_drain(a);
}

static void on_worker_closed(fg_worker *w) {
  fg_agent *a = w->data;
  if (--a->closing > 0) return;
  for (int i = 0; i < a->nworkers; i++) fg_worker_free(&a->workers[i]);
  free(a->workers);
  a->workers = NULL;
  a->nworkers = 0;
  a->after_close(a);
}

/* --- stopping ---------------------------------------------------------------------------- */

static void on_reap_timeout(uv_timer_t *t) {
  fg_agent *a = t->data;
  for (int i = 0; i < a->nworkers; i++) {
    fg_worker *w = &a->workers[i];
    if (w->state != FG_WORKER_RUNNING) continue;
    fg_error("rank %d (pid %d) did not exit %d s after SIGKILL (stuck in the kernel?); "
             "leaving it behind",
             w->rank, w->pid, REAP_TIMEOUT_MS / 1000);
    w->state = FG_WORKER_LOST;
  }
  a->running = 0;
  fg_agent_attempt_finished(a);
}

static void kill_now(fg_agent *a) {
  uv_timer_stop(&a->grace_timer);
  signal_running(a, SIGKILL);
  if (!uv_is_active((uv_handle_t *)&a->reap_timer))
    uv_timer_start(&a->reap_timer, on_reap_timeout, REAP_TIMEOUT_MS, 0);
}

static void on_grace_timeout(uv_timer_t *t) {
  fg_agent *a = t->data;
  fg_warn("%d worker%s still running %.3g s after being told to stop; sending SIGKILL",
          a->running, a->running == 1 ? "" : "s", a->opts->term_grace);
  kill_now(a);
}

/* SIGTERM (or the signal fgrun got) to every running worker's group, SIGKILL later. Then
 * SIGCONT: a stopped process (SIGSTOP, a debugger's detach, a ^Z'd child) acts on a pending
 * SIGTERM only once it runs again, and would otherwise hold the job for all of --term_grace. */
void fg_agent_begin_stop(fg_agent *a, int sig) {
  a->phase = PHASE_STOPPING;
  signal_running(a, sig);
  if (sig != SIGCONT) signal_running(a, SIGCONT);
  if (a->running == 0) {
    fg_agent_attempt_finished(a);
    return;
  }
  uv_timer_start(&a->grace_timer, on_grace_timeout, (uint64_t)(a->opts->term_grace * 1000), 0);
}

void fg_agent_on_signal(uv_signal_t *h, int sig) {
  fg_agent *a = h->data;
  switch (a->phase) {
    case PHASE_RUNNING:
      a->stop_signal = sig;
      fg_warn("got SIG%s: passing it to the workers and stopping", fg__signame(sig));
      fg_agent_begin_stop(a, sig);
      break;
    case PHASE_STOPPING:
      if (!a->stop_signal) {
        a->stop_signal = sig;
        fg_warn("got SIG%s: passing it to the workers still running and stopping",
                fg__signame(sig));
        signal_running(a, sig);
      } else {
        fg_warn("got SIG%s again: killing the workers now", fg__signame(sig));
        kill_now(a);
      }
      break;
    default:
      /* Too late to pass on (no worker runs), but no restart, and the exit status says so:
       * under Slurm the workers often get the signal too, and end first. */
      if (!a->stop_signal) {
        a->stop_signal = sig;
        fg_warn("got SIG%s: stopping (no worker is running)", fg__signame(sig));
      }
      if (a->rdzv) fg_rdzv_loop_cancel(a->rdzv); /* stop joining or waiting */
      break;
  }
}

/* --- the end of an attempt ----------------------------------------------------------------- */

static void on_drain_timeout(uv_timer_t *t) {
  fg_agent *a = t->data;
  for (int i = 0; i < a->nworkers; i++) {
    fg_worker *w = &a->workers[i];
    if (w->drained) continue;
    fg_debug("rank %d's output is still open (a process outside its group holds it); "
             "closing it", w->rank);
    fg_stream_close(&w->out);
    fg_stream_close(&w->err);
  }
  after_drain(a);
}

/* Every worker is reaped (or given up on). Their groups get SIGKILL so no child they left
 * behind survives; then the output pipes can finish. */
void fg_agent_attempt_finished(fg_agent *a) {
  uv_timer_stop(&a->grace_timer);
  uv_timer_stop(&a->reap_timer);
  fg_agent_pmix_end(a); /* every rank is gone: its fences never complete */
  a->phase = PHASE_DRAINING;
  for (int i = 0; i < a->nworkers; i++) {
    fg_worker *w = &a->workers[i];
    if (w->pid <= 0) continue;
    fg_worker_kill_group(w, SIGKILL);
    if (w->state == FG_WORKER_EXITED) fg_watchdog_remove(&a->watchdog, w->pid);
  }
  if (all_drained(a))
    after_drain(a);
  else
    uv_timer_start(&a->drain_timer, on_drain_timeout, DRAIN_TIMEOUT_MS, 0);
}

void fg_agent_close_workers(fg_agent *a, fg_agent_step next) {
  a->phase = PHASE_CLOSING;
  a->after_close = next;
  a->closing = a->nworkers;
  if (a->nworkers == 0) {
    next(a);
    return;
  }
  int n = a->nworkers; /* the last close may free the array */
  fg_worker *workers = a->workers;
  for (int i = 0; i < n; i++) fg_worker_close(&workers[i]);
}

static void next_attempt(fg_agent *a) {
  if (a->stop_signal) {
    a->exit_code = 128 + a->stop_signal;
    fg_warn("stopped by SIG%s before restarting; exit status %d", fg__signame(a->stop_signal),
            a->exit_code);
    fg_agent_shutdown(a);
    return;
  }
  a->attempt++;
  a->root_cause = NULL;
  a->hang_stopped = 0;
  fg_agent_start_attempt(a);
}

/* How the attempt ended, for the timeline and the restart message. */
void fg_agent_describe_attempt(const fg_agent *a, char *out, size_t len) {
  char end[320] = "";
  int status;
  const char *note = fg_agent_pmix_note(a, a->root_cause, &status);
  if (note)
    snprintf(end, sizeof end, "%s", note);
  else if (a->root_cause)
    fg_describe_end(a->root_cause, end, sizeof end);
  if (a->stop_signal)
    snprintf(out, len, "stopped by SIG%s", fg__signame(a->stop_signal));
  else if (a->root_cause)
    snprintf(out, len, "rank %d %s", a->root_cause->rank, end);
  else if (a->hang_stopped)
    snprintf(out, len, "hang (--hang_action kill)");
  else
    snprintf(out, len, a->start_failed ? "a worker could not start" : "succeeded");
}

/* The attempt is over: the timeline gets its spans, and a rank that left early while its
 * peers still needed it is named (it exited 0, so the summary would not blame it). */
fg_events_agent_state fg_agent_events_state(const fg_agent *a) {
  return (fg_events_agent_state){.group_rank = a->env.node_rank, .group_world_size = a->env.nnodes,
                                 .restarts = a->rdzv ? a->restarts : a->attempt};
}

void fg_agent_record_attempt(fg_agent *a, const char *result) {
  fg_timeline_attempt(&a->timeline, a->attempt, a->workers, a->nworkers, result);
  fg_events_agent_state st = fg_agent_events_state(a);
  int failed = a->root_cause || a->start_failed || a->hang_stopped || a->stop_signal;
  fg_events_attempt(&a->events, &st, a->workers, a->nworkers, a->root_cause, failed,
                    a->env.world_size ? a->env.role_world_size : a->env.nproc * a->env.nnodes);
  snprintf(a->events.why, sizeof a->events.why, "%s", result);
  fg_hang_print_failure_notes(&a->hang, a->workers, a->nworkers, a->root_cause);
}

int fg_agent_root_status(const fg_agent *a) {
  int status;
  if (!a->root_cause) return 1;
  return fg_agent_pmix_note(a, a->root_cause, &status) ? status
                                                       : fg_worker_exit_status(a->root_cause);
}

void fg_agent_print_summary(fg_agent *a) {
  int status;
  fg_summary s = {.workers = a->workers, .nworkers = a->nworkers, .root_cause = a->root_cause,
                  .root_cause_note = fg_agent_pmix_note(a, a->root_cause, &status),
                  .stop_signal = a->stop_signal, .attempt = a->attempt,
                  .max_restarts = a->opts->max_restarts, .exit_code = a->exit_code,
                  .hang_cause = fg_hang_cause(&a->hang, a->workers, a->nworkers),
                  .hang_what = a->hang.cause, .hang_killed = a->hang_stopped};
  fg_summary_print(&s);
}

static void after_drain(fg_agent *a) {
  uv_timer_stop(&a->drain_timer);
  if (a->rdzv) {
    fg_agent_after_drain_nodes(a);
    return;
  }
  int failed = a->root_cause != NULL || a->start_failed || a->hang_stopped;
  if (a->stop_signal)
    a->exit_code = 128 + a->stop_signal;
  else if (a->root_cause)
    a->exit_code = fg_agent_root_status(a);
  else if (a->hang_stopped)
    a->exit_code = FG_HANG_EXIT_STATUS;
  else
    a->exit_code = failed ? 1 : 0;
  char result[400];
  fg_agent_describe_attempt(a, result, sizeof result);
  fg_agent_record_attempt(a, result);

  if (failed && !a->stop_signal && !a->start_failed && a->attempt < a->opts->max_restarts) {
    fg_warn("attempt %d failed: %s; restarting the worker group (restart %d of %d)",
            a->attempt, result, a->attempt + 1, a->opts->max_restarts);
    fg_timeline_restart(&a->timeline, a->attempt + 1, result);
    /* The old workers are gone: their keys must not be read by the next attempt's. torch 1.x
     * keeps them under the attempt's prefix; torch >= 2.0's default group writes its keys
     * under default_pg/ with no attempt in the name (torchrun 2.6 keeps them, and a restarted
     * gloo group then reads the dead ranks' addresses: pytorch#135712). */
    char prefix[64];
    snprintf(prefix, sizeof prefix, "//worker/attempt_%d/", a->attempt);
    size_t erased = fg__server_erase_prefix(a->store, prefix);
    erased += fg__server_erase_prefix(a->store, "/default_pg/");
    fg_debug("erased %zu store keys of attempt %d", erased, a->attempt);
    fg_agent_close_workers(a, next_attempt);
    return;
  }
  if (failed || a->stop_signal) {
    fg_agent_print_summary(a);
  } else if (a->attempt > 0) {
    fg_info("all %d workers succeeded after %d restart%s", a->nworkers, a->attempt,
            a->attempt == 1 ? "" : "s");
  }
  fg_agent_close_workers(a, fg_agent_shutdown);
}

/* --- starting workers -------------------------------------------------------------------- */

static int console_gets(const fg_launch_opts *o, int local_rank, int std) {
  if (o->ranks_filter) {
    int listed = 0;
    for (int i = 0; i < o->nranks_filter; i++) listed |= o->ranks_filter[i] == local_rank;
    if (!listed) return 0;
  }
  return !(fg_std_for(&o->redirects, local_rank) & std) || (fg_std_for(&o->tee, local_rank) & std);
}

static int logs_get(const fg_launch_opts *o, int local_rank, int std) {
  return ((fg_std_for(&o->redirects, local_rank) | fg_std_for(&o->tee, local_rank)) & std) != 0;
}

static int spawn_worker(fg_agent *a, fg_worker *w, char *err, size_t errlen) {
  const fg_launch_opts *o = a->opts;
  const fg_program *prog = a->cfg->program;
  int r = w->local_rank;
  w->prefix = o->no_prefix ? strdup("")
                           : fg_expand_node_prefix(o->prefix_template, w->rank, r, o->role,
                                                   a->env.node_rank);
  w->error_file = fg_rundir_file(&a->rundir, a->attempt, r, "error.json");
  char *out_log = logs_get(o, r, FG_STD_OUT) ? fg_rundir_file(&a->rundir, a->attempt, r, "stdout.log") : NULL;
  char *err_log = logs_get(o, r, FG_STD_ERR) ? fg_rundir_file(&a->rundir, a->attempt, r, "stderr.log") : NULL;
  char **env = w->error_file ? fg_worker_env(&a->env, r, a->attempt, w->error_file) : NULL;
  if (env) fg_agent_pmix_env(a, r, &env);
  char **argv = fg_program_argv_for(prog, r);
  int rc;
  if (!w->prefix || !env || !argv || (logs_get(o, r, FG_STD_OUT) && !out_log) ||
      (logs_get(o, r, FG_STD_ERR) && !err_log)) {
    rc = fg__fail(err, errlen, -ENOMEM, "out of memory");
  } else {
    fg_worker_options wo = {
        .loop = &a->loop, .file = prog->path,
        .argv = argv, .env = env,
        .console_out = console_gets(o, r, FG_STD_OUT) ? 1 : -1,
        .console_err = console_gets(o, r, FG_STD_ERR) ? 2 : -1,
        .stdout_log = out_log, .stderr_log = err_log,
        .cpus = a->cpus ? &a->cpus[r] : NULL,
        .announce_fd = fg_watchdog_fd(&a->watchdog),
        .on_exit = on_worker_exit, .on_drained = on_worker_drained,
        .on_closed = on_worker_closed, .data = a,
    };
    rc = fg_worker_spawn(w, &wo, err, errlen);
  }
  free(out_log);
  free(err_log);
  free(env);
  fg_program_argv_free(prog, argv);
  return rc;
}

void fg_agent_start_attempt(fg_agent *a) {
  const fg_launch_opts *o = a->opts;
  char err[512];
  a->phase = PHASE_RUNNING;
  a->running = 0;
  if (fg_rundir_make_attempt(&a->rundir, a->attempt, o->nproc, err, sizeof err) != 0 ||
      !(a->workers = calloc((size_t)o->nproc, sizeof *a->workers))) {
    fg_error("%s", a->workers ? err : "out of memory");
    a->exit_code = 1;
    fg_agent_shutdown(a);
    return;
  }
  a->nworkers = o->nproc;
  fg_hang_reset(&a->hang); /* no slot may show the last attempt's operations */
  fg_agent_pmix_begin(a);
  a->hang.world_size = a->env.world_size ? a->env.world_size : a->env.nnodes * a->env.nproc;
  a->timeline.node = a->env.node_rank; /* the round's, which c10d may have changed */
  for (int i = 0; i < a->nworkers; i++) {
    fg_worker *w = &a->workers[i];
    w->local_rank = i;
    w->rank = fg_env_rank(&a->env, i);
    w->data = a;
    if (a->start_failed) {
      w->drained = 1; /* never started, nothing to wait for */
      continue;
    }
    if (spawn_worker(a, w, err, sizeof err) != 0) {
      fg_error("cannot start rank %d: %s", w->rank, err);
      a->start_failed = 1;
      continue;
    }
    a->running++;
    fg_watchdog_add(&a->watchdog, w->pid);
  }
  fg_debug("attempt %d: started %d workers", a->attempt, a->running);
  if (a->start_failed) fg_agent_begin_stop(a, SIGTERM);
}

