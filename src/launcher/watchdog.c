/* watchdog.c - starting the watchdog and telling it about process groups. */
#include "launcher/watchdog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

enum { MAX_RESPAWNS = 3 };

static void send_line(fg_watchdog *wd, char op, int pgid) {
  if (wd->fd < 0) return;
  char line[24];
  int n = snprintf(line, sizeof line, "%c%d\n", op, pgid);
  /* Lines are far below PIPE_BUF, so each write is whole; the pipe never fills up because
   * the watchdog reads as fast as groups come and go. */
  while (write(wd->fd, line, (size_t)n) < 0 && errno == EINTR) {
  }
}

static void on_proc_closed(uv_handle_t *h) { free(h); }

static int spawn(fg_watchdog *wd, char *err, size_t errlen);

static void on_watchdog_exit(uv_process_t *proc, int64_t status, int sig) {
  fg_watchdog *wd = proc->data;
  uv_close((uv_handle_t *)proc, on_proc_closed);
  wd->proc = NULL;
  if (wd->stopping) {
    uv_close((uv_handle_t *)&wd->stop_timer, NULL);
    return;
  }
  if (wd->fd >= 0) close(wd->fd);
  wd->fd = -1;
  if (wd->respawns++ >= MAX_RESPAWNS) {
    fg_warn("the watchdog exited again (status %d, signal %d); going on without it",
            (int)status, sig);
    return;
  }
  char err[256];
  fg_warn("the watchdog exited unexpectedly (status %d, signal %d); starting a new one",
          (int)status, sig);
  if (spawn(wd, err, sizeof err) != 0) {
    fg_warn("%s", err);
    return;
  }
  for (int i = 0; i < wd->ngroups; i++) send_line(wd, '+', wd->groups[i]);
}

static int spawn(fg_watchdog *wd, char *err, size_t errlen) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    return fg_fail(err, errlen, -errno, "watchdog pipe: %s", strerror(errno));
  uv_process_t *proc = calloc(1, sizeof *proc);
  if (!proc) {
    close(fds[0]);
    close(fds[1]);
    return fg_fail(err, errlen, -ENOMEM, "out of memory");
  }
  char *args[] = {wd->helper, "--watchdog", NULL};
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_INHERIT_FD, .data.fd = fds[0]},
      {.flags = UV_IGNORE},
      {.flags = UV_INHERIT_FD, .data.fd = STDERR_FILENO},
  };
  /* Detached: its own session, so a Ctrl-C or a kill of fgrun's group does not reach it. */
  uv_process_options_t po = {.exit_cb = on_watchdog_exit, .file = wd->helper, .args = args,
                             .flags = UV_PROCESS_DETACHED, .stdio_count = 3, .stdio = stdio};
  proc->data = wd;
  int rc = uv_spawn(wd->loop, proc, &po);
  close(fds[0]);
  if (rc != 0) {
    close(fds[1]);
    uv_close((uv_handle_t *)proc, on_proc_closed);
    return fg_fail(err, errlen, rc, "cannot start the watchdog %s: %s", wd->helper,
                   uv_strerror(rc));
  }
  wd->proc = proc;
  wd->fd = fds[1];
  return 0;
}

int fg_watchdog_start(fg_watchdog *wd, uv_loop_t *loop, const char *helper, char *err,
                      size_t errlen) {
  memset(wd, 0, sizeof *wd);
  wd->loop = loop;
  wd->fd = -1;
  if (!(wd->helper = strdup(helper))) return fg_fail(err, errlen, -ENOMEM, "out of memory");
  return spawn(wd, err, errlen);
}

void fg_watchdog_add(fg_watchdog *wd, int pgid) {
  if (wd->ngroups == wd->cap) {
    int cap = wd->cap ? 2 * wd->cap : 64;
    int *groups = realloc(wd->groups, (size_t)cap * sizeof *groups);
    if (!groups) {
      fg_warn("out of memory: process group %d is not watched", pgid);
      return;
    }
    wd->groups = groups;
    wd->cap = cap;
  }
  wd->groups[wd->ngroups++] = pgid;
  send_line(wd, '+', pgid);
}

void fg_watchdog_remove(fg_watchdog *wd, int pgid) {
  for (int i = 0; i < wd->ngroups; i++)
    if (wd->groups[i] == pgid) {
      wd->groups[i] = wd->groups[--wd->ngroups];
      send_line(wd, '-', pgid);
      return;
    }
}

static void on_stop_timeout(uv_timer_t *t) {
  fg_watchdog *wd = t->data;
  uv_close((uv_handle_t *)t, NULL);
  if (!wd->proc) return;
  uv_close((uv_handle_t *)wd->proc, on_proc_closed);
  wd->proc = NULL;
}

void fg_watchdog_stop(fg_watchdog *wd) {
  wd->stopping = 1;
  if (wd->fd >= 0) close(wd->fd);
  wd->fd = -1;
  if (wd->proc) {
    uv_timer_init(wd->loop, &wd->stop_timer);
    wd->stop_timer.data = wd;
    uv_timer_start(&wd->stop_timer, on_stop_timeout, 2000, 0);
  }
  free(wd->groups);
  free(wd->helper);
  wd->groups = NULL;
  wd->helper = NULL;
  wd->ngroups = wd->cap = 0;
}
