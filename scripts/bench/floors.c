/* floors.c - what the machine allows, measured beside the benchmarks (scripts/bench.sh):
 *
 *   floors memcpy LO HI REPEAT   median time of one memcpy of each power-of-two size from LO
 *                                to HI bytes (one core): a collective's bandwidth floor
 *   floors tcp-rtt SECONDS       1-byte ping-pong over loopback TCP (TCP_NODELAY) between
 *                                this thread and an echo thread: what any request-reply store
 *                                pays at least per request
 *   floors forkexec N PROG ARGS  fork and exec N copies of PROG, then wait for all: what any
 *                                launcher of N processes pays at least (run it as a command)
 *   floors interleave RUNS WARMUP NAME CMD [NAME CMD ...]
 *                                runs each command (a shell-free argv, split at spaces) RUNS
 *                                times, taking turns (the order rotates every round, so drift
 *                                on the machine hits all alike), after WARMUP rounds; prints
 *                                per command the median, mean, stddev, min and max wall time,
 *                                the median CPU time of the command and all it waited for
 *                                (user + system, from wait4), and the peak RSS of the largest
 *                                of them
 *
 * Each prints CSV on stdout. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* --- memcpy ------------------------------------------------------------------------------ */

static double per_copy(char *dst, const char *src, size_t bytes, long iters) {
  double t0 = now();
  for (long i = 0; i < iters; i++) {
    memcpy(dst, src, bytes);
    __asm__ volatile("" : : "r"(dst) : "memory"); /* the copy must happen */
  }
  return (now() - t0) / (double)iters;
}

static int memcpy_floor(size_t lo, size_t hi, int repeat) {
  char *src = aligned_alloc(4096, hi), *dst = aligned_alloc(4096, hi);
  double *t = calloc((size_t)repeat, sizeof *t);
  if (!src || !dst || !t || repeat < 1 || lo < 1) return 1;
  memset(src, 1, hi);
  memset(dst, 2, hi);
  printf("bytes,time_us,GBps\n");
  for (size_t b = lo; b <= hi; b *= 2) {
    long iters = 1;
    while (per_copy(dst, src, b, iters) * (double)iters < 0.005) iters *= 2; /* >= 5 ms */
    for (int r = 0; r < repeat; r++) t[r] = per_copy(dst, src, b, iters);
    qsort(t, (size_t)repeat, sizeof *t, by_value);
    double med = t[repeat / 2];
    printf("%zu,%.4f,%.3f\n", b, med * 1e6, (double)b / med / 1e9);
  }
  return 0;
}

/* --- loopback TCP round trip ------------------------------------------------------------- */

static void *echo(void *arg) {
  int fd = accept(*(int *)arg, NULL, NULL), one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  char c;
  while (read(fd, &c, 1) == 1 && write(fd, &c, 1) == 1) {
  }
  close(fd);
  return NULL;
}

static int tcp_rtt_floor(double seconds) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) ||
      getsockname(l, (struct sockaddr *)&a, &len))
    return 1;
  pthread_t t;
  pthread_create(&t, NULL, echo, &l);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr *)&a, sizeof a)) return 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  size_t cap = 1 << 22, n = 0;
  double *rtt = malloc(cap * sizeof *rtt), end = now() + seconds;
  char c = 'x';
  while (rtt && n < cap && now() < end) {
    double t0 = now();
    if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1) return 1;
    rtt[n++] = now() - t0;
  }
  close(fd);
  pthread_join(t, NULL);
  if (n == 0) return 1;
  qsort(rtt, n, sizeof *rtt, by_value);
  printf("round_trips,median_us,p10_us,p90_us,per_second_one_connection\n");
  printf("%zu,%.2f,%.2f,%.2f,%.0f\n", n, rtt[n / 2] * 1e6, rtt[n / 10] * 1e6,
         rtt[n * 9 / 10] * 1e6, 1 / rtt[n / 2]);
  return 0;
}

/* --- launching processes -------------------------------------------------------------- */

static int forkexec_floor(int n, char **argv) {
  for (int i = 0; i < n; i++)
    if (fork() == 0) {
      execv(argv[0], argv);
      _exit(127);
    }
  while (wait(NULL) > 0) {
  }
  return 0;
}

extern char **environ;

