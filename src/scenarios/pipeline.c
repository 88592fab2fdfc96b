/* pipeline.c - pipeline-split: a small causal language model split into contiguous
 * layer ranges, one stage per rank, trained for one step with a GPipe or a 1F1B
 * schedule, and checked against a single-process run of the whole model.
 *
 * Stage 0 builds the batch's block mask and carries it to every stage, which also
 * builds its own: the two must be identical, and attention uses the carried one.
 * Activations go to the next stage and gradients to the previous one with batched
 * point-to-point operations; every send has its receive on the other side in the
 * same order, so even a faulty run ends instead of hanging. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "scenarios/pipeline.h"
#include "scenarios/scenario.h"

enum schedule { GPIPE, ONE_F_ONE_B };

typedef struct stage {
  scn *s;
  const pp_config *cfg;
  const pp_kernels *k;
  enum schedule schedule;
  int id, count;
  pp_part part;
  fg_dtype wire;
  size_t act;    /* elements of one boundary activation */
  void *dout;    /* the gradient of this stage's output, from the next stage */
  int32_t *ids, *targets;
  uint8_t *mask; /* element mask from the carried block mask */
  double loss_scale;
  double loss;
} stage;

/* What each stage found, gathered so rank 0 can check and print every stage. */
typedef struct figures {
  int32_t first_layer, nlayers, has_embed, has_head;
  int32_t mask_same, worst_tensor;
  int64_t nparams, partial_blocks, full_blocks;
  double loss, loss_ref, loss_err, grad_err, seconds;
  char mask_why[160];
} figures;

static int is_last(const stage *st) { return st->id == st->count - 1; }

/* --- moving tensors between stages ------------------------------------------------------- */

/* Up to one send and one receive in one batch (torch's batch_isend_irecv): a stage
 * sending forward while its neighbour sends backward never waits on itself. */
static int exchange(stage *st, const void *send, int to, void *recv, int from, const char *what,
                    int mb) {
  fg_p2p_op ops[2];
  size_t n = 0;
  if (send) ops[n++] = (fg_p2p_op){1, (void *)send, st->act, st->wire, to};
  if (recv) ops[n++] = (fg_p2p_op){0, recv, st->act, st->wire, from};
  if (n == 0) return 0;
  fg_batch *b = NULL;
  int rc = fg_batch_start(st->s->world, ops, n, &b);
  if (rc == 0) rc = fg_batch_wait(b);
  char why[96];
  snprintf(why, sizeof why, "%s (microbatch %d)", what, mb);
  return scn_comm(st->s, st->s->world, rc, why);
}

static void *input_buf(stage *st, int m) {
  return st->id > 0 ? pp_slot_input(&st->part, m) : NULL;
}

static void *output_buf(stage *st, int m) {
  return is_last(st) ? NULL : pp_slot_output(&st->part, m);
}

static void *dout_buf(stage *st) { return is_last(st) ? NULL : st->dout; }

/* The gradient for the previous stage. wrong-schedule-order: the last stage sends
 * microbatch 0's in place of microbatch 1's, the same size, so nothing hangs. */
static const void *dinput_buf(stage *st, int m) {
  if (st->id == 0) return NULL;
  if (scn_fault(st->s, "wrong-schedule-order") && is_last(st) && m == 1)
    return pp_slot_dinput(&st->part, 0);
  return pp_slot_dinput(&st->part, m);
}

static int recv_forward(stage *st, int m) {
  return exchange(st, NULL, -1, input_buf(st, m), st->id - 1, "receiving an activation", m);
}

static int send_forward(stage *st, int m) {
  return exchange(st, output_buf(st, m), st->id + 1, NULL, -1, "sending an activation", m);
}

static int recv_backward(stage *st, int m) {
  return exchange(st, NULL, -1, dout_buf(st), st->id + 1, "receiving a gradient", m);
}

static int send_backward(stage *st, int m) {
  return exchange(st, dinput_buf(st, m), st->id - 1, NULL, -1, "sending a gradient", m);
}

