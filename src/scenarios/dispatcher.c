/* dispatcher.c - dataloader-dispatcher: only the global coordinator (rank 0)
 * reads data; it hands batches out across a dp x mp device mesh.
 *
 * Each step the coordinator loads one batch per DP rank, keeps the first,
 * broadcasts a table of the batches' shapes to the DP group and sends each DP
 * rank its batch with batched point-to-point. Each DP leader (mp rank 0) then
 * broadcasts what it got to its MP group: shapes, then tensors. The keys and
 * dtypes travel once, as metadata, before the first step. End of data is
 * empty metadata when there was never a batch, else all-zero shapes; a zero
 * entry in a table that is not all zero means "no batch for you this step", so
 * a dataset that does not divide evenly still ends every rank's loop together.
 *
 * Every rank records the first token of each batch it received and whether the
 * tokens follow the dataset's pattern; rank 0 gathers it all and judges. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "scenarios/dispatcher.h"
#include "scenarios/dispatcher_data.h"
#include "scenarios/scenario.h"

typedef struct options {
  int dp, mp;      /* 0: chosen from the world size */
  int dp_dim;      /* which mesh dimension is DP in a 2D mesh */
  int mesh_dims;   /* 0: 2D only when both dp and mp exceed 1 */
  int num_batches; /* per DP rank */
  int batch_size, seq_len;
} options;

typedef struct dispatcher {
  scn *s;
  options o;
  fg_mesh *mesh;
  fg_comm *dp_group; /* NULL when this rank's DP group is itself alone */
  fg_comm *mp_group; /* likewise */
  int dp_rank, mp_rank;
  int max_steps; /* a missing end of data becomes a failed check, not a hang */
  batch_layout layout;
  /* The coordinator's side. */
  dataset data;
  batch *pending; /* this step's batches, one per DP rank */
  int loaded;     /* pending holds the current step's load */
  /* What this rank received. */
  int ended;
  int received;
  int64_t bad_values;
  int64_t *first_tokens; /* max_steps entries */
  int diverged;
} dispatcher;

static int is_coordinator(const dispatcher *d) { return d->dp_rank == 0 && d->mp_rank == 0; }

/* --- batches staged through the backend's memory (device memory on nccl) ---------------- */

/* Device copies of a batch's tensors: uploaded for a sender, empty for a receiver. */
static int stage_batch(fg_comm *c, const batch_layout *l, const batch *b, int upload, void **dev) {
  int rc = 0;
  for (int i = 0; i < l->n && rc == 0; i++) {
    rc = fg_comm_malloc(c, batch_bytes(l, b, i), &dev[i]);
    if (rc == 0 && upload) rc = fg_comm_upload(c, dev[i], b->data[i], batch_bytes(l, b, i));
  }
  return rc;
}

static int unstage_batch(fg_comm *c, const batch_layout *l, batch *b, int download, void **dev) {
  int rc = 0;
  for (int i = 0; i < l->n; i++) {
    if (rc == 0 && download && dev[i])
      rc = fg_comm_download(c, b->data[i], dev[i], batch_bytes(l, b, i));
    fg_comm_free(c, dev[i]);
    dev[i] = NULL;
  }
  return rc;
}

/* Shapes as they travel: rows, cols per tensor. */
static void put_shapes(const batch_layout *l, const batch *b, int64_t *out) {
  for (int i = 0; i < l->n; i++) out[2 * i] = b->shape[i][0], out[2 * i + 1] = b->shape[i][1];
}

/* Takes shapes off the wire; refuses any a receiver should not allocate. */
static int get_shapes(const batch_layout *l, const int64_t *in, batch *b) {
  memset(b, 0, sizeof *b);
  for (int i = 0; i < l->n; i++) {
    int64_t rows = in[2 * i], cols = in[2 * i + 1];
    if (rows < 0 || cols < 0 || rows > 1 << 20 || cols > 1 << 20 || rows * cols > 1 << 24)
      return -EPROTO;
    b->shape[i][0] = rows, b->shape[i][1] = cols;
  }
  return 0;
}

/* --- the coordinator's loading --------------------------------------------------------- */

