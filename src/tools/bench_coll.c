/* bench_coll.c - `fgbench allreduce|allgather|...|all`: nccl-tests' driver for fgcomm.
 *
 * For every size of the sweep: fill the buffers with values whose every result is known,
 * check one call against them (#wrong, summed over ranks), warm up, then time batches of
 * back-to-back calls, each behind a barrier; a batch's time is its slowest rank's, a row's
 * the median over the repeats. With --side-by-side the raw libraries (bench_coll_peers.c)
 * take turns with ours, batch by batch, so drift on a shared machine hits all alike, and a
 * ratio is the median of the ratios of batches run side by side. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm_internal.h" /* the half-type conversions */
#include "common/util.h"
#include "tools/bench.h"
#include "tools/bench_coll.h"

#define SENTINEL 123.0 /* a value no result takes: output that must be overwritten */

/* --- buffers in the backend's memory ------------------------------------------------------ */

typedef struct buf {
  void *dev, *host; /* the same for host-memory backends */
  size_t bytes;
} buf;

static int buf_alloc(fg_comm *c, buf *b, size_t bytes) {
  size_t room = bytes ? bytes : 8;
  *b = (buf){.bytes = bytes};
  int rc = fg_comm_malloc(c, room, &b->dev);
  if (rc != 0) return rc;
  b->host = fg_comm_host_memory(c) ? b->dev : malloc(room);
  return b->host ? 0 : -ENOMEM;
}

static void buf_free(fg_comm *c, buf *b) {
  if (b->host != b->dev) free(b->host);
  fg_comm_free(c, b->dev);
  *b = (buf){0};
}

static int buf_upload(fg_comm *c, buf *b, size_t bytes) {
  return b->host == b->dev ? 0 : fg_comm_upload(c, b->dev, b->host, bytes);
}

static int buf_download(fg_comm *c, buf *b, size_t bytes) {
  return b->host == b->dev ? 0 : fg_comm_download(c, b->host, b->dev, bytes);
}

/* One value across the ranks, through the backend's memory (for the slowest time and the
 * wrong count). */
static int agree(fg_comm *c, void *value, fg_dtype dt, fg_redop op) {
  buf b;
  int rc = buf_alloc(c, &b, 8);
  if (rc == 0) {
    memcpy(b.host, value, 8);
    if ((rc = buf_upload(c, &b, 8)) == 0 && (rc = fg_allreduce(c, b.dev, b.dev, 1, dt, op)) == 0 &&
        (rc = buf_download(c, &b, 8)) == 0)
      memcpy(value, b.host, 8);
  }
  buf_free(c, &b);
  return rc;
}

/* --- values in a dtype --------------------------------------------------------------------- */

/* Every result is exact but an average, which libraries may round differently (NCCL
 * multiplies by 1/n). */
static int matches(double got, double want, fg_dtype dt, fg_redop op) {
  if (got == want) return 1;
  if (op != FG_AVG || dt < FG_FLOAT16) return 0;
  double tol = dt == FG_BFLOAT16 ? 1e-2 : dt == FG_FLOAT16 ? 1e-3 : dt == FG_FLOAT32 ? 1e-6 : 1e-12;
  return fabs(got - want) <= tol * fmax(1.0, fabs(want));
}

/* --- one collective's sweep ---------------------------------------------------------------- */

typedef struct ratio {
  double sum, min;
  int n;
  size_t min_at;
} ratio;

typedef struct sweep {
  fg_comm *c;
  const bc_options *o;
  const bc_coll *coll;
  bc_peer *peers;
  int npeers;
  FILE *csv;
  const char *launcher;
  buf send, recv;
  bc_values v;
  long long wrong; /* over every size and rank */
  double busbw_sum;
  int rows;
  ratio ratios[BC_MAX_PEERS];
} sweep;

static size_t elements(const bc_call *k, int blocks) {
  return k->count * (size_t)(blocks ? blocks : k->size);
}

/* The call for a swept size; count 0 when the size is too small for this many ranks. */
static bc_call call_for(const sweep *s, uint64_t bytes) {
  bc_call k = {.comm = s->c, .rank = fg_comm_rank(s->c), .size = fg_comm_size(s->c),
               .dt = s->o->dt, .op = s->o->op, .root = s->o->root, .v = &s->v};
  k.count = bytes / fg_dtype_size(k.dt);
  if (s->coll->flags & BC_PER_RANK) k.count /= (size_t)k.size;
  k.send = s->send.dev;
  k.recv = s->coll->flags & BC_IN_PLACE ? s->send.dev : s->recv.dev;
  return k;
}

