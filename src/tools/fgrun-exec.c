/* fgrun-exec - the step between fgrun and each worker, and fgrun's watchdog.
 *
 *   fgrun-exec PARENT_PID FILE ARG0 [ARGS...]
 *       Ties this process to fgrun (SIGKILL when fgrun dies, PR_SET_PDEATHSIG), makes sure
 *       fgrun did not already die before that took effect, then execs FILE with ARG0...
 *       so the worker keeps the pid fgrun started. fgrun has already made it the leader
 *       of its own session and process group.
 *   fgrun-exec --watchdog
 *       Reads "+PGID" / "-PGID" lines on stdin; at EOF (fgrun is gone, however it went)
 *       SIGKILLs every group still listed, then exits.
 *
 * It links nothing but libc so that the extra exec per worker stays cheap. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static int watchdog(void) {
  /* Only EOF ends the watch: terminal signals and a stray SIGTERM (fgrun passes those on
   * to the workers with a grace period of its own) must not cut it short. */
  static const int ignored[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN};
  for (size_t i = 0; i < sizeof ignored / sizeof *ignored; i++) signal(ignored[i], SIG_IGN);
  if (chdir("/") != 0) {
    /* stay where we are; nothing depends on it */
  }
  pid_t *groups = NULL;
  size_t n = 0, cap = 0;
  char buf[4096];
  size_t have = 0;
  for (;;) {
    ssize_t r = read(STDIN_FILENO, buf + have, sizeof buf - have);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    have += (size_t)r;
    char *line = buf, *nl;
    while ((nl = memchr(line, '\n', have - (size_t)(line - buf))) != NULL) {
      *nl = '\0';
      long pgid = strtol(line + 1, NULL, 10);
      if (pgid > 1 && line[0] == '+') {
        if (n == cap) {
          size_t ncap = cap ? 2 * cap : 64;
          pid_t *g = realloc(groups, ncap * sizeof *g);
          if (g) groups = g, cap = ncap;
        }
        if (n < cap) groups[n++] = (pid_t)pgid;
      } else if (pgid > 1 && line[0] == '-') {
        for (size_t i = 0; i < n; i++)
          if (groups[i] == (pid_t)pgid) {
            groups[i] = groups[--n];
            break;
          }
      }
      line = nl + 1;
    }
    have -= (size_t)(line - buf);
    memmove(buf, line, have);
    if (have == sizeof buf) have = 0; /* a line that long is garbage */
  }
  for (size_t i = 0; i < n; i++) kill(-groups[i], SIGKILL);
  free(groups);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--watchdog") == 0) return watchdog();
  if (argc < 4) {
    fprintf(stderr, "usage: fgrun-exec PARENT_PID FILE ARG0 [ARGS...] | --watchdog\n"
                    "(started by fgrun; not meant to be run by hand)\n");
    return 127;
  }
  pid_t parent = (pid_t)strtol(argv[1], NULL, 10);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
    fprintf(stderr, "fgrun-exec: prctl(PR_SET_PDEATHSIG): %s\n", strerror(errno));
    return 127;
  }
  if (getppid() != parent) return 127; /* fgrun died before the death signal was armed */
  execv(argv[2], argv + 3);
  int e = errno;
  fprintf(stderr, "fgrun-exec: cannot run %s: %s\n", argv[2], strerror(e));
  return e == ENOENT ? 127 : 126;
}
