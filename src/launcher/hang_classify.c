/* hang_classify.c - which rank holds the others up (see hang_classify.h). */
#include "launcher/hang_classify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* --- words ------------------------------------------------------------------------------ */

void fg_hang_format_ranks(const int *ranks, int n, char *out, size_t len) {
  size_t used = 0;
  out[0] = '\0';
  for (int i = 0; i < n && used < len; i++) {
    int j = i;
    while (j + 1 < n && ranks[j + 1] == ranks[j] + 1) j++;
    const char *sep = i ? "," : "";
    if (j - i >= 2) {
      used += (size_t)snprintf(out + used, len - used, "%s%d-%d", sep, ranks[i], ranks[j]);
      i = j;
    } else {
      used += (size_t)snprintf(out + used, len - used, "%s%d", sep, ranks[i]);
    }
  }
}

void fg_hang_put_seconds(fg_buf *b, uint64_t ns) {
  double s = (double)ns / 1e9;
  fg__buf_printf(b, s < 10 ? "%.1f s" : "%.0f s", s);
}

static uint64_t since(uint64_t now, uint64_t then) { return now > then ? now - then : 0; }

static int is_p2p(const char *op) {
  return !strcmp(op, "send") || !strcmp(op, "recv") || !strcmp(op, "batch");
}

void fg_hang_put_op(fg_buf *b, const fg_progress_slot *s, int args) {
  fg__buf_printf(b, "%s", s->op);
  if (s->seq) fg__buf_printf(b, " #%llu", (unsigned long long)s->seq);
  if (s->group[0]) fg__buf_printf(b, " on %s", s->group);
  if (!args) return;
  const char *sep = " (";
  if (s->count || s->dtype[0]) {
    fg__buf_printf(b, "%scount %llu%s%s", sep, (unsigned long long)s->count,
                  s->dtype[0] ? " " : "", s->dtype);
    sep = ", ";
  }
  if (s->root >= 0) {
    fg__buf_printf(b, "%sroot %d", sep, s->root);
    sep = ", ";
  }
  if (s->peer >= 0 || s->peer == FG_PROGRESS_SEVERAL) {
    fg__buf_printf(b, "%s%s ", sep, strcmp(s->op, "send") ? "from" : "to");
    fg__buf_printf(b, s->peer >= 0 ? "rank %d" : "several ranks", s->peer);
    sep = ", ";
  }
  if (strcmp(sep, " (") != 0) fg__buf_printf(b, ")");
}

static void put_list(fg_buf *b, const fg_hang_rank *r, const int *idx, int n) {
  int *ranks = calloc((size_t)(n ? n : 1), sizeof *ranks);
  char list[512];
  if (!ranks) {
    b->failed = 1;
    return;
  }
  for (int i = 0; i < n; i++) ranks[i] = r[idx[i]].rank;
  fg_hang_format_ranks(ranks, n, list, sizeof list);
  free(ranks);
  fg__buf_printf(b, "rank%s %s", n == 1 ? "" : "s", list);
}

/* By the CPU it used, not by the state it was caught in: one look at /proc can catch a
 * waiting rank running for an instant (woken by a signal, a timer, a heartbeat). */
static int busy(const fg_hang_rank *r) {
  return r->p.ok && r->still_ns && (r->cpu_still_ns + r->runq_still_ns) * 4 >= r->still_ns;
}

int fg_hang_rank_busy(const fg_hang_rank *r) {
  char st = r->p.state;
  return r->running && st != 'T' && st != 't' && st != 'D' && st != 'Z' && busy(r);
}

static enum fg_hang_why why_of(const fg_hang_rank *r) {
  if (!r->running) return FG_WHY_EXITED;
  if (!r->p.ok) return FG_WHY_ELSEWHERE;
  switch (r->p.state) {
    case 'T': return FG_WHY_STOPPED;
    case 't': return FG_WHY_TRACED;
    case 'D': return FG_WHY_DSTATE;
    case 'Z': case 'X': return FG_WHY_ZOMBIE;
    default: return busy(r) ? FG_WHY_BUSY : FG_WHY_ELSEWHERE;
  }
}

