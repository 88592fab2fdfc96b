/* hang_notes.c - what a failure's summary adds from the progress slots: ranks that exited 0
 * before the failure while their peers still needed them, and mismatched collectives. */
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "launcher/hang_internal.h"
#include "launcher/hang_report.h"


/* "; ranks 0,1,3 were last in allreduce #4 on world" for every rank but skip. */
static void put_last_ops(fg_buf *b, const fg_hang_rank *all, int n, int skip) {
  int *ranks = calloc((size_t)n, sizeof *ranks), *group = calloc((size_t)n, sizeof *group);
  if (!ranks || !group) {
    free(ranks);
    free(group);
    return;
  }
  for (int i = 0; i < n; i++) group[i] = -1;
  for (int i = 0; i < n; i++) {
    if (i == skip || group[i] >= 0 || all[i].s.state == FG_PROGRESS_NONE) continue;
    int count = 0;
    for (int j = i; j < n; j++)
      if (j != skip && group[j] < 0 && all[j].s.state != FG_PROGRESS_NONE &&
          all[j].s.seq == all[i].s.seq && !strcmp(all[j].s.op, all[i].s.op) &&
          !strcmp(all[j].s.group, all[i].s.group)) {
        group[j] = i;
        ranks[count++] = all[j].rank;
      }
    char list[512];
    fg_hang_format_ranks(ranks, count, list, sizeof list);
    fg__buf_printf(b, "; rank%s %s %s last in ", count == 1 ? "" : "s", list,
                  count == 1 ? "was" : "were");
    fg_hang_put_op(b, &all[i].s, 0);
  }
  free(ranks);
  free(group);
}

void fg_hang_note_early_exits(const fg_hang *h, const fg_worker *ws, int n,
                              const fg_worker *failed, fg_buf *out) {
  if (!h->map || !failed || n <= 0) return;
  fg_hang_rank *all = calloc((size_t)n, sizeof *all);
  char *ends = calloc((size_t)n, END_LEN);
  if (!all || !ends) {
    free(all);
    free(ends);
    return;
  }
  fg__hang_gather(h, ws, n, 0, 0, all, ends);
  for (int i = 0; i < n; i++) {
    const fg_worker *w = &ws[i];
    /* Reaped in the same pass as the failure counts as before it: that pass goes in
     * libuv's order, not the order of death. */
    if (w == failed || w->state != FG_WORKER_EXITED || w->exit_code != 0 ||
        w->term_signal != 0 || w->end_ns > failed->end_ns + SAME_PASS_NS)
      continue;
    fg__buf_printf(out, "fgrun: rank %d exited with code 0 ", w->rank);
    fg_hang_put_seconds(out, fg__hang_since(failed->end_ns, w->end_ns));
    fg__buf_printf(out, " before rank %d failed, while its peers still needed it (", failed->rank);
    if (all[i].s.state == FG_PROGRESS_NONE) {
      fg__buf_printf(out, "it entered no operation");
    } else {
      fg__buf_printf(out, "its last operation: ");
      fg_hang_put_op(out, &all[i].s, 0);
    }
    put_last_ops(out, all, n, i);
    fg__buf_printf(out, ")\n");
  }
  free(all);
  free(ends);
}

void fg_hang_note_mismatch(fg_hang *h, const fg_worker *ws, int n, const fg_worker *failed,
                           fg_buf *out) {
  if (!h->map || !failed || n <= 0 || h->cause[0]) return;
  fg_hang_rank *r = calloc((size_t)n, sizeof *r);
  char *ends = calloc((size_t)n, END_LEN);
  fg_hang_verdict v;
  if (r && ends) {
    fg__hang_gather(h, ws, n, 0, 0, r, ends);
    if (fg_hang_find_mismatch(r, n, &v) == FG_HANG_MISMATCH) {
      fg__buf_printf(out, "fgrun: before rank %d failed: ", failed->rank);
      fg_hang_format_verdict(r, n, &v, fg__now_ns(), out);
      fg__buf_printf(out, "\n");
      fg__hang_keep_cause(h, ws, r, &v);
      fg_hang_verdict_free(&v);
    }
  }
  free(r);
  free(ends);
}

void fg_hang_print_failure_notes(fg_hang *h, const fg_worker *ws, int n,
                                 const fg_worker *failed) {
  fg_buf notes;
  fg__buf_init(&notes);
  fg_hang_note_mismatch(h, ws, n, failed, &notes);
  fg_hang_note_early_exits(h, ws, n, failed, &notes);
  fg__hang_print(&notes);
}
