/* fgrun-stack - a process's stacks, read from outside, for fgrun's hang reports (fgrun runs
 * it off its event loop, one per rank, and kills it after a bound); usable by hand too.
 *
 *   fgrun-stack [--python FILE --signal N] [--no-native] [--wait-ms MS] PID
 *
 * --python FILE --signal N: PID is a Python rank fgrun started with its hook
 *     (src/launcher/pyhook/): faulthandler dumps every thread's traceback into FILE on
 *     signal N. fgrun-stack checks in /proc that PID handles N (an unhandled real-time
 *     signal would kill it) and is not stopped, sends N to its main thread, waits until the
 *     dump is whole (the handler has run and FILE stopped growing) and prints it with each
 *     frame's source line. A stopped process cannot run a handler and is not resumed: it
 *     gets a line that says so.
 * Then, unless --no-native, the native frames of every thread (stack_native.h).
 * --wait-ms: how long to wait for the dump and for threads to stop (default 1000 each).
 *
 * Output goes to stdout; exit status 0 when something was read, 1 when nothing, 2 on bad
 * arguments. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/util.h"
#include "launcher/procinfo.h"
#include "tools/stack_native.h"

static const char *const INDENT = "";

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Whether sig is pending for the main thread or the process, or blocked (its handler runs:
 * faulthandler's user handler does not use SA_NODEFER). */
static int signal_busy(int pid, int sig) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/task/%d/status", pid, pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  static const char *const fields[] = {"\nSigPnd:", "\nShdPnd:", "\nSigBlk:"};
  for (size_t i = 0; i < FG_ARRAY_LEN(fields); i++) {
    const char *p = strstr(buf, fields[i]);
    if (p && (strtoull(p + strlen(fields[i]), NULL, 16) >> (sig - 1) & 1)) return 1;
  }
  return 0;
}

/* The text of line `line` of path as process pid sees it (through /proc/<pid>/root and
 * /cwd: a rank in a chroot or mount namespace of its own has its own files), stripped, or ""
 * (a file that is gone, or binary). */
static void source_line(int pid, const char *path, long line, char *out, size_t len) {
  out[0] = '\0';
  char where[1200];
  snprintf(where, sizeof where, "/proc/%d/%s/%s", pid, path[0] == '/' ? "root" : "cwd", path);
  FILE *f = path[0] == '<' ? NULL : fopen(where, "r");
  if (!f) return;
  char buf[512];
  for (long i = 1; fgets(buf, sizeof buf, f); i++) {
    size_t n = strlen(buf);
    int whole = n && buf[n - 1] == '\n';
    if (i == line) {
      char *p = buf;
      while (*p == ' ' || *p == '\t') p++;
      p[strcspn(p, "\r\n")] = '\0';
      snprintf(out, len, "%s", p);
      break;
    }
    while (!whole && fgets(buf, sizeof buf, f)) { /* the rest of a long line */
      n = strlen(buf);
      whole = n && buf[n - 1] == '\n';
    }
  }
  fclose(f);
}

/* faulthandler's lines, each frame followed by its source line as Python's tracebacks
 * show them. */
static void put_dump(int pid, const char *path, long from, FILE *out) {
  FILE *f = fopen(path, "r");
  if (!f || fseek(f, from, SEEK_SET) != 0) {
    fprintf(out, "%sPython: cannot read %s: %s\n", INDENT, path, strerror(errno));
    if (f) fclose(f);
    return;
  }
  fprintf(out, "%sPython (faulthandler; every thread, most recent call first):\n", INDENT);
  char line[1024];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    if (!line[0]) continue;
    fprintf(out, "%s  %s\n", INDENT, line);
    char file[800];
    long lineno;
    if (sscanf(line, "  File \"%799[^\"]\", line %ld", file, &lineno) == 2) {
      char src[256];
      source_line(pid, file, lineno, src, sizeof src);
      if (src[0]) fprintf(out, "%s      %s\n", INDENT, src);
    }
  }
  fclose(f);
}

