/* agent.h - the agent: hosts the store, runs the worker group, restarts or stops it.
 *
 * One libuv loop drives everything: process exits (SIGCHLD), output pipes, signals and
 * the teardown timers. A run goes through attempts; each attempt is
 *
 *   JOINING   the agent waits for its rendezvous round (agent_nodes.c); the round starts
 *             the attempt
 *   RUNNING   workers run; the first to fail, or a handled signal, starts STOPPING
 *   STOPPING  the others got SIGTERM (or the signal); SIGKILL after --term_grace, and
 *             given up on a few seconds after that
 *   DRAINING  every worker is gone and its group SIGKILLed; output pipes finish
 *   CLOSING   handles close; then the next attempt joins its round, or fgrun shuts down
 *   DONE      shutting down: signal watchers and timers close, the loop ends. */
#ifndef FG_LAUNCHER_AGENT_H
#define FG_LAUNCHER_AGENT_H

#include "launcher/options.h"
#include "launcher/program.h"

typedef struct fg_agent_config {
  const fg_launch_opts *opts; /* nproc resolved */
  const fg_program *program;
  const char *stack_helper;   /* fgrun-stack for hang reports' stacks; NULL: none */
  const char *pyhook_dir;     /* fgrun's Python hook (with --hang_timeout); NULL: none */
} fg_agent_config;

/* Runs the job to its end and returns fgrun's exit status: 0, the root cause's status,
 * 128+signal, 2 when the store cannot listen, 1 for other setup failures. */
int fg_agent_run(const fg_agent_config *cfg);

#endif
