/* hang_tick.c - a report's second half: the ranks' stacks (native, and Python tracebacks from
 * fgrun's hook) read in the background, the report finished once they are in, and silences
 * (no slot or output change for --hang_timeout) confirmed by two samples of the stacks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "launcher/hang_internal.h"
#include "launcher/hang_python.h"
#include "launcher/hang_report.h"
#include "launcher/hang_stacks.h"
#include "launcher/output.h"
#include "launcher/procinfo.h"
#include "launcher/rundir.h"

/* One report being completed: the ranks, their Python places once read. */
typedef struct report {
  fg_hang *h;
  int quiet;            /* found by silence: the first line waits for the tracebacks */
  uint64_t now_ns;
  int n;
  fg_hang_rank *r;
  char *ends;
  char **py_file;       /* hooked ranks' dump files, else NULL */
  fg_buf *py;           /* their tracebacks (fgrun-stack's text) */
  fg_py_where *where;
  int *culprit;
} report;

static void report_free(report *rp) {
  for (int i = 0; i < rp->n; i++) {
    free(rp->py_file[i]);
    fg__buf_free(&rp->py[i]);
  }
  free(rp->r);
  free(rp->ends);
  free(rp->py_file);
  free(rp->py);
  free(rp->where);
  free(rp->culprit);
  free(rp);
}

static void report_end(report *rp, int reported) {
  fg_hang *h = rp->h;
  h->reading = NULL;
  h->report_open = 0;
  report_free(rp);
  if (reported && h->on_reported) h->on_reported(h->cb_data);
}

static void report_done(report *rp) { report_end(rp, 1); }

/* Silence alone is no hang: ranks importing torch or computing write nothing either. It is
 * one when a rank waits inside torch.distributed, or when every Python rank sits idle (under
 * a twentieth of the silence on CPU). */
static int quiet_is_a_hang(const report *rp) {
  int idle = 1, any = 0;
  for (int i = 0; i < rp->n; i++) {
    if (!rp->where[i].ok) continue;
    any = 1;
    if (rp->where[i].in_torch_dist) return 1;
    const fg_hang_rank *x = &rp->r[i];
    if (x->cpu_still_ns * 20 >= x->still_ns) idle = 0;
  }
  return any && idle;
}

static void on_native(fg_stacks *s, fg_stack_job *jobs, int n, void *data) {
  report *rp = data;
  (void)s;
  fg_buf b;
  fg__buf_init(&b);
  for (int j = 0; j < n; j++) {
    int i = 0;
    while (i < rp->n && rp->r[i].pid != jobs[j].pid) i++;
    fg_buf text;
    fg__buf_init(&text);
    if (i < rp->n && rp->py[i].len) fg__buf_put(&text, rp->py[i].data, rp->py[i].len);
    fg__buf_put(&text, jobs[j].text.data, jobs[j].text.len);
    fg_hang_put_stack(&b, jobs[j].rank, jobs[j].pid, &text, jobs[j].status,
                      FG_HANG_STACKS_BOUND_S);
    fg__buf_free(&text);
  }
  fg__hang_print(&b);
  report_done(rp);
}

double fg_hang_stacks_bound_s(void) {
  const char *v = getenv("FG_HANG_STACKS_TIMEOUT");
  double s;
  return v && fg__parse_seconds(v, &s) == 0 && s > 0 ? s : 5.0;
}

/* The stacks of the culprits (or of everyone): native frames, after the tracebacks the
 * first pass read. */
static void read_native(report *rp) {
  fg_hang *h = rp->h;
  fg_stack_job *jobs = calloc((size_t)rp->n, sizeof *jobs);
  int nj = 0;
  for (int i = 0; jobs && i < rp->n; i++)
    if (rp->r[i].running && (h->stacks == FG_STACKS_ALL || rp->culprit[i]))
      jobs[nj++] = (fg_stack_job){.rank = rp->r[i].rank, .pid = rp->r[i].pid, .native = 1};
  if (!nj || h->stacks == FG_STACKS_NONE || !h->stack_helper ||
      !(h->reading = fg_stacks_start(h->loop, h->stack_helper, jobs, nj, FG_HANG_STACKS_BOUND_S,
                                     on_native, rp))) {
    free(jobs);
    report_done(rp);
    return;
  }
  free(jobs);
}

