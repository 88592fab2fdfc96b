/* hang.c - the progress file and the reports made from it (see hang.h). */
#include "launcher/hang.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "comm/progress.h"
#include "common/log.h"
#include "common/util.h"
#include "launcher/output.h"
#include "launcher/summary.h"

enum { SAME_PASS_NS = 2000000 }; /* exits reaped this close together came in one pass */

/* One rank as a report sees it. */
typedef struct where {
  const fg_worker *w;
  fg_progress_slot s; /* state NONE when there is nothing to read */
  int cluster;        /* index of the first rank reported with it; -1: not yet */
} where;

enum kind { IN_OP, NOT_ARRIVED, EXITED };

/* --- the file ---------------------------------------------------------------------------- */

/* An anonymous shared-memory file that the workers reopen through /proc: nothing is left on
 * any file system however fgrun ends. Without memfd, a file in /dev/shm (else $TMPDIR or
 * /tmp) that fgrun removes at exit. */
static int make_file(fg_hang *h, char *err, size_t errlen) {
  int fd = memfd_create("fgrun-progress", MFD_CLOEXEC);
  if (fd >= 0) {
    h->path = fg_asprintf("/proc/%d/fd/%d", (int)getpid(), fd);
    if (h->path) return fd;
    close(fd);
    return fg_fail(err, errlen, -ENOMEM, "out of memory");
  }
  const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
  if (!dir || !*dir) dir = "/tmp";
  if (!(h->path = fg_asprintf("%s/fgrun-progress-%d-XXXXXX", dir, (int)getpid())))
    return fg_fail(err, errlen, -ENOMEM, "out of memory");
  if ((fd = mkostemp(h->path, O_CLOEXEC)) < 0)
    return fg_fail(err, errlen, -errno, "cannot create %s: %s", h->path, strerror(errno));
  h->remove = 1;
  return fd;
}

int fg_hang_open(fg_hang *h, int nslots, double timeout, char *err, size_t errlen) {
  memset(h, 0, sizeof *h);
  h->fd = -1;
  h->timeout = timeout;
  int fd = make_file(h, err, errlen);
  if (fd < 0) {
    fg_hang_close(h);
    return fd;
  }
  h->fd = fd;
  size_t size = (size_t)(nslots + 1) * FG_PROGRESS_SLOT_SIZE;
  /* Allocated now, so that a full /dev/shm fails here and not as SIGBUS in a worker. */
  int rc = -posix_fallocate(fd, 0, (off_t)size);
  void *map = rc ? MAP_FAILED : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (!rc && map == MAP_FAILED) rc = -errno;
  if (rc) {
    fg_fail(err, errlen, rc, "cannot size %s: %s", h->path, strerror(-rc));
    fg_hang_close(h);
    return rc;
  }
  *(fg_progress_header *)map = (fg_progress_header){FG_PROGRESS_MAGIC, FG_PROGRESS_VERSION,
                                                     FG_PROGRESS_SLOT_SIZE, (uint32_t)nslots};
  h->map = map;
  h->size = size;
  h->nslots = nslots;
  return 0;
}

void fg_hang_reset(fg_hang *h) {
  if (!h->map) return;
  memset((char *)h->map + FG_PROGRESS_SLOT_SIZE, 0, h->size - FG_PROGRESS_SLOT_SIZE);
  h->reported = 0;
}

void fg_hang_close(fg_hang *h) {
  if (h->map) munmap(h->map, h->size);
  if (h->fd > 0) close(h->fd); /* a zeroed fg_hang has fd 0, which is not ours */
  if (h->path && h->remove) unlink(h->path);
  free(h->path);
  memset(h, 0, sizeof *h);
}

uint64_t fg_hang_period_ms(const fg_hang *h) {
  double ms = h->timeout * 100; /* a tenth */
  return (uint64_t)(ms < 10 ? 10 : ms > 100 ? 100 : ms);
}

/* --- reading ----------------------------------------------------------------------------- */

static void read_where(const fg_hang *h, const fg_worker *w, where *out) {
  memset(out, 0, sizeof *out);
  out->w = w;
  out->cluster = -1;
  if (!h->map || w->local_rank < 0 || w->local_rank >= h->nslots) return;
  const volatile fg_progress_slot *slot = (const volatile fg_progress_slot *)(
      (const char *)h->map + (size_t)(w->local_rank + 1) * FG_PROGRESS_SLOT_SIZE);
  if (fg_progress_read(slot, &out->s) != 0) out->s.state = FG_PROGRESS_NONE;
}

static enum kind kind_of(const where *x) {
  if (x->w->state != FG_WORKER_RUNNING) return EXITED;
  return x->s.state == FG_PROGRESS_IN ? IN_OP : NOT_ARRIVED;
}

