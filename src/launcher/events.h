/* events.h - --event_log_handler console: torchelastic's events, one JSON line each on
 * stderr, in the shape of torch.distributed.elastic.events.Event:
 *
 *   {"name": "torchelastic.worker.status.FAILED", "source": "WORKER", "timestamp": MS,
 *    "metadata": {"run_id", "global_rank", "group_rank", "worker_id", "role", "hostname",
 *                 "state", "total_run_time", "rdzv_backend", "raw_error", "metadata",
 *                 "agent_restarts", "duration_ms"}}
 *
 * A WORKER event per worker when an attempt ends (SUCCEEDED, FAILED for the ranks that
 * failed of themselves, TERMINATED for those fgrun stopped), and one AGENT event when the
 * job ends (SUCCEEDED or FAILED). With the null handler (the default) nothing is written. */
#ifndef FG_LAUNCHER_EVENTS_H
#define FG_LAUNCHER_EVENTS_H

#include <stdint.h>

#include "launcher/worker.h"

typedef struct fg_events {
  int on;
  const char *run_id, *role, *backend, *entry_point;
  int max_restarts;
  uint64_t start_ns;
  char why[400]; /* how the last attempt ended, for the job's event */
} fg_events;

/* What every event of this job says about the agent, and how many restarts are left. */
typedef struct fg_events_agent_state {
  int group_rank, group_world_size;
  int restarts; /* used so far */
} fg_events_agent_state;

/* The workers of an attempt that has ended; root: the rank that failed first, or NULL;
 * failed: whether the attempt failed (a signal to fgrun, a hang, a worker that could not
 * start). */
void fg_events_attempt(const fg_events *e, const fg_events_agent_state *st, const fg_worker *ws,
                       int n, const fg_worker *root, int failed, int role_world_size);
/* The job is over with exit status `status` (a failure's raw_error: e->why). */
void fg_events_job(const fg_events *e, const fg_events_agent_state *st, int status);

#endif
