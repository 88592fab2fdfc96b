/* bench_store.c - `fgbench store`: the same client load against our store server (fgstore)
 * and torch 1.13's TCPStore server, side by side.
 *
 *   throughput  K clients, one connection each, doing SET + GET (torch's get: WAIT then GET)
 *               pairs for a fixed time: pairs per second. The load is the lean epoll driver
 *               (bench_store_load.c) or, with --client library, a thread per client on
 *               libfg's blocking fg_store client.
 *   rendezvous  K connections each ADD to a counter, then WAIT for a key the last arrival
 *               sets: seconds until every one is released, and the server's peak memory.
 *
 * Each server is spoken to in its own dialect (1.13's for torch, V2 for ours). Every figure
 * is the median of repeated runs, and the servers take turns run by run (ours, torch, ours,
 * torch, ...) so that drift on the machine hits both alike. Next to each rate: the server's
 * CPU time per operation (from /proc), and the driver's own, which says how much of a
 * 2-core machine the load generator took from the server. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
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
#define MAX_REPEAT 51

static const char usage[] =
    "usage: fgbench store [--spawn-both | --server HOST:PORT] [options]\n"
    "\n"
    "Drives the same client load against fgstore and torch 1.13's TCPStore server (both\n"
    "started on 127.0.0.1 by default) and prints medians and ratios side by side.\n"
    "\n"
    "  --spawn-both           start fgstore and torch's server and compare them (default)\n"
    "  --server HOST:PORT     measure one running server instead (dialect detected)\n"
    "  --fgstore PATH         fgstore to start (default: the one next to fgbench)\n"
    "  --python PATH          python with torch 1.13 (default /usr/bin/python3)\n"
    "  --client lean|library  throughput load: epoll driver (default) or a thread per\n"
    "                         client on libfg's fg_store client\n"
    "  --driver-threads N     epoll threads of the lean load and the rendezvous (default 1)\n"
    "  --threads LIST         throughput clients (default 1,16,64)\n"
    "  --duration SECONDS     length of one throughput run (default 2)\n"
    "  --repeat N             throughput runs per point and server (default 5)\n"
    "  --value-size BYTES     value size of the SETs (default 32)\n"
    "  --conns LIST           rendezvous connections (default 1024,4096)\n"
    "  --rounds N             rendezvous rounds per point and server (default 9)\n"
    "  --only WHICH           throughput or rendezvous\n";

typedef struct options {
  const char *server, *fgstore, *python;
  int threads[MAX_POINTS], nthreads;
  int conns[MAX_POINTS], nconns;
  double duration;
  int repeat, rounds, value_size, driver_threads, library;
  int throughput, rendezvous;
} options;

/* What one run (or the medians of several) measured on one server. */
typedef struct sample {
  double value;   /* pairs per second, or seconds until everyone was released */
  double release; /* rendezvous: seconds from the last arrival to the last release */
  double cpu;     /* the server's CPU time per pair (us) or per round (ms); < 0 if unknown */
  double driver;  /* the load driver's CPU time, in the same unit */
  long rss_kib;   /* the server's peak RSS; < 0 if unknown */
  long base_kib;  /* its RSS before the connections were opened */
} sample;

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
  if (!ws) return fg_fail(err, errlen, -ENOMEM, "out of memory");
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
    rc = fg_fail(err, errlen, -EAGAIN, "could start only %d of %d client threads", made, threads);
  }
  gate_open_when(&g, made);
  if (rc == 0) sleep_s(o->duration);
  atomic_store(&stop, 1);
  for (int i = 0; i < made; i++) pthread_join(ws[i].tid, NULL);
  *pairs = 0;
  for (int i = 0; i < made; i++) {
    *pairs += ws[i].pairs;
    if (ws[i].rc < 0 && rc == 0)
      rc = fg_fail(err, errlen, ws[i].rc, "%s: client %d: %s", srv->label, i, ws[i].err);
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
  uint64_t pairs = 0, t0 = fg_now_ns();
  double cpu0 = bench_server_cpu_s(srv), self0 = self_cpu_s();
  rc = o->library ? library_run(srv, clients, o, &pairs, err, errlen)
                  : bench_load_run(l, o->duration, &pairs, err, errlen);
  double elapsed = (double)(fg_now_ns() - t0) / 1e9;
  double cpu = bench_server_cpu_s(srv) - cpu0, self = self_cpu_s() - self0;
  bench_load_close(l);
  double per = pairs ? 1e6 / (double)pairs : -1;
  *out = (sample){.value = (double)pairs / elapsed, .cpu = cpu0 < 0 || !pairs ? -1 : cpu * per,
                  .driver = pairs ? self * per : -1, .rss_kib = -1};
  return rc;
}

