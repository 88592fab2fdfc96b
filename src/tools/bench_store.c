/* bench_store.c - `fgbench store`: the same client load against our store server (fgstore)
 * and torch's TCPStore servers (1.13's and 2.6's), side by side.
 *
 *   throughput  K clients, one connection each, doing SET + GET (torch's get: WAIT then GET)
 *               pairs for a fixed time: pairs per second. The load is the lean epoll driver
 *               (bench_store_load.c) or, with --client library, a thread per client on
 *               libfg's blocking fg_store client.
 *   rendezvous  K connections each ADD to a counter, then WAIT for a key the last arrival
 *               sets: seconds until every one is released, and the server's peak memory.
 *
 * Each server is spoken to in its own dialect (1.13's for torch 1.13, V2 for 2.6 and ours).
 * Every figure is the median of repeated runs, and the servers take turns run by run (ours,
 * torch 1.13, torch 2.6, ours, ...) so that drift on the machine hits all alike. Next to each rate: the server's
 * CPU time per operation (from /proc), and the driver's own, which says how much of a
 * 2-core machine the load generator took from the server. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "tools/bench.h"
#include "tools/bench_store.h"

#define MAX_POINTS 8
#define MAX_REPEAT BENCH_MAX_REPEAT
#define MAX_SERVERS BENCH_MAX_SERVERS
#define TORCH2_PYTHON "/var/lib/fgrun/torch2-python" /* scripts/torch2-root.sh's wrapper */

typedef bench_sample sample;

static const char usage[] =
    "usage: fgbench store [--spawn-both | --server HOST:PORT] [options]\n"
    "\n"
    "Drives the same client load against fgstore and torch's TCPStore servers, 1.13's and\n"
    "2.6's (all started on 127.0.0.1 by default), and prints medians side by side, with how\n"
    "many times better fgstore is than the better torch server.\n"
    "\n"
    "  --spawn-both           start fgstore and torch's servers and compare them (default)\n"
    "  --server HOST:PORT     measure one running server instead (dialect detected)\n"
    "  --fgstore PATH         fgstore to start (default: the one next to fgbench)\n"
    "  --python PATH          python with torch 1.13 (default /usr/bin/python3; none: leave\n"
    "                         torch 1.13 out)\n"
    "  --torch2-python PATH   python with torch 2.x (default $FG_TORCH2_ROOT-python, else\n"
    "                         " TORCH2_PYTHON ", left out with a note\n"
    "                         when missing; none: leave it out)\n"
    "  --client lean|library  throughput load: epoll driver (default) or a thread per\n"
    "                         client on libfg's fg_store client\n"
    "  --driver-threads N     epoll threads of the lean load and the rendezvous (default 1)\n"
    "  --threads LIST         throughput clients (default 1,16,64)\n"
    "  --duration SECONDS     length of one throughput run (default 2)\n"
    "  --repeat N             throughput runs per point and server (default 5)\n"
    "  --value-size BYTES     value size of the SETs (default 32)\n"
    "  --conns LIST           rendezvous connections (default 1024,4096)\n"
    "  --rounds N             rendezvous rounds per point and server (default 9)\n"
    "  --only WHICH           throughput or rendezvous\n"
    "  --pin[=S,D]            run the servers on CPU S and this load driver on CPU D, so that\n"
    "                         neither takes the other's core (default with 2 CPUs or more: the\n"
    "                         first two this process may use)\n"
    "  --no-pin               leave both to the scheduler\n"
    "  --server-pid PID       with --server: the server's pid, for its CPU time and memory\n";

/* A torch server to measure ours against. */
typedef struct peer {
  const char *label, *python;
  fg_store_dialect dialect;
} peer;

typedef struct options {
  const char *server, *fgstore, *python, *torch2_python;
  peer peers[MAX_SERVERS - 1];
  int npeers;
  int threads[MAX_POINTS], nthreads;
  int conns[MAX_POINTS], nconns;
  double duration;
  int repeat, rounds, value_size, driver_threads, library;
  int throughput, rendezvous;
  int pin_server, pin_driver; /* CPUs, or -1: not pinned */
  pid_t server_pid;
} options;