/* Silence and no marks: the culprits are the Python ranks outside torch.distributed while
 * others wait inside it. */
static void quiet_verdict(report *rp, fg_buf *b) {
  int nwait = 0, nout = 0;
  for (int i = 0; i < rp->n; i++) {
    if (!rp->where[i].ok) continue;
    if (rp->where[i].in_torch_dist) nwait++;
    else nout++;
  }
  fg__buf_printf(b, "fgrun: hang: ");
  if (nwait && nout) {
    int first = -1, count = 0;
    int *ranks = calloc((size_t)rp->n, sizeof *ranks);
    for (int i = 0; ranks && i < rp->n; i++)
      if (rp->where[i].ok && !rp->where[i].in_torch_dist) {
        rp->culprit[i] = 1;
        if (first < 0) first = i;
        ranks[count++] = rp->r[i].rank;
      }
    char list[512];
    fg_hang_format_ranks(ranks, count, list, sizeof list);
    if (count == 1) {
      fg__buf_printf(b, "rank %s (pid %d) is ", list, rp->r[first].pid);
      fg_hang_put_state(b, &rp->r[first]);
    } else {
      fg__buf_printf(b, "ranks %s are", list);
    }
    fg__buf_printf(b, " at ");
    fg_py_put_where(b, &rp->where[first]);
    fg__buf_printf(b, ", outside torch.distributed; ");
    count = 0;
    int w = -1;
    for (int i = 0; ranks && i < rp->n; i++)
      if (rp->where[i].ok && rp->where[i].in_torch_dist) {
        if (w < 0) w = i;
        ranks[count++] = rp->r[i].rank;
      }
    fg_hang_format_ranks(ranks, count, list, sizeof list);
    free(ranks);
    fg__buf_printf(b, "rank%s %s wait%s in torch.distributed at ", count == 1 ? "" : "s", list,
                  count == 1 ? "s" : "");
    fg_py_put_where(b, &rp->where[w]);
    fg__buf_printf(b, "; no rank wrote output or marked progress for ");
    fg_hang_put_seconds(b, fg__hang_since(rp->now_ns, rp->h->last_activity_ns));
    /* the summary's cause, unless an earlier report named one */
    fg_hang *h = rp->h;
    if (!h->cause[0]) {
      fg__hang_clear_cause(h);
      fg_buf cause;
      fg__buf_init(&cause);
      fg__buf_printf(&cause, "held the others up: it never arrived in torch.distributed%s%s; "
                    "it was at ", rp->where[w].lib_func[0] ? "'s " : "", rp->where[w].lib_func);
      fg_py_put_where(&cause, &rp->where[first]);
      if (!cause.failed)
        snprintf(h->cause, sizeof h->cause, "%.*s", (int)cause.len, (const char *)cause.data);
      fg__buf_free(&cause);
      h->cause_rank = rp->r[first].rank;
      h->cause_pid = rp->r[first].pid;
    }
  } else {
    fg__buf_printf(b, "no rank wrote output or marked progress for ");
    fg_hang_put_seconds(b, fg__hang_since(rp->now_ns, rp->h->last_activity_ns));
    fg__buf_printf(b, ": ");
    int *ranks = calloc((size_t)rp->n, sizeof *ranks);
    for (int i = 0; ranks && i < rp->n; i++) ranks[i] = rp->r[i].rank;
    if (ranks) fg_py_put_groups(b, ranks, rp->where, rp->n);
    free(ranks);
  }
  fg__buf_printf(b, "\n");
}

static int same_places(const fg_py_where *a, const fg_py_where *b, int n) {
  for (int i = 0; i < n; i++)
    if (a[i].ok != b[i].ok || (a[i].ok && (!fg_py_same_place(&a[i], &b[i]) ||
                                            a[i].in_torch_dist != b[i].in_torch_dist)))
      return 0;
  return 1;
}