static int python_stacks(int pid, const char *path, int sig, int wait_ms, FILE *out) {
  fg_proc_info p;
  if (fg_proc_read(pid, &p) != 0) {
    fprintf(out, "%sPython: no traceback: process %d is gone\n", INDENT, pid);
    return -1;
  }
  if (!(p.sig_caught >> (sig - 1) & 1)) {
    fprintf(out, "%sPython: no traceback: process %d does not handle signal %d (not a Python "
            "program fgrun started, started with -E/-I, or it replaced the handler)\n",
            INDENT, pid, sig);
    return -1;
  }
  char main_state = fg_proc_thread_state(pid, pid);
  if (main_state == 'T' || main_state == 't' || main_state == 'D') {
    fprintf(out, "%sPython: no traceback: its main thread is %s, so no signal handler can run "
            "(it is not resumed to find out)\n", INDENT, fg_proc_state_name(main_state));
    return -1;
  }
  long before = file_size(path);
  if (before < 0) {
    fprintf(out, "%sPython: no traceback: %s: %s\n", INDENT, path, strerror(errno));
    return -1;
  }
  if (syscall(SYS_tgkill, pid, pid, sig) != 0) {
    fprintf(out, "%sPython: cannot signal process %d: %s\n", INDENT, pid, strerror(errno));
    return -1;
  }
  uint64_t deadline = fg__now_ns() + (uint64_t)wait_ms * 1000000u;
  long last = before;
  int stable = 0;
  while (fg__now_ns() < deadline) {
    usleep(2000);
    long now = file_size(path);
    stable = now == last ? stable + 1 : 0;
    last = now;
    if (now > before && stable >= 2 && !signal_busy(pid, sig)) break;
  }
  if (last <= before) {
    fprintf(out, "%sPython: no traceback within %d ms (its main thread is %s)\n", INDENT,
            wait_ms, fg_proc_state_name(fg_proc_thread_state(pid, pid)));
    return -1;
  }
  put_dump(pid, path, before, out);
  return 0;
}

static void usage(void) {
  fprintf(stderr, "usage: fgrun-stack [--python FILE --signal N] [--no-native] [--wait-ms MS] "
                  "PID\n");
}

int main(int argc, char **argv) {
  static const struct option longs[] = {{"python", 1, 0, 'p'}, {"signal", 1, 0, 's'},
                                        {"no-native", 0, 0, 'n'}, {"wait-ms", 1, 0, 'w'},
                                        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
  const char *py_file = NULL;
  int sig = 0, native = 1, wait_ms = 1000, pid = 0, ch;
  while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
    switch (ch) {
      case 'p': py_file = optarg; break;
      case 's':
        if (fg__parse_int(optarg, 1, 64, &sig) != 0) {
          fprintf(stderr, "fgrun-stack: --signal: expected 1 to 64, got '%s'\n", optarg);
          return 2;
        }
        break;
      case 'n': native = 0; break;
      case 'w':
        if (fg__parse_int(optarg, 1, 600000, &wait_ms) != 0) {
          fprintf(stderr, "fgrun-stack: --wait-ms: expected 1 to 600000, got '%s'\n", optarg);
          return 2;
        }
        break;
      case 'h': usage(); return 0;
      default: usage(); return 2;
    }
  }
  if (optind != argc - 1 || fg__parse_int(argv[optind], 1, 1 << 30, &pid) != 0 ||
      (py_file && !sig)) {
    if (optind == argc - 1 && !(py_file && !sig))
      fprintf(stderr, "fgrun-stack: PID: expected a process id, got '%s'\n", argv[optind]);
    usage();
    return 2;
  }
  /* Started by fgrun: never outlive it (a kill at fgrun's bound lands here too). */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  setvbuf(stdout, NULL, _IOFBF, 1 << 16);
  int got = 0;
  if (py_file) got |= python_stacks(pid, py_file, sig, wait_ms, stdout) == 0;
  if (native) got |= fg_native_stacks(pid, wait_ms, INDENT, stdout) == 0;
  fflush(stdout);
  return got ? 0 : 1;
}
