/* agent.c - the agent: setup (store, run directory, watchdog, timers, signals), the
 * event loop, and shutdown. Attempts are in agent_attempt.c, rounds in agent_nodes.c. */
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
#include "launcher/numa.h"
#include "launcher/spawn.h"

static void on_monitor(uv_timer_t *t) {
  fg_agent *a = t->data;
  if (fg__log_get_level() < FG_LOG_DEBUG || !a->store) return;
  fg_server_stats st;
  fg__server_get_stats(a->store, &st);
  fg_debug("attempt %d: %d of %d workers running; store: %llu keys, %llu connections",
           a->attempt, a->running, a->nworkers, (unsigned long long)st.keys,
           (unsigned long long)st.connections);
}

/* A hang report is complete, stacks included: with --hang_action kill stop the attempt as
 * if a rank had failed (after the stacks: a rank killed first could not be read). */
static void on_hang_reported(void *data) {
  fg_agent *a = data;
  if (a->phase != PHASE_RUNNING || !a->opts->hang_kill) return;
  fg_error("error: stopping attempt %d: hang (--hang_timeout %g s, --hang_action kill)",
           a->attempt, a->opts->hang_timeout);
  a->hang_stopped = 1;
  fg_agent_begin_stop(a, SIGTERM);
}

/* Has a rank waited in one operation for --hang_timeout? Then say who holds whom up. */
static void on_hang_timer(uv_timer_t *t) {
  fg_agent *a = t->data;
  if (a->phase == PHASE_RUNNING) fg_hang_tick(&a->hang, a->workers, a->nworkers);
}

void fg_agent_shutdown(fg_agent *a) {
  a->phase = PHASE_DONE;
  for (int i = 0; i < a->nsignals; i++) uv_close((uv_handle_t *)&a->signals[i], NULL);
  a->nsignals = 0;
  if (a->timers_open) {
    uv_close((uv_handle_t *)&a->grace_timer, NULL);
    uv_close((uv_handle_t *)&a->reap_timer, NULL);
    uv_close((uv_handle_t *)&a->drain_timer, NULL);
    uv_close((uv_handle_t *)&a->monitor_timer, NULL);
    uv_close((uv_handle_t *)&a->hang_timer, NULL);
    a->timers_open = 0;
  }
  fg_hang_stop(&a->hang);
  if (a->rdzv) fg_rdzv_loop_close(a->rdzv);
  a->rdzv = NULL;
  if (a->store) fg__server_close(a->store);
  a->store = NULL;
  if (a->watchdog_started) fg_watchdog_stop(&a->watchdog);
  a->watchdog_started = 0;
  fg_agent_pmix_close(a);
}

static int start_store(fg_agent *a) {
  const fg_launch_opts *o = a->opts;
  fg_server_config sc;
  fg__server_config_init(&sc);
  sc.host = o->store_host;
  sc.port = o->store_port;
  sc.token = o->store_token;
  char err[512];
  int rc = fg__server_start(&a->loop, &sc, &a->store, err, sizeof err);
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

/* --numa_binding: every local rank's CPUs, said once; a plan that cannot be met is a usage
 * error before anything starts. */
static int plan_cpus(fg_agent *a) {
  const fg_launch_opts *o = a->opts;
  cpu_set_t allowed;
  char err[512];
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) CPU_ZERO(&allowed);
  if (!(a->cpus = calloc((size_t)o->nproc, sizeof *a->cpus))) {
    fg_error("out of memory");
    return 1;
  }
  if (fg_numa_plan(o->numa_binding, o->nproc, "", &allowed, a->cpus, err, sizeof err) != 0) {
    fg_error("error: %s", err);
    return 2;
  }
  for (int i = 0; i < o->nproc; i++) {
    char list[256];
    fg_numa_format(&a->cpus[i], list, sizeof list);
    fg_info("--numa_binding %s: local rank %d on CPUs %s", fg_numa_mode_name(o->numa_binding),
            i, list);
  }
  return 0;
}

