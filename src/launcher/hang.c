/* hang.c - the progress file, watching the ranks, and the first half of a report: the
 * verdict from the slots (see hang.h). The second half, the stacks, is hang_tick.c; what a
 * failure's summary adds, hang_notes.c. */
#include "launcher/hang.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/progress_slot.h"
#include "common/log.h"
#include "common/util.h"
#include "launcher/hang_classify.h"
#include "launcher/hang_internal.h"
#include "launcher/hang_python.h"
#include "launcher/hang_report.h"
#include "launcher/hang_stacks.h"
#include "launcher/output.h"
#include "launcher/procinfo.h"
#include "launcher/rundir.h"
#include "launcher/summary.h"

/* --- the file ---------------------------------------------------------------------------- */

/* An anonymous shared-memory file that the workers reopen through /proc: nothing is left on
 * any file system however fgrun ends. Without memfd, a file in /dev/shm (else $TMPDIR or
 * /tmp) that fgrun removes at exit. */
static int make_file(fg_hang *h, char *err, size_t errlen) {
  int fd = memfd_create("fgrun-progress", MFD_CLOEXEC);
  if (fd >= 0) {
    h->path = fg__asprintf("/proc/%d/fd/%d", (int)getpid(), fd);
    if (h->path) return fd;
    close(fd);
    return fg__fail(err, errlen, -ENOMEM, "out of memory");
  }
  const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
  if (!dir || !*dir) dir = "/tmp";
  if (!(h->path = fg__asprintf("%s/fgrun-progress-%d-XXXXXX", dir, (int)getpid())))
    return fg__fail(err, errlen, -ENOMEM, "out of memory");
  if ((fd = mkostemp(h->path, O_CLOEXEC)) < 0)
    return fg__fail(err, errlen, -errno, "cannot create %s: %s", h->path, strerror(errno));
  h->remove = 1;
  return fd;
}

void fg__hang_clear_cause(fg_hang *h) {
  h->hang_local_rank = -1;
  h->cause[0] = '\0';
}

int fg_hang_open(fg_hang *h, int nslots, double timeout, char *err, size_t errlen) {
  memset(h, 0, sizeof *h);
  h->fd = -1;
  h->timeout = timeout;
  fg__hang_clear_cause(h);
  int fd = make_file(h, err, errlen);
  if (fd < 0) {
    fg_hang_close(h);
    return fd;
  }
  h->fd = fd;
  size_t size = fg_progress_file_size(nslots);
  /* Allocated now, so that a full /dev/shm fails here and not as SIGBUS in a worker. */
  int rc = -posix_fallocate(fd, 0, (off_t)size);
  void *map = rc ? MAP_FAILED : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (!rc && map == MAP_FAILED) rc = -errno;
  if (!rc && (!(h->watch = calloc((size_t)nslots, sizeof *h->watch)) ||
              !(h->quiet_prev = calloc((size_t)nslots, sizeof *h->quiet_prev)) ||
              !(h->quiet_prev_cpu = calloc((size_t)nslots * 2, sizeof *h->quiet_prev_cpu))))
    rc = -ENOMEM;
  if (rc) {
    if (map != MAP_FAILED) munmap(map, size);
    fg__fail(err, errlen, rc, "cannot size %s: %s", h->path, strerror(-rc));
    fg_hang_close(h);
    return rc;
  }
  *(fg_progress_header *)map = (fg_progress_header){FG_PROGRESS_MAGIC, FG_PROGRESS_VERSION,
                                                     FG_PROGRESS_SLOT_SIZE, (uint32_t)nslots};
  h->map = map;
  h->size = size;
  h->nslots = nslots;
  h->attempt_start_ns = h->last_activity_ns = fg__now_ns();
  return 0;
}