/* ---- report ------------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The medians of each field over n runs. */
static sample median_sample(const sample *runs, int n) {
  double f[4][MAX_REPEAT];
  for (int i = 0; i < n; i++) {
    f[0][i] = runs[i].value;
    f[1][i] = runs[i].release;
    f[2][i] = runs[i].cpu;
    f[3][i] = runs[i].driver;
  }
  return (sample){median(f[0], n), median(f[1], n), median(f[2], n), median(f[3], n),
                  runs[n - 1].rss_kib, runs[n - 1].base_kib};
}

static const char *dialect_name(fg_store_dialect d) {
  return d == FG_STORE_DIALECT_V2 ? "v2" : d == FG_STORE_DIALECT_LEGACY ? "1.13" : "?";
}

static const char *with_commas(double v, char *buf, size_t len) {
  char digits[32];
  int n = snprintf(digits, sizeof digits, "%.0f", v), out = 0;
  for (int i = 0; i < n && out < (int)len - 2; i++) {
    if (i > 0 && (n - i) % 3 == 0) buf[out++] = ',';
    buf[out++] = digits[i];
  }
  buf[out] = '\0';
  return buf;
}

/* One group of columns: a cell per server, then how many times better ours is (ratio > 0),
 * nothing (ratio == 0: not a comparison) or "-" (unknown). */
static void print_group(const char *const *cells, int nsrv, double ratio) {
  for (int i = 0; i < nsrv; i++) printf(" %10s", cells[i]);
  if (nsrv == 2 && ratio > 0) printf(" %6.2fx", ratio);
  if (nsrv == 2 && ratio < 0) printf(" %7s", "-");
}

static void print_header(const char *first, const char *const *groups, const int *compare,
                         int ngroups, const bench_server *srv, int nsrv) {
  const char *labels[2] = {srv[0].label, nsrv == 2 ? srv[1].label : ""};
  printf("  %-7s", "");
  for (int g = 0; g < ngroups; g++) {
    int width = nsrv * 11 + (nsrv == 2 && compare[g] ? 8 : 0);
    printf("%s %-*s", g ? " |" : "", width - 1, groups[g]);
  }
  printf("\n  %-7s", first);
  for (int g = 0; g < ngroups; g++) {
    printf(g ? " |" : "");
    for (int i = 0; i < nsrv; i++) printf(" %10.10s", labels[i]);
    if (nsrv == 2 && compare[g]) printf(" %7s", "better");
  }
  printf("\n");
}

static double better(double ours, double theirs, int higher_is_better) {
  if (ours <= 0 || theirs <= 0) return -1;
  return higher_is_better ? ours / theirs : theirs / ours;
}

/* A cell per server of field values formatted with fmt ("-" when unknown). */
static void cells(const sample *med, int nsrv, int field, const char *fmt, char (*buf)[32],
                  const char **out) {
  for (int i = 0; i < nsrv; i++) {
    double v = field == 0 ? med[i].value : field == 1 ? med[i].release
             : field == 2 ? med[i].cpu : med[i].driver;
    snprintf(buf[i], sizeof buf[i], fmt, v);
    out[i] = v < 0 ? "-" : buf[i];
  }
}