static int setup(fg_agent *a) {
  const fg_launch_opts *o = a->opts;
  char err[512];
  if (o->nnodes_max > 1) {
    if (fg_rdzv_host_store(&a->loop, o, &a->store) != 0) return 2;
    a->env.master_port = o->store_port;
    if (fg_rdzv_loop_start(&a->rdzv, &a->loop, o, a->store != NULL, fg_agent_on_rdzv_news, a) != 0) {
      fg_error("out of memory");
      return 1;
    }
  } else {
    if (start_store(a) != 0) return 2;
    a->env.master_port = fg__server_port(a->store);
  }

  if (o->numa_binding != FG_NUMA_OFF) {
    int rc = plan_cpus(a);
    if (rc != 0) return rc;
  }
  int logs = any_logs(&o->redirects) || any_logs(&o->tee);
  if (fg_rundir_create(&a->rundir, o->log_dir, o->rdzv_id, logs, err, sizeof err) != 0) {
    fg_error("error: %s", err);
    return o->log_dir ? 2 : 1; /* a --log_dir that cannot be written is a usage error */
  }
  if (o->trace &&
      fg_timeline_open(&a->timeline, o->trace, o->node_rank, o->nproc, err, sizeof err) != 0) {
    fg_error("error: %s", err);
    return 2;
  }
  a->env.trace = fg_timeline_on(&a->timeline);
  if (fg_hang_open(&a->hang, o->nproc, o->hang_timeout, err, sizeof err) != 0)
    fg_warn("no hang reports: %s", err);
  a->env.progress_file = a->hang.path;
  fg_hang_set_report(&a->hang, &a->loop, a->cfg->stack_helper,
                     (enum fg_hang_stacks)o->hang_stacks, FG_HANG_PY_SIGNAL, on_hang_reported, a);
  if (o->hang_timeout > 0) {
    a->env.pyhook_dir = a->cfg->pyhook_dir;
    a->env.pystack_signal = FG_HANG_PY_SIGNAL;
  }
  if (logs || o->log_dir) fg_info("worker logs and error files go to %s", a->rundir.path);

  /* Before the signals are noted: whatever handlers libpmix installs, children reset too. */
  int rc = fg_agent_pmix_setup(a);
  if (rc != 0) return rc;

  uv_timer_t *timers[] = {&a->grace_timer, &a->reap_timer, &a->drain_timer, &a->monitor_timer,
                          &a->hang_timer};
  for (size_t i = 0; i < FG_ARRAY_LEN(timers); i++) {
    uv_timer_init(&a->loop, timers[i]);
    timers[i]->data = a;
  }
  a->timers_open = 1;
  uint64_t every = (uint64_t)(o->monitor_interval * 1000);
  uv_timer_start(&a->monitor_timer, on_monitor, every ? every : 1, every ? every : 1);
  uv_unref((uv_handle_t *)&a->monitor_timer);
  if (o->hang_timeout > 0 && a->hang.map) {
    uint64_t period = fg_hang_period_ms(&a->hang);
    uv_timer_start(&a->hang_timer, on_hang_timer, period, period);
    uv_unref((uv_handle_t *)&a->hang_timer);
  }

  for (int i = 0; i < o->nsignals; i++) {
    uv_signal_t *s = &a->signals[a->nsignals];
    uv_signal_init(&a->loop, s);
    s->data = a;
    a->nsignals++;
    rc = uv_signal_start(s, fg_agent_on_signal, o->signals[i]);
    if (rc != 0) {
      fg_error("cannot handle SIG%s: %s", fg__signame(o->signals[i]), uv_strerror(rc));
      return 1;
    }
  }
  /* Every handler is in place: what each child resets (spawn.h), noted once. */
  fg_spawn_note_signals();
  if (fg_watchdog_start(&a->watchdog, &a->loop, err, sizeof err) != 0) {
    fg_error("%s", err);
    return 1;
  }
  a->watchdog_started = 1;
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
  const char *entry = strrchr(cfg->program->path, '/');
  a->events = (fg_events){.on = o->event_log_console, .run_id = o->rdzv_id, .role = o->role,
                          .backend = o->rdzv_backend, .entry_point = entry ? entry + 1 : cfg->program->path,
                          .max_restarts = o->max_restarts, .start_ns = fg__now_ns()};
  fg_env_set_job_defaults(o->nproc);
  int status = setup(a);
  if (status != 0)
    fg_agent_shutdown(a);
  else if (a->rdzv)
    fg_agent_join_round(a);
  else
    fg_agent_start_attempt(a);
  uv_run(&a->loop, UV_RUN_DEFAULT);
  if (status == 0) status = a->exit_code;
  fg_events_agent_state st = fg_agent_events_state(a);
  fg_events_job(&a->events, &st, status);
  char err[512];
  if (fg_timeline_on(&a->timeline) && status != 2) {
    if (fg_timeline_finish(&a->timeline, &a->rundir, err, sizeof err) == 0)
      fg_info("timeline written to %s", o->trace);
    else
      fg_error("error: %s", err);
  }
  fg_timeline_close(&a->timeline);
  fg_hang_close(&a->hang);
  fg_rundir_finish(&a->rundir);
  fg_output_cleanup();
  free(a->cpus);
  if (uv_loop_close(&a->loop) != 0) fg_debug("event loop closed with handles still open");
  free(a);
  return status;
}