static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- throughput, library client: a thread per client ------------------------------------ */

/* Holds the clients until every one has connected, so connecting is not timed. */
typedef struct gate {
  pthread_mutex_t mu;
  pthread_cond_t cond;
  int ready, open;
} gate;

typedef struct worker {
  pthread_t tid;
  const bench_server *srv;
  int id, value_size;
  gate *gate;
  atomic_int *stop;
  uint64_t pairs;
  int rc;
  char err[256];
} worker;

static void gate_pass(gate *g) {
  pthread_mutex_lock(&g->mu);
  g->ready++;
  pthread_cond_broadcast(&g->cond);
  while (!g->open) pthread_cond_wait(&g->cond, &g->mu);
  pthread_mutex_unlock(&g->mu);
}

static void gate_open_when(gate *g, int ready) {
  pthread_mutex_lock(&g->mu);
  while (g->ready < ready) pthread_cond_wait(&g->cond, &g->mu);
  g->open = 1;
  pthread_cond_broadcast(&g->cond);
  pthread_mutex_unlock(&g->mu);
}

static void *worker_main(void *arg) {
  worker *w = arg;
  fg_store_options o;
  fg_store_options_init(&o);
  o.dialect = w->srv->dialect;
  o.timeout_ms = 30000;
  fg_store *s = NULL;
  w->rc = fg_store_connect(&s, w->srv->host, w->srv->port, &o);
  if (w->rc < 0) snprintf(w->err, sizeof w->err, "%s", fg_store_errmsg(NULL));
  char key[64], value[4096];
  snprintf(key, sizeof key, "fgbench/throughput/%d/%d", (int)getpid(), w->id);
  memset(value, 'v', sizeof value);
  gate_pass(w->gate);
  while (w->rc == 0 && !atomic_load_explicit(w->stop, memory_order_relaxed)) {
    void *got = NULL;
    size_t len;
    w->rc = fg_store_set(s, key, value, (size_t)w->value_size);
    if (w->rc == 0) w->rc = fg_store_get(s, key, &got, &len);
    if (w->rc < 0) snprintf(w->err, sizeof w->err, "%s", fg_store_errmsg(s));
    free(got);
    w->pairs += w->rc == 0;
  }
  fg_store_close(s);
  return NULL;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

/* Starts the clients, lets them run for the duration; *pairs done in that time. */
static int library_run(const bench_server *srv, int threads, const options *o, uint64_t *pairs,
                       char *err, size_t errlen) {
  worker *ws = calloc((size_t)threads, sizeof *ws);
  if (!ws) return fg__fail(err, errlen, -ENOMEM, "out of memory");
  gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
  atomic_int stop = 0;
  int made = 0, rc = 0;
  for (; made < threads; made++) {
    ws[made] = (worker){.srv = srv, .id = made, .value_size = o->value_size, .gate = &g,
                        .stop = &stop};
    if (pthread_create(&ws[made].tid, NULL, worker_main, &ws[made]) != 0) break;
  }
  if (made < threads) {
    atomic_store(&stop, 1);
    rc = fg__fail(err, errlen, -EAGAIN, "could start only %d of %d client threads", made, threads);
  }
  gate_open_when(&g, made);
  if (rc == 0) sleep_s(o->duration);
  atomic_store(&stop, 1);
  for (int i = 0; i < made; i++) pthread_join(ws[i].tid, NULL);
  *pairs = 0;
  for (int i = 0; i < made; i++) {
    *pairs += ws[i].pairs;
    if (ws[i].rc < 0 && rc == 0)
      rc = fg__fail(err, errlen, ws[i].rc, "%s: client %d: %s", srv->label, i, ws[i].err);
  }
  free(ws);
  return rc;
}

/* One run: set+get pairs per second with `clients` clients; connecting is not timed (for the
 * library client it overlaps the clock's start by at most the gate's hand-over). */
static int throughput_run(const bench_server *srv, int clients, const options *o, sample *out,
                          char *err, size_t errlen) {
  bench_load *l = NULL;
  int rc = o->library ? 0
                      : bench_load_open(&l, srv, clients, o->driver_threads, o->value_size, err,
                                        errlen);
  if (rc < 0) return rc;
  uint64_t pairs = 0, t0 = fg__now_ns();
  double cpu0 = bench_server_cpu_s(srv), self0 = self_cpu_s(), user0, sys0, user1, sys1;
  int split = bench_server_cpu_split(srv, &user0, &sys0) == 0;
  rc = o->library ? library_run(srv, clients, o, &pairs, err, errlen)
                  : bench_load_run(l, o->duration, &pairs, err, errlen);
  double elapsed = (double)(fg__now_ns() - t0) / 1e9;
  double cpu = bench_server_cpu_s(srv) - cpu0, self = self_cpu_s() - self0;
  split = split && bench_server_cpu_split(srv, &user1, &sys1) == 0 && user1 + sys1 > user0 + sys0;
  bench_load_close(l);
  double per = pairs ? 1e6 / (double)pairs : -1;
  *out = (sample){.value = (double)pairs / elapsed, .cpu = cpu0 < 0 || !pairs ? -1 : cpu * per,
                  .driver = pairs ? self * per : -1, .rss_kib = -1,
                  /* /proc's ticks give the split, schedstat the total: the kernel's share */
                  .sys = split && pairs ? cpu * per * (sys1 - sys0) / (user1 + sys1 - user0 - sys0)
                                        : -1};
  return rc;
}

/* ---- report ------------------------------------------------------------------------------ */

static void describe_load(const options *o) {
  if (o->library)
    printf("load: --client library: a thread per client, each with its own libfg fg_store\n"
           "connection (blocking calls; fg_store_get sends WAIT, reads its answer, then GET)\n");
  else
    printf("load: lean (the default): the clients are connections driven by %d epoll "
           "thread%s with\nthe wire encoders; each keeps one request in flight and sends "
           "what torch's and libfg's\nclients send: SET and WAIT (in one write: SET has no "
           "answer), then GET once the WAIT is\nanswered. It costs the driver far less CPU "
           "than a thread per client, so the server sets\nthe pace (--client library for "
           "the threaded fg_store client)\n",
           o->driver_threads, o->driver_threads == 1 ? "" : "s");
}

static int run_throughput(bench_server *srv, int nsrv, const options *o) {
  char err[512], buf[3 * MAX_SERVERS][32];
  printf("\nthroughput: SET+GET pairs per second (GET = WAIT then GET, as torch's get), "
         "%d-byte values;\nmedian of %d runs of %.1f s per server, the servers taking turns\n",
         o->value_size, o->repeat, o->duration);
  describe_load(o);
  if (nsrv > 2) printf("better: fgstore against the better of the torch servers\n");
  static const char *const groups[] = {"pairs/s", "server CPU/pair (us)",
                                       "driver CPU/pair (us)"};
  static const int compare[] = {1, 1, 0};
  bench_print_header("clients", groups, compare, 3, srv, nsrv);
  for (int p = 0; p < o->nthreads; p++) {
    sample runs[MAX_SERVERS][MAX_REPEAT], med[MAX_SERVERS];
    for (int r = 0; r < o->repeat; r++)
      for (int i = 0; i < nsrv; i++)
        if (throughput_run(&srv[i], o->threads[p], o, &runs[i][r], err, sizeof err) < 0) {
          fprintf(stderr, "fgbench store: %s\n", err);
          return 1;
        }
    const char *rate[MAX_SERVERS], *cpu[MAX_SERVERS], *drv[MAX_SERVERS];
    for (int i = 0; i < nsrv; i++) {
      med[i] = bench_median_sample(runs[i], o->repeat);
      rate[i] = bench_with_commas(med[i].value, buf[i], sizeof buf[i]);
    }
    bench_cells(med, nsrv, BENCH_CPU, "%.2f", buf + MAX_SERVERS, cpu);
    bench_cells(med, nsrv, BENCH_DRIVER, "%.2f", buf + 2 * MAX_SERVERS, drv);
    printf("  %-7d", o->threads[p]);
    bench_print_group(rate, nsrv, bench_better(med, nsrv, BENCH_VALUE, 1));
    printf(" |");
    bench_print_group(cpu, nsrv, bench_better(med, nsrv, BENCH_CPU, 0));
    printf(" |");
    bench_print_group(drv, nsrv, 0);
    printf("\n");
    bench_print_cpu_split(med, srv, nsrv);
    fflush(stdout);
  }
  bench_print_rss(srv, nsrv, "after the throughput runs");
  return 0;
}

/* ---- rendezvous -------------------------------------------------------------------------- */

/* A server runs on its own CPU, every thread of it. */
static int pin_server(const bench_server *s, const options *o, char *err, size_t errlen) {
  if (o->pin_server < 0 || s->pid <= 0) return 0;
  int rc = bench_pin(s->pid, o->pin_server);
  return rc ? fg__fail(err, errlen, rc, "cannot pin %s (pid %d) to CPU %d: %s", s->label,
                      (int)s->pid, o->pin_server, strerror(-rc))
            : 0;
}

/* Slot 0 is ours, the others torch's (o->peers). */
static int start_server(bench_server *s, int slot, const options *o, char *err, size_t errlen) {
  const peer *p = slot > 0 ? &o->peers[slot - 1] : NULL;
  int rc = !p ? bench_server_start_fgstore(s, o->fgstore, err, errlen)
              : bench_server_start_torch(s, p->label, p->python, p->dialect, err, errlen);
  return rc ? rc : pin_server(s, o, err, errlen);
}

/* One round on server i: its times, and the CPU the server and the driver spent in it. */
static int rendezvous_round(bench_server *s, bench_rdzv *r, sample *out, char *err,
                            size_t errlen) {
  static int round_id;
  double cpu0 = bench_server_cpu_s(s), self0 = self_cpu_s();
  int rc = bench_rdzv_round(r, round_id++, &out->value, &out->release, err, errlen);
  out->cpu = cpu0 < 0 ? -1 : (bench_server_cpu_s(s) - cpu0) * 1e3;
  out->driver = (self_cpu_s() - self0) * 1e3;
  out->sys = -1;
  return rc;
}

/* Every server at one size: the rounds alternate between them on connections opened
 * beforehand. Servers this run starts are started afresh for the point, since VmHWM is a
 * lifetime peak. */
static int rendezvous_point(bench_server *srv, int nsrv, int conns, const options *o,
                            sample *med, char *err, size_t errlen) {
  bench_rdzv *r[MAX_SERVERS] = {NULL};
  sample runs[MAX_SERVERS][MAX_REPEAT];
  long base[MAX_SERVERS] = {-1, -1, -1};
  int rc = 0;
  for (int i = 0; rc == 0 && i < nsrv; i++) {
    if (!o->server) rc = start_server(&srv[i], i, o, err, errlen);
    base[i] = bench_server_rss_kib(&srv[i], "VmRSS");
    if (rc == 0) rc = bench_rdzv_open(&r[i], &srv[i], conns, o->driver_threads, err, errlen);
  }
  for (int k = 0; rc == 0 && k < o->rounds; k++)
    for (int i = 0; rc == 0 && i < nsrv; i++)
      rc = rendezvous_round(&srv[i], r[i], &runs[i][k], err, errlen);
  for (int i = 0; rc == 0 && i < nsrv; i++) {
    /* The mean over the rounds: a round's CPU is a few ms, near the clocks' resolution. */
    double cpu = 0, drv = 0;
    for (int k = 0; k < o->rounds; k++) {
      cpu += runs[i][k].cpu;
      drv += runs[i][k].driver;
    }
    med[i] = bench_median_sample(runs[i], o->rounds);
    med[i].cpu = runs[i][0].cpu < 0 ? -1 : cpu / o->rounds;
    med[i].driver = drv / o->rounds;
    med[i].rss_kib = bench_server_rss_kib(&srv[i], "VmHWM");
    med[i].base_kib = base[i];
  }
  for (int i = 0; i < nsrv; i++) {
    bench_rdzv_close(r[i]);
    if (!o->server) bench_server_stop(&srv[i]);
  }
  return rc;
}

static int run_rendezvous(bench_server *srv, int nsrv, const options *o) {
  char err[512], buf[5 * MAX_SERVERS][32];
  printf("\nrendezvous: N connections each ADD to a counter, then WAIT for the key the last "
         "one sets\n(all N ADDs are sent at once, by %d epoll thread%s; the connections are "
         "opened beforehand).\nround: from the first ADD sent to the last release received. "
         "release: from the last arrival's\nSET sent to the last release received (one "
         "SET waking N waiters). Median of %d rounds per\nserver, the servers taking turns; "
         "CPU is the mean per round; RSS is the server's VmHWM, then\nhow much it grew "
         "from before the connections (torch's includes Python and torch itself)\n",
         o->driver_threads, o->driver_threads == 1 ? "" : "s", o->rounds);
  static const char *const groups[] = {"round (s)", "release (s)", "server CPU/round (ms)",
                                       "peak RSS, +growth (MiB)", "driver CPU/round"};
  static const int compare[] = {1, 1, 1, 1, 0};
  bench_print_header("conns", groups, compare, 5, srv, nsrv);
  for (int p = 0; p < o->nconns; p++) {
    sample med[MAX_SERVERS];
    if (rendezvous_point(srv, nsrv, o->conns[p], o, med, err, sizeof err) < 0) {
      fprintf(stderr, "fgbench store: %d connections: %s\n", o->conns[p], err);
      return 1;
    }
    const char *c[5][MAX_SERVERS];
    char (*rss)[32] = buf + 3 * MAX_SERVERS;
    bench_cells(med, nsrv, BENCH_VALUE, "%.4f", buf, c[0]);
    bench_cells(med, nsrv, BENCH_RELEASE, "%.4f", buf + MAX_SERVERS, c[1]);
    bench_cells(med, nsrv, BENCH_CPU, "%.1f", buf + 2 * MAX_SERVERS, c[2]);
    for (int i = 0; i < nsrv; i++) {
      double peak = (double)med[i].rss_kib / 1024, grew = peak - (double)med[i].base_kib / 1024;
      snprintf(rss[i], sizeof rss[i], med[i].base_kib < 0 ? "%.1f" : "%.1f +%.1f", peak, grew);
      c[3][i] = med[i].rss_kib < 0 ? "-" : rss[i];
    }
    bench_cells(med, nsrv, BENCH_DRIVER, "%.1f ms", buf + 4 * MAX_SERVERS, c[4]);
    printf("  %-7d", o->conns[p]);
    bench_print_group(c[0], nsrv, bench_better(med, nsrv, BENCH_VALUE, 0));
    printf(" |");
    bench_print_group(c[1], nsrv, bench_better(med, nsrv, BENCH_RELEASE, 0));
    printf(" |");
    bench_print_group(c[2], nsrv, bench_better(med, nsrv, BENCH_CPU, 0));
    printf(" |");
    bench_print_group(c[3], nsrv, bench_better(med, nsrv, BENCH_RSS, 0));
    printf(" |");
    bench_print_group(c[4], nsrv, 0);
    printf("\n");
    fflush(stdout);
  }
  return 0;
}

/* ---- options and main -------------------------------------------------------------------- */

static int parse_list(const char *s, int *out, int *n, int max) {
  char *copy = strdup(s), *save = NULL;
  *n = 0;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
    if (*n >= MAX_POINTS || fg__parse_int(tok, 1, max, &out[(*n)++]) < 0) *n = -1;
  free(copy);
  return *n > 0 ? 0 : -EINVAL;
}

static int bad(const char *what, const char *arg) {
  fprintf(stderr, "fgbench store: bad %s '%s'\n(see fgbench store --help)\n", what, arg);
  return 2;
}

static char *sibling_fgstore(void) {
  static char path[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 16);
  if (n <= 0) return "fgstore";
  path[n] = '\0';
  strcpy(strrchr(path, '/') + 1, "fgstore");
  return path;
}

static int parse(int argc, char **argv, options *o) {
  static const struct option longs[] = {
      {"spawn-both", no_argument, 0, 'b'},       {"server", required_argument, 0, 's'},
      {"fgstore", required_argument, 0, 'f'},    {"python", required_argument, 0, 'p'},
      {"threads", required_argument, 0, 't'},    {"duration", required_argument, 0, 'd'},
      {"repeat", required_argument, 0, 'r'},     {"value-size", required_argument, 0, 'v'},
      {"conns", required_argument, 0, 'c'},      {"rounds", required_argument, 0, 'n'},
      {"only", required_argument, 0, 'o'},       {"client", required_argument, 0, 'l'},
      {"driver-threads", required_argument, 0, 'D'}, {"help", no_argument, 0, 'h'},
      {"pin", optional_argument, 0, 'P'},        {"no-pin", no_argument, 0, 'N'},
      {"server-pid", required_argument, 0, 'S'}, {"torch2-python", required_argument, 0, 'T'},
      {0, 0, 0, 0},
  };
  *o = (options){.fgstore = sibling_fgstore(), .python = "/usr/bin/python3",
                 .threads = {1, 16, 64}, .nthreads = 3, .conns = {1024, 4096}, .nconns = 2,
                 .duration = 2, .repeat = 5, .rounds = 9, .value_size = 32,
                 .driver_threads = 1, .throughput = 1, .rendezvous = 1, .pin_server = -2,
                 .pin_driver = -1};
  int c;
  while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
    switch (c) {
      case 'b': o->server = NULL; break;
      case 's': o->server = optarg; break;
      case 'f': o->fgstore = optarg; break;
      case 'p': o->python = optarg; break;
      case 'T': o->torch2_python = optarg; break;
      case 't':
        if (parse_list(optarg, o->threads, &o->nthreads, 1024)) return bad("--threads", optarg);
        break;
      case 'c':
        if (parse_list(optarg, o->conns, &o->nconns, 1 << 20)) return bad("--conns", optarg);
        break;
      case 'd':
        if (fg__parse_seconds(optarg, &o->duration) || o->duration <= 0)
          return bad("--duration", optarg);
        break;
      case 'r':
        if (fg__parse_int(optarg, 1, MAX_REPEAT, &o->repeat)) return bad("--repeat", optarg);
        break;
      case 'n':
        if (fg__parse_int(optarg, 1, MAX_REPEAT, &o->rounds)) return bad("--rounds", optarg);
        break;
      case 'v':
        if (fg__parse_int(optarg, 0, 4096, &o->value_size)) return bad("--value-size", optarg);
        break;
      case 'l':
        o->library = !strcmp(optarg, "library");
        if (!o->library && strcmp(optarg, "lean")) return bad("--client", optarg);
        break;
      case 'D':
        if (fg__parse_int(optarg, 1, 64, &o->driver_threads))
          return bad("--driver-threads", optarg);
        break;
      case 'o':
        o->throughput = !strcmp(optarg, "throughput");
        o->rendezvous = !strcmp(optarg, "rendezvous");
        if (!o->throughput && !o->rendezvous) return bad("--only", optarg);
        break;
      case 'P':
        if (!optarg) {
          o->pin_server = -2; /* the default CPUs, below */
        } else {
          char server[16], driver[16];
          if (sscanf(optarg, "%15[0-9],%15[0-9]", server, driver) != 2 ||
              fg__parse_int(server, 0, CPU_SETSIZE - 1, &o->pin_server) ||
              fg__parse_int(driver, 0, CPU_SETSIZE - 1, &o->pin_driver) ||
              o->pin_server == o->pin_driver)
            return bad("--pin", optarg);
        }
        break;
      case 'N': o->pin_server = o->pin_driver = -1; break;
      case 'S': {
        int pid;
        if (fg__parse_int(optarg, 1, 1 << 30, &pid)) return bad("--server-pid", optarg);
        o->server_pid = pid;
        break;
      }
      case 'h': fputs(usage, stdout); return -1;
      default: fprintf(stderr, "(see fgbench store --help)\n"); return 2;
    }
  }
  if (optind < argc) return bad("argument", argv[optind]);
  if (o->server_pid && !o->server) return bad("--server-pid without --server", "");
  return 0;
}