static int send_forward_recv_backward(stage *st, int m_out, int m_grad) {
  return exchange(st, output_buf(st, m_out), st->id + 1, dout_buf(st), st->id + 1,
                  "sending an activation, receiving a gradient", m_grad);
}

static int send_backward_recv_forward(stage *st, int m_grad, int m_in) {
  return exchange(st, dinput_buf(st, m_grad), st->id - 1, input_buf(st, m_in), st->id - 1,
                  "sending a gradient, receiving an activation", m_in);
}

/* --- one microbatch's compute --------------------------------------------------------------- */

static int forward(stage *st, int m) {
  size_t tok = (size_t)m * (size_t)st->cfg->mb_seqs * (size_t)st->cfg->seq_len;
  pp_io io = {st->cfg->mb_seqs, st->ids + tok, st->targets + tok,
              st->mask + tok * (size_t)st->cfg->seq_len, st->loss_scale};
  double loss = 0;
  int rc = pp_forward(&st->part, m, &io, &loss);
  if (rc) scn_error(st->s, "forward of microbatch %d: %s", m, st->part.err);
  st->loss += loss;
  return rc;
}

static int backward(stage *st, int m) {
  if (scn_fault(st->s, "drop-microbatch") && is_last(st) && m == st->cfg->microbatches - 1) {
    /* skipped: no parameter gradients, a zero gradient for the previous stage */
    st->k->zero(pp_slot_dinput(&st->part, m), st->act * pp_dtype_size(st->cfg->dtype));
    return st->k->sync(st->part.err, sizeof st->part.err);
  }
  int rc = pp_backward(&st->part, m, st->dout);
  if (rc) scn_error(st->s, "backward of microbatch %d: %s", m, st->part.err);
  return rc;
}

/* --- schedules ------------------------------------------------------------------------------ */

/* GPipe: every forward, then every backward. */
static int run_gpipe(stage *st) {
  int rc = 0, mbs = st->cfg->microbatches;
  for (int m = 0; rc == 0 && m < mbs; m++)
    if ((rc = recv_forward(st, m)) == 0 && (rc = forward(st, m)) == 0) rc = send_forward(st, m);
  for (int m = 0; rc == 0 && m < mbs; m++)
    if ((rc = recv_backward(st, m)) == 0 && (rc = backward(st, m)) == 0) rc = send_backward(st, m);
  return rc;
}

/* 1F1B (as Megatron-LM): stage s warms up with count - s - 1 forwards, then alternates
 * one forward and one backward, then cools down with the backwards left. */
static int run_1f1b(stage *st) {
  int mbs = st->cfg->microbatches;
  int warm = FG__MIN(st->count - st->id - 1, mbs), steady = mbs - warm, rc = 0;
  for (int m = 0; rc == 0 && m < warm; m++)
    if ((rc = recv_forward(st, m)) == 0 && (rc = forward(st, m)) == 0) rc = send_forward(st, m);
  if (rc == 0 && steady > 0) rc = recv_forward(st, warm);
  for (int i = 0; rc == 0 && i < steady; i++) {
    int f = warm + i, b = i;
    if ((rc = forward(st, f)) || (rc = send_forward_recv_backward(st, f, b)) ||
        (rc = backward(st, b)))
      break;
    rc = i == steady - 1 ? send_backward(st, b) : send_backward_recv_forward(st, b, f + 1);
  }
  for (int b = steady; rc == 0 && b < mbs; b++)
    if ((rc = recv_backward(st, b)) == 0 && (rc = backward(st, b)) == 0) rc = send_backward(st, b);
  return rc;
}

/* --- the mask ------------------------------------------------------------------------------- */

/* corrupt-mask: the diagonal block of the first query block turns from partly masked to
 * fully visible, so the first tokens see their future (or a document id changes). */