void fg_hang_put_state(fg_buf *b, const fg_hang_rank *r) {
  if (!r->running) {
    fg__buf_printf(b, "%s", r->end ? r->end : "ended");
    return;
  }
  if (!r->p.ok) {
    fg__buf_printf(b, "in an unknown state (/proc unreadable)");
    return;
  }
  char st = r->p.state;
  if (st == 'T' && r->p.stop_signal)
    fg__buf_printf(b, "stopped (SIG%s)", fg__signame(r->p.stop_signal));
  else if (st == 't' && r->p.tracer)
    fg__buf_printf(b, "traced by pid %d (a debugger)", r->p.tracer);
  else if (fg_hang_rank_busy(r)) {
    fg__buf_printf(b, "busy (%s, %.1f s CPU in ", fg_proc_state_name(st),
                  (double)r->cpu_still_ns / 1e9);
    fg_hang_put_seconds(b, r->still_ns);
    if (r->runq_still_ns >= 100000000u) /* worth saying: a loaded machine */
      fg__buf_printf(b, ", %.1f s more waiting for a CPU", (double)r->runq_still_ns / 1e9);
    fg__buf_printf(b, ")");
  } else {
    fg__buf_printf(b, "%s", fg_proc_state_name(st));
  }
}

/* --- the classification ----------------------------------------------------------------- */

static int same_op(const fg_progress_slot *a, const fg_progress_slot *b) {
  return a->seq == b->seq && !strcmp(a->group, b->group);
}

/* The world ranks of "group [0, 2]" or "mesh dim0 [1, 3]"; -1: every rank may be in it
 * (the world, a store barrier's key, a list cut short). */
static int group_members(const char *group, int *out, int max) {
  const char *p = strchr(group, '[');
  if (!p || strstr(group, "...")) return -1;
  int n = 0;
  for (p++; *p && *p != ']' && n < max; p++) {
    if (*p < '0' || *p > '9') continue;
    out[n++] = (int)strtol(p, (char **)&p, 10);
    p--;
  }
  return *p == ']' ? n : -1;
}

static int is_member(int rank, const int *members, int nmembers) {
  if (nmembers < 0) return 1;
  for (int i = 0; i < nmembers; i++)
    if (members[i] == rank) return 1;
  return 0;
}

static int contains(const int *a, int n, int x) {
  for (int i = 0; i < n; i++)
    if (a[i] == x) return 1;
  return 0;
}

static int index_of_rank(const fg_hang_rank *r, int n, int rank) {
  for (int i = 0; i < n; i++)
    if (r[i].rank == rank) return i;
  return -1;
}

static int in_op(const fg_hang_rank *r) { return r->running && r->s.state == FG_PROGRESS_IN; }

/* Fields compared for a mismatch, in the order they are named. */
static const char *mismatch_field(const fg_progress_slot *a, const fg_progress_slot *b) {
  if (strcmp(a->op, b->op)) return "operation";
  if (a->count != b->count) return "count";
  if (strcmp(a->dtype, b->dtype)) return "dtype";
  if (a->root != b->root) return "root";
  return NULL;
}

/* Ranks not in it whose slot shows an earlier call of the same operation on its group with
 * these arguments: a tie between the callers goes to the arguments the others used before
 * (rank 2 of 4 passes half the count and gloo aborts it while only rank 3 has arrived;
 * ranks 0 and 1 still show their last allreduce with the whole count). */
static int earlier_calls_like(const fg_hang_rank *r, int n, const fg_progress_slot *s) {
  int votes = 0;
  for (int i = 0; i < n; i++)
    votes += r[i].s.state != FG_PROGRESS_NONE && r[i].s.seq < s->seq &&
             !strcmp(r[i].s.group, s->group) && !mismatch_field(&r[i].s, s);
  return votes;
}

/* Ranks in the hang's operation with the majority's arguments stay waiters; the others are
 * the culprits. A tie goes to the arguments of earlier calls, then to the lowest rank's.
 * Returns 1 when there was a mismatch. */
