/* child.h - a child process's end, on the agent's loop.
 *
 * With a pidfd (fg_spawn gives one on Linux 5.2+; fg_child_watch opens one with pidfd_open
 * otherwise) the loop polls it and reaps the child when it turns readable. Without one
 * (older kernels, or FG_NO_PIDFD=1 to exercise this path) a SIGCHLD handler reaps every
 * watched child that has ended. Either way only watched pids are reaped, one waitpid each. */
#ifndef FG_LAUNCHER_CHILD_H
#define FG_LAUNCHER_CHILD_H

#include <sys/types.h>
#include <uv.h>

typedef struct fg_child fg_child;

struct fg_child {
  pid_t pid;
  int pidfd;  /* -1: the SIGCHLD way */
  uv_poll_t poll;   /* on the pidfd */
  uv_timer_t stand; /* the SIGCHLD way's handle, so that closing is asynchronous too */
  int polling;      /* the poll handle (or the stand-in) is open */
  int exited;
  int status; /* waitpid's, between reaping and reporting */
  /* How it ended (exit status, or the signal that killed it). */
  void (*on_exit)(fg_child *c, int exit_status, int term_signal);
  void (*on_closed)(fg_child *c); /* after fg_child_close */
  void *data;
  fg_child *next; /* the SIGCHLD way's list */
  uv_loop_t *loop;
};

/* 1 if children should be watched without pidfds (FG_NO_PIDFD=1). */
int fg_child_no_pidfd(void);

/* Watches pid (pidfd: from fg_spawn, or -1 to open one now). c->on_exit and c->data must be
 * set. Returns 0 or a negative errno. */
int fg_child_watch(fg_child *c, uv_loop_t *loop, pid_t pid, int pidfd);

/* Stops watching (a child that has not ended is no longer reaped here) and releases the
 * handle; c->on_closed follows from the loop, never before this returns. */
void fg_child_close(fg_child *c);

#endif