static void print_rss(const bench_server *srv, int nsrv, const char *when) {
  printf("  peak RSS (VmHWM) %s:", when);
  for (int i = 0; i < nsrv; i++) {
    long kib = bench_server_rss_kib(&srv[i], "VmHWM");
    if (kib < 0)
      printf(" %s -", srv[i].label);
    else
      printf("%s %s %.1f MiB", i ? "," : "", srv[i].label, (double)kib / 1024);
  }
  printf("\n");
}

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
  char err[512], buf[6][32];
  printf("\nthroughput: SET+GET pairs per second (GET = WAIT then GET, as torch's get), "
         "%d-byte values;\nmedian of %d runs of %.1f s per server, the servers taking turns\n",
         o->value_size, o->repeat, o->duration);
  describe_load(o);
  static const char *const groups[] = {"pairs/s", "server CPU/pair (us)",
                                       "driver CPU/pair (us)"};
  static const int compare[] = {1, 1, 0};
  print_header("clients", groups, compare, 3, srv, nsrv);
  for (int p = 0; p < o->nthreads; p++) {
    sample runs[2][MAX_REPEAT], med[2];
    for (int r = 0; r < o->repeat; r++)
      for (int i = 0; i < nsrv; i++)
        if (throughput_run(&srv[i], o->threads[p], o, &runs[i][r], err, sizeof err) < 0) {
          fprintf(stderr, "fgbench store: %s\n", err);
          return 1;
        }
    const char *rate[2], *cpu[2], *drv[2];
    for (int i = 0; i < nsrv; i++) {
      med[i] = median_sample(runs[i], o->repeat);
      rate[i] = with_commas(med[i].value, buf[i], sizeof buf[i]);
    }
    cells(med, nsrv, 2, "%.2f", buf + 2, cpu);
    cells(med, nsrv, 3, "%.2f", buf + 4, drv);
    printf("  %-7d", o->threads[p]);
    print_group(rate, nsrv, nsrv == 2 ? better(med[0].value, med[1].value, 1) : 0);
    printf(" |");
    print_group(cpu, nsrv, nsrv == 2 ? better(med[0].cpu, med[1].cpu, 0) : 0);
    printf(" |");
    print_group(drv, nsrv, 0);
    printf("\n");
    fflush(stdout);
  }
  print_rss(srv, nsrv, "after the throughput runs");
  return 0;
}

/* ---- rendezvous -------------------------------------------------------------------------- */

/* Slot 0 is ours, slot 1 torch's. */
static int start_server(bench_server *s, int slot, const options *o, char *err, size_t errlen) {
  return slot == 0 ? bench_server_start_fgstore(s, o->fgstore, err, errlen)
                   : bench_server_start_torch(s, o->python, err, errlen);
}

/* One round on server i: its times, and the CPU the server and the driver spent in it. */
static int rendezvous_round(bench_server *s, bench_rdzv *r, sample *out, char *err,
                            size_t errlen) {
  static int round_id;
  double cpu0 = bench_server_cpu_s(s), self0 = self_cpu_s();
  int rc = bench_rdzv_round(r, round_id++, &out->value, &out->release, err, errlen);
  out->cpu = cpu0 < 0 ? -1 : (bench_server_cpu_s(s) - cpu0) * 1e3;
  out->driver = (self_cpu_s() - self0) * 1e3;
  return rc;
}

/* Every server at one size: the rounds alternate between them on connections opened
 * beforehand. Servers this run starts are started afresh for the point, since VmHWM is a
 * lifetime peak. */