/* Ranks are reported together when they are in (or last left) the same operation. */
static int same_place(const where *a, const where *b) {
  if (kind_of(a) != kind_of(b) || a->s.state != b->s.state) return 0;
  if (kind_of(a) == EXITED) {
    char ea[128], eb[128];
    fg_describe_end(a->w, ea, sizeof ea);
    fg_describe_end(b->w, eb, sizeof eb);
    if (strcmp(ea, eb) != 0) return 0;
  }
  return a->s.state == FG_PROGRESS_NONE ||
         (a->s.seq == b->s.seq && !strcmp(a->s.op, b->s.op) && !strcmp(a->s.group, b->s.group));
}

/* --- formatting -------------------------------------------------------------------------- */


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

static void put_seconds(fg_buf *b, uint64_t ns) {
  double s = (double)ns / 1e9;
  fg_buf_printf(b, s < 10 ? "%.1f s" : "%.0f s", s);
}

static uint64_t since(uint64_t now, uint64_t then) { return now > then ? now - then : 0; }

/* "allreduce #42 on world", "store_barrier on exit", "init on world" */
static void put_op(fg_buf *b, const fg_progress_slot *s) {
  fg_buf_printf(b, "%s", s->op);
  if (s->seq) fg_buf_printf(b, " #%llu", (unsigned long long)s->seq);
  if (s->group[0]) fg_buf_printf(b, " on %s", s->group);
}

static void put_last(fg_buf *b, const fg_progress_slot *s, uint64_t now) {
  if (s->state == FG_PROGRESS_NONE) {
    fg_buf_printf(b, "no operation yet");
    return;
  }
  fg_buf_printf(b, "last: ");
  put_op(b, s);
  fg_buf_printf(b, s->state == FG_PROGRESS_IN ? ", entered " : ", left ");
  put_seconds(b, since(now, s->t_ns));
  fg_buf_printf(b, " ago");
}

/* One group of ranks in the same place: its ranks and how long the oldest has been there. */
static void put_cluster(fg_buf *b, where *all, int n, int first, uint64_t now) {
  int *ranks = calloc((size_t)n, sizeof *ranks);
  if (!ranks) return;
  int count = 0;
  uint64_t oldest = all[first].s.t_ns;
  for (int i = first; i < n; i++) {
    if (all[i].cluster != first) continue;
    ranks[count++] = all[i].w->rank;
    if (all[i].s.t_ns < oldest) oldest = all[i].s.t_ns;
  }
  char list[512];
  fg_hang_format_ranks(ranks, count, list, sizeof list);
  free(ranks);
  const where *x = &all[first];
  fg_progress_slot s = x->s;
  s.t_ns = oldest;
  fg_buf_printf(b, "rank%s %s ", count == 1 ? "" : "s", list);
  if (kind_of(x) == IN_OP) {
    fg_buf_printf(b, "%s been in ", count == 1 ? "has" : "have");
    put_op(b, &s);
    fg_buf_printf(b, " for ");
    put_seconds(b, since(now, oldest));
    return;
  }
  if (kind_of(x) == EXITED) {
    char end[128];
    fg_describe_end(x->w, end, sizeof end);
    fg_buf_printf(b, "%s (", end);
  } else {
    fg_buf_printf(b, "%s not arrived (", count == 1 ? "has" : "have");
  }
  put_last(b, &s, now);
  fg_buf_printf(b, ")");
}

/* Assigns every rank to the first rank in the same place, then writes the groups of those
 * in an operation first, the others after, each in rank order, separated by "; ". */
static void put_clusters(fg_buf *b, where *all, int n, uint64_t now) {
  for (int i = 0; i < n; i++) {
    if (all[i].cluster >= 0) continue;
    for (int j = i; j < n; j++)
      if (all[j].cluster < 0 && same_place(&all[i], &all[j])) all[j].cluster = i;
  }
  int written = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < n; i++) {
      if (all[i].cluster != i || (kind_of(&all[i]) == IN_OP) != (pass == 0)) continue;
      if (written++) fg_buf_printf(b, "; ");
      put_cluster(b, all, n, i, now);
    }
}

/* --- checks ------------------------------------------------------------------------------ */

static uint64_t fingerprint(const where *x) {
  uint64_t h = 1469598103934665603ULL;
  const unsigned char *parts[] = {(const unsigned char *)x->s.op,
                                  (const unsigned char *)x->s.group};
  for (size_t p = 0; p < FG_ARRAY_LEN(parts); p++)
    for (const unsigned char *c = parts[p]; *c; c++) h = (h ^ *c) * 1099511628211ULL;
  h = (h ^ x->s.seq) * 1099511628211ULL;
  return ((h ^ (uint64_t)x->w->rank) * 1099511628211ULL) | 1; /* never 0: "none reported" */
}

