/* watchdog.h - the process that kills the workers' groups when fgrun dies, however it dies.
 *
 * A process that shares fgrun's memory (watchdog.c says how it stays out of fgrun's way) in
 * a session of its own, named fgrun-watchdog, reads "+PGID" and "-PGID" lines from a pipe
 * whose only write end is fgrun's (O_CLOEXEC: a worker holds it only until its exec, and
 * writes its own "+PGID" line there first, spawn.h). When the pipe reaches EOF - fgrun
 * exited, crashed or was SIGKILLed - it SIGKILLs every group still listed and exits.
 * PR_SET_PDEATHSIG already takes the workers themselves down with fgrun; the watchdog is
 * what reaches their children. */
#ifndef FG_LAUNCHER_WATCHDOG_H
#define FG_LAUNCHER_WATCHDOG_H

#include <stddef.h>
#include <uv.h>

#include "launcher/child.h"

typedef struct fg_watchdog {
  uv_loop_t *loop;
  fg_child child;
  int child_open;     /* its watch needs closing */
  int running;        /* it has not exited */
  int exit_status, exit_signal;
  int fd;             /* write end of the pipe; -1 when stopped */
  int *groups;        /* kept so a watchdog that died can be replaced */
  int ngroups, cap;
  uv_timer_t stop_timer; /* bounds the wait for its exit at shutdown */
  int timer_open;
  int respawns;
  int stopping;
} fg_watchdog;

int fg_watchdog_start(fg_watchdog *wd, uv_loop_t *loop, char *err, size_t errlen);
/* Where a worker lists its own group as it starts (spawn.h, step 3); -1 without a watchdog. */
int fg_watchdog_fd(const fg_watchdog *wd);
/* Keeps a group that its worker listed itself through fg_watchdog_fd, for a replacement
 * watchdog to get too. */
void fg_watchdog_add(fg_watchdog *wd, int pgid);
/* fgrun has torn this group down itself. */
void fg_watchdog_remove(fg_watchdog *wd, int pgid);
/* Closes the pipe: the watchdog kills what is still listed and exits. Its exit is waited
 * for (briefly) so that it is reaped here, not left as a zombie to an init that may not
 * reap. */
void fg_watchdog_stop(fg_watchdog *wd);

#endif
