/* agent_internal.h - the agent's state, shared by agent.c (setup, shutdown, timers),
 * agent_attempt.c (starting, watching and stopping a worker group) and agent_nodes.c
 * (rounds when there are several nodes). */
#ifndef FG_LAUNCHER_AGENT_INTERNAL_H
#define FG_LAUNCHER_AGENT_INTERNAL_H

#include <uv.h>

#include "common/log.h"
#include "launcher/agent.h"
#include "launcher/env.h"
#include "launcher/events.h"
#include "launcher/hang.h"
#include "launcher/rdzv_loop.h"
#include "launcher/rdzv_policy.h"
#include "launcher/rundir.h"
#include "launcher/summary.h"
#include "launcher/trace.h"
#include "launcher/watchdog.h"
#include "launcher/worker.h"
#include "store/server.h"

/* How long a SIGKILLed worker may take to be reaped before it is reported and left
 * behind, and how long output may trail the last exit (a grandchild that escaped its
 * process group can hold a pipe open forever). */
enum { REAP_TIMEOUT_MS = 5000, DRAIN_TIMEOUT_MS = 3000 };

enum phase { PHASE_RUNNING, PHASE_STOPPING, PHASE_DRAINING, PHASE_CLOSING, PHASE_JOINING,
             PHASE_DONE };

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
  uv_timer_t grace_timer, reap_timer, drain_timer, monitor_timer, hang_timer;
  int timers_open;
  fg_hang hang;          /* the progress file and hang reports */
  fg_timeline timeline;  /* --trace */
  fg_events events;      /* --event_log_handler */
  int hang_stopped;      /* --hang_action kill stopped this attempt */
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

  /* several nodes */
  fg_rdzv_loop *rdzv; /* NULL on one node */
  int restarts;       /* restarts used against --max_restarts */
  int next_round;
  fg_rdzv_news news;  /* why this round is being left; kind QUIET while it is not */
  fg_rdzv_decision decision; /* what follows the round */

  cpu_set_t *cpus; /* --numa_binding: each local rank's CPUs; NULL: off */

  struct fg_agent_pmix *pmix; /* the PMIx server for MPI programs; NULL when off */
};

/* agent_attempt.c */
void fg_agent_start_attempt(fg_agent *a);
void fg_agent_begin_stop(fg_agent *a, int sig);
void fg_agent_attempt_finished(fg_agent *a);
void fg_agent_close_workers(fg_agent *a, fg_agent_step next);
void fg_agent_describe_attempt(const fg_agent *a, char *out, size_t len);
void fg_agent_record_attempt(fg_agent *a, const char *result);
fg_events_agent_state fg_agent_events_state(const fg_agent *a);
void fg_agent_print_summary(fg_agent *a);
void fg_agent_on_signal(uv_signal_t *h, int sig);

/* agent_nodes.c */
void fg_agent_join_round(fg_agent *a);
void fg_agent_on_rdzv_news(void *data, const fg_rdzv_news *news);
void fg_agent_after_drain_nodes(fg_agent *a);

/* agent.c */
void fg_agent_shutdown(fg_agent *a);

/* The exit status the attempt's root cause stands for: its own, or MPI_Abort's code. */
int fg_agent_root_status(const fg_agent *a);

/* agent_pmix.c: the PMIx server (pmix.h), when the build has libpmix. setup returns 0, or
 * fgrun's exit status (--pmix on and no server); env puts the rank's PMIx variables into
 * *env (fg_worker_env's, replaced: one allocation still; out of memory: freed, NULL); failed: the worker's exit is a
 * failure because of what it told the server (MPI_Abort; MPI_Init without MPI_Finalize);
 * note: why, for the root cause (and the exit status that stands for), or NULL. */
#ifdef FG_HAVE_PMIX
int fg_agent_pmix_setup(fg_agent *a);
void fg_agent_pmix_begin(fg_agent *a);
int fg_agent_pmix_env(fg_agent *a, int local_rank, char ***env);
int fg_agent_pmix_failed(fg_agent *a, const fg_worker *w);
const char *fg_agent_pmix_note(const fg_agent *a, const fg_worker *w, int *status);
void fg_agent_pmix_end(fg_agent *a);
void fg_agent_pmix_close(fg_agent *a);
#else
static inline int fg_agent_pmix_setup(fg_agent *a) {
  if (a->opts->pmix != FG_PMIX_ON) return 0;
  fg_error("error: --pmix on: this fgrun was built without libpmix (apt-get install "
           "libpmix-dev and rebuild)");
  return 2;
}
static inline void fg_agent_pmix_begin(fg_agent *a) { (void)a; }
static inline int fg_agent_pmix_env(fg_agent *a, int local_rank, char ***env) {
  (void)a, (void)local_rank, (void)env;
  return 0;
}
static inline int fg_agent_pmix_failed(fg_agent *a, const fg_worker *w) {
  (void)a, (void)w;
  return 0;
}
static inline const char *fg_agent_pmix_note(const fg_agent *a, const fg_worker *w,
                                             int *status) {
  (void)a, (void)w, (void)status;
  return NULL;
}
static inline void fg_agent_pmix_end(fg_agent *a) { (void)a; }
static inline void fg_agent_pmix_close(fg_agent *a) { (void)a; }
#endif

#endif