static void corrupt(pp_block_mask *m) {
  if (m->kv_num_blocks[0] > 0) {
    int32_t kb = m->kv_indices[0];
    memmove(m->kv_indices, m->kv_indices + 1, (size_t)(m->kv_blocks - 1) * sizeof *m->kv_indices);
    m->kv_indices[m->kv_blocks - 1] = -1;
    m->kv_num_blocks[0]--;
    m->full_kv_indices[m->full_kv_num_blocks[0]++] = kb;
  } else {
    m->doc_ids[0] = m->doc_ids[0] ? 0 : 1;
  }
}

/* Stage 0 broadcasts its mask's words; every stage parses them and compares them with
 * the mask it built itself. */
static int carry_mask(stage *st, const pp_block_mask *local, pp_block_mask *carried,
                      figures *fig) {
  scn *s = st->s;
  void *blob = s->rank == 0 ? local->words : NULL;
  size_t len = s->rank == 0 ? local->nwords * sizeof *local->words : 0;
  int rc = scn_comm(s, s->world, fg_broadcast_bytes(s->world, &blob, &len, 0),
                    "carrying the block mask");
  if (rc) return rc;
  char err[160];
  rc = pp_block_mask_parse(carried, blob, len, err, sizeof err);
  if (s->rank != 0) free(blob);
  if (rc) {
    scn_error(s, "the block mask from stage 0 is unreadable: %s", err);
    return rc;
  }
  if (scn_fault(s, "corrupt-mask") && is_last(st)) corrupt(carried);
  fig->mask_same = pp_block_mask_equal(local, carried, fig->mask_why, sizeof fig->mask_why);
  long partial, full;
  pp_block_mask_counts(carried, &partial, &full);
  fig->partial_blocks = partial, fig->full_blocks = full;
  return 0;
}

/* --- setting up a stage --------------------------------------------------------------------- */

static int upload_inputs(stage *st, const pp_batch *b, const pp_block_mask *carried) {
  size_t t = (size_t)st->cfg->seq_len, tokens = (size_t)b->nseq * t;
  uint8_t *mask = malloc(tokens * t);
  st->ids = st->k->alloc(tokens * sizeof *st->ids);
  st->targets = st->k->alloc(tokens * sizeof *st->targets);
  st->mask = st->k->alloc(tokens * t);
  st->dout = st->k->alloc(st->act * pp_dtype_size(st->cfg->dtype));
  if (!mask || !st->ids || !st->targets || !st->mask || !st->dout) {
    free(mask);
    scn_error(st->s, "out of %s memory for the batch", st->k->name);
    return -ENOMEM;
  }
  pp_block_mask_dense(carried, mask);
  st->k->upload(st->ids, b->ids, tokens * sizeof *st->ids);
  st->k->upload(st->targets, b->targets, tokens * sizeof *st->targets);
  st->k->upload(st->mask, mask, tokens * t);
  free(mask);
  st->loss_scale = 1.0 / b->labelled;
  return 0;
}

static void stage_free(stage *st) {
  pp_part_free(&st->part);
  if (!st->k) return;
  st->k->release(st->ids);
  st->k->release(st->targets);
  st->k->release(st->mask);
  st->k->release(st->dout);
}

static const pp_kernels *pick_kernels(scn *s) {
  if (fg_comm_host_memory(s->world)) return pp_cpu_kernels();
  char err[200];
  const pp_kernels *k = pp_cuda_kernels(err, sizeof err);
  if (!k) scn_error(s, "the %s backend keeps buffers on the GPU, but: %s", s->backend, err);
  return k;
}

/* --- verification --------------------------------------------------------------------------- */

