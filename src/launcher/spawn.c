/* spawn.c - see spawn.h. */
#include "launcher/spawn.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"

/* Signals whose disposition is not SIG_DFL in fgrun. */
static sigset_t noted;
static int have_noted;

void fg_spawn_note_signals(void) {
  sigemptyset(&noted);
  for (int sig = 1; sig < NSIG; sig++) {
    struct sigaction sa;
    if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &sa) != 0) continue;
    if (sa.sa_handler != SIG_DFL) sigaddset(&noted, sig);
  }
  have_noted = 1;
}

unsigned long fg_spawn_noted_mask(void) {
  if (!have_noted) fg_spawn_note_signals();
  unsigned long mask = 0;
  for (int sig = 1; sig < NSIG && sig <= 64; sig++)
    if (sigismember(&noted, sig) == 1) mask |= 1ul << (sig - 1);
  return mask;
}

/* What the child shares with the parent: it writes err and step only when it fails. */
typedef struct child_args {
  const fg_spawn_opts *o;
  pid_t parent;
  volatile int err;
  const char *volatile step;
} child_args;

static _Noreturn void child_fail(child_args *a, const char *step) {
  a->err = errno ? errno : EINVAL;
  a->step = step;
  _exit(127);
}

/* Step 3's line. A write to a pipe whose reader is gone (the watchdog died and fgrun has not
 * seen it yet) raises a SIGPIPE that, blocked here, would kill the program once step 6
 * unblocks it: take it back (a new process starts with none pending, so it is this one). */
static void announce(int fd) {
  char line[24], *p = line + sizeof line;
  *--p = '\n';
  for (long pid = getpid(); pid > 0; pid /= 10) *--p = (char)('0' + pid % 10);
  *--p = '+';
  if (write(fd, p, (size_t)(line + sizeof line - p)) < 0 && errno == EPIPE) {
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    sigtimedwait(&pipe_only, NULL, &(struct timespec){0, 0});
  }
}

/* The steps of spawn.h, in its order. System calls only: this runs in fgrun's memory. */
static void child_setup(child_args *a) {
  const fg_spawn_opts *o = a->o;
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  for (int sig = 1; sig < NSIG; sig++)
    if (sigismember(&noted, sig) == 1) sigaction(sig, &dfl, NULL);
  if (setsid() < 0) child_fail(a, "setsid");
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(a, "prctl(PR_SET_PDEATHSIG)");
  if (getppid() != a->parent) _exit(127); /* fgrun died before the death signal was armed */
  if (o->announce_fd >= 0) announce(o->announce_fd);
  for (int i = 0; i < 3; i++)
    if (o->fd[i] != i && dup2(o->fd[i], i) < 0) child_fail(a, "dup2");
  if (o->cpus && sched_setaffinity(0, sizeof *o->cpus, o->cpus) != 0)
    child_fail(a, "sched_setaffinity");
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

static int child_main(void *p) {
  child_args *a = p;
  child_setup(a);
  execve(a->o->file, a->o->argv, a->o->envp);
  child_fail(a, "exec");
}

/* The child's stack: spawns happen one at a time on the loop's thread, and the parent is
 * suspended until the child has exec'd, so one stack serves every child. */
static char child_stack[64 * 1024] __attribute__((aligned(64)));

int fg_spawn(const fg_spawn_opts *o, pid_t *pid, int *pidfd, char *err, size_t errlen) {
  *pid = -1;
  *pidfd = -1;
  if (!have_noted) fg_spawn_note_signals();
  child_args a = {.o = o, .parent = getpid()};
  /* No handler may run in the child before it has reset them all. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
  int fd = -1;
  pid_t p = -1;
#ifdef CLONE_PIDFD
  if (!o->no_pidfd) {
    p = clone(child_main, child_stack + sizeof child_stack, flags | CLONE_PIDFD, &a, &fd);
    if (p < 0 && errno == EINVAL) fd = -1; /* a kernel without pidfds: plain clone below */
  }
#endif
  if (p < 0 && (o->no_pidfd || errno == EINVAL))
    p = clone(child_main, child_stack + sizeof child_stack, flags, &a);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (p < 0)
    return fg__fail(err, errlen, -clone_errno, "cannot start %s: clone: %s", o->file,
                   strerror(clone_errno));
  if (a.err) { /* it exited: reap it here, nobody else knows of it */
    while (waitpid(p, NULL, 0) < 0 && errno == EINTR) {
    }
    if (fd >= 0) close(fd);
    if (!strcmp(a.step, "exec"))
      return fg__fail(err, errlen, -a.err, "cannot run %s: %s", o->file, strerror(a.err));
    return fg__fail(err, errlen, -a.err, "cannot start %s: %s: %s", o->file, a.step,
                   strerror(a.err));
  }
  *pid = p;
  *pidfd = fd;
  return 0;
}