void fg_hang_set_report(fg_hang *h, uv_loop_t *loop, const char *helper,
                        enum fg_hang_stacks stacks, int py_signal, fg_hang_cb on_reported,
                        void *data) {
  h->loop = loop;
  h->stack_helper = helper;
  h->stacks = stacks;
  h->py_signal = py_signal;
  h->on_reported = on_reported;
  h->cb_data = data;
}

void fg_hang_reset(fg_hang *h) {
  if (!h->map) return;
  memset(fg_progress_slot_at(h->map, 0), 0, h->size - fg_progress_slot_offset(0));
  memset(h->watch, 0, (size_t)h->nslots * sizeof *h->watch);
  h->reported = 0;
  h->quiet_reported = h->quiet_prev_ok = 0;
  h->quiet_next_ns = 0;
  h->attempt_start_ns = h->last_activity_ns = fg__now_ns();
  fg__hang_clear_cause(h);
}

void fg_hang_stop(fg_hang *h) {
  if (h->reading) fg_stacks_cancel(h->reading);
}

void fg_hang_close(fg_hang *h) {
  if (h->map) munmap(h->map, h->size);
  if (h->fd > 0) close(h->fd); /* a zeroed fg_hang has fd 0, which is not ours */
  if (h->path && h->remove) unlink(h->path);
  free(h->path);
  free(h->watch);
  free(h->quiet_prev);
  free(h->quiet_prev_cpu);
  memset(h, 0, sizeof *h);
  fg__hang_clear_cause(h);
}

uint64_t fg_hang_period_ms(const fg_hang *h) {
  double ms = h->timeout * 100; /* a tenth */
  return (uint64_t)(ms < 10 ? 10 : ms > 100 ? 100 : ms);
}

/* --- watching ---------------------------------------------------------------------------- */

uint64_t fg__hang_since(uint64_t now, uint64_t then) { return now > then ? now - then : 0; }

int fg__hang_read_slot(const fg_hang *h, const fg_worker *w, fg_progress_slot *out) {
  memset(out, 0, sizeof *out);
  if (!h->map || w->local_rank < 0 || w->local_rank >= h->nslots) return -1;
  const volatile fg_progress_slot *slot = fg_progress_slot_at(h->map, w->local_rank);
  if (fg_progress_read(slot, out) == 0) return 0;
  memset(out, 0, sizeof *out);
  return -1;
}

fg_hang_watch *fg__hang_watch_of(const fg_hang *h, const fg_worker *w) {
  return w->local_rank >= 0 && w->local_rank < h->nslots ? &h->watch[w->local_rank] : NULL;
}

/* Notes every slot change and every byte of output: a rank's CPU time is sampled when it
 * shows such a sign of life (one read of /proc/<pid>/stat), so at a report "CPU used
 * since" is the difference. Returns 1 when anything changed. */
int fg__hang_observe(fg_hang *h, const fg_worker *ws, int n, uint64_t now) {
  int changed = 0, progressed = 0;
  for (int i = 0; i < n; i++) {
    const fg_worker *w = &ws[i];
    fg_hang_watch *wt = fg__hang_watch_of(h, w);
    if (!wt || w->state != FG_WORKER_RUNNING) continue;
    fg_progress_slot s;
    fg__hang_read_slot(h, w, &s);
    int fresh = wt->pid != w->pid;
    int slot_moved = !fresh && s.gen != wt->gen;
    int wrote = !fresh && (w->out.bytes != wt->out_bytes || w->err.bytes != wt->err_bytes);
    if (fresh || slot_moved || wrote) {
      int failed_out = s.state == FG_PROGRESS_OUT && (s.flags & FG_PROGRESS_FAILED);
      progressed |= (slot_moved && !failed_out) ||
                    (wrote && w->out.bytes != wt->out_bytes);
      wt->pid = w->pid;
      wt->gen = s.gen;
      wt->out_bytes = w->out.bytes;
      wt->err_bytes = w->err.bytes;
      wt->changed_ns = fresh ? w->start_ns : now;
      wt->cpu_ns = wt->runq_ns = 0;
      if (!fresh) /* fresh: it has used all since its start */
        fg_proc_cpu_ns(w->pid, &wt->cpu_ns, &wt->runq_ns);
      changed = 1;
    }
  }
  if (changed) {
    h->last_activity_ns = now;
    h->quiet_reported = h->quiet_prev_ok = 0;
    h->quiet_next_ns = 0;
  }
  /* a cause found by stacks alone holds until a rank makes progress again */
  if (progressed && h->hang_local_rank < 0) fg__hang_clear_cause(h);
  return changed;
}

