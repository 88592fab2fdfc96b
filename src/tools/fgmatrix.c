/* fgmatrix - runs the scenario matrix described by the YAML files in configs/.
 *
 * Each case runs in its own process group under fgrun or mpirun, with a
 * timeout; its output is captured and shown when it fails. A progress line per
 * case, a final table, JUnit XML and JSON results; exit 1 if any case failed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/util.h"
#include "fg/fg.h"
#include "tools/matrix.h"

static const char usage[] =
    "usage: fgmatrix [options] CONFIG.yaml...\n"
    "\n"
    "Runs every case of the given matrix configs (see configs/) and reports the results.\n"
    "\n"
    "options:\n"
    "  --backend gloo|mpi|nccl   run every case on this backend (mpi always runs under mpirun)\n"
    "  --launcher fgrun|mpirun   start every case with this launcher\n"
    "  --filter TEXT             only the cases whose name contains TEXT\n"
    "  --timeout SECONDS         per-case time limit (default: the config's, else 120)\n"
    "  --junit FILE              write JUnit XML results\n"
    "  --json FILE               write JSON results\n"
    "  --logs DIR                keep each case's output in DIR/<case>.log\n"
    "  --bin DIR                 where fgrun and fgscenario are (default: next to fgmatrix)\n"
    "  --list                    list the cases and exit\n"
    "  -v, --verbose             print every case's output\n"
    "  --version, -h, --help\n"
    "\n"
    "Exit status: 0 no case failed, 1 a case failed, 2 bad usage or a malformed config.\n";

typedef struct options {
  const char *backend, *launcher, *filter, *junit, *json, *logs;
  char bin[PATH_MAX];
  double timeout;
  int list, verbose;
} options;

static volatile sig_atomic_t interrupted;
static volatile pid_t running_group;

static void on_interrupt(int sig) {
  interrupted = sig;
  if (running_group > 0) kill(-running_group, SIGTERM);
}

static int count_gpus(void) {
  DIR *d = opendir("/proc/driver/nvidia/gpus");
  int n = 0;
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

/* The command line of one case. */
static int build_argv(const options *o, const matrix_case *c, char **argv, char store[][PATH_MAX + 32]) {
  int n = 0, s = 0;
#define ARG(x) (argv[n++] = (char *)(x))
#define FMT(...) (snprintf(store[s], sizeof store[s], __VA_ARGS__), argv[n++] = store[s++])
  if (!strcmp(c->launcher, "mpirun")) {
    ARG("mpirun");
    ARG("--oversubscribe");
    if (geteuid() == 0) ARG("--allow-run-as-root");
    ARG("-np");
    FMT("%d", c->processes);
    FMT("%s/fgscenario", o->bin);
    ARG("--backend");
    ARG(c->backend);
    ARG(c->scenario);
  } else {
    FMT("%s/fgrun", o->bin);
    ARG("--standalone");
    FMT("--nproc_per_node=%d", c->processes);
    ARG(c->scenario);
    ARG("--backend");
    ARG(c->backend);
  }
  for (int i = 0; i < c->mesh_dims; i++) {
    FMT("--%s", c->mesh_names[i]);
    for (char *p = argv[n - 1] + 2; *p; p++) *p = *p == '_' ? '-' : *p;
    FMT("%d", c->mesh_sizes[i]);
  }
  for (int i = 0; i < c->nargs; i++) ARG(c->args[i]);
  argv[n] = NULL;
#undef ARG
#undef FMT
  return n;
}

/* Runs argv in a new process group, capturing its output, for at most timeout seconds.
 * Returns the exit status (128+signal for a signal, 124 for a timeout). */