static int corrupter(const sweep *s, const bc_call *k) {
  return s->coll->flags & BC_FROM_ROOT ? k->root : k->size - 1;
}

/* This rank's contribution, and the sentinel where results must land. */
static int fill(sweep *s, const bc_call *k) {
  size_t n_send = elements(k, s->coll->send_blocks), n_recv = elements(k, s->coll->recv_blocks);
  int in_place = s->coll->flags & BC_IN_PLACE, mine = !in_place || k->rank == k->root;
  for (size_t j = 0; j < n_send; j++)
    fg_dtype_set(s->send.host, k->dt, j, mine ? bc_input(k, k->rank, j) : SENTINEL);
  if (s->o->corrupt && k->rank == corrupter(s, k) && n_send) {
    /* Far enough to show through any reduction (but a min of uint8s that is 0 already). */
    double x = bc_input(k, k->rank, 0);
    int lower = k->op == FG_MIN && (s->coll->flags & BC_REDUCES);
    fg_dtype_set(s->send.host, k->dt, 0, !lower ? x + 20 : k->dt == FG_UINT8 ? 0 : x - 20);
  }
  size_t esz = fg_dtype_size(k->dt);
  int rc = buf_upload(s->c, &s->send, n_send * esz);
  if (in_place || rc) return rc;
  for (size_t j = 0; j < n_recv; j++) fg_dtype_set(s->recv.host, k->dt, j, SENTINEL);
  return buf_upload(s->c, &s->recv, n_recv * esz);
}

/* One call against the expectations; *wrong gets the wrong elements of every rank. */
static int check_once(sweep *s, const bc_call *k, long long *wrong) {
  int rc = s->coll->run(k);
  if (rc != 0) return rc;
  size_t n = elements(k, s->coll->recv_blocks);
  buf *out = s->coll->flags & BC_IN_PLACE ? &s->send : &s->recv;
  if ((rc = buf_download(s->c, out, n * fg_dtype_size(k->dt))) != 0) return rc;
  int64_t bad = 0;
  for (size_t j = 0; j < n; j++) {
    double want = s->coll->expect(k, j);
    if (!isnan(want) && !matches(fg_dtype_get(out->host, k->dt, j), want, k->dt, k->op)) bad++;
  }
  rc = agree(s->c, &bad, FG_INT64, FG_SUM);
  *wrong = bad;
  return rc;
}

/* Microseconds per call of one batch, the slowest rank's. */
static int timed_batch(sweep *s, const bc_call *k, double *us) {
  int rc = fg_barrier(s->c);
  uint64_t t0 = fg_now_ns();
  for (int i = 0; rc == 0 && i < s->o->iters; i++) rc = s->coll->run(k);
  *us = (double)(fg_now_ns() - t0) / 1e3 / s->o->iters;
  return rc ? rc : agree(s->c, us, FG_FLOAT64, FG_MAX);
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, by_value);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static const char *redop_label(const sweep *s) {
  return s->coll->flags & BC_REDUCES ? fg_redop_name(s->o->op) : "none";
}

static int root_label(const sweep *s) { return s->coll->flags & BC_ROOTED ? s->o->root : -1; }

static void csv_row(const sweep *s, const char *impl, size_t bytes, size_t count, double us,
                    double factor, const char *wrong, double ratio) {
  if (!s->csv) return;
  double algbw = (double)bytes / (us * 1e3);
  fprintf(s->csv, "%s,%s,%s,%d,%s,%s,%d,%s,%zu,%zu,%.3f,%.6f,%.6f,%s,", s->coll->name,
          fg_comm_backend(s->c), s->launcher, fg_comm_size(s->c), fg_dtype_name(s->o->dt),
          redop_label(s), root_label(s), impl, bytes, count, us, algbw, algbw * factor, wrong);
  if (isnan(ratio))
    fputc('\n', s->csv);
  else
    fprintf(s->csv, "%.4f\n", ratio);
}

/* One size's timings: ours, and each peer's with its ratio (NAN where it does not run). */
typedef struct timing {
  double us;
  double peer_us[BC_MAX_PEERS], ratio[BC_MAX_PEERS];
} timing;

