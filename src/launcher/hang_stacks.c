/* hang_stacks.c - fgrun-stack children for hang reports (see hang_stacks.h). */
#include "launcher/hang_stacks.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

enum { TEXT_MAX = 256 * 1024 }; /* per rank: thousands of frames; more is not a report */

typedef struct child {
  fg_stacks *s;
  fg_stack_job *job;
  uv_process_t proc;
  uv_pipe_t pipe;
  int running;
} child;

struct fg_stacks {
  uv_loop_t *loop;
  fg_stack_job *jobs;
  child *kids;
  int n;
  uv_timer_t timer;
  int handles; /* open handles, the timer included */
  fg_stacks_cb cb;
  void *data;
};

static void finish(fg_stacks *s) {
  s->cb(s, s->jobs, s->n, s->data);
  for (int i = 0; i < s->n; i++) {
    fg__buf_free(&s->jobs[i].text);
    free(s->jobs[i].py_file);
  }
  free(s->jobs);
  free(s->kids);
  free(s);
}

static void on_timer_closed(uv_handle_t *h) { finish(h->data); }

static void handle_closed(uv_handle_t *h) {
  fg_stacks *s = ((child *)h->data)->s;
  if (--s->handles == 1) { /* only the timer is left: every child is done */
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  child *k = h->data;
  (void)suggested;
  buf->base = NULL;
  buf->len = 0;
  if (fg__buf_reserve(&k->job->text, 16384) == 0) {
    buf->base = (char *)k->job->text.data + k->job->text.len;
    buf->len = 16384;
  }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  child *k = st->data;
  (void)buf;
  if (nread > 0 && k->job->text.len + (size_t)nread <= TEXT_MAX) k->job->text.len += (size_t)nread;
  if (nread < 0) uv_close((uv_handle_t *)st, handle_closed); /* EOF or error */
}

static void on_child_exit(uv_process_t *p, int64_t status, int term_signal) {
  child *k = p->data;
  k->running = 0;
  if (k->job->status != -1) k->job->status = term_signal ? 128 + term_signal : (int)status;
  uv_close((uv_handle_t *)p, handle_closed);
}

/* The bound passed: whatever still reads is killed; what it printed so far is kept. */
static void on_bound(uv_timer_t *t) {
  fg_stacks *s = t->data;
  for (int i = 0; i < s->n; i++)
    if (s->kids[i].running) {
      s->jobs[i].status = -1;
      uv_process_kill(&s->kids[i].proc, SIGKILL);
    }
}

static int spawn(fg_stacks *s, child *k, const char *helper) {
  fg_stack_job *j = k->job;
  char pid[16], sig[16];
  snprintf(pid, sizeof pid, "%d", j->pid);
  snprintf(sig, sizeof sig, "%d", j->py_signal);
  char *args[10];
  int a = 0;
  args[a++] = (char *)helper;
  if (j->py_file) {
    args[a++] = "--python";
    args[a++] = j->py_file;
    args[a++] = "--signal";
    args[a++] = sig;
  }
  if (!j->native) args[a++] = "--no-native";
  args[a++] = pid;
  args[a] = NULL;
  uv_pipe_init(s->loop, &k->pipe, 0);
  k->pipe.data = k;
  s->handles++;
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_IGNORE},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&k->pipe},
      {.flags = UV_INHERIT_FD, .data.fd = 2},
  };
  uv_process_options_t po = {.exit_cb = on_child_exit, .file = helper, .args = args,
                             .stdio_count = 3, .stdio = stdio};
  k->proc.data = k;
  int rc = uv_spawn(s->loop, &k->proc, &po);
  s->handles++; /* uv_spawn initializes the handle even when it fails */
  if (rc != 0) {
    j->status = -2;
    fg__buf_printf(&j->text, "cannot start %s: %s\n", helper, uv_strerror(rc));
    uv_close((uv_handle_t *)&k->proc, handle_closed);
    uv_close((uv_handle_t *)&k->pipe, handle_closed);
    return rc;
  }
  k->running = 1;
  if (uv_read_start((uv_stream_t *)&k->pipe, on_alloc, on_read) != 0)
    uv_close((uv_handle_t *)&k->pipe, handle_closed);
  return 0;
}

fg_stacks *fg_stacks_start(uv_loop_t *loop, const char *helper, const fg_stack_job *jobs,
                           int n, double bound_s, fg_stacks_cb cb, void *data) {
  fg_stacks *s = calloc(1, sizeof *s);
  if (!s || !(s->jobs = calloc((size_t)(n ? n : 1), sizeof *s->jobs)) ||
      !(s->kids = calloc((size_t)(n ? n : 1), sizeof *s->kids))) {
    if (s) free(s->jobs);
    free(s);
    return NULL;
  }
  *s = (fg_stacks){.loop = loop, .jobs = s->jobs, .kids = s->kids, .n = n, .cb = cb,
                   .data = data};
  for (int i = 0; i < n; i++) {
    s->jobs[i] = (fg_stack_job){.rank = jobs[i].rank, .pid = jobs[i].pid,
                                .native = jobs[i].native, .py_signal = jobs[i].py_signal,
                                .py_file = jobs[i].py_file ? strdup(jobs[i].py_file) : NULL};
    fg__buf_init(&s->jobs[i].text);
  }
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  s->handles = 1;
  /* the timer holds the set open until every child is spawned: a failed spawn's close
   * callbacks run on a later loop turn, never before this returns */
  for (int i = 0; i < n; i++) {
    s->kids[i] = (child){.s = s, .job = &s->jobs[i]};
    spawn(s, &s->kids[i], helper);
  }
  if (s->handles == 1) {
    uv_close((uv_handle_t *)&s->timer, on_timer_closed); /* nothing to read: done at once */
  } else {
    uv_timer_start(&s->timer, on_bound, (uint64_t)(bound_s * 1000), 0);
  }
  return s;
}

void fg_stacks_cancel(fg_stacks *s) {
  if (!uv_is_closing((uv_handle_t *)&s->timer)) on_bound(&s->timer);
}