/* A silence is reported when two samples a little apart (a quarter of the timeout, at
 * least 0.5 s) find every Python rank where it was, and the silence looks like a hang
 * between them (quiet_is_a_hang, with each rank's CPU counted over that span only: a long
 * import before it says nothing): one sample could catch a healthy loop's ranks waiting a
 * moment in a collective. Otherwise the next sample follows that much later. */
static int quiet_confirmed(report *rp) {
  fg_hang *h = rp->h;
  uint64_t limit = (uint64_t)(h->timeout * 1e9), again = FG__MAX(limit / 4, 500000000u);
  int n = FG__MIN(rp->n, h->nslots);
  int same = h->quiet_prev_ok && same_places(h->quiet_prev, rp->where, n);
  if (same) {
    for (int i = 0; i < n; i++) {
      fg_hang_rank *x = &rp->r[i];
      x->still_ns = fg__hang_since(rp->now_ns, h->quiet_prev_ns);
      x->cpu_still_ns = fg__hang_since(x->p.cpu_ns, h->quiet_prev_cpu[2 * i]);
      x->runq_still_ns = fg__hang_since(x->p.runq_ns, h->quiet_prev_cpu[2 * i + 1]);
    }
    if (quiet_is_a_hang(rp)) {
      h->quiet_prev_ok = 0;
      return 1;
    }
  }
  h->quiet_prev_ok = 1;
  h->quiet_prev_ns = rp->now_ns;
  memcpy(h->quiet_prev, rp->where, (size_t)n * sizeof *rp->where);
  for (int i = 0; i < n; i++) {
    h->quiet_prev_cpu[2 * i] = rp->r[i].p.cpu_ns;
    h->quiet_prev_cpu[2 * i + 1] = rp->r[i].p.runq_ns;
  }
  fg_debug("no output or marks for %.1f s: %s; sampling again in %.1f s",
           (double)fg__hang_since(rp->now_ns, h->last_activity_ns) / 1e9,
           same ? "the ranks stand still, but none waits in torch.distributed and some use CPU"
                : "confirming where the ranks are",
           (double)again / 1e9);
  h->quiet_next_ns = fg__now_ns() + again;
  h->quiet_reported = 0;
  return 0;
}

static void on_python(fg_stacks *s, fg_stack_job *jobs, int n, void *data) {
  report *rp = data;
  (void)s;
  for (int j = 0; j < n; j++)
    for (int i = 0; i < rp->n; i++)
      if (rp->r[i].pid == jobs[j].pid) {
        fg__buf_put(&rp->py[i], jobs[j].text.data, jobs[j].text.len);
        fg_py_parse((const char *)jobs[j].text.data, jobs[j].text.len, &rp->where[i]);
      }
  if (rp->quiet && !quiet_confirmed(rp)) {
    report_end(rp, 0);
    return;
  }
  fg_buf b;
  fg__buf_init(&b);
  if (rp->quiet) quiet_verdict(rp, &b);
  int *ranks = calloc((size_t)rp->n, sizeof *ranks);
  for (int i = 0; ranks && i < rp->n; i++) ranks[i] = rp->r[i].rank;
  fg__buf_printf(&b, "fgrun:   python: ");
  if (ranks) fg_py_put_groups(&b, ranks, rp->where, rp->n);
  fg__buf_printf(&b, "\n");
  free(ranks);
  if (rp->quiet) fg_hang_put_details(&b, rp->r, rp->n, rp->now_ns);
  fg__hang_print(&b);
  read_native(rp);
}