/* Rank 0's row: ours, then each peer's time, busbw and ours / theirs. */
static void print_row(sweep *s, const bc_call *k, size_t bytes, const timing *t, long long wrong) {
  double factor = s->coll->busbw_factor(k->size), algbw = (double)bytes / (t->us * 1e3);
  s->busbw_sum += algbw * factor;
  s->rows++;
  printf("%12zu  %12zu  %8s  %6s  %6d  %9.1f  %7.3f  %7.3f  %6lld", bytes, k->count,
         fg_dtype_name(k->dt), redop_label(s), root_label(s), t->us, algbw, algbw * factor, wrong);
  char wrong_text[32];
  snprintf(wrong_text, sizeof wrong_text, "%lld", wrong);
  csv_row(s, "fgcomm", bytes, k->count, t->us, factor, wrong_text, NAN);
  for (int p = 0; p < s->npeers; p++) {
    double theirs = t->peer_us[p], r = t->ratio[p];
    if (isnan(theirs)) {
      printf("  %9s  %7s  %5s", "-", "-", "-");
      continue;
    }
    printf("  %9.1f  %7.3f  %5.2f", theirs, (double)bytes / (theirs * 1e3) * factor, r);
    csv_row(s, s->peers[p].name, bytes, k->count, theirs, factor, "", r);
    ratio *q = &s->ratios[p];
    if (q->n == 0 || r < q->min) q->min = r, q->min_at = bytes;
    q->sum += r;
    q->n++;
  }
  putchar('\n');
  fflush(stdout);
}

static int peer_runs(sweep *s, int p, const bc_call *k) {
  bc_peer *q = &s->peers[p];
  return q->supports(q->state, s->coll->name, k->dt, k->op, k->root);
}

static int peer_batch(sweep *s, int p, uint64_t bytes, int first, double *us) {
  bc_peer *q = &s->peers[p];
  /* Peers allocate their buffers for each batch: one warm-up call at least. */
  int warmup = first ? FG_MAX(1, s->o->warmup) : 1;
  int rc = q->time(q->state, s->coll->name, bytes, s->o->iters, warmup, us);
  if (rc != 0)
    fprintf(stderr, "fgbench: %s %s of %llu B failed (%s)\n", q->name, s->coll->name,
            (unsigned long long)bytes, fg_strerror(rc));
  return rc;
}

/* The order of one repeat's batches: -1 (ours) and the peers, shuffled the same way on
 * every rank (the batches are collective). Whoever runs right after another pays for what
 * that one leaves behind (torch's processes were seen to slow the batch after theirs), so
 * no one may always come after the same neighbour. */
static void shuffle(int *order, int n, uint64_t seed) {
  for (int i = 0; i < n; i++) order[i] = i - 1;
  for (int i = n - 1; i > 0; i--) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    int j = (int)((seed >> 33) % (uint64_t)(i + 1)), x = order[i];
    order[i] = order[j];
    order[j] = x;
  }
}

/* Every repeat runs one batch of ours and one of each peer, in a shuffled order. A ratio is
 * the median of the repeats' own ratios: a batch is compared with one near it in time, so
 * a spell of load from elsewhere on the machine weighs on both sides of a pair. */
static int time_size(sweep *s, const bc_call *k, uint64_t bytes, timing *t) {
  double ours[BC_MAX_REPEAT], theirs[BC_MAX_PEERS][BC_MAX_REPEAT], pairs[BC_MAX_REPEAT];
  int rc = 0, n = s->o->repeat, turns = s->npeers + 1, order[BC_MAX_PEERS + 1];
  for (int r = 0; rc == 0 && r < n; r++) {
    shuffle(order, turns, bytes * 31 + (uint64_t)r);
    for (int i = 0; rc == 0 && i < turns; i++) {
      int p = order[i];
      if (p < 0)
        rc = timed_batch(s, k, &ours[r]);
      else if (peer_runs(s, p, k))
        rc = peer_batch(s, p, bytes, r == 0, &theirs[p][r]);
    }
  }
  if (rc != 0) return rc;
  for (int p = 0; p < s->npeers; p++) {
    t->peer_us[p] = t->ratio[p] = NAN;
    if (!peer_runs(s, p, k)) continue;
    for (int r = 0; r < n; r++) pairs[r] = theirs[p][r] / ours[r];
    t->ratio[p] = median(pairs, n);
    t->peer_us[p] = median(theirs[p], n);
  }
  t->us = median(ours, n);
  return 0;
}

static int one_size(sweep *s, uint64_t swept) {
  bc_call k = call_for(s, swept);
  if (k.count == 0) return 0;
  size_t esz = fg_dtype_size(k.dt);
  size_t bytes =
      FG_MAX(elements(&k, s->coll->send_blocks), elements(&k, s->coll->recv_blocks)) * esz;
  long long wrong = 0;
  int rc = fill(s, &k);
  if (rc == 0 && s->o->check) rc = check_once(s, &k, &wrong);
  for (int i = 0; rc == 0 && i < s->o->warmup; i++) rc = s->coll->run(&k);
  timing t;
  if (rc == 0) rc = time_size(s, &k, swept, &t);
  if (rc != 0) {
    fprintf(stderr, "fgbench: rank %d: %s of %zu B failed: %s\n", k.rank, s->coll->name, bytes,
            fg_comm_errmsg(s->c));
    return rc;
  }
  s->wrong += wrong;
  if (k.rank == 0) print_row(s, &k, bytes, &t, wrong);
  return 0;
}