static int run_captured(char **argv, double timeout, fg_buf *out) {
  int fds[2];
  if (pipe(fds) != 0) return -errno;
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(fds[0]);
    close(fds[1]);
    return -e;
  }
  if (pid == 0) {
    setpgid(0, 0);
    /* mpirun forwards stdin to rank 0: a case must not read the runner's terminal */
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    execvp(argv[0], argv);
    fprintf(stderr, "fgmatrix: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  setpgid(pid, pid);
  running_group = pid;
  close(fds[1]);
  double deadline = fg__now_s() + timeout;
  int timed_out = 0, killed = 0;
  for (;;) {
    double left = deadline - fg__now_s();
    if (left <= 0 && !killed) {
      timed_out = 1;
      killed = 1;
      kill(-pid, SIGTERM);
      deadline = fg__now_s() + 3; /* then SIGKILL */
      continue;
    }
    if (left <= 0 && killed == 1) {
      kill(-pid, SIGKILL);
      killed = 2;
      deadline = fg__now_s() + 5;
      continue;
    }
    if (left <= 0) break; /* something outside the group holds the pipe: stop reading */
    struct pollfd p = {fds[0], POLLIN, 0};
    int r = poll(&p, 1, (int)(left > 0 ? left * 1000 + 1 : 100));
    if (r < 0 && errno == EINTR) continue;
    if (r > 0) {
      char buf[4096];
      ssize_t got = read(fds[0], buf, sizeof buf);
      if (got > 0) {
        fg__buf_put(out, buf, (size_t)got);
        continue;
      }
      if (got == 0) break;
      if (errno != EINTR) break;
    }
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  kill(-pid, SIGKILL); /* anything the case left behind */
  running_group = 0;
  fg__buf_put_u8(out, 0);
  out->len--;
  if (timed_out) return 124;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The command line as one string a shell would run the same way. */
static char *join_argv(char **argv) {
  fg_buf b;
  fg__buf_init(&b);
  for (int i = 0; argv[i]; i++) {
    const char *a = argv[i];
    int plain = a[0] != '\0' && strspn(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                          "0123456789-_=./:,+@%") == strlen(a);
    if (i) fg__buf_put(&b, " ", 1);
    if (plain) {
      fg__buf_put(&b, a, strlen(a));
      continue;
    }
    fg__buf_put(&b, "'", 1);
    for (; *a; a++)
      if (*a == '\'')
        fg__buf_put(&b, "'\\''", 4);
      else
        fg__buf_put(&b, a, 1);
    fg__buf_put(&b, "'", 1);
  }
  fg__buf_put_u8(&b, 0);
  return (char *)b.data;
}

static int on_path(const char *name) {
  char path[PATH_MAX];
  const char *dirs = getenv("PATH");
  for (const char *p = dirs ? dirs : "/usr/bin:/bin"; *p;) {
    size_t n = strcspn(p, ":");
    snprintf(path, sizeof path, "%.*s/%s", (int)n, p, name);
    if (access(path, X_OK) == 0) return 1;
    p += n + (p[n] == ':');
  }
  return 0;
}

/* Why a case cannot run on this machine, or NULL. */
static char *cannot_run(const matrix_case *c) {
  int gpus = count_gpus();
  if (!strcmp(c->backend, "nccl") && gpus < c->processes)
    return gpus ? fg__asprintf("needs %d GPUs, this machine has %d", c->processes, gpus)
                : strdup("no CUDA device");
  if (!strcmp(c->launcher, "mpirun") && !on_path("mpirun"))
    return strdup("mpirun is not installed");
  return NULL;
}

/* A fault case passes when a check failed: exit status 1 with a [FAIL] line. Anything
 * else (a usage error, a crash, a timeout, a pass) means the fault did not do its job. */
static int verdict(matrix_case *c) {
  if (!c->expect_fail) {
    if (c->exit_code != 0)
      c->why = c->exit_code == 124 ? fg__asprintf("timed out after %g s", c->timeout)
                                   : fg__asprintf("exit status %d", c->exit_code);
    return c->exit_code == 0;
  }
  if (c->exit_code == 1 && strstr(c->log, "[FAIL]")) return 1;
  if (c->exit_code == 0)
    c->why = strdup("expected the scenario to fail a check, but it passed");
  else if (c->exit_code == 124)
    c->why = fg__asprintf("timed out after %g s (expected a failed check)", c->timeout);
  else
    c->why = fg__asprintf("exit status %d%s (expected 1 with a failed check)", c->exit_code,
                         c->exit_code == 1 ? " without a [FAIL] line" : "");
  return 0;
}

static const char *last_lines(const char *log, int n) {
  const char *p = log + strlen(log);
  while (p > log && n >= 0)
    if (*--p == '\n') n--;
  return p == log ? p : p + 1;
}

/* The command line's --backend, --launcher and --timeout over the config's. */
static void override(const options *o, matrix_case *c) {
  if (o->backend) {
    free(c->backend);
    c->backend = strdup(o->backend);
  }
  if (o->launcher) {
    free(c->launcher);
    c->launcher = strdup(o->launcher);
  }
  if (!strcmp(c->backend, "mpi") && strcmp(c->launcher, "mpirun")) {
    free(c->launcher);
    c->launcher = strdup("mpirun");
  }
  if (o->timeout > 0) c->timeout = o->timeout;
}

static void run_case(const options *o, matrix_case *c, size_t i, size_t total) {
  printf("[%2zu/%zu] %-40s ", i + 1, total, c->name);
  fflush(stdout);
  char *argv[MATRIX_MAX_ARGS + 24];
  char store[12][PATH_MAX + 32];
  build_argv(o, c, argv, store);
  c->command = join_argv(argv);
  if ((c->why = cannot_run(c)) != NULL) {
    c->result = "SKIP";
    printf("SKIP  (%s)\n", c->why);
    return;
  }
  fg_buf out;
  fg__buf_init(&out);
  double t0 = fg__now_s();
  c->exit_code = run_captured(argv, c->timeout, &out);
  c->seconds = fg__now_s() - t0;
  c->log = out.data ? (char *)out.data : strdup("");
  int passed = verdict(c);
  c->result = passed ? "PASS" : "FAIL";
  printf("%s  %6.2f s%s%s%s\n", c->result, c->seconds, c->expect_fail ? "  (fault case)" : "",
         c->why ? "  " : "", c->why ? c->why : "");
  if (!passed || o->verbose) {
    printf("        $ %s\n", c->command);
    const char *tail = o->verbose ? c->log : last_lines(c->log, 20);
    for (const char *p = tail; *p;) {
      size_t len = strcspn(p, "\n");
      printf("        | %.*s\n", (int)len, p);
      p += len + (p[len] == '\n');
    }
  }
  if (o->logs) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s.log", o->logs, c->name);
    FILE *f = fopen(path, "w");
    if (f) {
      fputs(c->log, f);
      fclose(f);
    }
  }
  fflush(stdout);
}

/* Every case with its time, then the counts and the total: the matrix's benchmark. */
static void print_table(const matrix *m, double total) {
  printf("\n%-40s %-8s %-7s %5s %-6s %-7s %8s\n", "case", "backend", "launch", "procs", "expect",
         "result", "seconds");
  size_t pass = 0, fail = 0, skip = 0, slowest = 0;
  for (size_t i = 0; i < m->n; i++) {
    const matrix_case *c = &m->cases[i];
    printf("%-40s %-8s %-7s %5d %-6s %-7s %8.2f\n", c->name, c->backend, c->launcher,
           c->processes, c->expect_fail ? "fail" : "pass", c->result ? c->result : "NOT RUN",
           c->seconds);
    pass += c->result && !strcmp(c->result, "PASS");
    fail += c->result && !strcmp(c->result, "FAIL");
    skip += c->result && !strcmp(c->result, "SKIP");
    if (c->seconds > m->cases[slowest].seconds) slowest = i;
  }
  printf("\n%zu cases: %zu passed, %zu failed, %zu skipped", m->n, pass, fail, skip);
  if (pass + fail + skip < m->n) printf(", %zu not run", m->n - pass - fail - skip);
  printf(" in %.2f s (slowest: %s, %.2f s)\n", total, m->cases[slowest].name,
         m->cases[slowest].seconds);
}

static int parse(int argc, char **argv, options *o) {
  enum { BACKEND = 256, LAUNCHER, FILTER, TIMEOUT, JUNIT, JSON, LOGS, BINDIR, LIST, VERSION };
  static const struct option opts[] = {
      {"backend", required_argument, 0, BACKEND}, {"launcher", required_argument, 0, LAUNCHER},
      {"filter", required_argument, 0, FILTER},   {"timeout", required_argument, 0, TIMEOUT},
      {"junit", required_argument, 0, JUNIT},     {"json", required_argument, 0, JSON},
      {"logs", required_argument, 0, LOGS},       {"bin", required_argument, 0, BINDIR},
      {"list", no_argument, 0, LIST},             {"verbose", no_argument, 0, 'v'},
      {"version", no_argument, 0, VERSION},       {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
    switch (c) {
      case BACKEND:
        if (strcmp(optarg, "gloo") && strcmp(optarg, "mpi") && strcmp(optarg, "nccl")) {
          fprintf(stderr, "fgmatrix: error: --backend must be gloo, mpi or nccl\n");
          return 2;
        }
        o->backend = optarg;
        break;
      case LAUNCHER:
        if (strcmp(optarg, "fgrun") && strcmp(optarg, "mpirun")) {
          fprintf(stderr, "fgmatrix: error: --launcher must be fgrun or mpirun\n");
          return 2;
        }
        o->launcher = optarg;
        break;
      case FILTER: o->filter = optarg; break;
      case TIMEOUT:
        if (fg__parse_seconds(optarg, &o->timeout) != 0 || o->timeout <= 0) {
          fprintf(stderr, "fgmatrix: error: bad --timeout '%s'\n", optarg);
          return 2;
        }
        break;
      case JUNIT: o->junit = optarg; break;
      case JSON: o->json = optarg; break;
      case LOGS: o->logs = optarg; break;
      case BINDIR: snprintf(o->bin, sizeof o->bin, "%s", optarg); break;
      case LIST: o->list = 1; break;
      case 'v': o->verbose = 1; break;
      case VERSION: printf("fgmatrix %s\n", FG_VERSION); exit(0);
      case 'h': fputs(usage, stdout); exit(0);
      default: fprintf(stderr, "(see fgmatrix --help)\n"); return 2;
    }
  }
  if (optind >= argc) {
    fprintf(stderr, "fgmatrix: error: no config given (e.g. configs/dispatcher.yaml)\n");
    return 2;
  }
  if (!o->bin[0]) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    snprintf(o->bin, sizeof o->bin, "%s", n > 0 ? dirname(self) : ".");
  }
  return 0;
}

int main(int argc, char **argv) {
  options o = {0};
  int rc = parse(argc, argv, &o);
  if (rc) return rc;
  matrix m = {0};
  char err[1024];
  for (int i = optind; i < argc; i++)
    if (matrix_load(&m, argv[i], err, sizeof err) != 0) {
      fprintf(stderr, "fgmatrix: error: %s\n", err);
      matrix_free(&m);
      return 2;
    }
  /* Keep the cases the filter selects. */
  size_t kept = 0;
  for (size_t i = 0; i < m.n; i++) {
    if (o.filter && !strstr(m.cases[i].name, o.filter)) {
      matrix_case_free(&m.cases[i]);
      continue;
    }
    override(&o, &m.cases[i]);
    m.cases[kept++] = m.cases[i];
  }
  m.n = kept;
  if (m.n == 0) {
    fprintf(stderr, "fgmatrix: error: no case matches%s%s\n", o.filter ? " --filter " : "",
            o.filter ? o.filter : "");
    matrix_free(&m);
    return 2;
  }
  if (o.list) {
    for (size_t i = 0; i < m.n; i++) {
      const matrix_case *c = &m.cases[i];
      printf("%-40s %-24s %2d procs  %-4s %-6s expect %-4s  %s\n", c->name, c->scenario,
             c->processes, c->backend, c->launcher, c->expect_fail ? "fail" : "pass", c->source);
    }
    matrix_free(&m);
    return 0;
  }
  signal(SIGINT, on_interrupt);
  signal(SIGTERM, on_interrupt);
  double t0 = fg__now_s();
  for (size_t i = 0; i < m.n && !interrupted; i++) run_case(&o, &m.cases[i], i, m.n);
  double total = fg__now_s() - t0;
  print_table(&m, total);
  int failed = 0;
  if (o.junit && matrix_write_junit(&m, o.junit, total) != 0) {
    fprintf(stderr, "fgmatrix: error: cannot write %s: %s\n", o.junit, strerror(errno));
    failed = 1;
  }
  if (o.json && matrix_write_json(&m, o.json, total) != 0) {
    fprintf(stderr, "fgmatrix: error: cannot write %s: %s\n", o.json, strerror(errno));
    failed = 1;
  }
  for (size_t i = 0; i < m.n; i++) failed |= m.cases[i].result && !strcmp(m.cases[i].result, "FAIL");
  matrix_free(&m);
  if (interrupted) return 128 + interrupted;
  return failed ? 1 : 0;
}