/* Per tensor of the stage's slice: max |g - ref| / max |ref|; the worst of them. */
static double grad_error(const pp_config *c, const pp_part *p, const void *grads,
                         const void *ref, int *worst) {
  pp_tensor *t = malloc((3 + PP_LAYER_TENSORS * (size_t)c->layers) * sizeof *t);
  *worst = -1;
  if (!t) return INFINITY;
  int n = pp_tensors(c, t);
  double max = 0;
  for (int i = 0; i < n; i++) {
    if (t[i].offset < p->param_begin || t[i].offset >= p->param_begin + p->nparams) continue;
    double diff = 0, scale = 0;
    for (size_t j = t[i].offset; j < t[i].offset + t[i].count; j++) {
      double g = c->dtype == PP_F64 ? ((const double *)grads)[j - p->param_begin]
                                    : ((const float *)grads)[j - p->param_begin];
      double r = c->dtype == PP_F64 ? ((const double *)ref)[j] : ((const float *)ref)[j];
      diff = fmax(diff, fabs(g - r));
      scale = fmax(scale, fabs(r));
      if (isnan(g)) diff = INFINITY;
    }
    double err = scale > 0 ? diff / scale : diff;
    if (err > max || *worst < 0) max = err, *worst = i;
  }
  free(t);
  return max;
}

/* corrupt-grad: one element of the middle stage's gradients moves by 0.1 % of the
 * largest. */
static void corrupt_grad(const pp_config *c, void *grads, size_t n) {
  double big = 0;
  for (size_t i = 0; i < n; i++)
    big = fmax(big, fabs(c->dtype == PP_F64 ? ((double *)grads)[i] : ((float *)grads)[i]));
  if (c->dtype == PP_F64)
    ((double *)grads)[n / 2] += 1e-3 * big;
  else
    ((float *)grads)[n / 2] += (float)(1e-3 * big);
}

static void check_stage(scn *s, const pp_config *c, const figures *f, int id, double tol) {
  pp_tensor *t = malloc((3 + PP_LAYER_TENSORS * (size_t)c->layers) * sizeof *t);
  if (t) pp_tensors(c, t);
  long blocks = (c->seq_len + c->block_size - 1) / c->block_size;
  long total = (long)c->microbatches * c->mb_seqs * blocks * blocks;
  if (f->mask_same)
    scn_check(s, 1, "stage %d: the block mask carried from stage 0 is identical to its own "
              "(%lld partial + %lld full of %ld key blocks)", id, (long long)f->partial_blocks,
              (long long)f->full_blocks, total);
  else
    scn_check(s, 0, "stage %d: the block mask carried from stage 0 differs from its own: %s", id,
              f->mask_why);
  char layers[64];
  int n = snprintf(layers, sizeof layers, "layer %d", f->first_layer);
  if (f->nlayers > 1)
    n = snprintf(layers, sizeof layers, "layers %d-%d", f->first_layer,
                 f->first_layer + f->nlayers - 1);
  snprintf(layers + n, sizeof layers - (size_t)n, "%s%s", f->has_embed ? ", embedding" : "",
           f->has_head ? ", head" : "");
  scn_check(s, f->grad_err < tol,
            "stage %d (%s): %lld parameter gradients match the reference: max relative error "
            "%.2e in %s (< %.0e)", id, layers, (long long)f->nparams, f->grad_err,
            t && f->worst_tensor >= 0 ? t[f->worst_tensor].name : "?", tol);
  if (f->has_head)
    scn_check(s, f->loss_err < tol,
              "stage %d: loss %.12f equals the single-process reference %.12f (relative error "
              "%.2e < %.0e)", id, f->loss, f->loss_ref, f->loss_err, tol);
  free(t);
}

/* --- one training step ---------------------------------------------------------------------- */

/* What a stage needs besides its part: the whole model's weights, the mask it built and
 * the one carried from stage 0, and the reference run's gradients. */
typedef struct inputs {
  void *params, *ref_grads;
  pp_block_mask local, carried;
} inputs;

static void inputs_free(inputs *in) {
  free(in->params);
  free(in->ref_grads);
  pp_block_mask_free(&in->local);
  pp_block_mask_free(&in->carried);
}