static int load_step(dispatcher *d) {
  if (d->loaded) return 0;
  d->loaded = 1;
  for (int i = 0; i < d->o.dp; i++) {
    int rc = dataset_load(&d->data, &d->layout, &d->pending[i]);
    if (rc < 0) return rc;
  }
  return 0;
}

static void log_step(dispatcher *d, int step) {
  char line[512];
  int n = 0, count = 0;
  for (int i = 0; i < d->o.dp; i++) {
    if (batch_is_empty(&d->layout, &d->pending[i])) continue;
    count++;
    if (n < (int)sizeof line - 32)
      n += snprintf(line + n, sizeof line - (size_t)n, " %lld->dp%d",
                    (long long)*(const int64_t *)d->pending[i].data[0], i);
  }
  if (count)
    scn_log(d->s, "step %d: %d batch(es), first token -> DP rank:%s", step, count, line);
  else
    scn_log(d->s, "step %d: end of data", step);
}

/* --- the protocol ---------------------------------------------------------------------- */

/* Keys and dtypes, once: coordinator to the DP leaders, then each leader to its MP group.
 * Empty metadata means the dataset had nothing at all. */
static int share_metadata(dispatcher *d) {
  char *bytes = NULL;
  size_t len = 0;
  int rc = 0;
  if (is_coordinator(d)) {
    batch_layout_default(&d->layout);
    if ((rc = load_step(d)) != 0) return scn_comm(d->s, NULL, rc, "loading data");
    int any = !batch_is_empty(&d->layout, &d->pending[0]);
    bytes = any ? batch_layout_encode(&d->layout, &len) : calloc(1, 1);
    if (!bytes) return scn_comm(d->s, NULL, -ENOMEM, "metadata");
  }
  if (d->dp_group && d->mp_rank == 0)
    rc = scn_comm(d->s, d->dp_group, fg_broadcast_bytes(d->dp_group, (void **)&bytes, &len, 0),
                    "broadcasting metadata to the DP group");
  if (rc == 0 && d->mp_group)
    rc = scn_comm(d->s, d->mp_group, fg_broadcast_bytes(d->mp_group, (void **)&bytes, &len, 0),
                    "broadcasting metadata to the MP group");
  if (rc == 0 && batch_layout_decode(bytes, len, &d->layout) != 0) {
    scn_error(d->s, "metadata '%.*s' does not parse", (int)len, bytes);
    rc = -EPROTO;
  }
  free(bytes);
  return rc;
}

/* Coordinator: batch i to DP rank i, for every i > 0 that has one. */
static int send_batches(dispatcher *d) {
  int nt = d->layout.n, rc = 0;
  size_t nops = 0;
  fg_p2p_op *ops = calloc((size_t)(d->o.dp * nt), sizeof *ops);
  void **dev = calloc((size_t)(d->o.dp * nt), sizeof *dev);
  if (!ops || !dev) rc = -ENOMEM;
  for (int i = 1; rc == 0 && i < d->o.dp; i++) {
    batch *b = &d->pending[i];
    if (batch_is_empty(&d->layout, b)) continue;
    rc = stage_batch(d->dp_group, &d->layout, b, 1, dev + i * nt);
    for (int t = 0; rc == 0 && t < nt; t++)
      ops[nops++] =
          (fg_p2p_op){1, dev[i * nt + t], (size_t)batch_numel(b, t), d->layout.dtype[t], i};
  }
  fg_batch *pb = NULL;
  if (rc == 0 && nops) rc = fg_batch_start(d->dp_group, ops, nops, &pb);
  if (rc == 0) rc = fg_batch_wait(pb);
  for (int i = 1; dev && i < d->o.dp; i++)
    unstage_batch(d->dp_group, &d->layout, NULL, 0, dev + i * nt);
  free(ops);
  free(dev);
  return scn_comm(d->s, d->dp_group, rc, "sending batches to the DP group");
}

