/* agent.c - the agent's event loop: attempts, failure handling, teardown, restarts. */
#include "launcher/agent.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/log.h"
#include "common/util.h"
#include "fg/fg.h"
#include "launcher/env.h"
#include "launcher/rundir.h"
#include "launcher/summary.h"
#include "launcher/watchdog.h"
#include "launcher/worker.h"
#include "store/server.h"

/* How long a SIGKILLed worker may take to be reaped before it is reported and left
 * behind, and how long output may trail the last exit (a grandchild that escaped its
 * process group can hold a pipe open forever). */
enum { REAP_TIMEOUT_MS = 5000, DRAIN_TIMEOUT_MS = 3000 };

enum phase { PHASE_RUNNING, PHASE_STOPPING, PHASE_DRAINING, PHASE_CLOSING, PHASE_DONE };

typedef struct fg_agent fg_agent;
typedef void (*fg_agent_step)(fg_agent *a);

struct fg_agent {
  uv_loop_t loop;
  const fg_agent_config *cfg;
  const fg_launch_opts *opts;
  fg_env_spec env;
  fg_server *store;
  fg_rundir rundir;
  fg_watchdog watchdog;
  int watchdog_started;
  uv_signal_t signals[FG_MAX_SIGNALS];
  int nsignals;
  uv_timer_t grace_timer, reap_timer, drain_timer, monitor_timer;
  int timers_open;
  fg_worker *workers; /* the current attempt's */
  int nworkers;
  int running; /* started and neither reaped nor given up on */
  int attempt;
  enum phase phase;
  fg_worker *root_cause;
  int stop_signal;  /* a handled signal arrived: no restart, exit 128+signal */
  int start_failed; /* a worker could not be started: no restart */
  int exit_code;
  int closing;      /* workers whose handles are still closing */
  fg_agent_step after_close;
};

static void begin_stop(fg_agent *a, int sig);
static void attempt_finished(fg_agent *a);
static void start_attempt(fg_agent *a);
static void shutdown_agent(fg_agent *a);

static int worker_failed(const fg_worker *w) {
  return w->state == FG_WORKER_EXITED && (w->exit_code != 0 || w->term_signal != 0);
}

static void signal_running(fg_agent *a, int sig) {
  for (int i = 0; i < a->nworkers; i++)
    if (a->workers[i].state == FG_WORKER_RUNNING) fg_worker_kill_group(&a->workers[i], sig);
}

/* --- worker events ----------------------------------------------------------------------- */