static int find_mismatch(const fg_hang_rank *r, int n, int *w, int nw, fg_hang_verdict *v) {
  int best = -1, best_n = 0, best_votes = 0;
  for (int i = 0; i < nw; i++) {
    int same = 0;
    for (int j = 0; j < nw; j++) same += !mismatch_field(&r[w[i]].s, &r[w[j]].s);
    if (same < best_n) continue;
    int votes = earlier_calls_like(r, n, &r[w[i]].s);
    if (same > best_n || votes > best_votes ||
        (votes == best_votes && r[w[i]].rank < r[w[best]].rank)) {
      best = i;
      best_n = same;
      best_votes = votes;
    }
  }
  if (best < 0 || best_n == nw) return 0;
  const fg_progress_slot *major = &r[w[best]].s;
  int kept = 0;
  for (int i = 0; i < nw; i++) {
    const char *f = mismatch_field(major, &r[w[i]].s);
    if (!f) {
      w[kept++] = w[i];
    } else {
      if (!v->field) v->field = f;
      v->culprits[v->nculprits++] = w[i];
    }
  }
  v->nwaiters = kept;
  v->kind = FG_HANG_MISMATCH;
  return 1;
}

/* The most telling among candidates: all of them that share it become the culprits. */
static void pick_culprits(const fg_hang_rank *r, const int *cand, int ncand, fg_hang_verdict *v) {
  int top = -1;
  for (int i = 0; i < ncand; i++)
    if ((int)why_of(&r[cand[i]]) > top) top = (int)why_of(&r[cand[i]]);
  for (int i = 0; i < ncand; i++)
    if ((int)why_of(&r[cand[i]]) == top) v->culprits[v->nculprits++] = cand[i];
  v->why = (enum fg_hang_why)top;
  v->kind = ncand ? FG_HANG_CULPRIT : v->kind;
}

/* Follows the receive's peer from rank to rank. Returns 1 when it decided the verdict. */
static int follow_peers(const fg_hang_rank *r, int n, int start, fg_hang_verdict *v,
                        int *seen) {
  int cur = start, steps = 0;
  memset(seen, 0, (size_t)n * sizeof *seen);
  while (steps++ <= n) {
    seen[cur] = steps;
    if (why_of(&r[cur]) >= FG_WHY_ZOMBIE) { /* it cannot go on, whatever it waits for */
      pick_culprits(r, &cur, 1, v);
      for (int i = 0; i < n; i++)
        if (i != cur && in_op(&r[i]) && is_p2p(r[i].s.op) && r[i].s.peer == r[cur].rank)
          v->waiters[v->nwaiters++] = i;
      return 1;
    }
    int peer = r[cur].s.peer;
    if (peer < 0) return 0; /* several peers: the collective rule decides */
    int j = index_of_rank(r, n, peer);
    if (j < 0) {
      v->kind = FG_HANG_REMOTE;
      v->remote_peer = peer;
      v->waiters[v->nwaiters++] = cur;
      return 1;
    }
    int waits = in_op(&r[j]) && is_p2p(r[j].s.op) && r[j].s.peer >= 0 &&
                !strcmp(r[j].s.group, r[cur].s.group) && why_of(&r[j]) < FG_WHY_ZOMBIE;
    if (!waits) {
      pick_culprits(r, &j, 1, v);
      for (int i = 0; i < n; i++)
        if (i != j && in_op(&r[i]) && is_p2p(r[i].s.op) && r[i].s.peer == peer &&
            !strcmp(r[i].s.group, r[cur].s.group))
          v->waiters[v->nwaiters++] = i;
      return 1;
    }
    if (seen[j]) { /* round a cycle: its members wait for each other */
      v->kind = FG_HANG_CYCLE;
      for (int i = 0; i < n; i++)
        if (seen[i] >= seen[j]) v->waiters[v->nwaiters++] = i;
      return 1;
    }
    cur = j;
  }
  return 0;
}

