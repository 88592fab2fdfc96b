/* dispatcher_checks.c - rank 0 judges the dispatch from every rank's record:
 * end of data everywhere, the right number of batches, intact tokens, the same
 * batches within an MP group, and no batch in two DP groups. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "scenarios/dispatcher.h"

/* Check text that stops with "..." rather than overflow the line. */
typedef struct text {
  char buf[640];
  size_t n;
} text;

static void add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(text *t, const char *fmt, ...) {
  size_t room = sizeof t->buf - t->n;
  if (room < 4) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(t->buf + t->n, room, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= room - 3) {
    strcpy(t->buf + sizeof t->buf - 4, "...");
    t->n = sizeof t->buf;
  } else {
    t->n += (size_t)n;
  }
}

typedef struct world {
  const dispatch_plan *p;
  const int64_t *records;
  int size;
} world;

static const int64_t *rec(const world *w, int r) {
  return w->records + (size_t)r * (size_t)dispatch_record_len(w->p);
}

static int64_t count_of(const world *w, int r) {
  int64_t n = rec(w, r)[REC_COUNT];
  return n < w->p->max_steps ? n : w->p->max_steps; /* only that many tokens were kept */
}

static void add_tokens(text *t, const world *w, int r) {
  add(t, "[");
  for (int64_t i = 0; i < count_of(w, r); i++)
    add(t, "%s%lld", i ? " " : "", (long long)rec(w, r)[REC_TOKENS + i]);
  add(t, "]");
}

static void add_field(text *t, const world *w, int field) {
  for (int r = 0; r < w->size; r++) add(t, "%s%lld", r ? " " : "", (long long)rec(w, r)[field]);
}

/* The world rank of the DP leader (mp rank 0) of rank r's MP group. */
static int leader_of(const world *w, int r) {
  for (int q = 0; q < w->size; q++)
    if (rec(w, q)[REC_DP] == rec(w, r)[REC_DP] && rec(w, q)[REC_MP] == 0) return q;
  return -1;
}

static int same_tokens(const world *w, int a, int b) {
  if (rec(w, a)[REC_COUNT] != rec(w, b)[REC_COUNT]) return 0;
  for (int64_t i = 0; i < count_of(w, a); i++)
    if (rec(w, a)[REC_TOKENS + i] != rec(w, b)[REC_TOKENS + i]) return 0;
  return 1;
}

static void check_end(scn *s, const world *w) {
  int ok = 1;
  for (int r = 0; r < w->size; r++) ok &= rec(w, r)[REC_ENDED] == 1;
  text t = {0};
  add_field(&t, w, REC_ENDED);
  scn_check(s, ok, "end of data reached on every rank (per rank: %s)", t.buf);
}

static void check_counts(scn *s, const world *w) {
  int ok = 1;
  for (int r = 0; r < w->size; r++) ok &= rec(w, r)[REC_COUNT] == w->p->num_batches;
  text t = {0};
  add_field(&t, w, REC_COUNT);
  scn_check(s, ok, "every rank received exactly %d batches (per rank: %s)", w->p->num_batches,
            t.buf);
}

static void check_content(scn *s, const world *w) {
  int ok = 1;
  for (int r = 0; r < w->size; r++) ok &= rec(w, r)[REC_BAD] == 0;
  text t = {0};
  add_field(&t, w, REC_BAD);
  scn_check(s, ok,
            "every token of every batch received is b*1000+j, labels +1, mask 1 (values "
            "wrong per rank: %s)",
            t.buf);
}

/* Each rank against its DP leader; the groups' batches are shown once, by their leaders. */
static void check_mp_identical(scn *s, const world *w) {
  text t = {0}, why = {0};
  int ok = 1;
  for (int r = 0; r < w->size; r++) {
    int lead = leader_of(w, r);
    if (lead == r) {
      add(&t, "%sranks", t.n ? "; " : "");
      for (int q = 0; q < w->size; q++)
        if (leader_of(w, q) == r) add(&t, "%s%d", q == r ? " " : ",", q);
      add(&t, ": ");
      add_tokens(&t, w, r);
    }
    if (ok && (lead < 0 || !same_tokens(w, r, lead))) {
      ok = 0;
      add(&why, " (rank %d has ", r);
      add_tokens(&why, w, r);
      if (lead >= 0) {
        add(&why, ", its leader rank %d has ", lead);
        add_tokens(&why, w, lead);
      }
      add(&why, ")");
    }
  }
  scn_check(s, ok, "batches identical within each MP group%s: %s", why.buf, t.buf);
}

/* Among the DP leaders: no first token twice, in one leader or across two. */
static void check_dp_disjoint(scn *s, const world *w) {
  text t = {0}, why = {0};
  int ok = 1, leaders = 0;
  for (int a = 0; a < w->size; a++) {
    if (rec(w, a)[REC_MP] != 0) continue;
    leaders++;
    add(&t, "%sr%d ", t.n ? " " : "", a);
    add_tokens(&t, w, a);
    for (int b = a; ok && b < w->size; b++) {
      if (rec(w, b)[REC_MP] != 0) continue;
      for (int64_t i = 0; ok && i < count_of(w, a); i++)
        for (int64_t j = a == b ? i + 1 : 0; ok && j < count_of(w, b); j++)
          if (rec(w, a)[REC_TOKENS + i] == rec(w, b)[REC_TOKENS + j]) {
            ok = 0;
            if (a == b)
              add(&why, " (first token %lld reached rank %d twice)",
                  (long long)rec(w, a)[REC_TOKENS + i], a);
            else
              add(&why, " (first token %lld reached rank %d and rank %d)",
                  (long long)rec(w, a)[REC_TOKENS + i], a, b);
          }
    }
  }
  const char *claim = w->p->mp == 1 && w->p->dp > 1 ? "every rank got different batches"
                      : w->p->dp > 1 ? "no batch shared between DP groups (among the DP leaders)"
                                     : "no batch dispatched twice";
  scn_check(s, ok, "%s%s: %d leader(s): %s", claim, why.buf, leaders, t.buf);
}

void dispatcher_judge(scn *s, const dispatch_plan *p, const int64_t *records) {
  world w = {p, records, s->size};
  check_end(s, &w);
  check_counts(s, &w);
  check_content(s, &w);
  if (p->mp > 1) check_mp_identical(s, &w);
  check_dp_disjoint(s, &w);
}