/* --pin's default: the first two CPUs this process may run on, when it may run on two. */
static void default_pins(options *o) {
  if (o->pin_server != -2) return;
  o->pin_server = o->pin_driver = -1;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0 || CPU_COUNT(&set) < 2) return;
  for (int cpu = 0; cpu < CPU_SETSIZE && o->pin_driver < 0; cpu++)
    if (CPU_ISSET(cpu, &set)) {
      if (o->pin_server < 0)
        o->pin_server = cpu;
      else
        o->pin_driver = cpu;
    }
}

/* The torch servers to compare with: 1.13's and 2.6's unless "none"; the 2.6 root's wrapper
 * by default only where it is (it takes scripts/torch2-root.sh to make). */
static void choose_peers(options *o) {
  const char *root = getenv("FG_TORCH2_ROOT");
  static char wrapper[PATH_MAX];
  if (root && *root) snprintf(wrapper, sizeof wrapper, "%s-python", root);
  if (strcmp(o->python, "none"))
    o->peers[o->npeers++] = (peer){"torch-1.13", o->python, FG_STORE_DIALECT_LEGACY};
  const char *t2 = o->torch2_python ? o->torch2_python : root && *root ? wrapper : TORCH2_PYTHON;
  if (!o->torch2_python && access(t2, X_OK) != 0)
    fprintf(stderr, "fgbench store: torch 2.6 left out: %s is missing (scripts/torch2-root.sh "
                    "makes it)\n", t2);
  else if (strcmp(t2, "none"))
    o->peers[o->npeers++] = (peer){"torch-2.6", t2, FG_STORE_DIALECT_V2};
}