static int prepare(stage *st, const pp_batch *b, inputs *in, figures *fig) {
  const pp_config *c = st->cfg;
  size_t bytes = pp_param_count(c) * pp_dtype_size(c->dtype), t = (size_t)c->seq_len;
  in->params = malloc(bytes);
  in->ref_grads = malloc(bytes);
  uint8_t *ref_mask = malloc((size_t)b->nseq * t * t);
  int rc = !in->params || !in->ref_grads || !ref_mask ? -ENOMEM : 0;
  if (rc == 0) rc = pp_init_params(c, in->params);
  if (rc == 0) rc = pp_block_mask_build(&in->local, b->ids, b->nseq, c->seq_len, c->block_size);
  if (rc == 0) rc = pp_dense_mask(b->ids, b->nseq, c->seq_len, ref_mask);
  if (rc) scn_error(st->s, "out of memory");
  if (rc == 0) rc = carry_mask(st, &in->local, &in->carried, fig);
  if (rc == 0) {
    char err[256];
    rc = pp_reference(c, in->params, b, ref_mask, &fig->loss_ref, in->ref_grads, err, sizeof err);
    if (rc) scn_error(st->s, "the reference run: %s", err);
  }
  free(ref_mask);
  return rc;
}

static void record(stage *st, void *grads, const void *ref_grads, figures *fig) {
  const pp_part *p = &st->part;
  if (scn_fault(st->s, "corrupt-grad") && st->id == st->count / 2)
    corrupt_grad(st->cfg, grads, p->nparams);
  int worst;
  fig->grad_err = grad_error(st->cfg, p, grads, ref_grads, &worst);
  fig->worst_tensor = worst;
  fig->loss = st->loss;
  fig->loss_err = fabs(st->loss - fig->loss_ref) / fabs(fig->loss_ref);
  fig->first_layer = p->first_layer, fig->nlayers = p->nlayers;
  fig->has_embed = p->has_embed, fig->has_head = p->has_head;
  fig->nparams = (int64_t)p->nparams;
}

/* The stage's layers [first, next) of the model, the schedule, and what came of it. */
static int train_step(stage *st, const pp_batch *b, figures *fig) {
  const pp_config *c = st->cfg;
  inputs in = {0};
  int rc = prepare(st, b, &in, fig);
  if (rc == 0) {
    int first = st->id * c->layers / st->count, next = (st->id + 1) * c->layers / st->count;
    rc = pp_part_init(&st->part, c, st->k, first, next - first, st->id == 0, is_last(st),
                      c->microbatches, c->mb_seqs);
    if (rc) scn_error(st->s, "stage %d: %s", st->id, st->part.err);
  }
  if (rc == 0) rc = upload_inputs(st, b, &in.carried);
  if (rc == 0) {
    pp_part_load(&st->part, in.params);
    double t0 = scn_now();
    rc = st->schedule == GPIPE ? run_gpipe(st) : run_1f1b(st);
    fig->seconds = scn_now() - t0;
  }
  size_t bytes = st->part.nparams * pp_dtype_size(c->dtype);
  void *grads = rc == 0 ? malloc(bytes) : NULL;
  if (rc == 0 && !grads) rc = -ENOMEM;
  if (rc == 0) {
    st->k->download(grads, st->part.grads, bytes);
    if ((rc = st->k->sync(st->part.err, sizeof st->part.err)))
      scn_error(st->s, "reading the gradients: %s", st->part.err);
  }
  if (rc == 0) record(st, grads, in.ref_grads, fig);
  free(grads);
  inputs_free(&in);
  return rc;
}