enum fg_hang_kind fg_hang_classify(const fg_hang_rank *r, int n, int world_size,
                                   uint64_t now_ns, uint64_t timeout_ns, fg_hang_verdict *v) {
  memset(v, 0, sizeof *v);
  v->hang = -1;
  v->remote_peer = -1;
  for (int i = 0; i < n; i++)
    if (in_op(&r[i]) && (v->hang < 0 || r[i].s.t_ns < r[v->hang].s.t_ns)) v->hang = i;
  if (v->hang < 0 || since(now_ns, r[v->hang].s.t_ns) < timeout_ns) return v->kind;
  int *members = malloc((size_t)(n + 1) * sizeof *members);
  int *scratch = malloc((size_t)(n + 1) * sizeof *scratch);
  v->culprits = malloc((size_t)(n + 1) * sizeof *v->culprits);
  v->waiters = malloc((size_t)(n + 1) * sizeof *v->waiters);
  v->ahead = malloc((size_t)(n + 1) * sizeof *v->ahead);
  if (!members || !scratch || !v->culprits || !v->waiters || !v->ahead) {
    free(members);
    free(scratch);
    fg_hang_verdict_free(v);
    return v->kind; /* out of memory: no report rather than a wrong one */
  }
  const fg_progress_slot *h = &r[v->hang].s;
  v->kind = FG_HANG_UNCLEAR;

  if (is_p2p(h->op) && follow_peers(r, n, v->hang, v, scratch)) goto done;

  int nmembers = group_members(h->group, members, n + 1);
  int nw = 0, ncand = 0;
  for (int i = 0; i < n; i++) {
    if (!is_member(r[i].rank, members, nmembers)) continue;
    int failed_there = r[i].s.state == FG_PROGRESS_OUT &&
                       (r[i].s.flags & FG_PROGRESS_FAILED) && same_op(&r[i].s, h);
    /* got through it: left it without an error, or is in a later one of the group */
    int passed = r[i].running && r[i].s.state != FG_PROGRESS_NONE &&
                 !strcmp(r[i].s.group, h->group) &&
                 (r[i].s.seq > h->seq ||
                  (r[i].s.seq == h->seq && !failed_there && r[i].s.state == FG_PROGRESS_OUT));
    if ((in_op(&r[i]) && same_op(&r[i].s, h)) || failed_there)
      v->waiters[nw++] = i; /* arrived (one that gave up there, a library timeout, too) */
    else if (!passed || why_of(&r[i]) >= FG_WHY_ZOMBIE || h->seq == 0)
      scratch[ncand++] = i; /* has not arrived */
  }
  v->nwaiters = nw;
  if (!is_p2p(h->op) && find_mismatch(r, n, v->waiters, nw, v)) goto done;
  /* a waiter that cannot go on (stopped, traced, D, zombie) is a candidate too */
  for (int i = 0; i < nw; i++)
    if (why_of(&r[v->waiters[i]]) >= FG_WHY_ZOMBIE) scratch[ncand++] = v->waiters[i];
  if (ncand) {
    pick_culprits(r, scratch, ncand, v);
    int kept = 0;
    for (int i = 0; i < nw; i++)
      if (!contains(v->culprits, v->nculprits, v->waiters[i])) v->waiters[kept++] = v->waiters[i];
    v->nwaiters = kept;
    for (int i = 0; i < n; i++) /* the culprits' own places are said elsewhere */
      if (in_op(&r[i]) && !strcmp(r[i].s.group, h->group) && r[i].s.seq > h->seq &&
          !contains(v->culprits, v->nculprits, i) && !is_p2p(h->op))
        v->ahead[v->nahead++] = i;
    goto done;
  }
  /* Everyone here arrived and none is stuck: the late ranks are elsewhere, if anywhere. */
  int local_members = 0;
  for (int i = 0; i < n; i++) local_members += is_member(r[i].rank, members, nmembers);
  int everyone = nmembers >= 0 ? nmembers : world_size > n ? world_size : n;
  if (everyone > local_members) v->kind = FG_HANG_REMOTE;
done:
  free(members);
  free(scratch);
  return v->kind;
}

void fg_hang_verdict_free(fg_hang_verdict *v) {
  free(v->culprits);
  free(v->waiters);
  free(v->ahead);
  v->culprits = v->waiters = v->ahead = NULL;
  v->nculprits = v->nwaiters = v->nahead = 0;
}

/* --- the culprit line --------------------------------------------------------------------- */