/* The ranks the report named are no longer held up once the longest waiter left the hang's
 * operation without an error; one that failed there (a library timeout) keeps the cause. */
static void check_resolved(fg_hang *h, const fg_worker *ws, int n) {
  if (h->hang_local_rank < 0) return;
  for (int i = 0; i < n; i++) {
    if (ws[i].local_rank != h->hang_local_rank) continue;
    fg_progress_slot s;
    if (fg__hang_read_slot(h, &ws[i], &s) != 0 || s.state == FG_PROGRESS_NONE) return;
    int same = s.seq == h->hang_seq && !strcmp(s.group, h->hang_group);
    if (same && (s.state == FG_PROGRESS_IN || (s.flags & FG_PROGRESS_FAILED))) return;
    if (!same && s.state == FG_PROGRESS_OUT && (s.flags & FG_PROGRESS_FAILED)) return;
    fg__hang_clear_cause(h);
    return;
  }
}

/* Every worker as the classifier sees it; with_proc: with its /proc state (a report), else
 * slots only. ends holds n strings of END_LEN for the ranks' ends. */
void fg__hang_gather(const fg_hang *h, const fg_worker *ws, int n, uint64_t now, int with_proc,
                   fg_hang_rank *r, char *ends) {
  for (int i = 0; i < n; i++) {
    const fg_worker *w = &ws[i];
    fg_hang_rank *x = &r[i];
    memset(x, 0, sizeof *x);
    x->rank = w->rank;
    x->pid = w->pid;
    x->running = w->state == FG_WORKER_RUNNING;
    fg_describe_end(w, ends + (size_t)i * END_LEN, END_LEN);
    x->end = ends + (size_t)i * END_LEN;
    fg__hang_read_slot(h, w, &x->s);
    if (!with_proc || !x->running) continue;
    fg_proc_read(w->pid, &x->p);
    const fg_hang_watch *wt = fg__hang_watch_of(h, w);
    uint64_t from = wt && wt->pid == w->pid ? wt->changed_ns : w->start_ns;
    uint64_t cpu0 = wt && wt->pid == w->pid ? wt->cpu_ns : 0;
    uint64_t runq0 = wt && wt->pid == w->pid ? wt->runq_ns : 0;
    x->still_ns = fg__hang_since(now, from);
    x->cpu_still_ns = x->p.cpu_ns > cpu0 ? x->p.cpu_ns - cpu0 : 0;
    x->runq_still_ns = x->p.runq_ns > runq0 ? x->p.runq_ns - runq0 : 0;
  }
}

int fg__hang_hooked(const fg_hang *h, const fg_hang_rank *x) {
  return h->py_signal > 0 && x->running && x->p.ok && (x->p.sig_caught >> (h->py_signal - 1) & 1);
}

/* --- reports ---------------------------------------------------------------------------- */

void fg__hang_print(fg_buf *b) {
  if (b->len && !b->failed) fg_console_write(2, b->data, b->len); /* one write: whole lines */
  fg__buf_free(b);
}

/* A hang is its operation: another longest waiter (the first gave up) is the same hang. */
static uint64_t fingerprint(const fg_progress_slot *s) {
  uint64_t h = 1469598103934665603ULL;
  const unsigned char *parts[] = {(const unsigned char *)s->op, (const unsigned char *)s->group};
  for (size_t p = 0; p < FG_ARRAY_LEN(parts); p++)
    for (const unsigned char *c = parts[p]; *c; c++) h = (h ^ *c) * 1099511628211ULL;
  return ((h ^ s->seq) * 1099511628211ULL) | 1; /* never 0: "none reported" */
}

