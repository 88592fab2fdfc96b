/* rdzv.h - how the agents of several nodes meet: rounds on the store.
 *
 * Every agent (one per node) joins a round; a round closes with its members fixed, they
 * get node ranks and global ranks, run their workers, and keep each other alive with
 * keep-alives. When a member fails, dies, leaves, or a new node waits, the members form
 * the next round. The static rendezvous is the special case MIN = MAX = N whose node ranks
 * come from --node_rank.
 *
 * Keys live under the store scope "fgrun.rdzv/<run id>" (as seen by the store client):
 *
 *   agents          ADD counter: each agent's id
 *   beat.<id>       ADD counter: the agent's keep-alives
 *   latest          the last round that closed (a hint for agents that arrive late)
 *   closed          "<status> <reason>": the job is over; nobody starts another round
 *   <r>/joined      ADD counter: arrival slots in round r
 *   <r>/node.<slot> who arrived in that slot: id, pid, nproc, role, address, ...
 *   <r>/size        how many slots the round kept (compare-and-set, first writer wins)
 *   <r>/ended       ADD counter of end records; <r>/end.<node rank> "<state> <status> ..."
 *
 * Everything here blocks (store calls, polling with short sleeps); the agent calls it from
 * a libuv work thread, one call at a time (rdzv_loop.c). fg_rdzv_cancel is the exception:
 * any thread may call it to make a waiting call return -ECANCELED within a poll. */
#ifndef FG_LAUNCHER_RDZV_H
#define FG_LAUNCHER_RDZV_H

#include <stddef.h>
#include <stdint.h>

#include "launcher/options.h"

#define FG_RDZV_NAME_MAX 64

typedef struct fg_rdzv_node {
  int id;                         /* the agent's id in this job */
  int pid;
  int nproc;                      /* its local world size */
  int node_rank;                  /* static: its --node_rank; c10d: assigned at close */
  char role[FG_RDZV_NAME_MAX];
  char addr[FG_RDZV_NAME_MAX];    /* --local_addr, else the address it reaches the store from */
  char host[FG_RDZV_NAME_MAX];    /* its host name, for messages */
} fg_rdzv_node;

typedef struct fg_rdzv_round {
  int round;
  int nnodes;
  int node_rank;                  /* this agent's */
  int rank_base, world_size;      /* global ranks [rank_base, rank_base + nproc) */
  int role_rank_base, role_world_size;
  fg_rdzv_node *nodes;            /* by node rank, owned */
} fg_rdzv_round;

typedef struct fg_rdzv_settings {
  const char *host;               /* the store */
  int port;
  const char *run_id;
  int min_nodes, max_nodes;
  int static_rank;                /* static rendezvous: --node_rank; c10d: -1 */
  int nproc;
  const char *role;
  int hosts_store;                /* this agent's store: it leaves last */
  const char *local_addr;         /* --local_addr: the address to advertise; NULL: found */
  fg_rdzv_conf conf;
} fg_rdzv_settings;

/* What a keep-alive found, most urgent first. */
enum fg_rdzv_news_kind {
  FG_RDZV_QUIET = 0,
  FG_RDZV_CLOSED,     /* the job is over: a node failed for good (status != 0) or all done */
  FG_RDZV_STORE_LOST, /* the store does not answer */
  FG_RDZV_PEER_LOST,  /* a member sent no keep-alive in time, or left on a signal */
  FG_RDZV_RESTARTING, /* a member's workers failed and it is forming the next round */
  FG_RDZV_WAITING,    /* nodes wait to join and the round has room for them */
};

typedef struct fg_rdzv_news {
  enum fg_rdzv_news_kind kind;
  int node_rank;                  /* the member concerned, or -1 */
  int status;                     /* FG_RDZV_CLOSED: the exit status the job ended with */
  char text[512];                 /* one line for the log */
} fg_rdzv_news;

typedef struct fg_rdzv fg_rdzv;

/* No I/O: the first fg_rdzv_join connects. Returns 0 or -ENOMEM. */
int fg_rdzv_new(fg_rdzv **out, const fg_rdzv_settings *s);
void fg_rdzv_free(fg_rdzv *rz);
/* Makes the waiting call in progress (and later waits) return -ECANCELED. */
void fg_rdzv_cancel(fg_rdzv *rz);
/* The message of the last failure. */
const char *fg_rdzv_errmsg(const fg_rdzv *rz);

/* Joins the first open round >= first_round and waits until it closes with this agent in
 * it (a round that closes without it is followed by the next), within join_timeout.
 * Fills *out (release with fg_rdzv_round_free). Errors: -ETIMEDOUT (the message says how
 * many nodes are missing), -ESHUTDOWN (the job was closed; the message says why),
 * -ECANCELED, or a store failure. */
int fg_rdzv_join(fg_rdzv *rz, int first_round, fg_rdzv_round *out);

/* One keep-alive: sends this agent's and looks at the round's members and waiting nodes. */
void fg_rdzv_check(fg_rdzv *rz, fg_rdzv_news *news);

/* Ends this agent's part in the current round: state is "done", "restart", "left" or
 * "failed", with the exit status and a reason. "restart" fails with -EALREADY when a member
 * has finished already (the group cannot be formed again). close_job also closes the job
 * for every agent with status and reason. */
int fg_rdzv_end(fg_rdzv *rz, const char *state, int status, const char *reason, int close_job);

/* Waits (sending keep-alives) until every member has ended or stopped sending keep-alives,
 * or timeout_s passes (-ETIMEDOUT, the message names who is missing). When every member
 * ended "done", closes the job as finished so that waiting nodes stop waiting. The agent
 * hosting the store then waits for the others to have seen it too. */
int fg_rdzv_wait_ended(fg_rdzv *rz, double timeout_s);

void fg_rdzv_round_free(fg_rdzv_round *r);

/* Gives the nodes of a closed round their node ranks (static: checks the given ones are
 * 0..n-1, once each; c10d: ordered by address, then pid, then id) and fills this agent's
 * ranks. nodes are reordered by node rank. Returns 0, or -EINVAL with a message. */
int fg_rdzv_assign(fg_rdzv_round *r, int is_static, int my_id, char *err, size_t errlen);

#endif