/* A DP rank other than the coordinator: its batch, whose shapes it already has. */
static int receive_batch(dispatcher *d, batch *b) {
  int nt = d->layout.n;
  fg_p2p_op ops[BATCH_MAX_TENSORS];
  void *dev[BATCH_MAX_TENSORS] = {0};
  int rc = batch_alloc(&d->layout, b);
  if (rc == 0) rc = stage_batch(d->dp_group, &d->layout, b, 0, dev);
  for (int t = 0; rc == 0 && t < nt; t++)
    ops[t] = (fg_p2p_op){0, dev[t], (size_t)batch_numel(b, t), d->layout.dtype[t], 0};
  fg_batch *pb = NULL;
  if (rc == 0) rc = fg_batch_start(d->dp_group, ops, (size_t)nt, &pb);
  if (rc == 0) rc = fg_batch_wait(pb);
  int urc = unstage_batch(d->dp_group, &d->layout, b, rc == 0, dev);
  return scn_comm(d->s, d->dp_group, rc ? rc : urc, "receiving a batch from the coordinator");
}

/* One step among the DP leaders: the shape table, then the batches. */
static int dp_step(dispatcher *d, int step, batch *mine, int *end) {
  int nt = d->layout.n, dp = d->o.dp, rc = 0;
  int64_t *table = calloc((size_t)(dp * nt * 2), sizeof *table);
  if (!table) return scn_comm(d->s, NULL, -ENOMEM, "shape table");
  if (is_coordinator(d)) {
    if ((rc = load_step(d)) != 0) {
      free(table);
      return scn_comm(d->s, NULL, rc, "loading data");
    }
    log_step(d, step);
    for (int i = 0; i < dp; i++) put_shapes(&d->layout, &d->pending[i], table + i * nt * 2);
  }
  if (d->dp_group)
    rc = scn_broadcast(d->s, d->dp_group, table, (size_t)(dp * nt * 2), FG_INT64, 0,
                       "broadcasting the shape table");
  *end = 1;
  for (int i = 0; rc == 0 && i < dp * nt * 2; i++) *end &= table[i] == 0;
  if (rc == 0 && !*end) {
    if (is_coordinator(d)) {
      if (d->dp_group) rc = send_batches(d);
      *mine = d->pending[0];
      memset(&d->pending[0], 0, sizeof d->pending[0]);
    } else if ((rc = get_shapes(&d->layout, table + d->dp_rank * nt * 2, mine)) != 0) {
      scn_error(d->s, "step %d: the shape table holds an impossible shape", step);
    } else if (!batch_is_empty(&d->layout, mine)) {
      rc = receive_batch(d, mine);
    }
  }
  for (int i = 0; is_coordinator(d) && i < dp; i++) batch_free(&d->pending[i]);
  d->loaded = 0;
  free(table);
  return rc;
}

/* One step within an MP group: the leader's shapes (with a flag: 0 and all-zero shapes is
 * the end), then each tensor. */
static int mp_step(dispatcher *d, batch *b, int *end) {
  int nt = d->layout.n, leader = d->mp_rank == 0;
  int64_t head[1 + 2 * BATCH_MAX_TENSORS] = {0};
  if (leader) {
    head[0] = !*end;
    put_shapes(&d->layout, b, head + 1);
  }
  int rc = scn_broadcast(d->s, d->mp_group, head, (size_t)(1 + 2 * nt), FG_INT64, 0,
                         "broadcasting shapes to the MP group");
  if (rc) return rc;
  *end = head[0] == 0;
  if (!leader && (rc = get_shapes(&d->layout, head + 1, b)) != 0) {
    scn_error(d->s, "the DP leader sent an impossible shape");
    return rc;
  }
  if (*end || batch_is_empty(&d->layout, b)) return 0;
  if (!leader && (rc = batch_alloc(&d->layout, b)) != 0) return scn_comm(d->s, NULL, rc, "batch");
  for (int t = 0; rc == 0 && t < nt; t++)
    rc = scn_broadcast(d->s, d->mp_group, b->data[t], (size_t)batch_numel(b, t),
                       d->layout.dtype[t], 0, "broadcasting a tensor to the MP group");
  return rc;
}

/* --- what each rank received ----------------------------------------------------------- */

