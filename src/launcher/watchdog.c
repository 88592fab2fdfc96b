/* watchdog.c - the watchdog (see watchdog.h) and telling it about process groups. */
#include "launcher/watchdog.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "launcher/spawn.h"

enum { MAX_RESPAWNS = 3, MAX_GROUPS = 1 << 16 };

/* --- the watchdog's side -------------------------------------------------------------------
 *
 * A process that shares fgrun's memory (clone with CLONE_VM, like a thread, but a process of
 * its own that outlives fgrun): it costs neither a program load nor a copy of fgrun's page
 * tables. So it must not touch what fgrun uses: it runs on a stack of its own, keeps its
 * list where fgrun never looks, and calls the kernel directly - a libc wrapper would write
 * errno, which it shares with fgrun's main thread - and nothing else (no sanitizer hooks,
 * no memmove). */

static pid_t watched[MAX_GROUPS];
static char watchdog_stack[16 * 1024] __attribute__((aligned(64)));

#if defined(__x86_64__)
static inline long sys6(long n, long a, long b, long c, long d, long e, long f) {
  register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}
#elif defined(__aarch64__)
static inline long sys6(long n, long a, long b, long c, long d, long e, long f) {
  register long x8 __asm__("x8") = n, x0 __asm__("x0") = a, x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c, x3 __asm__("x3") = d, x4 __asm__("x4") = e;
  register long x5 __asm__("x5") = f;
  __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                   : "memory");
  return x0;
}
#else
/* Elsewhere libc's syscall(): a failing call may then set fgrun's errno. */
static inline long sys6(long n, long a, long b, long c, long d, long e, long f) {
  return syscall(n, a, b, c, d, e, f);
}
#endif
#define sys3(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

/* The kernel's struct sigaction (not libc's). */
typedef struct kernel_sigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)(void);
  unsigned long mask;
} kernel_sigaction;

typedef struct watch_args {
  int in;                /* the pipe's read end */
  unsigned long reset;   /* signals (bit sig - 1) that fgrun does not leave at SIG_DFL */
  long max_fd;           /* where closing ends without close_range */
} watch_args;

/* Only EOF ends the watch: terminal signals and a stray SIGTERM (fgrun passes those on to the
 * workers with a grace period of its own) must not cut it short, nor the USR1/USR2 that
 * Slurm (scancel --signal, sbatch --signal) sends to every process of a job step. */
__attribute__((no_sanitize("address", "undefined"), noinline)) static int watch(void *p) {
  const watch_args *a = p;
  static const int ignored[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN,
                                SIGTTOU, SIGUSR1, SIGUSR2};
  kernel_sigaction dfl = {.handler = SIG_DFL}, ign = {.handler = SIG_IGN};
  for (int sig = 1; sig <= 64; sig++)
    if (a->reset & (1ul << (sig - 1))) sys6(SYS_rt_sigaction, sig, (long)&dfl, 0, 8, 0, 0);
  for (size_t i = 0; i < sizeof ignored / sizeof *ignored; i++)
    sys6(SYS_rt_sigaction, ignored[i], (long)&ign, 0, 8, 0, 0);
  sys6(SYS_prctl, PR_SET_NAME, (long)"fgrun-watchdog", 0, 0, 0, 0);
  sys3(SYS_setsid, 0, 0, 0); /* a session of its own: a Ctrl-C to fgrun's group misses it */
  if (a->in != 0) sys3(SYS_dup3, a->in, 0, 0);
  /* fgrun's descriptors (the pipe's write end above all; stdout and stderr too, so that a
   * reader of fgrun's output sees it end with fgrun) */
  if (sys3(SYS_close_range, 1, ~0u, 0) != 0)
    for (long fd = 1; fd < a->max_fd; fd++) sys3(SYS_close, fd, 0, 0);
  sys3(SYS_chdir, "/", 0, 0);
  unsigned long none = 0;
  sys6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, 8, 0, 0);
  size_t n = 0;
  long value = 0;
  char op = 0, buf[512];
  for (;;) {
    long r = sys3(SYS_read, 0, buf, sizeof buf);
    if (r == -EINTR) continue;
    if (r <= 0) break;
    for (long i = 0; i < r; i++) { /* "+PGID\n" and "-PGID\n", a byte at a time */
      char c = buf[i];
      if (c == '+' || c == '-') {
        op = c, value = 0;
      } else if (c >= '0' && c <= '9') {
        value = value < (1l << 40) ? value * 10 + (c - '0') : value;
      } else if (c == '\n') {
        if (op == '+' && value > 1 && n < MAX_GROUPS) {
          watched[n++] = (pid_t)value;
        } else if (op == '-' && value > 1) {
          for (size_t k = 0; k < n; k++)
            if (watched[k] == (pid_t)value) {
              watched[k] = watched[--n];
              break;
            }
        }
        op = 0;
      }
    }
  }
  for (size_t k = 0; k < n; k++) sys3(SYS_kill, -watched[k], SIGKILL, 0);
  sys3(SYS_exit, 0, 0, 0);
  return 0;
}

/* --- fgrun's side -------------------------------------------------------------------------- */

static void send_line(fg_watchdog *wd, char op, int pgid) {
  if (wd->fd < 0) return;
  char line[24];
  int n = snprintf(line, sizeof line, "%c%d\n", op, pgid);
  /* Lines are far below PIPE_BUF, so each write is whole; the pipe never fills up because
   * the watchdog reads as fast as groups come and go. */
  while (write(wd->fd, line, (size_t)n) < 0 && errno == EINTR) {
  }
}

