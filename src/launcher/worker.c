/* worker.c - spawning a worker (spawn.h) and following its handles. */
#include "launcher/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "launcher/spawn.h"

static void handle_gone(fg_worker *w) {
  w->handles--;
  if (!w->drained && !w->out.open && !w->err.open) {
    w->drained = 1;
    if (w->on_drained && !w->closing) w->on_drained(w);
  }
  if (w->closing && w->handles == 0 && w->on_closed) w->on_closed(w);
}

static void on_stream_closed(fg_stream *s) { handle_gone(s->data); }

static void on_child_closed(fg_child *c) {
  fg_worker *w = c->data;
  w->child_open = 0;
  handle_gone(w);
}

static void on_child_exit(fg_child *c, int exit_status, int term_signal) {
  fg_worker *w = c->data;
  int given_up = w->state == FG_WORKER_LOST; /* the agent stopped waiting for this one */
  w->end_ns = fg__now_ns();
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

  fg_spawn_opts so = {.file = o->file, .argv = o->argv, .envp = o->env,
                      .fd = {STDIN_FILENO, out_fd, err_fd}, .no_pidfd = fg_child_no_pidfd(),
                      .cpus = o->cpus, .announce_fd = o->announce_fd};
  pid_t pid;
  int pidfd;
  w->start_ns = fg__now_ns();
  if ((rc = fg_spawn(&so, &pid, &pidfd, err, errlen)) != 0) goto done;
  w->child.on_exit = on_child_exit;
  w->child.on_closed = on_child_closed;
  w->child.data = w;
  w->pid = pid;
  w->state = FG_WORKER_RUNNING;
  if ((rc = fg_child_watch(&w->child, o->loop, pid, pidfd)) != 0) {
    /* It runs, but its end would go unnoticed: stop it now (its group goes with the
     * attempt), and count it as never started. */
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    w->state = FG_WORKER_IDLE;
    fg__fail(err, errlen, rc, "cannot watch rank %d (pid %d): %s", w->rank, (int)pid,
            uv_strerror(rc));
    goto done;
  }
  w->child_open = 1;
  w->handles++;

  if ((rc = fg_stream_start(&w->out)) == 0) rc = fg_stream_start(&w->err);
  if (rc != 0) fg__fail(err, errlen, rc, "reading worker output: %s", uv_strerror(rc));
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
  if (w->child_open) fg_child_close(&w->child);
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
  uint64_t end = w->end_ns ? w->end_ns : fg__now_ns();
  return (double)(end - w->start_ns) / 1e9;
}