static int start_all(bench_server *srv, int nsrv, const options *o, char *err, size_t errlen) {
  if (o->server) {
    int rc = bench_server_attach(&srv[0], o->server, err, errlen);
    srv[0].pid = o->server_pid; /* read from /proc, never signalled */
    return rc ? rc : pin_server(&srv[0], o, err, errlen);
  }
  for (int i = 0; i < nsrv; i++) {
    int rc = start_server(&srv[i], i, o, err, errlen);
    if (rc < 0) {
      while (i-- > 0) bench_server_stop(&srv[i]);
      return rc;
    }
  }
  return 0;
}

int fg_bench_store(int argc, char **argv) {
  options o;
  int rc = parse(argc, argv, &o);
  if (rc) return rc < 0 ? 0 : rc;
  signal(SIGPIPE, SIG_IGN);
  default_pins(&o);
  /* The driver's threads inherit this; the servers are pinned once they run. */
  if (o.pin_driver >= 0 && (rc = bench_pin(0, o.pin_driver)) < 0) {
    fprintf(stderr, "fgbench store: cannot pin the driver to CPU %d: %s\n", o.pin_driver,
            strerror(-rc));
    return 1;
  }
  long nofile = fg__raise_nofile(); /* before the servers start: they inherit it */
  if (!o.server) choose_peers(&o);
  int most = 0, nsrv = o.server ? 1 : 1 + o.npeers;
  for (int i = 0; i < o.nconns; i++) most = FG__MAX(most, o.conns[i]);
  if (o.rendezvous && nofile < (long)most * nsrv + 64L)
    fprintf(stderr, "fgbench store: open-file limit %ld is too low for %d connections\n", nofile,
            most * nsrv);
  bench_server srv[MAX_SERVERS];
  char err[512];
  if (start_all(srv, nsrv, &o, err, sizeof err) < 0) {
    fprintf(stderr, "fgbench store: %s\n", err);
    return 1;
  }
  printf("fgbench store: ");
  for (int i = 0; i < nsrv; i++)
    printf("%s%s (%s dialect) on %s:%d", i ? " vs " : "", srv[i].label,
           bench_dialect_name(srv[i].dialect), srv[i].host, srv[i].port);
  printf("; %ld CPUs", sysconf(_SC_NPROCESSORS_ONLN));
  if (o.pin_server >= 0)
    printf("; servers pinned to CPU %d, the load driver to CPU %d", o.pin_server, o.pin_driver);
  else
    printf("; not pinned");
  printf("\n");
  rc = o.throughput ? run_throughput(srv, nsrv, &o) : 0;
  for (int i = 0; i < nsrv && !o.server; i++) bench_server_stop(&srv[i]);
  if (rc == 0 && o.rendezvous) rc = run_rendezvous(srv, nsrv, &o);
  return rc;
}