static uint64_t oldest_entry(const fg_hang_rank *r, const int *idx, int n, uint64_t fallback) {
  uint64_t t = fallback;
  for (int i = 0; i < n; i++)
    if (r[idx[i]].s.state == FG_PROGRESS_IN && r[idx[i]].s.t_ns < t) t = r[idx[i]].s.t_ns;
  return t;
}

/* Where a culprit is, said against the hang's operation h. */
static void put_place(fg_buf *b, const fg_hang_rank *c, const fg_progress_slot *h,
                      uint64_t now, int plural, int *there) {
  const fg_progress_slot *s = &c->s;
  *there = 0;
  if (c->running && s->state == FG_PROGRESS_IN && same_op(s, h)) {
    fg__buf_printf(b, " in ");
    fg_hang_put_op(b, s, 0);
    *there = 1;
    return;
  }
  if (c->running && s->state == FG_PROGRESS_IN) {
    fg__buf_printf(b, " in ");
    fg_hang_put_op(b, s, 0);
    fg__buf_printf(b, " (entered ");
    fg_hang_put_seconds(b, since(now, s->t_ns));
    fg__buf_printf(b, " ago) instead of ");
    fg_hang_put_op(b, h, 0);
    return;
  }
  fg__buf_printf(b, " and %s not arrived at ", plural ? "have" : "has");
  fg_hang_put_op(b, h, 0);
  if (s->state == FG_PROGRESS_NONE) {
    fg__buf_printf(b, " (no operation yet)");
  } else {
    fg__buf_printf(b, " (last: ");
    fg_hang_put_op(b, s, 0);
    fg__buf_printf(b, ", left ");
    fg_hang_put_seconds(b, since(now, s->t_ns));
    fg__buf_printf(b, " ago)");
  }
  *there = 1; /* "wait for it there": at h, named just before */
}

static void put_who(fg_buf *b, const fg_hang_rank *r, const fg_hang_verdict *v) {
  put_list(b, r, v->culprits, v->nculprits);
  if (v->nculprits == 1) fg__buf_printf(b, " (pid %d)", r[v->culprits[0]].pid);
}

static void put_verb_state(fg_buf *b, const fg_hang_rank *r, const fg_hang_verdict *v) {
  const fg_hang_rank *c = &r[v->culprits[0]];
  if (v->nculprits == 1) {
    fg__buf_printf(b, c->running ? " is " : " ");
    fg_hang_put_state(b, c);
    return;
  }
  static const char *const plural[] = {
      [FG_WHY_ELSEWHERE] = "are sleeping", [FG_WHY_BUSY] = "are busy",
      [FG_WHY_ZOMBIE] = "are zombies", [FG_WHY_DSTATE] = "are in uninterruptible sleep (D)",
      [FG_WHY_TRACED] = "are traced", [FG_WHY_STOPPED] = "are stopped",
      [FG_WHY_EXITED] = "have exited"};
  fg__buf_printf(b, " %s", plural[v->why]);
}

static void put_waiters(fg_buf *b, const fg_hang_rank *r, const fg_hang_verdict *v,
                        const fg_progress_slot *h, int there, const char *what,
                        uint64_t now) {
  if (!v->nwaiters) return;
  fg__buf_printf(b, "; ");
  put_list(b, r, v->waiters, v->nwaiters);
  fg__buf_printf(b, " wait%s %s %s", v->nwaiters == 1 ? "s" : "", what,
                v->nculprits == 1 ? "it" : "them");
  if (there) {
    fg__buf_printf(b, " there");
  } else {
    fg__buf_printf(b, " in ");
    fg_hang_put_op(b, &r[v->waiters[0]].s, 0);
  }
  (void)h;
  fg__buf_printf(b, " for ");
  fg_hang_put_seconds(b, since(now, oldest_entry(r, v->waiters, v->nwaiters, now)));
}

static void put_mismatch_value(fg_buf *b, const fg_progress_slot *s, const char *field) {
  if (!strcmp(field, "operation")) fg__buf_printf(b, "%s", s->op);
  else if (!strcmp(field, "count")) fg__buf_printf(b, "count %llu", (unsigned long long)s->count);
  else if (!strcmp(field, "dtype")) fg__buf_printf(b, "dtype %s", s->dtype[0] ? s->dtype : "none");
  else fg__buf_printf(b, "root %d", s->root);
}

