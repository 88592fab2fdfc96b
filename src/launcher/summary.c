/* summary.c - the failure report: every rank's end, then why the root cause failed. */
#include "launcher/summary.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "launcher/errorfile.h"
#include "launcher/hang_classify.h"
#include "launcher/output.h"

enum { TAIL_LINES = 20 };


/* Copies text line by line, each behind indent, ending with a newline. */
static void put_indented(fg_buf *b, const char *indent, const char *text, size_t len) {
  while (len > 0) {
    const char *nl = memchr(text, '\n', len);
    size_t n = nl ? (size_t)(nl - text) : len;
    fg__buf_put(b, indent, strlen(indent));
    fg__buf_put(b, text, n);
    fg__buf_put_u8(b, '\n');
    if (!nl) break;
    len -= n + 1;
    text = nl + 1;
  }
}

int fg_worker_exit_status(const fg_worker *w) {
  if (w->state != FG_WORKER_EXITED) return 1;
  return w->term_signal ? 128 + w->term_signal : w->exit_code;
}

void fg_describe_end(const fg_worker *w, char *out, size_t outlen) {
  switch (w->state) {
    case FG_WORKER_IDLE: snprintf(out, outlen, "not started"); break;
    case FG_WORKER_RUNNING: snprintf(out, outlen, "still running"); break;
    case FG_WORKER_LOST:
      snprintf(out, outlen, "did not exit after SIGKILL (stuck in the kernel?); left behind");
      break;
    case FG_WORKER_EXITED:
      if (w->term_signal)
        snprintf(out, outlen, "killed by SIG%s (signal %d)", fg__signame(w->term_signal),
                 w->term_signal);
      else
        snprintf(out, outlen, "exited with code %d", w->exit_code);
      break;
  }
}

static void put_root_cause_details(fg_buf *b, const fg_worker *w) {
  fg_error_info info;
  int kind = fg_error_file_read(w->error_file, &info);
  if (kind == FG_ERRFILE_PARSED) {
    fg__buf_printf(b, "fgrun: rank %d's error file (%s):\n", w->rank, w->error_file);
    put_indented(b, "  ", info.message, strlen(info.message));
    if (info.callstack) {
      size_t n = strlen(info.callstack);
      while (n && info.callstack[n - 1] == '\n') n--;
      put_indented(b, "  ", info.callstack, n);
    }
  } else if (kind == FG_ERRFILE_RAW) {
    fg__buf_printf(b, "fgrun: rank %d's error file (%s), not in torch's format:\n", w->rank,
         w->error_file);
    put_indented(b, "  ", info.raw, strlen(info.raw));
  } else if (w->err.tail && w->err.tail->total > 0) {
    fg_buf tail;
    fg__buf_init(&tail);
    fg_tail_lines(w->err.tail, TAIL_LINES, &tail);
    fg__buf_printf(b, "fgrun: last %d lines of rank %d's stderr:\n", TAIL_LINES, w->rank);
    put_indented(b, "  | ", (const char *)tail.data, tail.len);
    fg__buf_free(&tail);
  } else {
    fg__buf_printf(b, "fgrun: rank %d wrote no error file and nothing on stderr\n", w->rank);
  }
  fg_error_info_free(&info);
}

/* After a hang report: the rank it named is the cause; the ranks that then failed on their
 * own (a library's timeout, an error exit) are what followed. */
static void put_hang_cause(const fg_summary *s, fg_buf *b) {
  const fg_worker *hc = s->hang_cause, *rc = s->root_cause;
  fg__buf_printf(b, "fgrun: error: job failed: rank %d (local_rank %d, pid %d) %s (attempt %d, "
                "%d restart%s allowed)\n",
                hc->rank, hc->local_rank, hc->pid, s->hang_what, s->attempt, s->max_restarts,
                s->max_restarts == 1 ? "" : "s");
  if (!rc || rc == hc) {
    if (s->hang_killed) fg__buf_printf(b, "fgrun: what followed: --hang_action kill stopped the job\n");
    return;
  }
  int *ranks = calloc((size_t)s->nworkers + 1, sizeof *ranks);
  if (!ranks) return;
  int n = 0;
  for (int i = 0; i < s->nworkers; i++) {
    const fg_worker *w = &s->workers[i];
    if (w == rc || (w != hc && w->state == FG_WORKER_EXITED && w->exit_code != 0 &&
                    !w->term_signal))
      ranks[n++] = w->rank;
  }
  char list[256], end[128];
  fg_hang_format_ranks(ranks, n, list, sizeof list);
  free(ranks);
  fg_describe_end(rc, end, sizeof end);
  if (n == 1)
    fg__buf_printf(b, "fgrun: what followed: rank %d failed (%s after %.2fs)\n", rc->rank, end,
                  fg_worker_runtime(rc));
  else
    fg__buf_printf(b, "fgrun: what followed: ranks %s failed, rank %d first (%s after %.2fs)\n",
                  list, rc->rank, end, fg_worker_runtime(rc));
}

void fg_summary_format(const fg_summary *s, fg_buf *b) {
  char end[128];
  const fg_worker *rc = s->root_cause;
  if (!s->stop_signal && s->hang_cause && s->hang_what && s->hang_what[0]) {
    put_hang_cause(s, b);
  } else if (s->stop_signal) {
    fg__buf_printf(b, "fgrun: stopped by SIG%s (attempt %d); exit status %d\n",
         fg__signame(s->stop_signal), s->attempt, s->exit_code);
  } else if (rc) {
    fg_describe_end(rc, end, sizeof end);
    fg__buf_printf(b, "fgrun: error: job failed: rank %d (local_rank %d, pid %d) %s after %.2fs "
         "(attempt %d, %d restart%s allowed)\n",
         rc->rank, rc->local_rank, rc->pid, end, fg_worker_runtime(rc), s->attempt,
         s->max_restarts, s->max_restarts == 1 ? "" : "s");
    if (s->root_cause_note) fg__buf_printf(b, "fgrun: rank %d %s\n", rc->rank, s->root_cause_note);
  } else {
    fg__buf_printf(b, "fgrun: error: job failed (attempt %d)\n", s->attempt);
  }
  for (int i = 0; i < s->nworkers; i++) {
    const fg_worker *w = &s->workers[i];
    fg_describe_end(w, end, sizeof end);
    int by_hang = !s->stop_signal && s->hang_cause && s->hang_what && s->hang_what[0];
    const char *mark = by_hang && w == s->hang_cause ? "  <- root cause"
                       : by_hang && w == rc          ? "  <- first to fail"
                       : w == rc                     ? "  <- root cause"
                                                     : "";
    fg__buf_printf(b, "fgrun:   rank %d (local_rank %d, pid %d): %s after %.2fs%s\n", w->rank,
         w->local_rank, w->pid, end, fg_worker_runtime(w), mark);
  }
  if (rc) put_root_cause_details(b, rc);
}

void fg_summary_print(const fg_summary *s) {
  fg_buf b;
  fg__buf_init(&b);
  fg_summary_format(s, &b);
  if (!b.failed) fg_console_write(2, b.data, b.len);
  fg__buf_free(&b);
}
