/* bench_store.c - `fgbench store`: the same C-client load against our store server (fgstore)
 * and torch 1.13's TCPStore server, side by side.
 *
 *   throughput  K client threads, one connection each, doing SET + GET (torch's get: WAIT
 *               then GET) pairs for a fixed time: pairs per second.
 *   rendezvous  K connections each ADD to a counter, then WAIT for a key the last arrival
 *               sets: seconds until every one is released, and the server's peak memory.
 *
 * Each server is spoken to in its own dialect (1.13's for torch, V2 for ours). Every figure
 * is the median of repeated runs; the servers take turns run by run, so that drift on the
 * machine hits both alike. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    "Drives the same C-client load against fgstore and torch 1.13's TCPStore server (both\n"
    "started on 127.0.0.1 by default) and prints medians and ratios side by side.\n"
    "\n"
    "  --spawn-both           start fgstore and torch's server and compare them (default)\n"
    "  --server HOST:PORT     measure one running server instead (dialect detected)\n"
    "  --fgstore PATH         fgstore to start (default: the one next to fgbench)\n"
    "  --python PATH          python with torch 1.13 (default /usr/bin/python3)\n"
    "  --threads LIST         throughput client threads (default 1,16,64)\n"
    "  --duration SECONDS     length of one throughput run (default 2)\n"
    "  --repeat N             throughput runs per point (default 3)\n"
    "  --value-size BYTES     value size of the SETs (default 32)\n"
    "  --conns LIST           rendezvous connections (default 1024,4096)\n"
    "  --rounds N             rendezvous rounds per point (default 5)\n"
    "  --only WHICH           throughput or rendezvous\n";

typedef struct options {
  const char *server, *fgstore, *python;
  int threads[MAX_POINTS], nthreads;
  int conns[MAX_POINTS], nconns;
  double duration;
  int repeat, rounds, value_size;
  int throughput, rendezvous;
} options;

/* ---- throughput ------------------------------------------------------------------------- */

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

/* What one run (or the medians of several) measured on one server. */
typedef struct sample {
  double value; /* pairs per second, or seconds until everyone was released */
  double cpu;   /* the server's CPU time per pair (us) or per round (ms); < 0 if unknown */
  long rss_kib; /* the server's peak RSS (rendezvous); < 0 if unknown */
} sample;