void fg_hang_format_verdict(const fg_hang_rank *r, int n, const fg_hang_verdict *v,
                            uint64_t now, fg_buf *b) {
  (void)n;
  if (v->kind == FG_HANG_NONE) return;
  const fg_progress_slot *h = &r[v->hang].s;
  int there = 0;
  switch (v->kind) {
    case FG_HANG_CULPRIT: {
      const fg_hang_rank *c = &r[v->culprits[0]];
      put_who(b, r, v);
      put_verb_state(b, r, v);
      if (is_p2p(h->op) && v->nwaiters && r[v->waiters[0]].s.peer == c->rank) {
        if (c->running && c->s.state == FG_PROGRESS_IN) {
          fg__buf_printf(b, " in ");
          fg_hang_put_op(b, &c->s, 0);
        } else if (c->s.state == FG_PROGRESS_NONE) {
          fg__buf_printf(b, " before any operation");
        } else {
          fg__buf_printf(b, " outside any operation (last: ");
          fg_hang_put_op(b, &c->s, 0);
          fg__buf_printf(b, ", left ");
          fg_hang_put_seconds(b, since(now, c->s.t_ns));
          fg__buf_printf(b, " ago)");
        }
        put_waiters(b, r, v, h, 0, "for a message from", now);
      } else {
        put_place(b, c, h, now, v->nculprits > 1, &there);
        put_waiters(b, r, v, h, there, "for", now);
        if (v->nahead) {
          fg__buf_printf(b, "; ");
          put_list(b, r, v->ahead, v->nahead);
          fg__buf_printf(b, " wait%s further on, in ", v->nahead == 1 ? "s" : "");
          fg_hang_put_op(b, &r[v->ahead[0]].s, 0);
          fg__buf_printf(b, " for ");
          fg_hang_put_seconds(b, since(now, oldest_entry(r, v->ahead, v->nahead, now)));
        }
      }
      break;
    }
    case FG_HANG_MISMATCH: {
      const fg_progress_slot *mine = &r[v->culprits[0]].s;
      const fg_progress_slot *theirs = v->nwaiters ? &r[v->waiters[0]].s : h;
      put_who(b, r, v);
      fg__buf_printf(b, " called ");
      fg_hang_put_op(b, mine, 0);
      if (strcmp(v->field, "operation")) {
        fg__buf_printf(b, " with ");
        put_mismatch_value(b, mine, v->field);
      }
      if (v->nwaiters) {
        fg__buf_printf(b, ", ");
        put_list(b, r, v->waiters, v->nwaiters);
        fg__buf_printf(b, " %s", strcmp(v->field, "operation") ? "with " : "");
        put_mismatch_value(b, theirs, v->field);
      }
      fg__buf_printf(b, ": a mismatch at the same number");
      if (r[v->hang].running) {
        fg__buf_printf(b, "; all wait there for ");
        fg_hang_put_seconds(b, since(now, h->t_ns));
      }
      break;
    }
    case FG_HANG_CYCLE:
      put_list(b, r, v->waiters, v->nwaiters);
      fg__buf_printf(b, " wait for each other's messages (a cycle) in ");
      fg_hang_put_op(b, h, 0);
      fg__buf_printf(b, " for ");
      fg_hang_put_seconds(b, since(now, oldest_entry(r, v->waiters, v->nwaiters, now)));
      break;
    case FG_HANG_REMOTE:
    case FG_HANG_UNCLEAR: {
      const int *w = v->nwaiters ? v->waiters : &v->hang;
      int nw = v->nwaiters ? v->nwaiters : 1;
      put_list(b, r, w, nw);
      fg__buf_printf(b, " %s been in ", nw == 1 ? "has" : "have");
      fg_hang_put_op(b, h, 0);
      fg__buf_printf(b, " for ");
      fg_hang_put_seconds(b, since(now, oldest_entry(r, w, nw, now)));
      if (v->kind == FG_HANG_REMOTE && v->remote_peer >= 0)
        fg__buf_printf(b, ", waiting for a message from rank %d, on another node", v->remote_peer);
      else if (v->kind == FG_HANG_REMOTE)
        fg__buf_printf(b, "; the ranks they wait for are on other nodes (no rank here holds "
                         "them up)");
      else
        fg__buf_printf(b, "; no rank on this node stands out");
      break;
    }
    case FG_HANG_NONE: break;
  }
}