static int run_stage(scn *s, const pp_config *c, enum schedule schedule) {
  stage st = {.s = s, .cfg = c, .schedule = schedule, .id = s->rank, .count = s->size,
              .wire = c->dtype == PP_F64 ? FG_FLOAT64 : FG_FLOAT32,
              .act = pp_act_count(c, c->mb_seqs)};
  figures mine = {.worst_tensor = -1}, *all = calloc((size_t)s->size, sizeof *all);
  pp_batch b = {0};
  int rc = all ? pp_batch_make(c, &b) : -ENOMEM;
  if (rc == 0 && !(st.k = pick_kernels(s))) rc = -ENODEV;
  scn_log(s, "model: %d layers, dim %d, %d heads, ffn %d, vocab %d, %zu parameters, %s, %s "
          "kernels", c->layers, c->dim, c->heads, c->ffn, c->vocab, pp_param_count(c),
          c->dtype == PP_F64 ? "float64" : "float32", st.k ? st.k->name : "no");
  scn_log(s, "batch: %d microbatches of %d sequences x %d tokens (%d labelled), documents "
          "packed, mask blocks of %d; schedule %s over %d stages", c->microbatches, c->mb_seqs,
          c->seq_len, b.labelled, c->block_size, schedule == GPIPE ? "gpipe" : "1f1b", s->size);
  if (rc == 0) rc = train_step(&st, &b, &mine);
  stage_free(&st);
  pp_batch_free(&b);
  /* A rank that failed stops here; the others' next collective fails or times out. */
  if (rc == 0) rc = scn_allgather(s, s->world, &mine, all, sizeof mine, "gathering every stage's figures");
  if (rc == 0) {
    const figures *last = &all[s->size - 1];
    scn_log(s, "loss %.12f (reference %.12f); step took %.3f s on stage 0", last->loss,
            last->loss_ref, all[0].seconds);
    double tol = c->dtype == PP_F64 ? 1e-5 : 1e-4;
    for (int r = 0; r < s->size; r++)
      if (s->rank == 0 || r == s->rank) check_stage(s, c, &all[r], r, tol);
  }
  free(all);
  return rc;
}

/* --- options -------------------------------------------------------------------------------- */

static const char *const faults[] = {"corrupt-grad", "corrupt-mask", "drop-microbatch",
                                     "wrong-schedule-order", NULL};

static int parse_options(scn *s, int argc, char **argv, pp_config *c, enum schedule *schedule) {
  static const struct option opts[] = {
      {"stages", required_argument, 0, 'S'},   {"microbatches", required_argument, 0, 'm'},
      {"microbatch-size", required_argument, 0, 'b'}, {"schedule", required_argument, 0, 's'},
      {"layers", required_argument, 0, 'L'},   {"dim", required_argument, 0, 'd'},
      {"heads", required_argument, 0, 'H'},    {"ffn", required_argument, 0, 'f'},
      {"seq-len", required_argument, 0, 'T'},  {"vocab", required_argument, 0, 'V'},
      {"block-size", required_argument, 0, 'B'}, {"dtype", required_argument, 0, 't'},
      {"seed", required_argument, 0, 'r'},     {0, 0, 0, 0}};
  int stages = s->size, layers = 0, ffn = 0, seed = 1234, o;
  optind = 1;
  opterr = 0;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    int ok = 1;
    switch (o) {
      case 'S': ok = !fg__parse_int(optarg, 1, 1024, &stages); break;
      case 'm': ok = !fg__parse_int(optarg, 1, 256, &c->microbatches); break;
      case 'b': ok = !fg__parse_int(optarg, 1, 64, &c->mb_seqs); break;
      case 'L': ok = !fg__parse_int(optarg, 1, 256, &layers); break;
      case 'd': ok = !fg__parse_int(optarg, 1, 1024, &c->dim); break;
      case 'H': ok = !fg__parse_int(optarg, 1, 64, &c->heads); break;
      case 'f': ok = !fg__parse_int(optarg, 1, 4096, &ffn); break;
      case 'T': ok = !fg__parse_int(optarg, 2, 1024, &c->seq_len); break;
      case 'V': ok = !fg__parse_int(optarg, 2, 65536, &c->vocab); break;
      case 'B': ok = !fg__parse_int(optarg, 1, 1024, &c->block_size); break;
      case 'r': ok = !fg__parse_int(optarg, 0, 1 << 30, &seed); break;
      case 's':
        ok = !strcmp(optarg, "gpipe") || !strcmp(optarg, "1f1b");
        *schedule = !strcmp(optarg, "1f1b") ? ONE_F_ONE_B : GPIPE;
        break;
      case 't':
        ok = !strcmp(optarg, "float64") || !strcmp(optarg, "float32");
        c->dtype = !strcmp(optarg, "float32") ? PP_F32 : PP_F64;
        break;
      default: return scn_usage_error(s, "unknown option '%s' (see --help)", argv[optind - 1]);
    }
    if (!ok) return scn_usage_error(s, "bad value '%s' for %s", optarg, argv[optind - 1]);
  }
  if (optind < argc) return scn_usage_error(s, "unexpected argument '%s'", argv[optind]);
  if (stages != s->size)
    return scn_usage_error(s, "--stages %d does not match the world size %d (one stage per rank)",
                           stages, s->size);
  c->layers = layers ? layers : FG__MAX(4, stages);
  c->ffn = ffn ? ffn : 4 * c->dim;
  c->seed = (uint64_t)seed;
  if (c->layers < stages)
    return scn_usage_error(s, "--layers %d is fewer than the %d stages", c->layers, stages);
  if (c->dim % c->heads)
    return scn_usage_error(s, "--dim %d is not a multiple of --heads %d", c->dim, c->heads);
  if (c->block_size > c->seq_len)
    return scn_usage_error(s, "--block-size %d is longer than --seq-len %d", c->block_size,
                           c->seq_len);
  return 0;
}

