/* bench_coll.c - `fgbench allreduce|allgather|...|all`: nccl-tests' driver for fgcomm.
 *
 * As nccl-tests' TimeTest and BenchTime (src/common.cu) do, for every type, reduction or
 * root asked for: warm every size up, then for every size of the sweep time the collective
 * out of place and in place (-n iterations of -m calls, each iteration at its own offset in
 * the buffers), combine the ranks' times (-a) and check the results (-c) against values
 * whose every result is known. fgbench adds --repeat (the median of batches) and, with
 * --side-by-side, the raw libraries (bench_coll_peers.c), which take turns with our
 * out-of-place batches so that drift on a shared machine hits all alike: a ratio is the
 * median of the ratios of batches run side by side. What is printed and written is
 * bench_coll_report.c's. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "tools/bench.h"
#include "tools/bench_coll.h"

#define SENTINEL 123.0 /* a value no result takes: output that must be overwritten */

/* --- buffers in the backend's memory ------------------------------------------------------ */

typedef struct buf {
  char *dev, *host; /* the same for host-memory backends */
  size_t bytes;
} buf;

static int buf_alloc(fg_comm *c, buf *b, size_t bytes) {
  size_t room = bytes ? bytes : 8;
  void *dev = NULL;
  *b = (buf){.bytes = room};
  int rc = fg_comm_malloc(c, room, &dev);
  if (rc != 0) return rc;
  b->dev = dev;
  b->host = fg_comm_host_memory(c) ? b->dev : malloc(room);
  return b->host ? 0 : -ENOMEM;
}

static void buf_free(fg_comm *c, buf *b) {
  if (b->host != b->dev) free(b->host);
  fg_comm_free(c, b->dev);
  *b = (buf){0};
}

/* The host copy of a place in the buffer, and its way to and from the backend. */
static char *host_of(const buf *b, const void *dev) { return b->host + ((const char *)dev - b->dev); }

static int buf_upload(fg_comm *c, buf *b, const void *dev, size_t bytes) {
  return b->host == b->dev ? 0 : fg_comm_upload(c, (void *)dev, host_of(b, dev), bytes);
}

static int buf_download(fg_comm *c, buf *b, const void *dev, size_t bytes) {
  return b->host == b->dev ? 0 : fg_comm_download(c, host_of(b, dev), dev, bytes);
}

/* Every rank's double, through the backend's memory. */
static int gather_doubles(fg_comm *c, double mine, double *all) {
  int n = fg_comm_size(c);
  buf one = {0}, many = {0};
  int rc = buf_alloc(c, &one, sizeof mine);
  if (rc == 0) rc = buf_alloc(c, &many, sizeof mine * (size_t)n);
  if (rc == 0) {
    memcpy(one.host, &mine, sizeof mine);
    if ((rc = buf_upload(c, &one, one.dev, sizeof mine)) == 0 &&
        (rc = fg_allgather(c, one.dev, many.dev, 1, FG_FLOAT64)) == 0 &&
        (rc = buf_download(c, &many, many.dev, sizeof mine * (size_t)n)) == 0)
      memcpy(all, many.host, sizeof mine * (size_t)n);
  }
  buf_free(c, &one);
  buf_free(c, &many);
  return rc;
}

/* The sum of a count over the ranks. */
static int sum_over_ranks(fg_comm *c, long long *v) {
  double *all = malloc(sizeof *all * (size_t)fg_comm_size(c));
  if (!all) return -ENOMEM;
  int rc = gather_doubles(c, (double)*v, all);
  if (rc == 0) {
    *v = 0;
    for (int r = 0; r < fg_comm_size(c); r++) *v += (long long)all[r];
  }
  free(all);
  return rc;
}

/* --- values in a dtype --------------------------------------------------------------------- */

/* Every result is exact but an average, which libraries may round differently (NCCL
 * multiplies by 1/n). */
static int matches(double got, double want, fg_dtype dt, fg_redop op) {
  if (got == want) return 1;
  if (op != FG_REDOP_AVG || dt < FG_FLOAT16) return 0;
  double tol = dt == FG_BFLOAT16 ? 1e-2 : dt == FG_FLOAT16 ? 1e-3 : dt == FG_FLOAT32 ? 1e-6 : 1e-12;
  return fabs(got - want) <= tol * fmax(1.0, fabs(want));
}

/* --- one test: a collective with one type and reduction or root --------------------------- */

