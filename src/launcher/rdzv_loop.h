/* rdzv_loop.h - the rendezvous on the agent's libuv loop.
 *
 * The protocol (rdzv.h) is written on the blocking store client. Each step of it (join a
 * round, end this agent's part, one keep-alive) runs as a uv_work_t on libuv's thread
 * pool and reports back on the loop, so the loop never blocks: worker exits, output,
 * signals and, on the host, the store itself are served while a round forms or a
 * keep-alive waits on the network. One step at a time; a keep-alive timer queues a
 * keep-alive step every keep_alive_interval when no other step is running (the long
 * steps send their own keep-alives). */
#ifndef FG_LAUNCHER_RDZV_LOOP_H
#define FG_LAUNCHER_RDZV_LOOP_H

#include <uv.h>

#include "launcher/env.h"
#include "launcher/options.h"
#include "launcher/rdzv.h"
#include "store/server.h"

typedef struct fg_rdzv_loop fg_rdzv_loop;
typedef void (*fg_rdzv_step_cb)(void *data, int rc, const char *err);
typedef void (*fg_rdzv_news_cb)(void *data, const fg_rdzv_news *news);

/* Several nodes: whether this agent hosts the store. Static: node 0 does. c10d: the agent
 * that can bind --rdzv_endpoint does (is_host in --rdzv_conf decides instead when given);
 * an endpoint that is not an address of this host, or is taken (another agent here, or
 * an fgstore), is joined as a client. *out gets the server, or NULL. Returns 0, or 2 after
 * printing why the store cannot listen. */
int fg_rdzv_host_store(uv_loop_t *loop, const fg_launch_opts *o, fg_server **out);

/* Starts the keep-alive timer; nothing touches the network until the first join. */
int fg_rdzv_loop_start(fg_rdzv_loop **out, uv_loop_t *loop, const fg_launch_opts *o,
                       int hosts_store, fg_rdzv_news_cb on_news, void *data);
/* Joins a round (the first open one >= first_round); cb gets 0 and the round is
 * fg_rdzv_loop_round's until the next join. */
void fg_rdzv_loop_join(fg_rdzv_loop *rl, int first_round, fg_rdzv_step_cb cb);
const fg_rdzv_round *fg_rdzv_loop_round(const fg_rdzv_loop *rl);
/* Puts a round's node rank, node count and ranks into the workers' environment. */
void fg_rdzv_round_env(const fg_rdzv_round *r, fg_env_spec *env);
/* fg_rdzv_end, then (wait_s > 0) fg_rdzv_wait_ended. */
void fg_rdzv_loop_end(fg_rdzv_loop *rl, const char *state, int status, const char *reason,
                      int close_job, double wait_s, fg_rdzv_step_cb cb);
/* Makes a join or wait in progress, and later ones, give up (-ECANCELED). */
void fg_rdzv_loop_cancel(fg_rdzv_loop *rl);
/* Stops the timer; no callback follows. Memory goes once a running step has finished. */
void fg_rdzv_loop_close(fg_rdzv_loop *rl);

#endif