/* One run: set+get pairs per second with `threads` clients. */
static int throughput_run(const bench_server *srv, int threads, const options *o, sample *out,
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
  uint64_t t0 = fg_now_ns();
  double cpu0 = bench_server_cpu_s(srv);
  if (rc == 0) sleep_s(o->duration);
  atomic_store(&stop, 1);
  for (int i = 0; i < made; i++) pthread_join(ws[i].tid, NULL);
  double elapsed = (double)(fg_now_ns() - t0) / 1e9;
  double cpu = bench_server_cpu_s(srv) - cpu0;
  uint64_t pairs = 0;
  for (int i = 0; i < made; i++) {
    pairs += ws[i].pairs;
    if (ws[i].rc < 0 && rc == 0)
      rc = fg_fail(err, errlen, ws[i].rc, "%s: client %d: %s", srv->label, i, ws[i].err);
  }
  free(ws);
  *out = (sample){(double)pairs / elapsed, cpu0 < 0 || !pairs ? -1 : cpu / (double)pairs * 1e6, -1};
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
  double v[MAX_REPEAT], c[MAX_REPEAT];
  for (int i = 0; i < n; i++) {
    v[i] = runs[i].value;
    c[i] = runs[i].cpu;
  }
  return (sample){median(v, n), median(c, n), runs[n - 1].rss_kib};
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

/* One group of columns: a cell per server, then how many times better ours is. */
static void print_group(const char *const *cells, int nsrv, double ratio) {
  for (int i = 0; i < nsrv; i++) printf(" %12s", cells[i]);
  if (nsrv == 2 && ratio > 0) printf(" %7.2fx", ratio);
  if (nsrv == 2 && ratio <= 0) printf(" %8s", "-");
}

static void print_header(const char *first, const bench_server *srv, int nsrv, int groups) {
  const char *labels[2] = {srv[0].label, nsrv == 2 ? srv[1].label : ""};
  printf("  %-8s", first);
  for (int g = 0; g < groups; g++) {
    printf(g ? " |" : "");
    for (int i = 0; i < nsrv; i++) printf(" %12s", labels[i]);
    if (nsrv == 2) printf(" %8s", "better");
  }
  printf("\n");
}

static double better(double ours, double theirs, int higher_is_better) {
  if (ours <= 0 || theirs <= 0) return -1;
  return higher_is_better ? ours / theirs : theirs / ours;
}

static int run_throughput(bench_server *srv, int nsrv, const options *o) {
  char err[512], cell[4][32];
  printf("\nthroughput: SET+GET pairs per second (GET = WAIT then GET, as torch's get), "
         "%d-byte values,\nmedian of %d runs of %.1f s  |  the server's CPU time per pair\n",
         o->value_size, o->repeat, o->duration);
  print_header("clients", srv, nsrv, 2);
  for (int p = 0; p < o->nthreads; p++) {
    sample runs[2][MAX_REPEAT], med[2];
    for (int r = 0; r < o->repeat; r++)
      for (int i = 0; i < nsrv; i++)
        if (throughput_run(&srv[i], o->threads[p], o, &runs[i][r], err, sizeof err) < 0) {
          fprintf(stderr, "fgbench store: %s\n", err);
          return 1;
        }
    const char *rate[2], *cpu[2];
    for (int i = 0; i < nsrv; i++) {
      med[i] = median_sample(runs[i], o->repeat);
      rate[i] = with_commas(med[i].value, cell[i], sizeof cell[i]);
      snprintf(cell[2 + i], sizeof cell[2 + i], "%.1f us", med[i].cpu);
      cpu[i] = med[i].cpu < 0 ? "-" : cell[2 + i];
    }
    printf("  %-8d", o->threads[p]);
    print_group(rate, nsrv, nsrv == 2 ? better(med[0].value, med[1].value, 1) : 0);
    printf(" |");
    print_group(cpu, nsrv, nsrv == 2 ? better(med[0].cpu, med[1].cpu, 0) : 0);
    printf("\n");
    fflush(stdout);
  }
  return 0;
}

/* ---- rendezvous -------------------------------------------------------------------------- */

/* Slot 0 is ours, slot 1 torch's. */
static int start_server(bench_server *s, int slot, const options *o, char *err, size_t errlen) {
  return slot == 0 ? bench_server_start_fgstore(s, o->fgstore, err, errlen)
                   : bench_server_start_torch(s, o->python, err, errlen);
}

/* o->rounds rounds on `conns` fresh connections; connecting them is not measured. */
static int rendezvous_rounds(bench_server *s, int conns, const options *o, sample *out,
                             char *err, size_t errlen) {
  static int round_id;
  double secs[MAX_REPEAT], cpu0 = -1;
  bench_rdzv *r = NULL;
  int rc = bench_rdzv_open(&r, s, conns, err, errlen);
  if (rc == 0) cpu0 = bench_server_cpu_s(s);
  for (int i = 0; rc == 0 && i < o->rounds; i++)
    rc = bench_rdzv_round(r, round_id++, &secs[i], err, errlen);
  double cpu = bench_server_cpu_s(s) - cpu0;
  bench_rdzv_close(r);
  if (rc == 0)
    *out = (sample){median(secs, o->rounds), cpu0 < 0 ? -1 : cpu / o->rounds * 1e3,
                    bench_server_rss_kib(s, "VmHWM")};
  return rc;
}

/* One server at one size. A server this run starts is started afresh for the point, since
 * VmHWM is a lifetime peak. */
static int rendezvous_point(bench_server *s, int slot, int conns, const options *o, sample *out,
                            char *err, size_t errlen) {
  int rc = o->server ? 0 : start_server(s, slot, o, err, errlen);
  if (rc == 0) rc = rendezvous_rounds(s, conns, o, out, err, errlen);
  if (!o->server) bench_server_stop(s);
  return rc;
}

static int run_rendezvous(bench_server *srv, int nsrv, const options *o) {
  char err[512], cell[6][32];
  printf("\nrendezvous: N connections each ADD a counter, then WAIT for the key the last one "
         "sets;\nseconds until all are released, median of %d rounds  |  the server's CPU "
         "time per round  |  its peak RSS (VmHWM)\n",
         o->rounds);
  print_header("conns", srv, nsrv, 3);
  for (int p = 0; p < o->nconns; p++) {
    sample res[2];
    const char *secs[2], *cpu[2], *rss[2];
    for (int i = 0; i < nsrv; i++) {
      if (rendezvous_point(&srv[i], i, o->conns[p], o, &res[i], err, sizeof err) < 0) {
        fprintf(stderr, "fgbench store: %d connections: %s\n", o->conns[p], err);
        return 1;
      }
      snprintf(cell[i], sizeof cell[i], "%.4f s", res[i].value);
      snprintf(cell[2 + i], sizeof cell[2 + i], "%.1f ms", res[i].cpu);
      snprintf(cell[4 + i], sizeof cell[4 + i], "%.1f MiB", (double)res[i].rss_kib / 1024);
      secs[i] = cell[i];
      cpu[i] = res[i].cpu < 0 ? "-" : cell[2 + i];
      rss[i] = res[i].rss_kib < 0 ? "-" : cell[4 + i];
    }
    printf("  %-8d", o->conns[p]);
    print_group(secs, nsrv, nsrv == 2 ? better(res[0].value, res[1].value, 0) : 0);
    printf(" |");
    print_group(cpu, nsrv, nsrv == 2 ? better(res[0].cpu, res[1].cpu, 0) : 0);
    printf(" |");
    print_group(rss, nsrv, nsrv == 2 ? better(res[0].rss_kib, res[1].rss_kib, 0) : 0);
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
      {"only", required_argument, 0, 'o'},       {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0},
  };
  *o = (options){.fgstore = sibling_fgstore(), .python = "/usr/bin/python3",
                 .threads = {1, 16, 64}, .nthreads = 3, .conns = {1024, 4096}, .nconns = 2,
                 .duration = 2, .repeat = 3, .rounds = 5, .value_size = 32, .throughput = 1,
                 .rendezvous = 1};
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

int fg_bench_store(int argc, char **argv) {
  options o;
  int rc = parse(argc, argv, &o);
  if (rc) return rc < 0 ? 0 : rc;
  signal(SIGPIPE, SIG_IGN);
  long nofile = fg_raise_nofile(); /* before the servers start: they inherit it */
  int most = 0;
  for (int i = 0; i < o.nconns; i++) most = FG_MAX(most, o.conns[i]);
  if (o.rendezvous && nofile < most + 64L)
    fprintf(stderr, "fgbench store: open-file limit %ld is too low for %d connections\n", nofile,
            most);
  bench_server srv[2];
  int nsrv = o.server ? 1 : 2;
  char err[512];
  if (o.server ? bench_server_attach(&srv[0], o.server, err, sizeof err) < 0
               : bench_server_start_fgstore(&srv[0], o.fgstore, err, sizeof err) < 0 ||
                     bench_server_start_torch(&srv[1], o.python, err, sizeof err) < 0) {
    fprintf(stderr, "fgbench store: %s\n", err);
    bench_server_stop(&srv[0]);
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