typedef struct sweep {
  fg_comm *c;
  const bc_options *o;
  const bc_coll *coll;
  bc_peer *peers;
  int npeers;
  bc_report *rep;
  buf send, recv; /* -e bytes each, and the -u shift */
  bc_values v;
  fg_dtype dt;
  fg_redop op;
  int root;
  long long errors; /* this rank's checks that found a wrong value */
} sweep;

/* A swept size as nccl-tests lays it out: a per-rank block is a ranks-th of it, rounded
 * down to 16 bytes. */
typedef struct layout {
  size_t count, send_elems, recv_elems, bytes; /* bytes: the larger buffer's */
} layout;

static layout layout_for(const sweep *s, uint64_t size) {
  size_t esz = fg_dtype_size(s->dt), ranks = (size_t)fg_comm_size(s->c);
  layout l = {.count = (size_t)(size / esz)};
  if (s->coll->flags & BC_PER_RANK) l.count = (l.count / ranks) & ~(16 / esz - 1);
  l.send_elems = l.count * (s->coll->send_blocks ? (size_t)s->coll->send_blocks : ranks);
  l.recv_elems = l.count * (s->coll->recv_blocks ? (size_t)s->coll->recv_blocks : ranks);
  l.bytes = FG__MAX(l.send_elems, l.recv_elems) * esz;
  return l;
}

/* The call of iteration `iter`: nccl-tests moves each iteration to its own place in the
 * buffers (cache effects); in place, both buffers lie in the receive buffer. */
static bc_call call_at(const sweep *s, const layout *l, int in_place, size_t iter) {
  bc_call k = {.comm = s->c, .rank = fg_comm_rank(s->c), .size = fg_comm_size(s->c),
               .dt = s->dt, .op = s->op, .root = s->root < 0 ? 0 : s->root, .count = l->count,
               .v = &s->v};
  size_t esz = fg_dtype_size(s->dt), pad = (size_t)s->o->unalign * esz;
  size_t steps = l->bytes ? s->o->max_bytes / l->bytes : 1;
  size_t shift = l->bytes * (iter % (steps ? steps : 1));
  char *send = s->send.dev + pad + shift, *recv = s->recv.dev + pad + shift;
  size_t block = l->count * esz * (size_t)k.rank;
  if (s->coll->flags & BC_ONE_BUFFER) {
    k.send = k.recv = recv;
  } else if (in_place) {
    k.send = recv + block * (size_t)s->coll->send_in_place;
    k.recv = recv + block * (size_t)s->coll->recv_in_place;
  } else {
    k.send = send;
    k.recv = recv;
  }
  return k;
}

static int corrupter(const sweep *s, const bc_call *k) {
  return s->coll->flags & BC_FROM_ROOT ? k->root : k->size - 1;
}

/* This rank's contribution where the call reads it, and the sentinel where results land. */
static int fill(sweep *s, const layout *l, int in_place, const bc_call *k) {
  size_t esz = fg_dtype_size(k->dt);
  int one = s->coll->flags & BC_ONE_BUFFER, mine = !one || k->rank == k->root;
  /* The receive buffer first (in place it holds the data too), then the data. */
  char *recv_start = s->recv.dev + (size_t)s->o->unalign * esz;
  char *host = host_of(&s->recv, recv_start);
  for (size_t j = 0; j < l->bytes / esz; j++) fg_dtype_set(host, k->dt, j, SENTINEL);
  buf *data = in_place || one ? &s->recv : &s->send;
  char *send_host = host_of(data, k->send);
  size_t n_send = l->send_elems;
  for (size_t j = 0; j < n_send && mine; j++)
    fg_dtype_set(send_host, k->dt, j, bc_input(k, k->rank, j));
  if (s->o->corrupt && k->rank == corrupter(s, k) && n_send) {
    /* Far enough to show through any reduction (but a min of uint8s that is 0 already). */
    double x = bc_input(k, k->rank, 0);
    int lower = k->op == FG_REDOP_MIN && (s->coll->flags & BC_REDUCES);
    fg_dtype_set(send_host, k->dt, 0, !lower ? x + 20 : k->dt == FG_UINT8 ? 0 : x - 20);
  }
  int rc = buf_upload(s->c, &s->recv, recv_start, l->bytes);
  if (rc == 0 && data == &s->send) rc = buf_upload(s->c, &s->send, k->send, n_send * esz);
  return rc;
}