static void print_table_header(const sweep *s) {
  printf("#\n# %s\n#%12s  %12s  %8s  %6s  %6s  %9s  %7s  %7s  %6s", s->coll->name, "size", "count",
         "type", "redop", "root", "time", "algbw", "busbw", "#wrong");
  for (int p = 0; p < s->npeers; p++)
    printf("  %9.9s  %7s  %5s", s->peers[p].name, "busbw", "ratio");
  printf("\n#%12s  %12s  %8s  %6s  %6s  %9s  %7s  %7s  %6s", "(B)", "(elements)", "", "", "",
         "(us)", "(GB/s)", "(GB/s)", "");
  for (int p = 0; p < s->npeers; p++) printf("  %9s  %7s  %5s", "(us)", "(GB/s)", "");
  putchar('\n');
}

static void print_summary(const sweep *s) {
  printf("# Out of bounds values : %lld %s\n", s->wrong, s->wrong ? "FAILED" : "OK");
  printf("# Avg bus bandwidth    : %.3f\n", s->rows ? s->busbw_sum / s->rows : 0.0);
  for (int p = 0; p < s->npeers; p++) {
    const ratio *q = &s->ratios[p];
    if (q->n)
      printf("# fgcomm / %s busbw : avg %.3f, min %.3f at %zu B\n", s->peers[p].name,
             q->sum / q->n, q->min, q->min_at);
  }
}

static int allocate(sweep *s) {
  bc_call k = call_for(s, s->o->max_bytes);
  size_t esz = fg_dtype_size(k.dt);
  int rc = buf_alloc(s->c, &s->send, elements(&k, s->coll->send_blocks) * esz);
  if (rc == 0 && !(s->coll->flags & BC_IN_PLACE))
    rc = buf_alloc(s->c, &s->recv, elements(&k, s->coll->recv_blocks) * esz);
  if (rc == 0) rc = bc_values_make(&s->v, k.size, k.dt, k.op, !!(s->coll->flags & BC_REDUCES));
  return rc;
}

/* One collective over the whole sweep. Returns 0, 1 (wrong results) or a failure code. */
static int run_coll(sweep *s) {
  int rc = allocate(s), me = fg_comm_rank(s->c);
  int64_t ok = rc == 0; /* every rank must have its buffers before anyone calls */
  if (agree(s->c, &ok, FG_INT64, FG_MIN) != 0 || !ok) {
    fprintf(stderr, "fgbench: rank %d: no memory for %s of %llu B\n", me, s->coll->name,
            (unsigned long long)s->o->max_bytes);
    rc = rc ? rc : -ENOMEM;
  }
  if (rc == 0 && me == 0) print_table_header(s);
  for (uint64_t b = s->o->min_bytes; rc == 0 && b <= s->o->max_bytes;) {
    rc = one_size(s, b);
    uint64_t next = (uint64_t)((double)b * s->o->step_factor);
    if (b == UINT64_MAX) break;
    b = next > b ? next : b + 1;
  }
  if (rc == 0 && me == 0) print_summary(s);
  buf_free(s->c, &s->send);
  buf_free(s->c, &s->recv);
  bc_values_free(&s->v);
  return rc ? rc : s->wrong != 0;
}

/* --- header ------------------------------------------------------------------------------ */

static const char *launcher_name(void) {
  if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK")) return "mpirun";
  if (getenv("TORCHELASTIC_RUN_ID")) return "fgrun/torchrun";
  if (getenv("SLURM_PROCID")) return "srun";
  return getenv("RANK") ? "environment" : "none";
}

typedef struct rank_line {
  int32_t pid;
  char host[60];
} rank_line;