/* mp-diverge: the last rank's first batch is swapped for the next one in the dataset. */
static int maybe_diverge(dispatcher *d, batch *b) {
  if (!scn_fault(d->s, "mp-diverge") || d->diverged || d->s->rank != d->s->size - 1) return 0;
  d->diverged = 1;
  int64_t first;
  batch_bad_values(&d->layout, b, d->o.batch_size, d->o.seq_len, &first);
  dataset other = {.length = INT64_MAX, .batch_size = d->o.batch_size, .seq_len = d->o.seq_len};
  batch_free(b);
  return dataset_make(&other, &d->layout, first / 1000 + 1, b);
}

static int record(dispatcher *d, batch *b) {
  int rc = maybe_diverge(d, b);
  if (rc) return scn_comm(d->s, NULL, rc, "mp-diverge");
  batch_layout want;
  batch_layout_default(&want);
  int64_t first;
  d->bad_values += batch_bad_values(&d->layout, b, d->o.batch_size, d->o.seq_len, &first);
  d->bad_values += !batch_layout_equal(&d->layout, &want);
  if (d->received < d->max_steps) d->first_tokens[d->received] = first;
  d->received++;
  return 0;
}

static int iterate(dispatcher *d) {
  int rc = share_metadata(d);
  if (rc || d->layout.n == 0) {
    d->ended = rc == 0;
    return rc;
  }
  for (int step = 0; step < d->max_steps; step++) {
    batch b = {0};
    int end = 0;
    if (d->mp_rank == 0) rc = dp_step(d, step, &b, &end);
    if (rc == 0 && d->mp_group) rc = mp_step(d, &b, &end);
    if (rc == 0 && !end && !batch_is_empty(&d->layout, &b)) rc = record(d, &b);
    batch_free(&b);
    if (rc) return rc;
    if (end) {
      d->ended = 1;
      return 0;
    }
  }
  scn_log(d->s, "no end of data after %d steps: stopped waiting for it", d->max_steps);
  return 0;
}

/* --- judging ---------------------------------------------------------------------------- */

static int gather_and_judge(dispatcher *d) {
  dispatch_plan plan = {d->o.dp, d->o.mp, d->o.num_batches, d->max_steps};
  size_t len = (size_t)dispatch_record_len(&plan);
  int64_t *mine = calloc(len, sizeof *mine);
  int64_t *all = calloc(len * (size_t)d->s->size, sizeof *all);
  int rc = mine && all ? 0 : -ENOMEM;
  if (rc == 0) {
    mine[REC_DP] = d->dp_rank;
    mine[REC_MP] = d->mp_rank;
    mine[REC_ENDED] = d->ended;
    mine[REC_COUNT] = d->received;
    mine[REC_BAD] = d->bad_values;
    for (int i = 0; i < d->max_steps; i++)
      mine[REC_TOKENS + i] = i < d->received ? d->first_tokens[i] : -1;
    rc = scn_allgather(d->s, d->s->world, mine, all, len * sizeof *mine,
                       "gathering what every rank received");
  }
  if (rc == 0 && d->s->rank == 0) dispatcher_judge(d->s, &plan, all);
  free(mine);
  free(all);
  return rc;
}

/* --- the mesh --------------------------------------------------------------------------- */

static int make_mesh(dispatcher *d) {
  const options *o = &d->o;
  int ndims = o->mesh_dims ? o->mesh_dims : o->dp > 1 && o->mp > 1 ? 2 : 1;
  int sizes[2];
  const char *names[2];
  if (ndims == 1) {
    sizes[0] = d->s->size;
    names[0] = o->mp > 1 ? "mp" : "dp";
  } else {
    sizes[o->dp_dim] = o->dp, names[o->dp_dim] = "dp";
    sizes[1 - o->dp_dim] = o->mp, names[1 - o->dp_dim] = "mp";
  }
  int rc = fg_mesh_create(d->s->world, ndims, sizes, names, &d->mesh);
  if (rc) return scn_comm(d->s, d->s->world, rc, "making the mesh");
  int dd = fg_mesh_dim(d->mesh, "dp"), md = fg_mesh_dim(d->mesh, "mp");
  d->dp_rank = dd >= 0 ? fg_mesh_coord(d->mesh, dd) : 0;
  d->mp_rank = md >= 0 ? fg_mesh_coord(d->mesh, md) : 0;
  /* A dimension of one rank needs no communication: that stage is skipped. */
  d->dp_group = dd >= 0 && fg_mesh_size(d->mesh, dd) > 1 ? fg_mesh_group(d->mesh, dd) : NULL;
  d->mp_group = md >= 0 && fg_mesh_size(d->mesh, md) > 1 ? fg_mesh_group(d->mesh, md) : NULL;
  if (ndims == 1)
    scn_log(d->s, "1D mesh: %s=%d", names[0], sizes[0]);
  else
    scn_log(d->s, "2D mesh %dx%d (%s, %s), DP is dimension %d", sizes[0], sizes[1], names[0],
            names[1], o->dp_dim);
  return 0;
}