/* One call against the expectations: *wrong gets the wrong elements of every rank. */
static int check_once(sweep *s, const layout *l, int in_place, size_t shift, long long *wrong) {
  bc_call k = call_at(s, l, in_place, 0);
  k.shift = shift;
  int rc = fill(s, l, in_place, &k);
  if (rc == 0) rc = s->coll->run(&k);
  size_t n = l->recv_elems, esz = fg_dtype_size(k.dt);
  buf *out = &s->recv; /* results land there, in place or not */
  if (rc == 0) rc = buf_download(s->c, out, k.recv, n * esz);
  if (rc != 0) return rc;
  const char *got = host_of(out, k.recv);
  long long bad = 0;
  for (size_t j = 0; j < n; j++) {
    double want = s->coll->expect(&k, j);
    if (!isnan(want) && !matches(fg_dtype_get(got, k.dt, j), want, k.dt, k.op)) bad++;
  }
  if (bad) s->errors++;
  *wrong = bad;
  return sum_over_ranks(s->c, wrong);
}

/* Seconds per call of one batch on this rank: -n iterations of -m calls, with -z's
 * barriers. */
static int timed_batch(sweep *s, const layout *l, int in_place, double *sec) {
  const bc_options *o = s->o;
  int rc = fg_barrier(s->c);
  double spent = 0, t0 = fg__now_s();
  for (int i = 0; rc == 0 && i < o->iters; i++) {
    for (int a = 0; rc == 0 && a < o->agg_iters; a++) {
      bc_call k = call_at(s, l, in_place, (size_t)i * (size_t)o->agg_iters + (size_t)a);
      rc = s->coll->run(&k);
      if (rc == 0 && o->blocking == 1) rc = fg_barrier(s->c);
    }
    if (rc == 0 && o->blocking == 3) { /* the barrier is not timed */
      spent += fg__now_s() - t0;
      rc = fg_barrier(s->c);
      t0 = fg__now_s();
    }
  }
  if (o->blocking != 3) spent = fg__now_s() - t0;
  *sec = spent / ((double)o->iters * o->agg_iters);
  return rc;
}

/* One batch's time across the ranks as -a asks (rank 0's, mean, min, max), and the
 * slowest rank's (what the peers report). */
static int combine(sweep *s, double mine, double *shown, double *slowest) {
  int n = fg_comm_size(s->c);
  double *all = malloc(sizeof *all * (size_t)n);
  if (!all) return -ENOMEM;
  int rc = gather_doubles(s->c, mine, all);
  double sum = 0, lo = INFINITY, hi = 0;
  for (int r = 0; rc == 0 && r < n; r++) sum += all[r], lo = fmin(lo, all[r]), hi = fmax(hi, all[r]);
  if (rc == 0) {
    *shown = s->o->average == 0 ? all[0] : s->o->average == 1 ? sum / n : s->o->average == 2 ? lo : hi;
    *slowest = hi;
  }
  free(all);
  return rc;
}

static int peer_runs(sweep *s, int p) {
  bc_peer *q = &s->peers[p];
  return q->supports(q->state, s->coll->name, s->dt, s->op, s->root < 0 ? 0 : s->root);
}

