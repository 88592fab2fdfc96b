/* fault_worker - a rank that runs one operation in a loop and, if told to, breaks at a
 * chosen iteration, for the fault-injection tests (tests/integration/test_faults.py).
 *
 *   fault_worker [options] OP      (every rank; under fgrun, torchrun, mpirun or srun)
 *
 * OP: allreduce, barrier, p2p (each rank sends to the next and receives from the previous
 * in one batch), pingpong (even ranks receive from the next rank, odd ranks send to the one
 * before: one send or recv each), store-barrier (fg_store_barrier on the world's store), or
 * spew (no communicator: write --bytes of numbered lines to stdout and exit).
 *
 *   --backend NAME   gloo (default) or mpi
 *   --iters N        iterations (default 10; 0: until killed)
 *   --count N        floats per allreduce (default 1024: 4 KB)
 *   --victim R       the rank that breaks (default: none)
 *   --at K           ... at iteration K, before entering the operation (default 3); -1:
 *                    before fg_comm_init
 *   --fault F        kill (SIGKILL itself), exit0 (exit 0 without a word), leave (destroy
 *                    the communicator, then exit 0), exit3, hang (never enter the
 *                    operation; sleep until killed), busy (never enter it; spin on the CPU
 *                    until killed), dstate (never enter it; wait in uninterruptible sleep,
 *                    as the parent of a vfork child that never execs or exits), count
 *                    (enter this allreduce with half the count the others pass), or
 *                    barrier (call a barrier where the others call OP)
 *   --attempt A      break only when TORCHELASTIC_RESTART_COUNT is A (default: any)
 *   --dir D          write D/pid.R, D/child.R (with --child), D/ready.R after init,
 *                    D/fault_at (CLOCK_REALTIME seconds) just before the fault
 *   --child          start `sleep 1000` in the rank's process group first
 *   --ignore-term    ignore SIGTERM; after a failed operation, sleep instead of exiting
 *   --bytes N        for spew
 *   --pause-ms N     sleep this long after each iteration
 *   --start-ms N     sleep this long before fg_comm_init (a rank slow to start)
 *
 * stdout gets "rank R iter I ok" per iteration (flushed), so tests can check that no line
 * of a log was lost; a failed operation prints "rank R: OP #I failed: MESSAGE" on stderr
 * and exits 1. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm/comm_internal.h"

typedef struct options {
  const char *op, *backend, *fault, *dir;
  int iters, count, victim, at, attempt, child, ignore_term, pause_ms, start_ms;
  long bytes;
} options;

static int g_rank = -1;
/* Globals, so that a rank leaving through exit() mid-loop leaks nothing LSan can see. */
static fg_comm *g_comm;
static float *g_buf;