/* --- options ---------------------------------------------------------------------------- */

static int parse_options(scn *s, int argc, char **argv, options *o) {
  *o = (options){.num_batches = 5, .batch_size = 2, .seq_len = 8};
  static const struct option opts[] = {
      {"dp", required_argument, 0, 'd'},          {"mp", required_argument, 0, 'm'},
      {"dp-dim", required_argument, 0, 'D'},      {"dp_dim", required_argument, 0, 'D'},
      {"num-batches", required_argument, 0, 'n'}, {"num_batches", required_argument, 0, 'n'},
      {"batch-size", required_argument, 0, 'b'},  {"batch_size", required_argument, 0, 'b'},
      {"seq-len", required_argument, 0, 'l'},     {"seq_len", required_argument, 0, 'l'},
      {"mesh-dims", required_argument, 0, 'M'},   {0, 0, 0, 0}};
  optind = 1;
  opterr = 0;
  int c, which = 0;
  while ((c = getopt_long(argc, argv, ":", opts, &which)) != -1) {
    int ok = 1;
    switch (c) {
      case 'd': ok = !fg__parse_int(optarg, 1, 1 << 16, &o->dp); break;
      case 'm': ok = !fg__parse_int(optarg, 1, 1 << 16, &o->mp); break;
      case 'D': ok = !fg__parse_int(optarg, 0, 1, &o->dp_dim); break;
      case 'n': ok = !fg__parse_int(optarg, 0, 10000, &o->num_batches); break;
      /* Under 1000 samples, b*1000 + j names one sample of one batch. */
      case 'b': ok = !fg__parse_int(optarg, 1, 999, &o->batch_size); break;
      case 'l': ok = !fg__parse_int(optarg, 1, 1 << 16, &o->seq_len); break;
      case 'M': ok = !fg__parse_int(optarg, 1, 2, &o->mesh_dims); break;
      case ':': return scn_usage_error(s, "%s needs a value", argv[optind - 1]);
      default: return scn_usage_error(s, "unknown option '%s' (see --help)", argv[optind - 1]);
    }
    if (!ok) return scn_usage_error(s, "bad value '%s' for --%s", optarg, opts[which].name);
  }
  if (optind < argc) return scn_usage_error(s, "unexpected argument '%s'", argv[optind]);
  return 0;
}

/* Fills in dp and mp when not given; `all` mode gives neither. */
static int resolve_shape(scn *s, options *o) {
  int n = s->size;
  if (!o->dp && !o->mp) {
    o->dp = n % 2 == 0 && n / 2 > 1 ? 2 : n; /* hybrid 2 x k where the world allows */
    o->mp = n / o->dp;
  } else if (!o->dp || !o->mp) {
    int given = o->dp ? o->dp : o->mp;
    if (n % given)
      return scn_usage_error(s, "--%s %d does not divide the world of %d ranks",
                             o->dp ? "dp" : "mp", given, n);
    *(o->dp ? &o->mp : &o->dp) = n / given;
  }
  if ((long)o->dp * o->mp != n)
    return scn_usage_error(s, "--dp %d --mp %d needs %ld ranks, the world has %d", o->dp, o->mp,
                           (long)o->dp * o->mp, n);
  if (o->mesh_dims == 1 && o->dp > 1 && o->mp > 1)
    return scn_usage_error(s, "--mesh-dims 1 needs --dp 1 or --mp 1 (got %dx%d)", o->dp, o->mp);
  return 0;
}