static int spawn(fg_watchdog *wd, char *err, size_t errlen);

/* Its watch is closed: at the end, that was all; otherwise it died, and a new one takes its
 * place (a few times) with every group still listed. */
static void on_child_closed(fg_child *c) {
  fg_watchdog *wd = c->data;
  wd->child_open = 0;
  if (wd->stopping) {
    if (wd->timer_open) uv_close((uv_handle_t *)&wd->stop_timer, NULL);
    wd->timer_open = 0;
    return;
  }
  if (wd->fd >= 0) close(wd->fd);
  wd->fd = -1;
  if (wd->respawns++ >= MAX_RESPAWNS) {
    fg_warn("the watchdog exited again (status %d, signal %d); going on without it",
            wd->exit_status, wd->exit_signal);
    return;
  }
  char err[256];
  fg_warn("the watchdog exited unexpectedly (status %d, signal %d); starting a new one",
          wd->exit_status, wd->exit_signal);
  if (spawn(wd, err, sizeof err) != 0) {
    fg_warn("%s", err);
    return;
  }
  for (int i = 0; i < wd->ngroups; i++) send_line(wd, '+', wd->groups[i]);
}

static void on_watchdog_exit(fg_child *c, int status, int sig) {
  fg_watchdog *wd = c->data;
  wd->running = 0;
  wd->exit_status = status;
  wd->exit_signal = sig;
  fg_child_close(c);
}

static int spawn(fg_watchdog *wd, char *err, size_t errlen) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    return fg__fail(err, errlen, -errno, "watchdog pipe: %s", strerror(errno));
  /* One watchdog at a time reads these, at its start (a new one comes after the last one's
   * end). */
  static watch_args args;
  args = (watch_args){.in = fds[0], .reset = fg_spawn_noted_mask(),
                      .max_fd = sysconf(_SC_OPEN_MAX)};
  /* No handler of fgrun's may run in it before it has reset them. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd = -1, flags = CLONE_VM | SIGCHLD;
  pid_t pid = -1;
#ifdef CLONE_PIDFD
  if (!fg_child_no_pidfd())
    pid = clone(watch, watchdog_stack + sizeof watchdog_stack, flags | CLONE_PIDFD, &args, &pidfd);
#endif
  if (pid < 0) pid = clone(watch, watchdog_stack + sizeof watchdog_stack, flags, &args);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(fds[0]);
  if (pid < 0) {
    close(fds[1]);
    return fg__fail(err, errlen, -clone_errno, "cannot start the watchdog: clone: %s",
                   strerror(clone_errno));
  }
  wd->child.on_exit = on_watchdog_exit;
  wd->child.on_closed = on_child_closed;
  wd->child.data = wd;
  int rc = fg_child_watch(&wd->child, wd->loop, pid, pidfd);
  if (rc != 0) { /* an unwatched watchdog could not be replaced: go without one */
    close(fds[1]);
    return fg__fail(err, errlen, rc, "cannot watch the watchdog (pid %d): %s", (int)pid,
                   uv_strerror(rc));
  }
  wd->child_open = wd->running = 1;
  wd->fd = fds[1];
  return 0;
}

int fg_watchdog_start(fg_watchdog *wd, uv_loop_t *loop, char *err, size_t errlen) {
  memset(wd, 0, sizeof *wd);
  wd->loop = loop;
  wd->fd = -1;
  return spawn(wd, err, errlen);
}

int fg_watchdog_fd(const fg_watchdog *wd) { return wd->fd; }

void fg_watchdog_add(fg_watchdog *wd, int pgid) {
  if (wd->ngroups == wd->cap) {
    int cap = wd->cap ? 2 * wd->cap : 64;
    int *groups = realloc(wd->groups, (size_t)cap * sizeof *groups);
    if (!groups) {
      fg_warn("out of memory: a replacement watchdog would miss process group %d", pgid);
      return;
    }
    wd->groups = groups;
    wd->cap = cap;
  }
  wd->groups[wd->ngroups++] = pgid;
}

void fg_watchdog_remove(fg_watchdog *wd, int pgid) {
  for (int i = 0; i < wd->ngroups; i++)
    if (wd->groups[i] == pgid) {
      wd->groups[i] = wd->groups[--wd->ngroups];
      send_line(wd, '-', pgid);
      return;
    }
}

/* A watchdog that does not exit within the bound is left to whoever reaps fgrun's
 * children after it. */
static void on_stop_timeout(uv_timer_t *t) {
  fg_watchdog *wd = t->data;
  if (wd->child_open) fg_child_close(&wd->child); /* on_child_closed closes the timer */
}

void fg_watchdog_stop(fg_watchdog *wd) {
  wd->stopping = 1;
  if (wd->fd >= 0) close(wd->fd);
  wd->fd = -1;
  if (wd->running) {
    uv_timer_init(wd->loop, &wd->stop_timer);
    wd->stop_timer.data = wd;
    wd->timer_open = 1;
    uv_timer_start(&wd->stop_timer, on_stop_timeout, 2000, 0);
  }
  free(wd->groups);
  wd->groups = NULL;
  wd->ngroups = wd->cap = 0;
}
