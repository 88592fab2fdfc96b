/* rdzv_policy.h - what an agent of several nodes does when its workers are gone.
 *
 * One pure function from what happened (this node's failure, a signal, news from the
 * keep-alives, restarts used) to what comes next, so the agent's loop only carries it out
 * and the rules can be tested alone:
 *
 *   a handled signal          leave the round ("left"); exit 128+signal
 *   success, nothing new      "done"; wait for the other members (exit barrier); exit 0
 *   a failure here, a lost    "restart" and form the next round, when restarts are left;
 *     node, a member          lost nodes and failures here use one up, re-forming for a
 *     restarting, nodes       restarting member or waiting nodes does not (as torchrun)
 *     waiting
 *   otherwise                 "failed": close the job, wait for the members to stop;
 *                             exit with the failing worker's status */
#ifndef FG_LAUNCHER_RDZV_POLICY_H
#define FG_LAUNCHER_RDZV_POLICY_H

#include "launcher/options.h"
#include "launcher/rdzv.h"

enum fg_rdzv_action { FG_RDZV_LEAVE, FG_RDZV_DONE, FG_RDZV_REFORM, FG_RDZV_FAIL };

typedef struct fg_rdzv_facts {
  const fg_launch_opts *opts;
  int stop_signal;             /* a handled signal stopped this node */
  const char *failure;         /* this node's failure ("rank 3 exited with code 1"), or NULL */
  int failure_status;          /* its exit status */
  int can_restart_failure;     /* 0: a failure no restart can mend (a worker did not start) */
  const fg_rdzv_news *news;    /* what the keep-alives said (kind QUIET: nothing) */
  const char *refused;         /* a restart was refused: why (a member finished); or NULL */
  int restarts;                /* used so far */
  int hosts_store;
} fg_rdzv_facts;

typedef struct fg_rdzv_decision {
  enum fg_rdzv_action action;
  const char *state;           /* the end record: "left", "done", "restart" or "failed" */
  char reason[512];
  int exit_code;
  int close_job;
  double wait_s;               /* for the other members to end; 0: do not wait */
  int costs_restart;
  int summary;                 /* print the workers' summary */
  char message[640];           /* for the log (warning for REFORM, error for FAIL), or "" */
} fg_rdzv_decision;

void fg_rdzv_decide(const fg_rdzv_facts *f, fg_rdzv_decision *d);

#endif