static int peer_batch(sweep *s, int p, const layout *l, int first, double *us) {
  bc_peer *q = &s->peers[p];
  /* Peers allocate their buffers for each batch: one warm-up call at least. */
  int warmup = first ? FG__MAX(1, s->o->warmup) : 1;
  int rc = q->time(q->state, s->coll->name, l->bytes, s->o->iters * s->o->agg_iters, warmup, us);
  if (rc != 0)
    fprintf(stderr, "fgbench: %s %s of %zu B failed (%s)\n", q->name, s->coll->name, l->bytes,
            fg_strerror(rc));
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

/* Our time (microseconds, as -a combines it: the median of the repeats) and, out of place,
 * each peer's, and ours / theirs as the median of the repeats' own ratios. */
typedef struct timing {
  double us;
  double peer_us[BC_MAX_PEERS], ratio[BC_MAX_PEERS]; /* NAN where a peer does not run */
} timing;

static int time_placement(sweep *s, const layout *l, int in_place, timing *t) {
  double shown[BC_MAX_REPEAT], slowest[BC_MAX_REPEAT], theirs[BC_MAX_PEERS][BC_MAX_REPEAT];
  int rc = 0, n = s->o->repeat, turns = in_place ? 1 : s->npeers + 1, order[BC_MAX_PEERS + 1];
  for (int r = 0; rc == 0 && r < n; r++) {
    shuffle(order, turns, l->bytes * 31 + (uint64_t)r);
    for (int i = 0; rc == 0 && i < turns; i++) {
      int p = order[i];
      double mine;
      if (p < 0 && (rc = timed_batch(s, l, in_place, &mine)) == 0)
        rc = combine(s, mine, &shown[r], &slowest[r]);
      else if (p >= 0 && peer_runs(s, p))
        rc = peer_batch(s, p, l, r == 0, &theirs[p][r]);
    }
  }
  if (rc != 0) return rc;
  for (int p = 0; p < BC_MAX_PEERS; p++) {
    t->peer_us[p] = t->ratio[p] = NAN;
    if (p >= turns - 1 || !peer_runs(s, p)) continue;
    double pairs[BC_MAX_REPEAT];
    for (int r = 0; r < n; r++) pairs[r] = theirs[p][r] / (slowest[r] * 1e6);
    t->ratio[p] = fg_bench_median(pairs, n);
    t->peer_us[p] = fg_bench_median(theirs[p], n);
  }
  t->us = fg_bench_median(shown, n) * 1e6;
  return 0;
}

/* nccl-tests' BenchTime: a call to settle, the timing, the checks, the figures. */
static int bench_placement(sweep *s, const layout *l, int in_place) {
  bc_call k = call_at(s, l, in_place, 0);
  int rc = fill(s, l, in_place, &k);
  if (rc == 0) rc = s->coll->run(&k);
  timing t;
  if (rc == 0) rc = time_placement(s, l, in_place, &t);
  long long wrong = 0;
  int checked = s->o->check > 0 && !(in_place && (s->coll->flags & BC_NO_IN_PLACE_CHECK));
  for (int c = 0; rc == 0 && checked && c < s->o->check && wrong == 0; c++)
    rc = check_once(s, l, in_place, (size_t)c * 7, &wrong);
  if (rc != 0) return rc;
  double algbw = t.us > 0 ? (double)l->bytes / (t.us * 1e3) : 0;
  double factor = s->coll->busbw_factor(fg_comm_size(s->c));
  bc_report_result(s->rep, in_place, t.us, algbw, algbw * factor, checked, wrong);
  for (int p = 0; p < s->npeers && !in_place; p++) {
    if (isnan(t.peer_us[p])) continue;
    double theirs = (double)l->bytes / (t.peer_us[p] * 1e3);
    bc_report_peer(s->rep, p, t.peer_us[p], theirs, theirs * factor, t.ratio[p]);
  }
  return 0;
}

static const char *redop_label(const sweep *s) {
  return s->coll->flags & BC_REDUCES ? fg_redop_name(s->op) : "none";
}

static int one_size(sweep *s, uint64_t size) {
  layout l = layout_for(s, size);
  bc_report_row(s->rep, l.bytes, l.count, s->dt, redop_label(s), s->root);
  int rc = bench_placement(s, &l, 0);
  if (rc == 0) rc = bench_placement(s, &l, 1);
  if (rc != 0) {
    fprintf(stderr, "fgbench: rank %d: %s of %zu B failed: %s\n", fg_comm_rank(s->c),
            s->coll->name, l.bytes, fg_comm_errmsg(s->c));
    return rc;
  }
  bc_report_row_end(s->rep);
  return 0;
}

/* The next size of a sweep; 0 when it would not grow. */
static uint64_t next_size(uint64_t size, uint64_t factor, uint64_t step) {
  uint64_t next = factor > 1 ? size * factor : size + step;
  return next > size && (factor <= 1 || next / factor == size) ? next : 0;
}

/* nccl-tests' TimeTest: every size warmed up (doubling), then -N sweeps. */
static int time_test(sweep *s) {
  const bc_options *o = s->o;
  int rc = fg_barrier(s->c);
  for (uint64_t b = o->min_bytes; rc == 0 && b <= o->max_bytes;) {
    layout l = layout_for(s, b);
    for (int i = 0; rc == 0 && i < o->warmup; i++) {
      bc_call k = call_at(s, &l, 0, (size_t)i);
      rc = s->coll->run(&k);
    }
    if (!(b = next_size(b, 2, 1))) break;
    if (b == 1) b = 2;
  }
  for (long cycle = 0; rc == 0 && (o->run_cycles == 0 || cycle < o->run_cycles); cycle++)
    for (uint64_t b = o->min_bytes; rc == 0 && b <= o->max_bytes;) {
      rc = one_size(s, b);
      if (!(b = next_size(b, o->step_factor, o->step_bytes))) break;
    }
  return rc;
}

static int allocate(sweep *s) {
  size_t room = s->o->max_bytes + (size_t)s->o->unalign * 8;
  int rc = buf_alloc(s->c, &s->send, room);
  if (rc == 0) rc = buf_alloc(s->c, &s->recv, room);
  return rc;
}

/* One collective: its types, reductions and roots as nccl-tests' runTest loops over them.
 * Returns 0, 1 (wrong results or below $NCCL_TESTS_MIN_BW) or a failure code. */
static int run_coll(fg_comm *c, const bc_options *o, const bc_coll *coll, bc_peer *peers,
                    int npeers, bc_report *rep) {
  sweep s = {.c = c, .o = o, .coll = coll, .peers = peers, .npeers = npeers, .rep = rep};
  int rc = allocate(&s), me = fg_comm_rank(c);
  long long ok = rc == 0; /* every rank must have its buffers before anyone calls */
  long long all_ok = ok;
  if (sum_over_ranks(c, &all_ok) != 0 || all_ok != fg_comm_size(c)) {
    fprintf(stderr, "fgbench: rank %d: no memory for %s of %llu B\n", me, coll->name,
            (unsigned long long)o->max_bytes);
    rc = rc ? rc : -ENOMEM;
  }
  if (rc == 0) bc_report_begin(rep, coll, peers, npeers);
  int reduces = !!(coll->flags & BC_REDUCES), rooted = !!(coll->flags & BC_ROOTED);
  int nops = reduces ? o->nops : 1, nroots = rooted && o->root < 0 ? fg_comm_size(c) : 1;
  for (int t = 0; rc == 0 && t < o->ntypes; t++)
    for (int i = 0; rc == 0 && i < nops * nroots; i++) {
      s.dt = o->types[t];
      s.op = reduces ? o->ops[i / nroots] : FG_REDOP_SUM;
      s.root = !rooted ? -1 : o->root < 0 ? i % nroots : o->root;
      bc_values_free(&s.v);
      if ((rc = bc_values_make(&s.v, fg_comm_size(c), s.dt, s.op, reduces)) == 0)
        rc = time_test(&s);
    }
  long long errors = s.errors;
  if (rc == 0) rc = sum_over_ranks(c, &errors);
  int slow = rc == 0 ? bc_report_end(rep, errors) : 0;
  buf_free(c, &s.send);
  buf_free(c, &s.recv);
  bc_values_free(&s.v);
  return rc ? rc : errors != 0 || slow;
}

/* --- main ----------------------------------------------------------------------------------- */

static const char *launcher_name(void) {
  if (getenv("TORCHELASTIC_RUN_ID")) return "fgrun/torchrun"; /* fgrun's have PMIX_RANK too */
  if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK")) return "mpirun";
  if (getenv("SLURM_PROCID")) return "srun";
  return getenv("RANK") ? "environment" : "none";
}

static int run_all(fg_comm *w, const bc_options *o, bc_report *rep) {
  bc_peer peers[BC_MAX_PEERS];
  int npeers = o->side_by_side ? bc_peers_open(w, o, peers) : 0, status = 0;
  for (int i = 0; bc_colls[i]; i++) {
    if (strcmp(o->coll, "all") && strcmp(o->coll, bc_colls[i]->name)) continue;
    int rc = run_coll(w, o, bc_colls[i], peers, npeers, rep);
    if (rc < 0) {
      status = rc;
      break;
    }
    status |= rc;
  }
  bc_peers_close(peers, npeers);
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
  int me = fg_comm_rank(w), status;
  if (o.root >= fg_comm_size(w)) {
    if (me == 0)
      fprintf(stderr, "fgbench %s: bad -r '%d': the world has %d ranks (see fgbench %s --help)\n",
              o.coll, o.root, fg_comm_size(w), o.coll);
    fg_comm_destroy(w);
    return 2;
  }
  bc_report *rep = NULL;
  rc = bc_report_open(&rep, w, &o, launcher_name());
  long long ok = rc == 0;
  if (sum_over_ranks(w, &ok) == 0 && ok == fg_comm_size(w)) {
    rc = run_all(w, &o, rep); /* a failure there says what failed */
  } else {
    fprintf(stderr, "fgbench: rank %d: cannot start: %s\n", me,
            rc ? fg_strerror(rc) : "another rank could not");
    rc = rc ? rc : -EIO;
  }
  /* Rank 0 has printed everything before a rank that exits 1 makes the launcher stop it. */
  if (rc >= 0 && fg_barrier(w) != 0) {
    fprintf(stderr, "fgbench: rank %d: %s\n", me, fg_comm_errmsg(w));
    rc = -EIO;
  }
  if (rc < 0) {
    fg_comm_set_timeout(w, 1000); /* peers that failed are not waited for on the way out */
    status = 1;
  } else {
    status = rc;
  }
  bc_report_close(rep);
  fg_comm_destroy(w);
  return status;
}