static int run_pipeline(scn *s, int argc, char **argv) {
  pp_config c = {.microbatches = 4, .mb_seqs = 2, .dim = 32, .heads = 2, .seq_len = 64,
                 .vocab = 64, .block_size = 8, .dtype = PP_F64};
  enum schedule schedule = GPIPE;
  int rc = parse_options(s, argc, argv, &c, &schedule);
  return rc ? rc : run_stage(s, &c, schedule);
}

const scenario scn_pipeline = {
    .name = FG_SCENARIO_PIPELINE,
    .summary = "a causal LM split into pipeline stages: one GPipe/1F1B step vs a reference",
    .usage = "options:\n"
             "  --stages N             pipeline stages, one per rank (default: the world size)\n"
             "  --microbatches M       microbatches in the step (default 4)\n"
             "  --microbatch-size N    sequences per microbatch (default 2)\n"
             "  --schedule gpipe|1f1b  all forwards then all backwards, or one forward one\n"
             "                         backward after a warm-up (default gpipe)\n"
             "  --layers L             transformer blocks (default max(4, stages))\n"
             "  --dim D --heads H      model width and attention heads (default 32, 2)\n"
             "  --ffn F                MLP width (default 4 * dim)\n"
             "  --seq-len T            tokens per sequence (default 64)\n"
             "  --vocab V              vocabulary; token 0 ends a document (default 64)\n"
             "  --block-size B         block-mask block size (default 8)\n"
             "  --dtype float64|float32  (default float64)\n"
             "  --seed N               weights and data (default 1234)\n"
             "\n"
             "Every stage checks that the block mask carried from stage 0 equals its own, and\n"
             "that its parameter gradients (and the last stage's loss) match a single-process\n"
             "run of the whole model on the whole batch: max |g - ref| / max |ref| per tensor\n"
             "under 1e-5 (float64) or 1e-4 (float32). On nccl the stages compute with CUDA\n"
             "kernels and activations move device to device.\n"
             "\n"
             "Faults: corrupt-grad (the middle stage perturbs one gradient), corrupt-mask (the\n"
             "last stage alters the mask it received), drop-microbatch (the last stage skips\n"
             "the last microbatch's backward), wrong-schedule-order (the last stage sends\n"
             "microbatch 0's gradient for microbatch 1; needs 2 stages and 2 microbatches).\n",
    .faults = faults,
    .run = run_pipeline,
};