static void write_file(const options *o, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void write_file(const options *o, const char *name, const char *fmt, ...) {
  if (!o->dir) return;
  char path[4096], tmp[4200];
  snprintf(path, sizeof path, "%s/%s", o->dir, name);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fclose(f);
  rename(tmp, path); /* whole or absent: the tests poll for these */
}

static double realtime(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void start_child(const options *o, int rank) {
  pid_t pid = fork();
  if (pid == 0) {
    execlp("sleep", "sleep", "1000", (char *)NULL);
    _exit(127);
  }
  char name[32];
  snprintf(name, sizeof name, "child.%d", rank);
  if (pid > 0) write_file(o, name, "%d\n", (int)pid);
}

static void fault(const options *o, fg_comm *c) {
  write_file(o, "fault_at", "%.6f\n", realtime());
  if (!strcmp(o->fault, "kill")) raise(SIGKILL);
  if (!strcmp(o->fault, "leave") && c) {
    fg_comm_destroy(c); /* a clean goodbye, as a rank that thinks it is done */
    exit(0);
  }
  if (!strcmp(o->fault, "exit0")) exit(0);
  if (!strcmp(o->fault, "busy"))
    for (volatile unsigned long spin = 0;; spin++) {
    }
  if (!strcmp(o->fault, "dstate")) {
    /* vfork's parent waits for its child to exec or exit in the kernel's killable
     * uninterruptible sleep (state D); the child, sharing its memory, only pauses. */
    if (vfork() == 0)
      for (;;) pause();
  }
  if (!strcmp(o->fault, "exit3")) {
    fprintf(stderr, "rank %d: exiting with 3 on purpose\n", g_rank);
    exit(3);
  }
  for (;;) pause(); /* hang */
}

static int restart_count(void) {
  const char *v = getenv("TORCHELASTIC_RESTART_COUNT");
  return v ? atoi(v) : -1;
}

static int one_op(fg_comm *c, const options *o, const char *op, int iter, float *buf,
                  int count) {
  int rank = fg_comm_rank(c), size = fg_comm_size(c);
  if (!strcmp(op, "allreduce")) {
    for (int i = 0; i < o->count; i++) buf[i] = (float)(rank + i);
    int rc = fg_allreduce(c, buf, buf, (size_t)count, FG_FLOAT32, FG_REDOP_SUM);
    float want = (float)(size * (size - 1) / 2);
    if (rc == 0 && buf[0] != want) {
      fprintf(stderr, "rank %d: allreduce #%d gave %g, want %g\n", rank, iter, buf[0], want);
      exit(1);
    }
    return rc;
  }
  if (!strcmp(op, "barrier")) return fg_barrier(c);
  if (!strcmp(op, "pingpong")) {
    float x = (float)rank;
    if (rank % 2 == 0 && rank + 1 < size) return fg_recv(c, &x, 1, FG_FLOAT32, rank + 1);
    if (rank % 2 == 1) return fg_send(c, &x, 1, FG_FLOAT32, rank - 1);
    return 0;
  }
  if (!strcmp(op, "p2p")) {
    float in = -1, out = (float)rank;
    fg_p2p_op ops[2] = {{1, &out, 1, FG_FLOAT32, (rank + 1) % size},
                        {0, &in, 1, FG_FLOAT32, (rank + size - 1) % size}};
    fg_batch *b;
    int rc = fg_batch_start(c, ops, 2, &b);
    return rc ? rc : fg_batch_wait(b);
  }
  char name[32];
  snprintf(name, sizeof name, "fault-%d", iter);
  int rc = fg_store_barrier(c->store, name, rank, size, fg_comm_timeout(c));
  if (rc) snprintf(c->err, sizeof c->err, "%s", fg_store_errmsg(c->store));
  return rc;
}

static void spew(long bytes) {
  long written = 0;
  for (long i = 0; written < bytes; i++) {
    int n = printf("spew line %09ld %s\n", i, "abcdefghijklmnopqrstuvwxyz0123456789");
    if (n < 0) exit(1);
    written += n;
  }
  fflush(stdout);
  exit(0);
}

static int parse(int argc, char **argv, options *o) {
  static const struct option longs[] = {
      {"backend", 1, 0, 'b'}, {"iters", 1, 0, 'i'},  {"count", 1, 0, 'n'},
      {"victim", 1, 0, 'v'},  {"at", 1, 0, 'a'},     {"fault", 1, 0, 'f'},
      {"attempt", 1, 0, 'A'}, {"dir", 1, 0, 'd'},    {"child", 0, 0, 'c'},
      {"ignore-term", 0, 0, 'I'}, {"bytes", 1, 0, 'B'}, {"pause-ms", 1, 0, 'p'},
      {"start-ms", 1, 0, 's'},    {0, 0, 0, 0}};
  *o = (options){.backend = "gloo", .fault = "kill", .iters = 10, .count = 1024, .victim = -1,
                 .at = 3, .attempt = -1};
  int ch;
  while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
    switch (ch) {
      case 'b': o->backend = optarg; break;
      case 'i': o->iters = atoi(optarg); break;
      case 'n': o->count = atoi(optarg); break;
      case 'v': o->victim = atoi(optarg); break;
      case 'a': o->at = atoi(optarg); break;
      case 'f': o->fault = optarg; break;
      case 'A': o->attempt = atoi(optarg); break;
      case 'd': o->dir = optarg; break;
      case 'c': o->child = 1; break;
      case 'I': o->ignore_term = 1; break;
      case 'B': o->bytes = atol(optarg); break;
      case 'p': o->pause_ms = atoi(optarg); break;
      case 's': o->start_ms = atoi(optarg); break;
      default: return -1;
    }
  }
  if (optind != argc - 1 || o->count < 1) return -1;
  o->op = argv[optind];
  return 0;
}

int main(int argc, char **argv) {
  options o;
  if (parse(argc, argv, &o) != 0) {
    fprintf(stderr, "usage: fault_worker [options] allreduce|barrier|p2p|pingpong|store-barrier|"
                    "spew\n");
    return 2;
  }
  if (!strcmp(o.op, "spew")) spew(o.bytes);
  if (o.ignore_term) signal(SIGTERM, SIG_IGN);
  /* Before fg_comm_init: the rank as fgrun/torchrun, mpirun or srun gives it. */
  const char *rank_env = getenv("RANK") ? getenv("RANK") : getenv("OMPI_COMM_WORLD_RANK");
  if (!rank_env && getenv("SLURM_STEP_ID")) rank_env = getenv("SLURM_PROCID");
  g_rank = rank_env ? atoi(rank_env) : 0;
  char name[32];
  snprintf(name, sizeof name, "pid.%d", g_rank);
  write_file(&o, name, "%d\n", (int)getpid());
  if (o.child) start_child(&o, g_rank);

  int armed = g_rank == o.victim && (o.attempt < 0 || (restart_count() == o.attempt));
  if (armed && o.at < 0) fault(&o, NULL); /* never reaches the rendezvous */
  if (o.start_ms > 0) usleep((useconds_t)o.start_ms * 1000);
  fg_comm_options co;
  fg_comm_options_init(&co);
  co.backend = o.backend;
  char err[512];
  if (fg_comm_init(&g_comm, &co, err, sizeof err) != 0) {
    fprintf(stderr, "rank %d: init failed: %s\n", g_rank, err);
    return 1;
  }
  snprintf(name, sizeof name, "ready.%d", g_rank);
  write_file(&o, name, "%d\n", (int)getpid());
  fg_comm *c = g_comm;
  float *buf = g_buf = calloc((size_t)o.count, sizeof *buf);
  for (int i = 0; o.iters == 0 || i < o.iters; i++) {
    int count = o.count;
    const char *op = o.op;
    if (armed && i == o.at && !strcmp(o.fault, "count")) {
      write_file(&o, "fault_at", "%.6f\n", realtime());
      count = o.count / 2 ? o.count / 2 : 1;
    } else if (armed && i == o.at && !strcmp(o.fault, "barrier")) {
      write_file(&o, "fault_at", "%.6f\n", realtime());
      op = "barrier";
    } else if (armed && i == o.at) {
      fault(&o, c);
    }
    int rc = one_op(c, &o, op, i, buf, count);
    if (rc != 0) {
      fprintf(stderr, "rank %d: %s #%d failed: %s\n", g_rank, o.op, i, fg_comm_errmsg(c));
      if (o.ignore_term)
        for (;;) pause();
      return 1;
    }
    printf("rank %d iter %d ok\n", g_rank, i);
    fflush(stdout);
    if (o.pause_ms > 0) usleep((useconds_t)o.pause_ms * 1000);
  }
  free(buf);
  fg_comm_destroy(c);
  return 0;
}
