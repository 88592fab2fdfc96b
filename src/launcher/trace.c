/* trace.c - fgrun's events and the merged trace file (see trace.h). */
#include "launcher/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "fg/fg.h"
#include "launcher/summary.h"

enum { AGENT_TID = 1000000 }; /* fgrun's own track, above any rank */


/* A JSON string, quotes included. */
static void put_string(fg_buf *b, const char *s) {
  fg__buf_put_u8(b, '"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fg__buf_printf(b, "\\%c", c);
    else if (c < 0x20)
      fg__buf_printf(b, "\\u%04x", c);
    else
      fg__buf_put_u8(b, c);
  }
  fg__buf_put_u8(b, '"');
}

static void put_us(fg_buf *b, const char *key, uint64_t ns) {
  fg__buf_printf(b, ",\"%s\":%llu.%03u", key, (unsigned long long)(ns / 1000), (unsigned)(ns % 1000));
}

/* The start of an event object: {"ph":..,"pid":..,"tid":..,"name":..,"ts":.. */
static void begin_event(fg_timeline *t, const char *ph, int tid, const char *name,
                        uint64_t ts_ns) {
  fg__buf_printf(&t->events, "{\"ph\":\"%s\",\"cat\":\"fgrun\",\"pid\":%d,\"tid\":%d,\"name\":", ph,
       t->node, tid);
  put_string(&t->events, name);
  put_us(&t->events, "ts", ts_ns);
  if (ph[0] == 'i') fg__buf_printf(&t->events, ",\"s\":\"t\"");
}

static void end_event(fg_timeline *t) { fg__buf_printf(&t->events, "},\n"); }