static void on_worker_exit(fg_worker *w) {
  fg_agent *a = w->data;
  a->running--;
  if (a->phase == PHASE_RUNNING && worker_failed(w)) {
    a->root_cause = w;
    begin_stop(a, SIGTERM);
  } else if (a->running == 0 && (a->phase == PHASE_RUNNING || a->phase == PHASE_STOPPING)) {
    attempt_finished(a);
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
  attempt_finished(a);
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

/* SIGTERM (or the signal fgrun got) to every running worker's group, SIGKILL later. */
static void begin_stop(fg_agent *a, int sig) {
  a->phase = PHASE_STOPPING;
  signal_running(a, sig);
  if (a->running == 0) {
    attempt_finished(a);
    return;
  }
  uv_timer_start(&a->grace_timer, on_grace_timeout, (uint64_t)(a->opts->term_grace * 1000), 0);
}

static void on_signal(uv_signal_t *h, int sig) {
  fg_agent *a = h->data;
  switch (a->phase) {
    case PHASE_RUNNING:
      a->stop_signal = sig;
      fg_warn("got SIG%s: passing it to the workers and stopping", fg_signame(sig));
      begin_stop(a, sig);
      break;
    case PHASE_STOPPING:
      if (!a->stop_signal) {
        a->stop_signal = sig;
        signal_running(a, sig);
      } else {
        fg_warn("got SIG%s again: killing the workers now", fg_signame(sig));
        kill_now(a);
      }
      break;
    default:
      if (!a->stop_signal) a->stop_signal = sig; /* too late to pass on, but no restart */
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
static void attempt_finished(fg_agent *a) {
  uv_timer_stop(&a->grace_timer);
  uv_timer_stop(&a->reap_timer);
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

static void close_workers(fg_agent *a, fg_agent_step next) {
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
    fg_warn("stopped by SIG%s before restarting; exit status %d", fg_signame(a->stop_signal),
            a->exit_code);
    shutdown_agent(a);
    return;
  }
  a->attempt++;
  a->root_cause = NULL;
  start_attempt(a);
}

static void after_drain(fg_agent *a) {
  uv_timer_stop(&a->drain_timer);
  int failed = a->root_cause != NULL || a->start_failed;
  if (a->stop_signal)
    a->exit_code = 128 + a->stop_signal;
  else if (a->root_cause)
    a->exit_code = fg_worker_exit_status(a->root_cause);
  else
    a->exit_code = failed ? 1 : 0;

  if (failed && !a->stop_signal && !a->start_failed && a->attempt < a->opts->max_restarts) {
    char end[128];
    fg_describe_end(a->root_cause, end, sizeof end);
    fg_warn("attempt %d failed: rank %d %s; restarting the worker group (restart %d of %d)",
            a->attempt, a->root_cause->rank, end, a->attempt + 1, a->opts->max_restarts);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "//worker/attempt_%d/", a->attempt);
    size_t erased = fg_server_erase_prefix(a->store, prefix);
    fg_debug("erased %zu store keys under %s", erased, prefix);
    close_workers(a, next_attempt);
    return;
  }
  if (failed || a->stop_signal) {
    fg_summary s = {.workers = a->workers, .nworkers = a->nworkers, .root_cause = a->root_cause,
                    .stop_signal = a->stop_signal, .attempt = a->attempt,
                    .max_restarts = a->opts->max_restarts, .exit_code = a->exit_code};
    fg_summary_print(&s);
  } else if (a->attempt > 0) {
    fg_info("all %d workers succeeded after %d restart%s", a->nworkers, a->attempt,
            a->attempt == 1 ? "" : "s");
  }
  close_workers(a, shutdown_agent);
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
  w->prefix = o->no_prefix ? strdup("") : fg_expand_prefix(o->prefix_template, w->rank, r, o->role);
  w->error_file = fg_rundir_file(&a->rundir, a->attempt, r, "error.json");
  char *out_log = logs_get(o, r, FG_STD_OUT) ? fg_rundir_file(&a->rundir, a->attempt, r, "stdout.log") : NULL;
  char *err_log = logs_get(o, r, FG_STD_ERR) ? fg_rundir_file(&a->rundir, a->attempt, r, "stderr.log") : NULL;
  char **env = w->error_file ? fg_worker_env(&a->env, r, a->attempt, w->error_file) : NULL;
  char **argv = fg_program_argv_for(prog, r);
  int rc;
  if (!w->prefix || !env || !argv || (logs_get(o, r, FG_STD_OUT) && !out_log) ||
      (logs_get(o, r, FG_STD_ERR) && !err_log)) {
    rc = fg_fail(err, errlen, -ENOMEM, "out of memory");
  } else {
    fg_worker_options wo = {
        .loop = &a->loop, .exec_helper = a->cfg->exec_helper, .file = prog->path,
        .argv = argv, .env = env,
        .console_out = console_gets(o, r, FG_STD_OUT) ? 1 : -1,
        .console_err = console_gets(o, r, FG_STD_ERR) ? 2 : -1,
        .stdout_log = out_log, .stderr_log = err_log,
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

static void start_attempt(fg_agent *a) {
  const fg_launch_opts *o = a->opts;
  char err[512];
  a->phase = PHASE_RUNNING;
  a->running = 0;
  if (fg_rundir_make_attempt(&a->rundir, a->attempt, o->nproc, err, sizeof err) != 0 ||
      !(a->workers = calloc((size_t)o->nproc, sizeof *a->workers))) {
    fg_error("%s", a->workers ? err : "out of memory");
    a->exit_code = 1;
    shutdown_agent(a);
    return;
  }
  a->nworkers = o->nproc;
  for (int i = 0; i < a->nworkers; i++) {
    fg_worker *w = &a->workers[i];
    w->local_rank = i;
    w->rank = o->node_rank * o->nproc + i;
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
  if (a->start_failed) begin_stop(a, SIGTERM);
}

/* --- setup and shutdown -------------------------------------------------------------------- */

static void on_monitor(uv_timer_t *t) {
  fg_agent *a = t->data;
  if (fg_log_get_level() < FG_LOG_DEBUG || !a->store) return;
  fg_server_stats st;
  fg_server_get_stats(a->store, &st);
  fg_debug("attempt %d: %d of %d workers running; store: %llu keys, %llu connections",
           a->attempt, a->running, a->nworkers, (unsigned long long)st.keys,
           (unsigned long long)st.connections);
}

static void shutdown_agent(fg_agent *a) {
  a->phase = PHASE_DONE;
  for (int i = 0; i < a->nsignals; i++) uv_close((uv_handle_t *)&a->signals[i], NULL);
  a->nsignals = 0;
  if (a->timers_open) {
    uv_close((uv_handle_t *)&a->grace_timer, NULL);
    uv_close((uv_handle_t *)&a->reap_timer, NULL);
    uv_close((uv_handle_t *)&a->drain_timer, NULL);
    uv_close((uv_handle_t *)&a->monitor_timer, NULL);
    a->timers_open = 0;
  }
  if (a->store) fg_server_close(a->store);
  a->store = NULL;
  if (a->watchdog_started) fg_watchdog_stop(&a->watchdog);
  a->watchdog_started = 0;
}

static int start_store(fg_agent *a) {
  const fg_launch_opts *o = a->opts;
  fg_server_config sc;
  fg_server_config_init(&sc);
  sc.host = o->store_host;
  sc.port = o->store_port;
  char err[512];
  int rc = fg_server_start(&a->loop, &sc, &a->store, err, sizeof err);
  if (rc == 0) return 0;
  a->store = NULL;
  int v6 = strchr(o->store_host, ':') != NULL;
  if (rc == -EADDRINUSE)
    fg_error("error: cannot listen on %s%s%s:%d: address already in use (use --standalone or "
             "another --master_port)", v6 ? "[" : "", o->store_host, v6 ? "]" : "", o->store_port);
  else if (err[0])
    fg_error("error: %s", err); /* the server's message names the address */
  else
    fg_error("error: cannot listen on %s%s%s:%d: %s", v6 ? "[" : "", o->store_host, v6 ? "]" : "",
             o->store_port, fg_strerror(rc));
  return rc;
}

static int any_logs(const fg_std_spec *s) {
  if (s->nmap == 0) return s->all != 0;
  for (int i = 0; i < s->nmap; i++)
    if (s->map[i].std) return 1;
  return 0;
}

static int setup(fg_agent *a) {
  const fg_launch_opts *o = a->opts;
  char err[512];
  if (start_store(a) != 0) return 2;
  a->env.master_port = fg_server_port(a->store);

  int logs = any_logs(&o->redirects) || any_logs(&o->tee);
  if (fg_rundir_create(&a->rundir, o->log_dir, o->rdzv_id, logs, err, sizeof err) != 0) {
    fg_error("%s", err);
    return 1;
  }
  if (logs || o->log_dir) fg_info("worker logs and error files go to %s", a->rundir.path);

  if (fg_watchdog_start(&a->watchdog, &a->loop, a->cfg->exec_helper, err, sizeof err) != 0) {
    fg_error("%s", err);
    return 1;
  }
  a->watchdog_started = 1;

  uv_timer_t *timers[] = {&a->grace_timer, &a->reap_timer, &a->drain_timer, &a->monitor_timer};
  for (size_t i = 0; i < FG_ARRAY_LEN(timers); i++) {
    uv_timer_init(&a->loop, timers[i]);
    timers[i]->data = a;
  }
  a->timers_open = 1;
  uint64_t every = (uint64_t)(o->monitor_interval * 1000);
  uv_timer_start(&a->monitor_timer, on_monitor, every ? every : 1, every ? every : 1);
  uv_unref((uv_handle_t *)&a->monitor_timer);

  for (int i = 0; i < o->nsignals; i++) {
    uv_signal_t *s = &a->signals[a->nsignals];
    uv_signal_init(&a->loop, s);
    s->data = a;
    a->nsignals++;
    int rc = uv_signal_start(s, on_signal, o->signals[i]);
    if (rc != 0) {
      fg_error("cannot handle SIG%s: %s", fg_signame(o->signals[i]), uv_strerror(rc));
      return 1;
    }
  }
  return 0;
}

int fg_agent_run(const fg_agent_config *cfg) {
  const fg_launch_opts *o = cfg->opts;
  fg_agent *a = calloc(1, sizeof *a);
  if (!a) {
    fg_error("out of memory");
    return 1;
  }
  a->cfg = cfg;
  a->opts = o;
  a->env = (fg_env_spec){.role = o->role, .nproc = o->nproc, .node_rank = o->node_rank,
                         .nnodes = o->nnodes_max, .master_addr = o->store_host,
                         .max_restarts = o->max_restarts, .run_id = o->rdzv_id};
  int rc = uv_loop_init(&a->loop);
  if (rc != 0) {
    fg_error("cannot start the event loop: %s", uv_strerror(rc));
    free(a);
    return 1;
  }
  fg_env_set_job_defaults(o->nproc);
  int status = setup(a);
  if (status == 0)
    start_attempt(a);
  else
    shutdown_agent(a);
  uv_run(&a->loop, UV_RUN_DEFAULT);
  if (status == 0) status = a->exit_code;
  fg_rundir_finish(&a->rundir);
  fg_output_cleanup();
  if (uv_loop_close(&a->loop) != 0) fg_debug("event loop closed with handles still open");
  free(a);
  return status;
}
