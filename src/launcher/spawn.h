/* spawn.h - starting a process at the fork/exec floor.
 *
 * One clone(CLONE_VM | CLONE_VFORK) per process: the child runs the per-process setup on a
 * stack of its own, then execs the program itself - no trampoline, no second exec, no copy
 * of fgrun's page tables. The parent resumes as soon as the exec has replaced the child's
 * memory (or the child has given up), and gets a pidfd for the child when the kernel has
 * them (Linux 5.2+). Between clone and exec, the child:
 *
 *   1. resets to SIG_DFL every signal fgrun handles or ignores (its handlers must not run
 *      in a child that shares fgrun's memory; the program starts with default dispositions);
 *   2. leads a new session and process group (a signal to -pid reaches what it starts);
 *   3. dies with fgrun (PR_SET_PDEATHSIG SIGKILL), and exits if fgrun already died;
 *      then writes "+PID\n" to o->announce_fd (the watchdog's pipe, watchdog.h), so its
 *      group is listed there before the program can start anything: a line fgrun wrote
 *      after the clone returned could come too late, if fgrun were killed meanwhile;
 *   4. gets fd[0..2] as its stdin, stdout, stderr (every other descriptor of fgrun's is
 *      O_CLOEXEC);
 *   5. runs on o->cpus when given (sched_setaffinity: --numa_binding);
 *   6. starts with an empty signal mask, and execs, inheriting fgrun's resource limits
 *      (with the open-files limit fgrun raised for its store: workers hold many too).
 *
 * A new per-process setting (CPU affinity, ...) is a field of fg_spawn_opts and a step in
 * spawn.c's child_setup(), which may only make system calls: it shares fgrun's memory. */
#ifndef FG_LAUNCHER_SPAWN_H
#define FG_LAUNCHER_SPAWN_H

#include <sched.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct fg_spawn_opts {
  const char *file;  /* a path: no PATH search */
  char *const *argv;
  char *const *envp;
  int fd[3];         /* the child's stdin, stdout, stderr */
  int no_pidfd;      /* leave *pidfd at -1 (the SIGCHLD way of child.h) */
  const cpu_set_t *cpus; /* the CPUs it may run on; NULL: fgrun's */
  int announce_fd;   /* where the child writes "+PID\n" (step 3); -1: nowhere */
} fg_spawn_opts;

/* Notes which signals fgrun handles or ignores, for children to reset. Call whenever
 * handlers have changed (the agent does once they are all in place); the first fg_spawn
 * notes them if nobody has. */
void fg_spawn_note_signals(void);
/* The noted signals as a mask: bit sig - 1 for signal sig (1 to 64). */
unsigned long fg_spawn_noted_mask(void);

/* Starts the process. *pid gets its pid and *pidfd a pidfd for it, or -1 when the kernel has
 * none. Returns 0, or a negative errno with err saying which step failed ("cannot run
 * /x: Permission denied"); a child that failed has been reaped. */
int fg_spawn(const fg_spawn_opts *o, pid_t *pid, int *pidfd, char *err, size_t errlen);

#endif