int fg_hang_check(fg_hang *h, const fg_worker *ws, int n, uint64_t now_ns, fg_buf *out,
                  double *late_s) {
  if (!h->map || h->timeout <= 0 || n <= 0) return 0;
  where *all = calloc((size_t)n, sizeof *all);
  if (!all) return 0;
  int oldest = -1;
  for (int i = 0; i < n; i++) {
    read_where(h, &ws[i], &all[i]);
    if (kind_of(&all[i]) == IN_OP && (oldest < 0 || all[i].s.t_ns < all[oldest].s.t_ns))
      oldest = i;
  }
  uint64_t limit = (uint64_t)(h->timeout * 1e9);
  int found = 0;
  if (oldest >= 0 && since(now_ns, all[oldest].s.t_ns) >= limit &&
      fingerprint(&all[oldest]) != h->reported) {
    h->reported = fingerprint(&all[oldest]);
    *late_s = (double)(since(now_ns, all[oldest].s.t_ns) - limit) / 1e9;
    fg_buf_printf(out, "fgrun: hang: ");
    put_clusters(out, all, n, now_ns);
    fg_buf_printf(out, "\n");
    found = 1;
  }
  free(all);
  return found;
}

/* "; ranks 0,1,3 were last in allreduce #4 on world" for every rank but skip. */
static void put_last_ops(fg_buf *b, where *all, int n, int skip) {
  int *ranks = calloc((size_t)n, sizeof *ranks);
  if (!ranks) return;
  for (int i = 0; i < n; i++) all[i].cluster = -1;
  for (int i = 0; i < n; i++) {
    if (i == skip || all[i].cluster >= 0 || all[i].s.state == FG_PROGRESS_NONE) continue;
    int count = 0;
    for (int j = i; j < n; j++)
      if (j != skip && all[j].cluster < 0 && all[j].s.state != FG_PROGRESS_NONE &&
          all[j].s.seq == all[i].s.seq && !strcmp(all[j].s.op, all[i].s.op) &&
          !strcmp(all[j].s.group, all[i].s.group)) {
        all[j].cluster = i;
        ranks[count++] = all[j].w->rank;
      }
    char list[512];
    fg_hang_format_ranks(ranks, count, list, sizeof list);
    fg_buf_printf(b, "; rank%s %s %s last in ", count == 1 ? "" : "s", list, count == 1 ? "was" : "were");
    put_op(b, &all[i].s);
  }
  free(ranks);
}

void fg_hang_note_early_exits(const fg_hang *h, const fg_worker *ws, int n,
                              const fg_worker *failed, fg_buf *out) {
  if (!h->map || !failed || n <= 0) return;
  where *all = calloc((size_t)n, sizeof *all);
  if (!all) return;
  for (int i = 0; i < n; i++) read_where(h, &ws[i], &all[i]);
  for (int i = 0; i < n; i++) {
    const fg_worker *w = &ws[i];
    /* Reaped in the same pass as the failure counts as before it: that pass goes in
     * libuv's order, not the order of death. */
    if (w->state != FG_WORKER_EXITED || w->exit_code != 0 || w->term_signal != 0 ||
        w->end_ns > failed->end_ns + SAME_PASS_NS)
      continue;
    fg_buf_printf(out, "fgrun: rank %d exited with code 0 ", w->rank);
    put_seconds(out, since(failed->end_ns, w->end_ns));
    fg_buf_printf(out, " before rank %d failed, while its peers still needed it (", failed->rank);
    if (all[i].s.state == FG_PROGRESS_NONE) {
      fg_buf_printf(out, "it entered no operation");
    } else {
      fg_buf_printf(out, "its last operation: ");
      put_op(out, &all[i].s);
    }
    put_last_ops(out, all, n, i);
    fg_buf_printf(out, ")\n");
  }
  free(all);
}

/* --- on the console ------------------------------------------------------------------------ */

static void print(fg_buf *b) {
  if (b->len && !b->failed) fg_console_write(2, b->data, b->len); /* one write: whole lines */
  fg_buf_free(b);
}

int fg_hang_tick(fg_hang *h, const fg_worker *ws, int n) {
  fg_buf report;
  fg_buf_init(&report);
  double late = 0;
  int found = fg_hang_check(h, ws, n, fg_now_ns(), &report, &late);
  print(&report);
  if (found) fg_debug("hang reported %.1f ms after --hang_timeout passed", late * 1000);
  return found;
}

void fg_hang_print_early_exits(const fg_hang *h, const fg_worker *ws, int n,
                               const fg_worker *failed) {
  fg_buf notes;
  fg_buf_init(&notes);
  fg_hang_note_early_exits(h, ws, n, failed, &notes);
  print(&notes);
}