static int rendezvous_point(bench_server *srv, int nsrv, int conns, const options *o,
                            sample *med, char *err, size_t errlen) {
  bench_rdzv *r[2] = {NULL, NULL};
  sample runs[2][MAX_REPEAT];
  long base[2] = {-1, -1};
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
    med[i] = median_sample(runs[i], o->rounds);
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
  char err[512], buf[10][32];
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
  print_header("conns", groups, compare, 5, srv, nsrv);
  for (int p = 0; p < o->nconns; p++) {
    sample med[2];
    if (rendezvous_point(srv, nsrv, o->conns[p], o, med, err, sizeof err) < 0) {
      fprintf(stderr, "fgbench store: %d connections: %s\n", o->conns[p], err);
      return 1;
    }
    const char *c[5][2];
    cells(med, nsrv, 0, "%.4f", buf, c[0]);
    cells(med, nsrv, 1, "%.4f", buf + 2, c[1]);
    cells(med, nsrv, 2, "%.1f", buf + 4, c[2]);
    for (int i = 0; i < nsrv; i++) {
      double peak = (double)med[i].rss_kib / 1024, grew = peak - (double)med[i].base_kib / 1024;
      snprintf(buf[6 + i], sizeof buf[6 + i], med[i].base_kib < 0 ? "%.1f" : "%.1f +%.1f", peak,
               grew);
      c[3][i] = med[i].rss_kib < 0 ? "-" : buf[6 + i];
    }
    cells(med, nsrv, 3, "%.1f ms", buf + 8, c[4]);
    int two = nsrv == 2;
    printf("  %-7d", o->conns[p]);
    print_group(c[0], nsrv, two ? better(med[0].value, med[1].value, 0) : 0);
    printf(" |");
    print_group(c[1], nsrv, two ? better(med[0].release, med[1].release, 0) : 0);
    printf(" |");
    print_group(c[2], nsrv, two ? better(med[0].cpu, med[1].cpu, 0) : 0);
    printf(" |");
    print_group(c[3], nsrv, two ? better(med[0].rss_kib, med[1].rss_kib, 0) : 0);
    printf(" |");
    print_group(c[4], nsrv, 0);
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
    if (*n >= MAX_POINTS || fg_parse_int(tok, 1, max, &out[(*n)++]) < 0) *n = -1;
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
      {0, 0, 0, 0},
  };
  *o = (options){.fgstore = sibling_fgstore(), .python = "/usr/bin/python3",
                 .threads = {1, 16, 64}, .nthreads = 3, .conns = {1024, 4096}, .nconns = 2,
                 .duration = 2, .repeat = 5, .rounds = 9, .value_size = 32,
                 .driver_threads = 1, .throughput = 1, .rendezvous = 1};
  int c;
  while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
    switch (c) {
      case 'b': o->server = NULL; break;
      case 's': o->server = optarg; break;
      case 'f': o->fgstore = optarg; break;
      case 'p': o->python = optarg; break;
      case 't':
        if (parse_list(optarg, o->threads, &o->nthreads, 1024)) return bad("--threads", optarg);
        break;
      case 'c':
        if (parse_list(optarg, o->conns, &o->nconns, 1 << 20)) return bad("--conns", optarg);
        break;
      case 'd':
        if (fg_parse_seconds(optarg, &o->duration) || o->duration <= 0)
          return bad("--duration", optarg);
        break;
      case 'r':
        if (fg_parse_int(optarg, 1, MAX_REPEAT, &o->repeat)) return bad("--repeat", optarg);
        break;
      case 'n':
        if (fg_parse_int(optarg, 1, MAX_REPEAT, &o->rounds)) return bad("--rounds", optarg);
        break;
      case 'v':
        if (fg_parse_int(optarg, 0, 4096, &o->value_size)) return bad("--value-size", optarg);
        break;
      case 'l':
        o->library = !strcmp(optarg, "library");
        if (!o->library && strcmp(optarg, "lean")) return bad("--client", optarg);
        break;
      case 'D':
        if (fg_parse_int(optarg, 1, 64, &o->driver_threads))
          return bad("--driver-threads", optarg);
        break;
      case 'o':
        o->throughput = !strcmp(optarg, "throughput");
        o->rendezvous = !strcmp(optarg, "rendezvous");
        if (!o->throughput && !o->rendezvous) return bad("--only", optarg);
        break;
      case 'h': fputs(usage, stdout); return -1;
      default: fprintf(stderr, "(see fgbench store --help)\n"); return 2;
    }
  }
  return optind < argc ? bad("argument", argv[optind]) : 0;
}

static int start_both(bench_server *srv, const options *o, char *err, size_t errlen) {
  if (o->server) return bench_server_attach(&srv[0], o->server, err, errlen);
  int rc = bench_server_start_fgstore(&srv[0], o->fgstore, err, errlen);
  if (rc == 0 && (rc = bench_server_start_torch(&srv[1], o->python, err, errlen)) < 0)
    bench_server_stop(&srv[0]);
  return rc;
}

int fg_bench_store(int argc, char **argv) {
  options o;
  int rc = parse(argc, argv, &o);
  if (rc) return rc < 0 ? 0 : rc;
  signal(SIGPIPE, SIG_IGN);
  long nofile = fg_raise_nofile(); /* before the servers start: they inherit it */
  int most = 0, nsrv = o.server ? 1 : 2;
  for (int i = 0; i < o.nconns; i++) most = FG_MAX(most, o.conns[i]);
  if (o.rendezvous && nofile < (long)most * nsrv + 64L)
    fprintf(stderr, "fgbench store: open-file limit %ld is too low for %d connections\n", nofile,
            most * nsrv);
  bench_server srv[2];
  char err[512];
  if (start_both(srv, &o, err, sizeof err) < 0) {
    fprintf(stderr, "fgbench store: %s\n", err);
    return 1;
  }
  printf("fgbench store: ");
  for (int i = 0; i < nsrv; i++)
    printf("%s%s (%s dialect) on %s:%d", i ? " vs " : "", srv[i].label,
           dialect_name(srv[i].dialect), srv[i].host, srv[i].port);
  printf("; %ld CPUs\n", sysconf(_SC_NPROCESSORS_ONLN));
  rc = o.throughput ? run_throughput(srv, nsrv, &o) : 0;
  for (int i = 0; i < nsrv && !o.server; i++) bench_server_stop(&srv[i]);
  if (rc == 0 && o.rendezvous) rc = run_rendezvous(srv, nsrv, &o);
  return rc;
}