static report *report_new(fg_hang *h, const fg_worker *ws, int n, uint64_t now) {
  report *rp = calloc(1, sizeof *rp);
  if (!rp) return NULL;
  rp->h = h;
  rp->n = n;
  rp->now_ns = now;
  rp->r = calloc((size_t)n, sizeof *rp->r);
  rp->ends = calloc((size_t)n, END_LEN);
  rp->py_file = calloc((size_t)n, sizeof *rp->py_file);
  rp->py = calloc((size_t)n, sizeof *rp->py);
  rp->where = calloc((size_t)n, sizeof *rp->where);
  rp->culprit = calloc((size_t)n, sizeof *rp->culprit);
  if (!rp->r || !rp->ends || !rp->py_file || !rp->py || !rp->where || !rp->culprit) {
    rp->n = 0;
    report_free(rp);
    return NULL;
  }
  fg__hang_gather(h, ws, n, now, 1, rp->r, rp->ends);
  for (int i = 0; i < n; i++) {
    fg__buf_init(&rp->py[i]);
    const fg_hang_watch *wt = fg__hang_watch_of(h, &ws[i]);
    rp->culprit[i] = wt && wt->culprit;
    if (fg__hang_hooked(h, &rp->r[i]) && ws[i].error_file)
      rp->py_file[i] = fg_rundir_sibling(ws[i].error_file, FG_RUNDIR_PYSTACK);
  }
  return rp;
}

/* The report's stacks: the Python ranks' tracebacks first (all of them: they are grouped
 * by place), then native frames. Returns 0 when reading started, else the report is done. */
static int complete_report(report *rp) {
  fg_hang *h = rp->h;
  fg_stack_job *jobs = calloc((size_t)rp->n, sizeof *jobs);
  int nj = 0;
  for (int i = 0; jobs && i < rp->n; i++)
    if (rp->py_file[i])
      jobs[nj++] = (fg_stack_job){.rank = rp->r[i].rank, .pid = rp->r[i].pid,
                                  .py_file = rp->py_file[i], .py_signal = h->py_signal};
  h->report_open = 1;
  if (nj && h->stack_helper)
    h->reading = fg_stacks_start(h->loop, h->stack_helper, jobs, nj, FG_HANG_STACKS_BOUND_S,
                                 on_python, rp);
  free(jobs);
  if (h->reading) return 0;
  if (rp->quiet) { /* nothing to sample after all: no report */
    h->report_open = 0;
    report_free(rp);
    return -1;
  }
  read_native(rp);
  return 0;
}

/* Nothing changed for the timeout, no rank waits in a marked operation, and some rank is a
 * Python program with the hook: its tracebacks say where everyone is. */
static report *quiet_report(fg_hang *h, const fg_worker *ws, int n, uint64_t now) {
  uint64_t limit = (uint64_t)(h->timeout * 1e9);
  if (h->quiet_reported || fg__hang_since(now, h->last_activity_ns) < limit ||
      now < h->quiet_next_ns)
    return NULL;
  h->quiet_reported = 1; /* once per silence, whatever is found */
  for (int i = 0; i < n; i++) {
    fg_progress_slot s;
    if (ws[i].state == FG_WORKER_RUNNING && fg__hang_read_slot(h, &ws[i], &s) == 0 &&
        s.state == FG_PROGRESS_IN)
      return NULL; /* a marked wait: the slots' report covers it */
  }
  report *rp = report_new(h, ws, n, now);
  if (!rp) return NULL;
  int any = 0;
  for (int i = 0; i < n; i++) any |= rp->py_file[i] != NULL;
  if (!any || !h->stack_helper) {
    report_free(rp);
    return NULL;
  }
  rp->quiet = 1;
  return rp;
}

int fg_hang_tick(fg_hang *h, const fg_worker *ws, int n) {
  uint64_t now = fg__now_ns();
  if (h->report_open) { /* one report at a time; keep noting what changes */
    fg__hang_observe(h, ws, n, now);
    return 0;
  }
  fg_buf out;
  fg__buf_init(&out);
  double late = 0;
  int found = fg_hang_check(h, ws, n, now, &out, &late);
  fg__hang_print(&out);
  report *rp = NULL;
  if (found) {
    fg_debug("hang reported %.1f ms after --hang_timeout passed", late * 1000);
    rp = report_new(h, ws, n, now);
    if (!rp) {
      if (h->on_reported) h->on_reported(h->cb_data);
      return 1;
    }
  } else if ((rp = quiet_report(h, ws, n, now)) == NULL) {
    return 0;
  }
  return complete_report(rp) == 0;
}