static const char *mode_name(const options *o) {
  if (o->dp > 1 && o->mp > 1) return "hybrid DP x MP";
  if (o->mp > 1) return "pure MP";
  return o->dp > 1 ? "pure DP" : "single rank";
}

/* --- the scenario ----------------------------------------------------------------------- */

static const char *const faults[] = {"duplicate-batch", "mp-diverge",     "corrupt-token",
                                     "extra-batch",     "no-end-of-data", NULL};

static int run_dispatcher(scn *s, int argc, char **argv) {
  dispatcher d = {.s = s};
  int rc = parse_options(s, argc, argv, &d.o);
  if (rc == 0) rc = resolve_shape(s, &d.o);
  if (rc) return rc;
  /* Steps with data, the end, and one spare: room for a late end to show as a failed check. */
  d.max_steps = d.o.num_batches + 2;
  d.first_tokens = calloc((size_t)d.max_steps, sizeof *d.first_tokens);
  d.pending = calloc((size_t)d.o.dp, sizeof *d.pending);
  if (!d.first_tokens || !d.pending) return -ENOMEM;
  d.data = (dataset){.length = (int64_t)d.o.num_batches * d.o.dp,
                     .batch_size = d.o.batch_size,
                     .seq_len = d.o.seq_len,
                     .duplicate = scn_fault(s, "duplicate-batch"),
                     .corrupt = scn_fault(s, "corrupt-token")};
  if (scn_fault(s, "extra-batch")) d.data.length++;
  if (scn_fault(s, "no-end-of-data")) d.data.length = INT64_MAX;
  scn_log(s, "%s: dp=%d mp=%d, %d batch(es) per DP rank of %dx%d tokens", mode_name(&d.o), d.o.dp,
          d.o.mp, d.o.num_batches, d.o.batch_size, d.o.seq_len);
  double t0 = scn_now();
  rc = make_mesh(&d);
  if (rc == 0) rc = iterate(&d);
  if (rc == 0) {
    scn_log(s, "dispatch done in %.3f s; rank 0 received %d batch(es)", scn_now() - t0, d.received);
    rc = gather_and_judge(&d);
  }
  for (int i = 0; i < d.o.dp; i++) batch_free(&d.pending[i]);
  free(d.pending);
  free(d.first_tokens);
  fg_mesh_destroy(d.mesh);
  return rc;
}

const scenario scn_dispatcher = {
    .name = FG_SCENARIO_DISPATCHER,
    .summary = "rank 0 loads batches and dispatches them across a dp x mp mesh",
    .usage =
        "options:\n"
        "  --dp N              data-parallel size (default: 2 when the world is 2 x k, k > 1,\n"
        "                      else the world size)\n"
        "  --mp M              model-parallel size; dp * mp must equal the world size\n"
        "  --dp-dim 0|1        which dimension of a 2D mesh is DP (default 0)\n"
        "  --num-batches N     batches each rank should receive (default 5)\n"
        "  --batch-size N      samples per batch, under 1000 (default 2)\n"
        "  --seq-len N         tokens per sample (default 8)\n"
        "  --mesh-dims 1|2     1D or 2D mesh (default: 2D only when dp and mp both exceed 1;\n"
        "                      2 with dp or mp 1 gives a dimension of size 1)\n"
        "\n"
        "Checks (rank 0, from every rank's record): end of data on every rank; exactly\n"
        "--num-batches batches each; every token b*1000+j; identical batches within each MP\n"
        "group; no batch in two DP groups (pure DP: every rank's batches differ).\n"
        "\n"
        "Faults: duplicate-batch (batch 1 repeats batch 0), mp-diverge (the last rank's first\n"
        "batch is swapped for another), corrupt-token (a label of the last batch breaks the\n"
        "pattern), extra-batch (one batch more than planned), no-end-of-data (the data\n"
        "never ends).\n",
    .faults = faults,
    .run = run_dispatcher,
};