/* nccl-tests' header: what ran where, one line per rank. */
static int print_header(fg_comm *w, const bc_options *o, const char *launcher) {
  int n = fg_comm_size(w);
  rank_line mine = {.pid = (int32_t)getpid()};
  gethostname(mine.host, sizeof mine.host - 1);
  buf one, all;
  int rc = buf_alloc(w, &one, sizeof mine);
  if (rc == 0) rc = buf_alloc(w, &all, sizeof mine * (size_t)n);
  if (rc == 0) {
    memcpy(one.host, &mine, sizeof mine);
    rc = buf_upload(w, &one, sizeof mine);
  }
  if (rc == 0) rc = fg_allgather(w, one.dev, all.dev, sizeof mine, FG_UINT8);
  if (rc == 0) rc = buf_download(w, &all, sizeof mine * (size_t)n);
  if (rc == 0 && fg_comm_rank(w) == 0) {
    printf("# fgbench %s: fgcomm %s, %d ranks, backend %s, launcher %s\n", o->coll, FG_VERSION, n,
           fg_comm_backend(w), launcher);
    printf("# sizes %llu to %llu B (x%g), iters %d, warmup %d, repeat %d (median of the slowest "
           "rank's), dtype %s, redop %s, root %d, check %s%s\n",
           (unsigned long long)o->min_bytes, (unsigned long long)o->max_bytes, o->step_factor,
           o->iters, o->warmup, o->repeat, fg_dtype_name(o->dt), fg_redop_name(o->op), o->root,
           o->check ? "on" : "off", o->corrupt ? ", CORRUPTING" : "");
    const rank_line *r = all.host;
    for (int i = 0; i < n; i++) printf("#  rank %3d  pid %7d  on %s\n", i, r[i].pid, r[i].host);
  }
  buf_free(w, &one);
  buf_free(w, &all);
  return rc;
}

/* --- main ----------------------------------------------------------------------------------- */

static int run_all(fg_comm *w, const bc_options *o, bc_peer *peers, int npeers, FILE *csv,
                   const char *launcher) {
  int status = 0;
  for (int i = 0; bc_colls[i]; i++) {
    if (strcmp(o->coll, "all") && strcmp(o->coll, bc_colls[i]->name)) continue;
    sweep s = {.c = w, .o = o, .coll = bc_colls[i], .peers = peers, .npeers = npeers,
               .csv = csv, .launcher = launcher};
    int rc = run_coll(&s);
    if (rc < 0) return rc;
    status |= rc;
  }
  return status;
}

int fg_bench_coll(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  bc_options o;
  int rc = bc_parse_options(argc, argv, &o);
  if (rc) return rc < 0 ? 0 : rc;
  fg_comm_options co;
  fg_comm_options_init(&co);
  co.backend = o.backend;
  co.timeout_ms = o.timeout_ms;
  fg_comm *w = NULL;
  char err[512];
  if ((rc = fg_comm_init(&w, &co, err, sizeof err)) != 0) {
    fprintf(stderr, "fgbench: cannot join the world (%s): %s\n", fg_strerror(rc), err);
    return 1;
  }
  int me = fg_comm_rank(w), status = 0;
  if (o.root >= fg_comm_size(w)) {
    if (me == 0)
      fprintf(stderr, "fgbench %s: bad -r '%d': the world has %d ranks (see fgbench %s --help)\n",
              o.coll, o.root, fg_comm_size(w), o.coll);
    fg_comm_destroy(w);
    return 2;
  }
  const char *launcher = launcher_name();
  FILE *csv = NULL;
  if (me == 0 && o.csv && !(csv = fopen(o.csv, "a")))
    fprintf(stderr, "fgbench: cannot write %s: %s\n", o.csv, strerror(errno));
  int64_t ok = !o.csv || me != 0 || csv;
  if ((rc = agree(w, &ok, FG_INT64, FG_MIN)) == 0 && ok) rc = print_header(w, &o, launcher);
  if (rc == 0 && ok) {
    if (csv && ftell(csv) == 0)
      fputs("collective,backend,launcher,ranks,dtype,redop,root,impl,bytes,count,time_us,"
            "algbw_gbs,busbw_gbs,wrong,ratio\n", csv);
    bc_peer peers[BC_MAX_PEERS];
    int npeers = o.side_by_side ? bc_peers_open(w, &o, peers) : 0;
    rc = run_all(w, &o, peers, npeers, csv, launcher);
    bc_peers_close(peers, npeers);
  }
  /* Rank 0 has printed everything before a rank that exits 1 makes the launcher stop it. */
  if (rc >= 0 && ok && fg_barrier(w) != 0) rc = -EIO;
  if (rc < 0 || !ok) {
    if (rc < 0) fprintf(stderr, "fgbench: rank %d: %s\n", me, fg_comm_errmsg(w));
    fg_comm_set_timeout(w, 1000); /* peers that failed are not waited for on the way out */
    status = 1;
  } else {
    status = rc;
  }
  if (csv) fclose(csv);
  fg_comm_destroy(w);
  return status;
}