void fg_hang_format_cause(const fg_hang_rank *r, const fg_hang_verdict *v, int culprit,
                          char *out, size_t len) {
  out[0] = '\0';
  if (v->kind != FG_HANG_CULPRIT && v->kind != FG_HANG_MISMATCH) return;
  const fg_progress_slot *h = &r[v->hang].s;
  const fg_hang_rank *c = &r[culprit];
  fg_buf b;
  fg__buf_init(&b);
  if (v->kind == FG_HANG_MISMATCH) {
    fg__buf_printf(&b, "called ");
    fg_hang_put_op(&b, &c->s, 0);
    if (strcmp(v->field, "operation")) {
      fg__buf_printf(&b, " with ");
      put_mismatch_value(&b, &c->s, v->field);
    }
    if (v->nwaiters) {
      fg__buf_printf(&b, " where ");
      put_list(&b, r, v->waiters, v->nwaiters);
      fg__buf_printf(&b, strcmp(v->field, "operation") ? " passed " : " called ");
      put_mismatch_value(&b, &r[v->waiters[0]].s, v->field);
    }
  } else if (c->running && c->s.state == FG_PROGRESS_IN && same_op(&c->s, h)) {
    fg__buf_printf(&b, "held the others up: it was ");
    fg_hang_put_state(&b, c);
    fg__buf_printf(&b, " in ");
    fg_hang_put_op(&b, h, 0);
  } else if (is_p2p(h->op) && v->nwaiters && r[v->waiters[0]].s.peer == c->rank) {
    fg__buf_printf(&b, "held the others up: it never sent what ");
    put_list(&b, r, v->waiters, v->nwaiters);
    fg__buf_printf(&b, " waited for in ");
    fg_hang_put_op(&b, &r[v->waiters[0]].s, 0);
    fg__buf_printf(&b, "; it was ");
    fg_hang_put_state(&b, c);
  } else {
    fg__buf_printf(&b, "held the others up: it never arrived at ");
    fg_hang_put_op(&b, h, 0);
    fg__buf_printf(&b, "; it was ");
    fg_hang_put_state(&b, c);
  }
  if (!b.failed && b.len) snprintf(out, len, "%.*s", (int)b.len, (const char *)b.data);
  fg__buf_free(&b);
}

/* In the operation, or left it with an error: a peer's abort ends the others' calls too,
 * and those ranks passed the arguments the odd one is told apart from. */
static int called_it(const fg_progress_slot *s) {
  return s->state == FG_PROGRESS_IN ||
         (s->state == FG_PROGRESS_OUT && (s->flags & FG_PROGRESS_FAILED));
}

enum fg_hang_kind fg_hang_find_mismatch(const fg_hang_rank *r, int n, fg_hang_verdict *v) {
  memset(v, 0, sizeof *v);
  v->hang = v->remote_peer = -1;
  v->culprits = malloc((size_t)(n + 1) * sizeof *v->culprits);
  v->waiters = malloc((size_t)(n + 1) * sizeof *v->waiters);
  if (!v->culprits || !v->waiters) {
    fg_hang_verdict_free(v);
    return v->kind;
  }
  for (int i = 0; i < n && v->kind == FG_HANG_NONE; i++) {
    if (!called_it(&r[i].s) || is_p2p(r[i].s.op)) continue;
    v->nwaiters = v->nculprits = 0;
    for (int j = 0; j < n; j++)
      if (called_it(&r[j].s) && same_op(&r[j].s, &r[i].s)) v->waiters[v->nwaiters++] = j;
    v->hang = i;
    if (find_mismatch(r, n, v->waiters, v->nwaiters, v)) break;
  }
  if (v->kind == FG_HANG_NONE) fg_hang_verdict_free(v);
  return v->kind;
}
