/* child.c - see child.h. */
#include "launcher/child.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "launcher/spawn.h"

/* The SIGCHLD way: the watched children, and the handler while there are any. */
static fg_child *waiting;
static uv_signal_t *sigchld;

int fg_child_no_pidfd(void) {
  static int no = -1;
  if (no < 0) {
    const char *v = getenv("FG_NO_PIDFD");
    no = v && !strcmp(v, "1");
  }
  return no;
}

static int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  if (!fg_child_no_pidfd()) return (int)syscall(SYS_pidfd_open, pid, 0);
#endif
  (void)pid;
  return -1;
}

/* 1 and *status if pid has ended (and is reaped now), 0 if it runs on. */
static int try_reap(pid_t pid, int *status) {
  pid_t r;
  do r = waitpid(pid, status, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0) return 0;
  if (r < 0) { /* not our child any more: nothing to learn of how it ended */
    fg_debug("waitpid(%d): %s", (int)pid, strerror(errno));
    *status = 255 << 8;
  }
  return 1;
}

static void report(fg_child *c, int status) {
  c->exited = 1;
  c->on_exit(c, WIFEXITED(status) ? WEXITSTATUS(status) : 0,
             WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static void on_pidfd(uv_poll_t *p, int status, int events) {
  (void)status, (void)events;
  fg_child *c = p->data;
  int how;
  if (c->exited || !try_reap(c->pid, &how)) return;
  uv_poll_stop(p);
  report(c, how);
}

static void unlink_waiting(fg_child *c) {
  for (fg_child **pp = &waiting; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  c->next = NULL;
}

static void on_sigchld_closed(uv_handle_t *h) { free(h); }

static void stop_sigchld_if_idle(void) {
  if (waiting || !sigchld) return;
  uv_close((uv_handle_t *)sigchld, on_sigchld_closed);
  sigchld = NULL;
}

static void on_sigchld(uv_signal_t *h, int sig) {
  (void)h, (void)sig;
  /* The ended ones leave the list before anyone hears of them: a callback may close others. */
  fg_child *ended = NULL, **tail = &ended;
  for (fg_child **pp = &waiting; *pp;) {
    fg_child *c = *pp;
    int how;
    if (try_reap(c->pid, &how)) {
      *pp = c->next;
      c->next = NULL;
      c->status = how;
      *tail = c;
      tail = &c->next;
    } else {
      pp = &c->next;
    }
  }
  while (ended) {
    fg_child *c = ended;
    ended = c->next;
    c->next = NULL;
    report(c, c->status);
  }
  stop_sigchld_if_idle();
}

int fg_child_watch(fg_child *c, uv_loop_t *loop, pid_t pid, int pidfd) {
  c->pid = pid;
  c->loop = loop;
  c->exited = 0;
  c->polling = 0;
  c->next = NULL;
  c->pidfd = pidfd >= 0 ? pidfd : open_pidfd(pid);
  if (c->pidfd >= 0) {
    int rc = uv_poll_init(loop, &c->poll, c->pidfd);
    if (rc != 0) {
      close(c->pidfd);
      c->pidfd = -1;
      return rc;
    }
    c->poll.data = c;
    c->polling = 1;
    return uv_poll_start(&c->poll, UV_READABLE, on_pidfd);
  }
  if (!sigchld) {
    if (!(sigchld = malloc(sizeof *sigchld))) return -ENOMEM;
    uv_signal_init(loop, sigchld);
    int rc = uv_signal_start(sigchld, on_sigchld, SIGCHLD);
    if (rc != 0) {
      uv_close((uv_handle_t *)sigchld, on_sigchld_closed);
      sigchld = NULL;
      return rc;
    }
    fg_spawn_note_signals(); /* children must reset this handler too */
  }
  uv_timer_init(loop, &c->stand);
  c->stand.data = c;
  c->polling = 1;
  c->next = waiting;
  waiting = c;
  /* It may have ended before the handler was there: look once, from the loop. */
  kill(getpid(), SIGCHLD);
  return 0;
}

static void on_poll_closed(uv_handle_t *h) {
  fg_child *c = h->data;
  close(c->pidfd);
  c->pidfd = -1;
  c->polling = 0;
  if (c->on_closed) c->on_closed(c);
}

static void on_stand_closed(uv_handle_t *h) {
  fg_child *c = h->data;
  c->polling = 0;
  if (c->on_closed) c->on_closed(c);
}

void fg_child_close(fg_child *c) {
  if (!c->polling) return;
  if (c->pidfd >= 0) {
    if (!uv_is_closing((uv_handle_t *)&c->poll)) uv_close((uv_handle_t *)&c->poll, on_poll_closed);
    return;
  }
  unlink_waiting(c);
  stop_sigchld_if_idle();
  if (!uv_is_closing((uv_handle_t *)&c->stand)) uv_close((uv_handle_t *)&c->stand, on_stand_closed);
}