int fg_timeline_open(fg_timeline *t, const char *path, int node, int nproc, char *err,
                     size_t errlen) {
  memset(t, 0, sizeof *t);
  t->fd = -1;
  t->node = node;
  t->nproc = nproc;
  fg__buf_init(&t->events);
  if (!(t->path = strdup(path)) || !(t->tmp_path = fg__asprintf("%s.tmp", path)))
    return fg__fail(err, errlen, -ENOMEM, "out of memory");
  t->fd = open(t->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (t->fd < 0)
    return fg__fail(err, errlen, -errno, "--trace: cannot create %s: %s", t->tmp_path,
                   strerror(errno));
  return 0;
}

/* A zeroed fg_timeline (no --trace) is off too. */
int fg_timeline_on(const fg_timeline *t) { return t->tmp_path && t->fd >= 0; }

static void worker_events(fg_timeline *t, int attempt, const fg_worker *w, uint64_t now) {
  if (!w->start_ns) return; /* never started */
  uint64_t end = w->end_ns ? w->end_ns : now;
  /* Named here, where the ranks are known; a name repeated by a later attempt is harmless. */
  fg__buf_printf(&t->events, "{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"thread_name\",\"args\":"
       "{\"name\":\"rank %d\"}},\n", t->node, w->rank, w->rank);
  char how[128];
  fg_describe_end(w, how, sizeof how);
  begin_event(t, "X", w->rank, "worker", w->start_ns);
  put_us(&t->events, "dur", end - w->start_ns);
  fg__buf_printf(&t->events, ",\"args\":{\"attempt\":%d,\"pid\":%d,\"local_rank\":%d,\"end\":", attempt,
       w->pid, w->local_rank);
  put_string(&t->events, how);
  fg__buf_printf(&t->events, "}");
  end_event(t);
  begin_event(t, "i", w->rank, "spawn", w->start_ns);
  fg__buf_printf(&t->events, ",\"args\":{\"attempt\":%d,\"pid\":%d}", attempt, w->pid);
  end_event(t);
  begin_event(t, "i", w->rank, "exit", end);
  fg__buf_printf(&t->events, ",\"args\":{\"attempt\":%d,\"end\":", attempt);
  put_string(&t->events, how);
  fg__buf_printf(&t->events, "}");
  end_event(t);
}

void fg_timeline_attempt(fg_timeline *t, int attempt, const fg_worker *ws, int n,
                         const char *result) {
  if (!fg_timeline_on(t)) return;
  uint64_t now = fg__now_ns(), start = now;
  for (int i = 0; i < n; i++) {
    worker_events(t, attempt, &ws[i], now);
    if (ws[i].start_ns && ws[i].start_ns < start) start = ws[i].start_ns;
  }
  char name[32];
  snprintf(name, sizeof name, "attempt %d", attempt);
  begin_event(t, "X", AGENT_TID, name, start);
  put_us(&t->events, "dur", now - start);
  fg__buf_printf(&t->events, ",\"args\":{\"result\":");
  put_string(&t->events, result);
  fg__buf_printf(&t->events, "}");
  end_event(t);
  t->attempts = attempt + 1;
}

void fg_timeline_restart(fg_timeline *t, int next, const char *why) {
  if (!fg_timeline_on(t)) return;
  begin_event(t, "i", AGENT_TID, "restart", fg__now_ns());
  fg__buf_printf(&t->events, ",\"args\":{\"restart\":%d,\"why\":", next);
  put_string(&t->events, why);
  fg__buf_printf(&t->events, "}");
  end_event(t);
}

/* --- merging ----------------------------------------------------------------------------- */

static void metadata(fg_timeline *t, fg_buf *b) {
  fg__buf_printf(b, "{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"process_name\",\"args\":{\"name\":"
       "\"node %d\"}},\n", t->node, AGENT_TID, t->node);
  fg__buf_printf(b, "{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"thread_name\",\"args\":{\"name\":"
       "\"fgrun\"}},\n", t->node, AGENT_TID);
  fg__buf_printf(b, "{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"thread_sort_index\",\"args\":"
       "{\"sort_index\":-1}}", t->node, AGENT_TID);
}

static int write_all(int fd, const void *p, size_t n) {
  const char *q = p;
  while (n > 0) {
    ssize_t w = write(fd, q, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? -errno : -EIO;
    q += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Copies one rank's file: whole lines that look like one JSON object each. A last line
 * without its newline was cut short by the rank's death and is left out. */
static int copy_rank_file(int fd, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return 0; /* the rank traced nothing (not our library, or never started) */
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int rc = 0;
  while (rc == 0 && (n = getline(&line, &cap, f)) > 0) {
    if (n < 3 || line[0] != '{' || line[n - 1] != '\n' || line[n - 2] != '}') continue;
    line[n - 1] = ',';
    rc = write_all(fd, line, (size_t)n);
    if (rc == 0) rc = write_all(fd, "\n", 1);
  }
  free(line);
  fclose(f);
  return rc;
}

static int write_trace(fg_timeline *t, const fg_rundir *rd) {
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  fg_buf head;
  fg__buf_init(&head);
  fg__buf_printf(&head, "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"generator\":\"fgrun %s\","
       "\"clock\":\"CLOCK_MONOTONIC\",\"monotonic_us\":%llu,\"unix_us\":%llu},"
       "\"traceEvents\":[\n", FG_VERSION, (unsigned long long)(fg__now_ns() / 1000),
       (unsigned long long)wall.tv_sec * 1000000ULL + (unsigned long long)wall.tv_nsec / 1000);
  int rc = head.failed || t->events.failed ? -ENOMEM : 0;
  if (rc == 0) rc = write_all(t->fd, head.data, head.len);
  fg__buf_free(&head);
  if (rc == 0) rc = write_all(t->fd, t->events.data, t->events.len);
  for (int a = 0; rc == 0 && a < t->attempts; a++)
    for (int r = 0; rc == 0 && r < t->nproc; r++) {
      char *path = fg_rundir_file(rd, a, r, FG_RUNDIR_TRACE);
      rc = path ? copy_rank_file(t->fd, path) : -ENOMEM;
      free(path);
    }
  fg_buf tail;
  fg__buf_init(&tail);
  metadata(t, &tail);
  fg__buf_printf(&tail, "\n]}\n");
  if (rc == 0) rc = tail.failed ? -ENOMEM : write_all(t->fd, tail.data, tail.len);
  fg__buf_free(&tail);
  if (rc == 0 && fsync(t->fd) != 0) rc = -errno;
  return rc;
}

int fg_timeline_finish(fg_timeline *t, const fg_rundir *rd, char *err, size_t errlen) {
  if (!fg_timeline_on(t)) return 0;
  int rc = write_trace(t, rd);
  if (close(t->fd) != 0 && rc == 0) rc = -errno;
  t->fd = -1;
  if (rc == 0 && rename(t->tmp_path, t->path) != 0) rc = -errno;
  if (rc != 0) {
    unlink(t->tmp_path);
    return fg__fail(err, errlen, rc, "writing the trace %s: %s", t->path, strerror(-rc));
  }
  return 0;
}

void fg_timeline_close(fg_timeline *t) {
  if (fg_timeline_on(t)) {
    close(t->fd);
    unlink(t->tmp_path);
  }
  t->fd = -1;
  free(t->path);
  free(t->tmp_path);
  t->path = t->tmp_path = NULL;
  fg__buf_free(&t->events);
}
