/* worker.c - spawning a worker through fgrun-exec and following its handles. */
#include "launcher/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

static void handle_gone(fg_worker *w) {
  w->handles--;
  if (!w->drained && !w->out.open && !w->err.open) {
    w->drained = 1;
    if (w->on_drained && !w->closing) w->on_drained(w);
  }
  if (w->closing && w->handles == 0 && w->on_closed) w->on_closed(w);
}

static void on_stream_closed(fg_stream *s) { handle_gone(s->data); }

static void on_proc_closed(uv_handle_t *h) {
  fg_worker *w = h->data;
  w->proc_open = 0;
  handle_gone(w);
}

static void on_proc_exit(uv_process_t *proc, int64_t exit_status, int term_signal) {
  fg_worker *w = proc->data;
  int given_up = w->state == FG_WORKER_LOST; /* the agent stopped waiting for this one */
  w->end_ns = fg_now_ns();
  w->exit_code = (int)exit_status;
  w->term_signal = term_signal;
  w->state = FG_WORKER_EXITED;
  if (w->on_exit && !given_up) w->on_exit(w);
}

static int open_stream(fg_worker *w, fg_stream *s, const fg_worker_options *o, int console,
                       const char *log, int keep_tail, int *child_fd, char *err,
                       size_t errlen) {
  fg_stream_options so = {.console_fd = console, .log_path = log, .prefix = w->prefix,
                          .keep_tail = keep_tail, .on_closed = on_stream_closed, .data = w};
  int rc = fg_stream_open(s, o->loop, &so, child_fd, err, errlen);
  if (s->open) w->handles++;
  return rc;
}

int fg_worker_spawn(fg_worker *w, const fg_worker_options *o, char *err, size_t errlen) {
  w->on_exit = o->on_exit;
  w->on_drained = o->on_drained;
  w->on_closed = o->on_closed;
  w->data = o->data;
  w->state = FG_WORKER_IDLE;
  int out_fd = -1, err_fd = -1;
  int rc = open_stream(w, &w->out, o, o->console_out, o->stdout_log, 0, &out_fd, err, errlen);
  if (rc == 0)
    rc = open_stream(w, &w->err, o, o->console_err, o->stderr_log, 1, &err_fd, err, errlen);
  if (rc != 0) goto done;

  int argc = 0;
  while (o->argv[argc]) argc++;
  char **args = calloc((size_t)argc + 4, sizeof *args);
  if (!args) {
    rc = fg_fail(err, errlen, -ENOMEM, "out of memory");
    goto done;
  }
  char parent[16];
  snprintf(parent, sizeof parent, "%d", (int)getpid());
  args[0] = (char *)o->exec_helper;
  args[1] = parent;
  args[2] = (char *)o->file;
  memcpy(args + 3, o->argv, (size_t)argc * sizeof *args);

  uv_stdio_container_t stdio[3] = {
      {.flags = UV_INHERIT_FD, .data.fd = STDIN_FILENO},
      {.flags = UV_INHERIT_FD, .data.fd = out_fd},
      {.flags = UV_INHERIT_FD, .data.fd = err_fd},
  };
  uv_process_options_t po = {
      .exit_cb = on_proc_exit,
      .file = o->exec_helper,
      .args = args,
      .env = o->env,
      .flags = UV_PROCESS_DETACHED,
      .stdio_count = 3,
      .stdio = stdio,
  };
  w->proc.data = w;
  w->start_ns = fg_now_ns();
  rc = uv_spawn(o->loop, &w->proc, &po);
  w->proc_open = 1; /* uv_spawn initializes the handle even when it fails */
  w->handles++;
  free(args);
  if (rc != 0) {
    fg_fail(err, errlen, rc, "cannot start %s: %s", o->exec_helper, uv_strerror(rc));
    goto done;
  }
  w->pid = w->proc.pid;
  w->state = FG_WORKER_RUNNING;
  if ((rc = fg_stream_start(&w->out)) == 0) rc = fg_stream_start(&w->err);
  if (rc != 0) fg_fail(err, errlen, rc, "reading worker output: %s", uv_strerror(rc));
done:
  if (out_fd >= 0) close(out_fd);
  if (err_fd >= 0) close(err_fd);
  if (rc != 0 && w->state == FG_WORKER_IDLE) {
    /* no writer will ever close these pipes; end them so the worker counts as drained */
    fg_stream_close(&w->out);
    fg_stream_close(&w->err);
    if (!w->out.open && !w->err.open) w->drained = 1;
  }
  return rc;
}

void fg_worker_kill_group(const fg_worker *w, int sig) {
  if (w->pid > 0) killpg(w->pid, sig);
}

void fg_worker_close(fg_worker *w) {
  if (w->closing) return;
  w->closing = 1;
  if (w->handles == 0) {
    if (w->on_closed) w->on_closed(w);
    return;
  }
  fg_stream_close(&w->out);
  fg_stream_close(&w->err);
  if (w->proc_open && !uv_is_closing((uv_handle_t *)&w->proc))
    uv_close((uv_handle_t *)&w->proc, on_proc_closed);
}

void fg_worker_free(fg_worker *w) {
  fg_stream_free(&w->out);
  fg_stream_free(&w->err);
  free(w->prefix);
  free(w->error_file);
  w->prefix = w->error_file = NULL;
}

double fg_worker_runtime(const fg_worker *w) {
  if (!w->start_ns) return 0;
  uint64_t end = w->end_ns ? w->end_ns : fg_now_ns();
  return (double)(end - w->start_ns) / 1e9;
}