typedef struct command {
  const char *name;
  char **argv;
  double *wall, *cpu;
  long maxrss_kb;
  int failed;
} command;

static char **split(const char *text) {
  char *copy = strdup(text), **argv = calloc(strlen(text) / 2 + 2, sizeof *argv);
  int n = 0;
  for (char *w = strtok(copy, " "); w; w = strtok(NULL, " ")) argv[n++] = w;
  return argv;
}

/* One run: wall seconds, CPU seconds (the command and what it reaped), its status. */
static int run_once(command *c, double *wall, double *cpu) {
  pid_t pid;
  posix_spawn_file_actions_t quiet; /* what the commands print is not what is measured */
  posix_spawn_file_actions_init(&quiet);
  posix_spawn_file_actions_addopen(&quiet, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&quiet, 2, "/dev/null", O_WRONLY, 0);
  double t0 = now();
  int rc = posix_spawn(&pid, c->argv[0], &quiet, NULL, c->argv, environ);
  posix_spawn_file_actions_destroy(&quiet);
  if (rc != 0) return -1;
  int status;
  struct rusage ru;
  if (wait4(pid, &status, 0, &ru) != pid) return -1;
  *wall = now() - t0;
  *cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec * 1e-6;
  if (ru.ru_maxrss > c->maxrss_kb) c->maxrss_kb = ru.ru_maxrss;
  return status;
}

static double median_of(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, by_value);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int interleave(int runs, int warmup, int ncmd, char **pairs) {
  command *cmds = calloc((size_t)ncmd, sizeof *cmds);
  for (int i = 0; i < ncmd; i++) {
    cmds[i] = (command){.name = pairs[2 * i], .argv = split(pairs[2 * i + 1]),
                        .wall = calloc((size_t)runs, sizeof(double)),
                        .cpu = calloc((size_t)runs, sizeof(double))};
  }
  for (int r = -warmup; r < runs; r++)
    for (int k = 0; k < ncmd; k++) {
      command *c = &cmds[((r + warmup) + k) % ncmd]; /* the order rotates every round */
      double wall = 0, cpu = 0;
      int st = run_once(c, &wall, &cpu);
      if (st != 0) c->failed++;
      if (r >= 0) c->wall[r] = wall, c->cpu[r] = cpu;
    }
  printf("command,median_ms,mean_ms,stddev_ms,min_ms,p10_ms,max_ms,cpu_median_ms,cpu_p10_ms,"
         "maxrss_kb,runs,failed\n");
  for (int i = 0; i < ncmd; i++) {
    command *c = &cmds[i];
    double sum = 0, sq = 0;
    for (int r = 0; r < runs; r++) sum += c->wall[r];
    double mean = sum / runs;
    for (int r = 0; r < runs; r++) sq += (c->wall[r] - mean) * (c->wall[r] - mean);
    double cpu = median_of(c->cpu, runs), med = median_of(c->wall, runs);
    printf("%s,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%ld,%d,%d\n", c->name, med * 1e3,
           mean * 1e3, sqrt(sq / runs) * 1e3, c->wall[0] * 1e3, c->wall[runs / 10] * 1e3,
           c->wall[runs - 1] * 1e3, cpu * 1e3, c->cpu[runs / 10] * 1e3, c->maxrss_kb, runs,
           c->failed);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 4 && !strcmp(argv[1], "forkexec")) return forkexec_floor(atoi(argv[2]), argv + 3);
  if (argc >= 6 && argc % 2 == 0 && !strcmp(argv[1], "interleave"))
    return interleave(atoi(argv[2]), atoi(argv[3]), (argc - 4) / 2, argv + 4);
  if (argc == 5 && !strcmp(argv[1], "memcpy"))
    return memcpy_floor(strtoull(argv[2], NULL, 10), strtoull(argv[3], NULL, 10), atoi(argv[4]));
  if (argc == 3 && !strcmp(argv[1], "tcp-rtt")) return tcp_rtt_floor(atof(argv[2]));
  fprintf(stderr, "usage: floors memcpy LO HI REPEAT | floors tcp-rtt SECONDS | floors forkexec "
                  "N PROG [ARGS] | floors interleave RUNS WARMUP NAME CMD [NAME CMD ...]\n");
  return 2;
}
