/* hang_report.c - a hang report's detail lines (see hang_report.h). */
#include "launcher/hang_report.h"

#include <stdlib.h>
#include <string.h>

static uint64_t since(uint64_t now, uint64_t then) { return now > then ? now - then : 0; }

enum kind { IN_OP, NOT_ARRIVED, ENDED };

static enum kind kind_of(const fg_hang_rank *x) {
  if (!x->running) return ENDED;
  return x->s.state == FG_PROGRESS_IN ? IN_OP : NOT_ARRIVED;
}

/* Ranks are reported together when they are in (or last left) the same operation. */
static int same_place(const fg_hang_rank *a, const fg_hang_rank *b) {
  if (kind_of(a) != kind_of(b) || a->s.state != b->s.state) return 0;
  if (kind_of(a) == ENDED && strcmp(a->end ? a->end : "", b->end ? b->end : "")) return 0;
  return a->s.state == FG_PROGRESS_NONE ||
         (a->s.seq == b->s.seq && !strcmp(a->s.op, b->s.op) && !strcmp(a->s.group, b->s.group));
}

static void put_last(fg_buf *b, const fg_progress_slot *s, uint64_t now) {
  if (s->state == FG_PROGRESS_NONE) {
    fg__buf_printf(b, "no operation yet");
    return;
  }
  fg__buf_printf(b, "last: ");
  fg_hang_put_op(b, s, 0);
  fg__buf_printf(b, s->state == FG_PROGRESS_IN ? ", entered " : ", left ");
  fg_hang_put_seconds(b, since(now, s->t_ns));
  fg__buf_printf(b, " ago");
}

/* One group of ranks in the same place: its ranks and how long the oldest has been there. */
static void put_cluster(fg_buf *b, const fg_hang_rank *all, const int *cluster, int n,
                        int first, uint64_t now) {
  int *ranks = calloc((size_t)n, sizeof *ranks);
  if (!ranks) {
    b->failed = 1;
    return;
  }
  int count = 0;
  uint64_t oldest = all[first].s.t_ns;
  for (int i = first; i < n; i++) {
    if (cluster[i] != first) continue;
    ranks[count++] = all[i].rank;
    if (all[i].s.t_ns < oldest) oldest = all[i].s.t_ns;
  }
  char list[512];
  fg_hang_format_ranks(ranks, count, list, sizeof list);
  free(ranks);
  const fg_hang_rank *x = &all[first];
  fg_progress_slot s = x->s;
  s.t_ns = oldest;
  fg__buf_printf(b, "rank%s %s ", count == 1 ? "" : "s", list);
  if (kind_of(x) == IN_OP) {
    fg__buf_printf(b, "%s been in ", count == 1 ? "has" : "have");
    fg_hang_put_op(b, &s, 0);
    fg__buf_printf(b, " for ");
    fg_hang_put_seconds(b, since(now, oldest));
    return;
  }
  if (kind_of(x) == ENDED)
    fg__buf_printf(b, "%s (", x->end ? x->end : "ended");
  else
    fg__buf_printf(b, "%s not arrived (", count == 1 ? "has" : "have");
  put_last(b, &s, now);
  fg__buf_printf(b, ")");
}

void fg_hang_put_where(fg_buf *b, const fg_hang_rank *r, int n, uint64_t now) {
  int *cluster = malloc((size_t)(n ? n : 1) * sizeof *cluster);
  if (!cluster) {
    b->failed = 1;
    return;
  }
  for (int i = 0; i < n; i++) cluster[i] = -1;
  for (int i = 0; i < n; i++) {
    if (cluster[i] >= 0) continue;
    for (int j = i; j < n; j++)
      if (cluster[j] < 0 && same_place(&r[i], &r[j])) cluster[j] = i;
  }
  int written = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < n; i++) {
      if (cluster[i] != i || (kind_of(&r[i]) == IN_OP) != (pass == 0)) continue;
      if (written++) fg__buf_printf(b, "; ");
      put_cluster(b, r, cluster, n, i, now);
    }
  free(cluster);
}

void fg_hang_put_details(fg_buf *b, const fg_hang_rank *r, int n, uint64_t now) {
  for (int i = 0; i < n; i++) {
    const fg_hang_rank *x = &r[i];
    fg__buf_printf(b, "fgrun:   rank %d (pid %d): ", x->rank, x->pid);
    fg_hang_put_state(b, x);
    if (x->running && x->p.ok && !fg_hang_rank_busy(x)) { /* a busy one's state says it */
      fg__buf_printf(b, ", %.1f s CPU in ", (double)x->cpu_still_ns / 1e9);
      fg_hang_put_seconds(b, x->still_ns);
    }
    fg__buf_printf(b, "; ");
    const fg_progress_slot *s = &x->s;
    if (s->state == FG_PROGRESS_IN) {
      fg__buf_printf(b, "in ");
      fg_hang_put_op(b, s, 1);
      fg__buf_printf(b, " for ");
      fg_hang_put_seconds(b, since(now, s->t_ns));
    } else if (s->state == FG_PROGRESS_OUT) {
      fg__buf_printf(b, "last: ");
      fg_hang_put_op(b, s, 1);
      fg__buf_printf(b, ", %s ", s->flags & FG_PROGRESS_FAILED ? "failed and left" : "left");
      fg_hang_put_seconds(b, since(now, s->t_ns));
      fg__buf_printf(b, " ago");
    } else {
      fg__buf_printf(b, "no operation marked");
    }
    fg__buf_printf(b, "\n");
  }
}

void fg_hang_put_stack(fg_buf *b, int rank, int pid, const fg_buf *text, int status,
                       double bound_s) {
  fg__buf_printf(b, "fgrun:   stack of rank %d (pid %d):\n", rank, pid);
  const char *p = (const char *)text->data, *end = p + text->len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    fg__buf_printf(b, "fgrun:     %.*s\n", (int)len, p);
    p += len + 1;
  }
  if (status == -1)
    fg__buf_printf(b, "fgrun:     (fgrun-stack gave up: still reading after %.0f s)\n", bound_s);
  else if (status > 1 || (status == 1 && !text->len))
    fg__buf_printf(b, "fgrun:     (fgrun-stack ended with status %d)\n", status);
}