/* The first report's culprit stays the cause until the ranks it held up move on: a later
 * report of what followed (ranks that gave up) does not replace it. */
void fg__hang_keep_cause(fg_hang *h, const fg_worker *ws, const fg_hang_rank *r,
                       const fg_hang_verdict *v) {
  for (int i = 0; i < h->nslots; i++) h->watch[i].culprit = 0; /* whose stacks to read */
  for (int c = 0; c < v->nculprits; c++) {
    fg_hang_watch *wt = fg__hang_watch_of(h, &ws[v->culprits[c]]);
    if (wt) wt->culprit = 1;
  }
  if (h->cause[0]) return;
  fg__hang_clear_cause(h);
  if (v->hang >= 0) {
    h->hang_local_rank = ws[v->hang].local_rank;
    h->hang_seq = r[v->hang].s.seq;
    snprintf(h->hang_group, sizeof h->hang_group, "%s", r[v->hang].s.group);
  }
  if (!v->nculprits) return;
  const fg_worker *c = &ws[v->culprits[0]];
  fg_hang_format_cause(r, v, v->culprits[0], h->cause, sizeof h->cause);
  if (!h->cause[0]) return;
  h->cause_rank = c->rank;
  h->cause_pid = c->pid;
}

int fg_hang_check(fg_hang *h, const fg_worker *ws, int n, uint64_t now_ns, fg_buf *out,
                  double *late_s) {
  if (!h->map || h->timeout <= 0 || n <= 0) return 0;
  fg__hang_observe(h, ws, n, now_ns);
  check_resolved(h, ws, n);
  int oldest = -1;
  fg_progress_slot s, old = {0};
  for (int i = 0; i < n; i++)
    if (ws[i].state == FG_WORKER_RUNNING && fg__hang_read_slot(h, &ws[i], &s) == 0 &&
        s.state == FG_PROGRESS_IN && (oldest < 0 || s.t_ns < old.t_ns)) {
      oldest = i;
      old = s;
    }
  uint64_t limit = (uint64_t)(h->timeout * 1e9);
  if (oldest < 0 || fg__hang_since(now_ns, old.t_ns) < limit ||
      fingerprint(&old) == h->reported)
    return 0;
  fg_hang_rank *r = calloc((size_t)n, sizeof *r);
  char *ends = calloc((size_t)n, END_LEN);
  fg_hang_verdict v;
  memset(&v, 0, sizeof v);
  if (!r || !ends) goto out;
  fg__hang_gather(h, ws, n, now_ns, 1, r, ends);
  if (fg_hang_classify(r, n, h->world_size, now_ns, limit, &v) == FG_HANG_NONE) goto out;
  h->reported = fingerprint(&r[v.hang].s);
  *late_s = (double)(fg__hang_since(now_ns, r[v.hang].s.t_ns) - limit) / 1e9;
  fg__buf_printf(out, "fgrun: hang: ");
  fg_hang_format_verdict(r, n, &v, now_ns, out);
  fg__buf_printf(out, "\nfgrun:   where: ");
  fg_hang_put_where(out, r, n, now_ns);
  fg__buf_printf(out, "\n");
  fg_hang_put_details(out, r, n, now_ns);
  fg__hang_keep_cause(h, ws, r, &v);
  fg_hang_verdict_free(&v);
  free(r);
  free(ends);
  return 1;
out:
  fg_hang_verdict_free(&v);
  free(r);
  free(ends);
  return 0;
}

const fg_worker *fg_hang_cause(const fg_hang *h, const fg_worker *ws, int n) {
  if (!h->cause[0]) return NULL;
  for (int i = 0; i < n; i++)
    if (ws[i].rank == h->cause_rank && ws[i].pid == h->cause_pid) return &ws[i];
  return NULL;
}
