/* rdzv_watch.c - while a round runs: keep-alives, the members' end records, the end.
 *
 * A member is dead when its keep-alive counter has not moved for keep_alive_interval x
 * keep_alive_max_attempt by this agent's clock, so no two hosts' clocks are compared. An
 * agent that ends its part writes "<state> <status> <reason>" under its node rank and
 * bumps the round's end counter, so the others read end records only when it moved. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "launcher/rdzv_internal.h"

enum { BARRIER_POLL_MS = 100 };

/* Keeps the most urgent news (the lowest kind but QUIET). */
static void tell(fg_rdzv_news *n, enum fg_rdzv_news_kind kind, int node, int status,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void tell(fg_rdzv_news *n, enum fg_rdzv_news_kind kind, int node, int status,
                 const char *fmt, ...) {
  if (n->kind != FG_RDZV_QUIET && n->kind <= kind) return;
  n->kind = kind;
  n->node_rank = node;
  n->status = status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(n->text, sizeof n->text, fmt, ap);
  va_end(ap);
}

static int parse_end(const char *text, fg_rdzv_peer *p) {
  int used = 0;
  if (sscanf(text, "%15s %d %n", p->state, &p->status, &used) < 2) return -EPROTO;
  snprintf(p->reason, sizeof p->reason, "%s", text + used);
  return 0;
}

/* Reads the end records written since the last look. */
static int read_ends(fg_rdzv *rz) {
  char key[64];
  int64_t ended;
  fg_rdzv_key(key, sizeof key, rz->round.round, "ended", -1);
  int rc = fg_rdzv_add(rz, key, 0, &ended);
  if (rc < 0 || ended == rz->ended_seen) return rc;
  for (int i = 0; i < rz->round.nnodes; i++) {
    if (rz->peers[i].ended) continue;
    fg_rdzv_key(key, sizeof key, rz->round.round, "end", i);
    if ((rc = fg_rdzv_exists(rz, key)) < 0) return rc;
    char text[400];
    if (rc == 0) continue;
    if ((rc = fg_rdzv_get(rz, key, text, sizeof text)) < 0) return rc;
    rz->peers[i].ended = parse_end(text, &rz->peers[i]) == 0;
  }
  rz->ended_seen = ended;
  return 0;
}

/* Marks members whose keep-alive counter stopped (those that ended too, with
 * include_ended); *dead gets the first such node, or -1. */
static int read_beats(fg_rdzv *rz, int include_ended, int *dead) {
  *dead = -1;
  int64_t now = fg__now_ms();
  for (int i = 0; i < rz->round.nnodes; i++) {
    fg_rdzv_peer *p = &rz->peers[i];
    if (i == rz->round.node_rank || (p->ended && !include_ended)) continue;
    char key[32];
    int64_t beats;
    snprintf(key, sizeof key, "beat.%d", rz->round.nodes[i].id);
    int rc = fg_rdzv_add(rz, key, 0, &beats);
    if (rc < 0) return rc;
    if (beats != p->beats) {
      p->beats = beats;
      p->seen_ms = now;
      p->dead = 0;
    } else if (now - p->seen_ms > fg_rdzv_dead_after_ms(rz)) {
      p->dead = 1;
    }
    if (p->dead && *dead < 0) *dead = i;
  }
  return 0;
}

static void tell_ends(fg_rdzv *rz, fg_rdzv_news *news) {
  for (int i = 0; i < rz->round.nnodes; i++) {
    const fg_rdzv_peer *p = &rz->peers[i];
    char who[160];
    if (i == rz->round.node_rank || !p->ended) continue;
    fg_rdzv_node_name(rz, i, who, sizeof who);
    if (strcmp(p->state, "restart") == 0)
      tell(news, FG_RDZV_RESTARTING, i, 0, "%s is restarting (%s)", who, p->reason);
    else if (strcmp(p->state, "left") == 0)
      tell(news, FG_RDZV_PEER_LOST, i, p->status, "%s left (%s)", who, p->reason);
    else if (strcmp(p->state, "failed") == 0)
      tell(news, FG_RDZV_CLOSED, i, p->status, "%s failed (%s)", who, p->reason);
  }
}

static int look(fg_rdzv *rz, fg_rdzv_news *news) {
  int status, dead, rc;
  char reason[400], key[64], who[160];
  if ((rc = fg_rdzv_job_closed(rz, &status, reason, sizeof reason)) < 0) return rc;
  if (rc == 1) tell(news, FG_RDZV_CLOSED, -1, status, "%s", reason);
  if ((rc = read_ends(rz)) < 0) return rc;
  tell_ends(rz, news);
  if ((rc = read_beats(rz, 0, &dead)) < 0) return rc;
  if (dead >= 0) {
    fg_rdzv_node_name(rz, dead, who, sizeof who);
    tell(news, FG_RDZV_PEER_LOST, dead, 1, "%s sent no keep-alive for %.3g s", who,
         fg_rdzv_dead_after_ms(rz) / 1000.0);
  }
  int64_t waiting;
  fg_rdzv_key(key, sizeof key, rz->round.round + 1, "joined", -1);
  if ((rc = fg_rdzv_add(rz, key, 0, &waiting)) < 0) return rc;
  if (waiting > 0 && rz->round.nnodes < rz->s.max_nodes)
    tell(news, FG_RDZV_WAITING, -1, 0, "%lld node%s waiting to join (%d of at most %d running)",
         (long long)waiting, waiting == 1 ? " is" : "s are", rz->round.nnodes, rz->s.max_nodes);
  return 0;
}

void fg_rdzv_check(fg_rdzv *rz, fg_rdzv_news *news) {
  memset(news, 0, sizeof *news);
  news->node_rank = -1;
  if (rz->id < 0) return;
  rz->next_beat_ms = 0; /* the timer calls this once per interval: never skip a beat */
  int rc = fg_rdzv_beat(rz);
  if (rc == 0 && rz->round.nodes) rc = look(rz, news);
  if (rc < 0) tell(news, FG_RDZV_STORE_LOST, -1, 1, "%s", rz->err);
}

static int someone_finished(fg_rdzv *rz) {
  for (int i = 0; i < rz->round.nnodes; i++)
    if (i != rz->round.node_rank && rz->peers[i].ended && !strcmp(rz->peers[i].state, "done"))
      return i;
  return -1;
}

int fg_rdzv_end(fg_rdzv *rz, const char *state, int status, const char *reason, int close_job) {
  char key[64], text[512];
  int rc;
  snprintf(text, sizeof text, "%d %s", status, reason);
  if (!rz->round.nodes) return close_job && rz->kv ? fg_rdzv_set_once(rz, "closed", text, text,
                                                                         sizeof text) : 0;
  if (strcmp(state, "restart") == 0) {
    if ((rc = read_ends(rz)) < 0) return rc;
    int done = someone_finished(rz);
    if (done >= 0) {
      char who[160];
      fg_rdzv_node_name(rz, done, who, sizeof who);
      snprintf(rz->err, sizeof rz->err, "%s has finished already, so the group cannot be "
               "formed again", who);
      return -EALREADY;
    }
  }
  fg_rdzv_key(key, sizeof key, rz->round.round, "end", rz->round.node_rank);
  snprintf(text, sizeof text, "%s %d %s", state, status, reason);
  if ((rc = fg_rdzv_set(rz, key, text)) < 0) return rc;
  parse_end(text, &rz->peers[rz->round.node_rank]);
  rz->peers[rz->round.node_rank].ended = 1;
  fg_rdzv_key(key, sizeof key, rz->round.round, "ended", -1);
  if ((rc = fg_rdzv_add(rz, key, 1, NULL)) < 0) return rc;
  if (!close_job) return 0;
  char me[160];
  fg_rdzv_node_name(rz, rz->round.node_rank, me, sizeof me);
  snprintf(text, sizeof text, "%d %s: %s", status, me, reason);
  return fg_rdzv_set_once(rz, "closed", text, text, sizeof text);
}

/* "node 1 (...), node 2 (...)" for the members that have neither ended nor died. */
static int list_running(fg_rdzv *rz, char *out, size_t len) {
  int n = 0;
  size_t used = 0;
  out[0] = '\0';
  for (int i = 0; i < rz->round.nnodes; i++) {
    if (rz->peers[i].ended || rz->peers[i].dead) continue;
    char who[160];
    fg_rdzv_node_name(rz, i, who, sizeof who);
    if (used < len)
      used += (size_t)snprintf(out + used, len - used, "%s%s", n ? ", " : "", who);
    n++;
  }
  return n;
}

static int all_done(const fg_rdzv *rz) {
  for (int i = 0; i < rz->round.nnodes; i++)
    if (!rz->peers[i].ended || strcmp(rz->peers[i].state, "done") != 0) return 0;
  return 1;
}

/* Members that wait at the end too (they ended "done" or "failed") and are alive: each
 * says it has seen everyone end before it lets go of the store. */
static int waiting_members(const fg_rdzv *rz) {
  int n = 0;
  for (int i = 0; i < rz->round.nnodes; i++) {
    const fg_rdzv_peer *p = &rz->peers[i];
    n += p->ended && !p->dead && (!strcmp(p->state, "done") || !strcmp(p->state, "failed"));
  }
  return n;
}

/* The host's store must stay up until every member is through with it (torchrun's .FIN
 * keys): the host waits for the others to say so. */
static int wait_released(fg_rdzv *rz, int64_t deadline) {
  char key[64];
  fg_rdzv_key(key, sizeof key, rz->round.round, "released", -1);
  int rc = fg_rdzv_add(rz, key, 1, NULL);
  for (int64_t released = 0; rc == 0 && rz->s.hosts_store;) {
    int dead;
    if ((rc = fg_rdzv_add(rz, key, 0, &released)) < 0) return rc;
    if (released >= waiting_members(rz) || fg__now_ms() >= deadline) return 0;
    /* a member that ended and then died will never say it let go */
    if ((rc = fg_rdzv_pause(rz, BARRIER_POLL_MS)) < 0 || (rc = fg_rdzv_beat(rz)) < 0 ||
        (rc = read_beats(rz, 1, &dead)) < 0)
      return rc;
  }
  return rc;
}

int fg_rdzv_wait_ended(fg_rdzv *rz, double timeout_s) {
  if (!rz->round.nodes) return 0;
  int64_t deadline = fg__now_ms() + (int64_t)FG__MIN(timeout_s * 1000, 1e15);
  char running[512];
  for (;;) {
    int dead, rc;
    if ((rc = fg_rdzv_beat(rz)) < 0 || (rc = read_ends(rz)) < 0 ||
        (rc = read_beats(rz, 0, &dead)) < 0)
      return rc;
    if (list_running(rz, running, sizeof running) == 0) break;
    if (fg__now_ms() >= deadline) {
      snprintf(rz->err, sizeof rz->err, "gave up after %g s waiting for %s to finish",
               timeout_s, running);
      return -ETIMEDOUT;
    }
    if ((rc = fg_rdzv_pause(rz, BARRIER_POLL_MS)) < 0) return rc;
  }
  char text[64];
  int rc = all_done(rz) ? fg_rdzv_set_once(rz, "closed", "0 finished", text, sizeof text) : 0;
  return rc < 0 ? rc : wait_released(rz, deadline);
}
