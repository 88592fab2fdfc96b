/* pipeline_model.c - the model's parameter layout, its weights, and the forward and
 * backward of one stage's part of it, written once over the kernel table so the
 * same code runs the reference on the host and a stage on a GPU.
 *
 * Backward passes are hand-written: for y = x W^T, dx = dy W and dW += dy^T x; for
 * attention P = softmax(mask, Q K^T / sqrt(d)), O = P V: dV = P^T dO, dP = dO V^T,
 * dS = P * (dP - rowsum(P * dP)), dQ = dS K / sqrt(d), dK = dS^T Q / sqrt(d). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scenarios/pipeline.h"

/* --- layout -------------------------------------------------------------------------------- */

static size_t layer_size(const pp_config *c) {
  size_t d = (size_t)c->dim, f = (size_t)c->ffn;
  return 4 * d * d + 2 * d * f;
}

size_t pp_layer_offset(const pp_config *c, int l) {
  return (size_t)(c->vocab + c->seq_len) * (size_t)c->dim + (size_t)l * layer_size(c);
}

size_t pp_param_count(const pp_config *c) {
  return pp_layer_offset(c, c->layers) + (size_t)c->vocab * (size_t)c->dim;
}

static void add_tensor(pp_tensor *out, int *n, const char *name, size_t offset, size_t count) {
  snprintf(out[*n].name, sizeof out[*n].name, "%s", name);
  out[*n].offset = offset;
  out[*n].count = count;
  (*n)++;
}

int pp_tensors(const pp_config *c, pp_tensor *out) {
  size_t d = (size_t)c->dim, f = (size_t)c->ffn;
  static const char *const names[PP_LAYER_TENSORS] = {"wq", "wk", "wv", "wo", "w1", "w2"};
  size_t sizes[PP_LAYER_TENSORS] = {d * d, d * d, d * d, d * d, f * d, d * f};
  int n = 0;
  add_tensor(out, &n, "wte", 0, (size_t)c->vocab * d);
  add_tensor(out, &n, "wpe", (size_t)c->vocab * d, (size_t)c->seq_len * d);
  for (int l = 0; l < c->layers; l++) {
    size_t at = pp_layer_offset(c, l);
    for (int t = 0; t < PP_LAYER_TENSORS; t++) {
      char name[24];
      snprintf(name, sizeof name, "layer%d.%s", l, names[t]);
      add_tensor(out, &n, name, at, sizes[t]);
      at += sizes[t];
    }
  }
  add_tensor(out, &n, "wout", pp_layer_offset(c, c->layers), (size_t)c->vocab * d);
  return n;
}

/* Uniform weights scaled by 1/sqrt(fan-in), embeddings at 0.5: activations stay near
 * unit size through a few residual blocks without norms. */
int pp_init_params(const pp_config *c, void *out) {
  pp_tensor *t = malloc((3 + PP_LAYER_TENSORS * (size_t)c->layers) * sizeof *t);
  if (!t) return -ENOMEM;
  int n = pp_tensors(c, t);
  uint64_t rng = c->seed;
  for (int i = 0; i < n; i++) {
    int embedding = i < 2;
    double fan_in = strstr(t[i].name, ".w2") ? c->ffn : c->dim;
    double scale = embedding ? 0.5 : 1.0 / sqrt(fan_in);
    for (size_t j = 0; j < t[i].count; j++) {
      double v = scale * pp_rand_unit(&rng);
      if (c->dtype == PP_F64)
        ((double *)out)[t[i].offset + j] = v;
      else
        ((float *)out)[t[i].offset + j] = (float)v;
    }
  }
  free(t);
  return 0;
}

size_t pp_act_count(const pp_config *c, int nseq) {
  return (size_t)nseq * (size_t)c->seq_len * (size_t)c->dim;
}

/* --- the part ------------------------------------------------------------------------------- */

typedef struct layer_weights {
  const void *wq, *wk, *wv, *wo, *w1, *w2;
} layer_weights;

static size_t esize(const pp_part *p) { return pp_dtype_size(p->cfg->dtype); }

/* An element offset of the whole model's vector inside the part's buffer. */
static void *at(const pp_part *p, void *base, size_t offset) {
  return (char *)base + (offset - p->param_begin) * esize(p);
}

static layer_weights weights_of(const pp_part *p, void *base, int layer) {
  size_t d = (size_t)p->cfg->dim, f = (size_t)p->cfg->ffn;
  size_t o = pp_layer_offset(p->cfg, p->first_layer + layer);
  return (layer_weights){at(p, base, o), at(p, base, o + d * d), at(p, base, o + 2 * d * d),
                         at(p, base, o + 3 * d * d), at(p, base, o + 4 * d * d),
                         at(p, base, o + 4 * d * d + f * d)};
}

static void *alloc_elems(pp_part *p, size_t count, int *failed) {
  void *m = p->k->alloc(count * esize(p));
  if (!m) *failed = 1;
  return m;
}

static void slot_init(pp_part *p, pp_slot *s, int *failed) {
  const pp_config *c = p->cfg;
  size_t rows = (size_t)p->max_seqs * (size_t)c->seq_len, d = (size_t)c->dim;
  size_t f = (size_t)c->ffn;
  size_t scores = (size_t)p->max_seqs * (size_t)c->heads * (size_t)c->seq_len * (size_t)c->seq_len;
  s->x = calloc((size_t)p->nlayers + 1, sizeof *s->x);
  s->layer = calloc((size_t)p->nlayers ? (size_t)p->nlayers : 1, sizeof *s->layer);
  if (!s->x || !s->layer) {
    *failed = 1;
    return;
  }
  for (int l = 0; l <= p->nlayers; l++) s->x[l] = alloc_elems(p, rows * d, failed);
  for (int l = 0; l < p->nlayers; l++) {
    pp_layer_acts *a = &s->layer[l];
    a->q = alloc_elems(p, rows * d, failed);
    a->k = alloc_elems(p, rows * d, failed);
    a->v = alloc_elems(p, rows * d, failed);
    a->p = alloc_elems(p, scores, failed);
    a->att = alloc_elems(p, rows * d, failed);
    a->xmid = alloc_elems(p, rows * d, failed);
    a->hpre = alloc_elems(p, rows * f, failed);
    a->h = alloc_elems(p, rows * f, failed);
  }
  if (p->has_head) s->dlogits = alloc_elems(p, rows * (size_t)c->vocab, failed);
  s->dinput = alloc_elems(p, rows * d, failed);
}

int pp_part_init(pp_part *p, const pp_config *c, const pp_kernels *k, int first_layer,
                 int nlayers, int has_embed, int has_head, int nslots, int max_seqs) {
  *p = (pp_part){.cfg = c, .k = k, .first_layer = first_layer, .nlayers = nlayers,
                 .has_embed = has_embed, .has_head = has_head, .max_seqs = max_seqs,
                 .nslots = nslots};
  p->param_begin = has_embed ? 0 : pp_layer_offset(c, first_layer);
  size_t end = has_head ? pp_param_count(c) : pp_layer_offset(c, first_layer + nlayers);
  p->nparams = end - p->param_begin;
  size_t rows = (size_t)max_seqs * (size_t)c->seq_len, d = (size_t)c->dim;
  size_t scores = (size_t)max_seqs * (size_t)c->heads * (size_t)c->seq_len * (size_t)c->seq_len;
  int failed = 0;
  p->params = alloc_elems(p, p->nparams, &failed);
  p->grads = alloc_elems(p, p->nparams, &failed);
  p->dx = alloc_elems(p, rows * d, &failed);
  p->dxmid = alloc_elems(p, rows * d, &failed);
  p->datt = alloc_elems(p, rows * d, &failed);
  p->dq = alloc_elems(p, rows * d, &failed);
  p->dk = alloc_elems(p, rows * d, &failed);
  p->dv = alloc_elems(p, rows * d, &failed);
  p->dp = alloc_elems(p, scores, &failed);
  p->dh = alloc_elems(p, rows * (size_t)c->ffn, &failed);
  if (has_head) {
    p->logits = alloc_elems(p, rows * (size_t)c->vocab, &failed);
    p->loss_rows = alloc_elems(p, rows, &failed);
  }
  p->slots = calloc((size_t)nslots, sizeof *p->slots);
  if (!p->slots) failed = 1;
  for (int i = 0; !failed && i < nslots; i++) slot_init(p, &p->slots[i], &failed);
  if (failed) {
    snprintf(p->err, sizeof p->err, "out of %s memory", k->name);
    pp_part_free(p);
    return -ENOMEM;
  }
  return 0;
}

static void slot_free(pp_part *p, pp_slot *s) {
  const pp_kernels *k = p->k;
  for (int l = 0; s->x && l <= p->nlayers; l++) k->release(s->x[l]);
  for (int l = 0; s->layer && l < p->nlayers; l++) {
    pp_layer_acts *a = &s->layer[l];
    void *all[] = {a->q, a->k, a->v, a->p, a->att, a->xmid, a->hpre, a->h};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) k->release(all[i]);
  }
  k->release(s->dlogits);
  k->release(s->dinput);
  free(s->x);
  free(s->layer);
}

void pp_part_free(pp_part *p) {
  if (!p->k) return;
  for (int i = 0; p->slots && i < p->nslots; i++) slot_free(p, &p->slots[i]);
  free(p->slots);
  void *all[] = {p->params, p->grads, p->dx, p->dxmid, p->datt, p->dq,
                 p->dk,     p->dv,    p->dp, p->dh,    p->logits, p->loss_rows};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) p->k->release(all[i]);
  p->slots = NULL;
  p->k = NULL;
}

void pp_part_load(pp_part *p, const void *all_params) {
  p->k->upload(p->params, (const char *)all_params + p->param_begin * esize(p),
               p->nparams * esize(p));
  p->k->zero(p->grads, p->nparams * esize(p));
}

void *pp_slot_input(pp_part *p, int slot) { return p->slots[slot].x[0]; }
void *pp_slot_output(pp_part *p, int slot) { return p->slots[slot].x[p->nlayers]; }
void *pp_slot_dinput(pp_part *p, int slot) { return p->slots[slot].dinput; }

/* --- matrix helpers ------------------------------------------------------------------------- */

static void gemm(const pp_part *p, int ta, int tb, int m, int n, int k, double alpha,
                 const void *a, int lda, const void *b, int ldb, double beta, void *c, int ldc) {
  pp_gemm g = {.trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k, .alpha = alpha,
               .beta = beta, .a = a, .b = b, .c = c, .lda = lda, .ldb = ldb, .ldc = ldc,
               .batch = {1, 1}};
  p->k->gemm(p->cfg->dtype, &g);
}

/* y[rows][out] = x[rows][in] W^T, plus beta * y. */
static void linear(const pp_part *p, int rows, int out, int in, const void *x, const void *w,
                   double beta, void *y) {
  gemm(p, 0, 1, rows, out, in, 1, x, in, w, in, beta, y, out);
}

/* dx[rows][in] = dy W, plus beta * dx. */
static void linear_dx(const pp_part *p, int rows, int out, int in, const void *dy, const void *w,
                      double beta, void *dx) {
  gemm(p, 0, 0, rows, in, out, 1, dy, out, w, in, beta, dx, in);
}

/* dW[out][in] += dy^T x. */
static void linear_dw(const pp_part *p, int rows, int out, int in, const void *dy, const void *x,
                      void *dw) {
  gemm(p, 1, 0, out, in, rows, 1, dy, out, x, in, 1, dw, in);
}

/* One product per (sequence, head): a head's columns of a [rows][dim] activation are a
 * t x head_dim matrix with leading dimension dim; scores are [seq][head][t][t]. */
typedef struct head_view {
  const void *ptr;
  int ld;
  size_t stride[2];
} head_view;

static head_view act_view(const pp_part *p, const void *ptr) {
  const pp_config *c = p->cfg;
  size_t seq = (size_t)c->seq_len * (size_t)c->dim, head = (size_t)(c->dim / c->heads);
  return (head_view){ptr, c->dim, {seq, head}};
}

static head_view score_view(const pp_part *p, const void *ptr) {
  size_t t = (size_t)p->cfg->seq_len;
  return (head_view){ptr, (int)t, {(size_t)p->cfg->heads * t * t, t * t}};
}

static void head_gemm(const pp_part *p, int nseq, int ta, int tb, int m, int n, int k,
                      double alpha, head_view a, head_view b, head_view c) {
  pp_gemm g = {.trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k, .alpha = alpha,
               .beta = 0, .a = a.ptr, .b = b.ptr, .c = (void *)c.ptr, .lda = a.ld,
               .ldb = b.ld, .ldc = c.ld, .batch = {nseq, p->cfg->heads},
               .stride_a = {a.stride[0], a.stride[1]}, .stride_b = {b.stride[0], b.stride[1]},
               .stride_c = {c.stride[0], c.stride[1]}};
  p->k->gemm(p->cfg->dtype, &g);
}

/* --- forward -------------------------------------------------------------------------------- */

static void attention_forward(const pp_part *p, int nseq, const uint8_t *mask, pp_layer_acts *a) {
  const pp_config *c = p->cfg;
  int t = c->seq_len, hd = c->dim / c->heads;
  head_gemm(p, nseq, 0, 1, t, t, hd, 1 / sqrt(hd), act_view(p, a->q), act_view(p, a->k),
            score_view(p, a->p));
  p->k->softmax(c->dtype, nseq, c->heads, t, mask, a->p);
  head_gemm(p, nseq, 0, 0, t, hd, t, 1, score_view(p, a->p), act_view(p, a->v),
            act_view(p, a->att));
}

static void layer_forward(const pp_part *p, int l, const pp_io *io, pp_slot *s) {
  const pp_config *c = p->cfg;
  int rows = io->nseq * c->seq_len, d = c->dim, f = c->ffn;
  size_t n = (size_t)rows * (size_t)d;
  layer_weights w = weights_of(p, p->params, l);
  pp_layer_acts *a = &s->layer[l];
  const void *x = s->x[l];
  linear(p, rows, d, d, x, w.wq, 0, a->q);
  linear(p, rows, d, d, x, w.wk, 0, a->k);
  linear(p, rows, d, d, x, w.wv, 0, a->v);
  attention_forward(p, io->nseq, io->mask, a);
  p->k->copy(a->xmid, x, n * esize(p));
  linear(p, rows, d, d, a->att, w.wo, 1, a->xmid);
  linear(p, rows, f, d, a->xmid, w.w1, 0, a->hpre);
  p->k->gelu(c->dtype, (size_t)rows * (size_t)f, a->hpre, a->h);
  p->k->copy(s->x[l + 1], a->xmid, n * esize(p));
  linear(p, rows, d, f, a->h, w.w2, 1, s->x[l + 1]);
}

/* Logits, the loss and its gradient in one go: the gradient is kept for the backward. */
static int head_forward(pp_part *p, const pp_io *io, pp_slot *s, double *loss) {
  const pp_config *c = p->cfg;
  int rows = io->nseq * c->seq_len;
  const void *wout = at(p, p->params, pp_layer_offset(c, c->layers));
  linear(p, rows, c->vocab, c->dim, s->x[p->nlayers], wout, 0, p->logits);
  p->k->xent(c->dtype, rows, c->vocab, p->logits, io->targets, io->loss_scale, p->loss_rows,
             s->dlogits);
  size_t bytes = (size_t)rows * esize(p);
  void *host = malloc(bytes);
  if (!host) return snprintf(p->err, sizeof p->err, "out of memory"), -ENOMEM;
  p->k->download(host, p->loss_rows, bytes);
  double sum = 0;
  for (int r = 0; r < rows; r++)
    sum += c->dtype == PP_F64 ? ((double *)host)[r] : ((float *)host)[r];
  free(host);
  *loss = sum;
  return 0;
}

static int synced(pp_part *p) { return p->k->sync(p->err, sizeof p->err); }

int pp_forward(pp_part *p, int slot, const pp_io *io, double *loss) {
  const pp_config *c = p->cfg;
  pp_slot *s = &p->slots[slot];
  s->nseq = io->nseq;
  s->ids = io->ids;
  if (p->has_embed)
    p->k->embed(c->dtype, io->nseq * c->seq_len, c->seq_len, c->dim, io->ids, p->params,
                at(p, p->params, (size_t)c->vocab * (size_t)c->dim), s->x[0]);
  for (int l = 0; l < p->nlayers; l++) layer_forward(p, l, io, s);
  int rc = p->has_head ? head_forward(p, io, s, loss) : 0;
  return rc ? rc : synced(p);
}

/* --- backward ------------------------------------------------------------------------------- */

/* From datt (the gradient of the heads' output) to dq, dk, dv. */
static void attention_backward(const pp_part *p, int nseq, const pp_layer_acts *a) {
  const pp_config *c = p->cfg;
  int t = c->seq_len, hd = c->dim / c->heads;
  double scale = 1 / sqrt(hd);
  head_gemm(p, nseq, 0, 1, t, t, hd, 1, act_view(p, p->datt), act_view(p, a->v),
            score_view(p, p->dp));
  head_gemm(p, nseq, 1, 0, t, hd, t, 1, score_view(p, a->p), act_view(p, p->datt),
            act_view(p, p->dv));
  p->k->softmax_bwd(c->dtype, (size_t)nseq * (size_t)c->heads * (size_t)t, t, a->p, p->dp);
  head_gemm(p, nseq, 0, 0, t, hd, t, scale, score_view(p, p->dp), act_view(p, a->k),
            act_view(p, p->dq));
  head_gemm(p, nseq, 1, 0, t, hd, t, scale, score_view(p, p->dp), act_view(p, a->q),
            act_view(p, p->dk));
}

/* p->dx holds the gradient of the layer's output on entry and of its input on return. */
static void layer_backward(pp_part *p, int l, const pp_slot *s) {
  const pp_config *c = p->cfg;
  int rows = s->nseq * c->seq_len, d = c->dim, f = c->ffn;
  size_t n = (size_t)rows * (size_t)d;
  layer_weights w = weights_of(p, p->params, l);
  layer_weights g = weights_of(p, p->grads, l);
  const pp_layer_acts *a = &s->layer[l];
  const void *x = s->x[l];
  /* MLP: x_out = xmid + gelu(xmid W1^T) W2^T */
  linear_dw(p, rows, d, f, p->dx, a->h, (void *)g.w2);
  linear_dx(p, rows, d, f, p->dx, w.w2, 0, p->dh);
  p->k->gelu_bwd(c->dtype, (size_t)rows * (size_t)f, a->hpre, p->dh, p->dh);
  linear_dw(p, rows, f, d, p->dh, a->xmid, (void *)g.w1);
  p->k->copy(p->dxmid, p->dx, n * esize(p));
  linear_dx(p, rows, f, d, p->dh, w.w1, 1, p->dxmid);
  /* attention: xmid = x + attention(x W{q,k,v}^T) Wo^T */
  linear_dw(p, rows, d, d, p->dxmid, a->att, (void *)g.wo);
  linear_dx(p, rows, d, d, p->dxmid, w.wo, 0, p->datt);
  attention_backward(p, s->nseq, a);
  linear_dw(p, rows, d, d, p->dq, x, (void *)g.wq);
  linear_dw(p, rows, d, d, p->dk, x, (void *)g.wk);
  linear_dw(p, rows, d, d, p->dv, x, (void *)g.wv);
  p->k->copy(p->dx, p->dxmid, n * esize(p));
  linear_dx(p, rows, d, d, p->dq, w.wq, 1, p->dx);
  linear_dx(p, rows, d, d, p->dk, w.wk, 1, p->dx);
  linear_dx(p, rows, d, d, p->dv, w.wv, 1, p->dx);
}

static void head_backward(pp_part *p, const pp_slot *s) {
  const pp_config *c = p->cfg;
  int rows = s->nseq * c->seq_len;
  size_t o = pp_layer_offset(c, c->layers);
  linear_dw(p, rows, c->vocab, c->dim, s->dlogits, s->x[p->nlayers], at(p, p->grads, o));
  linear_dx(p, rows, c->vocab, c->dim, s->dlogits, at(p, p->params, o), 0, p->dx);
}

int pp_backward(pp_part *p, int slot, const void *dout) {
  const pp_config *c = p->cfg;
  pp_slot *s = &p->slots[slot];
  size_t n = pp_act_count(c, s->nseq);
  if (p->has_head)
    head_backward(p, s);
  else
    p->k->copy(p->dx, dout, n * esize(p));
  for (int l = p->nlayers - 1; l >= 0; l--) layer_backward(p, l, s);
  if (p->has_embed)
    p->k->embed_bwd(c->dtype, s->nseq * c->seq_len, c->seq_len, c->dim, c->vocab, s->ids, p->dx,
                    p->grads, at(p, p->grads, (size_t)c->vocab * (size_t)c->dim));
  else
    p->k->copy(s->dinput, p->dx, n * esize(p));
  return synced(p);
}

/* --- the reference ------------------------------------------------------------------------ */

int pp_reference(const pp_config *c, const void *params, const pp_batch *b, const uint8_t *mask,
                 double *loss, void *grads, char *err, size_t errlen) {
  pp_part whole;
  int rc = pp_part_init(&whole, c, pp_cpu_kernels(), 0, c->layers, 1, 1, 1, b->nseq);
  if (rc) return snprintf(err, errlen, "%s", whole.err), rc;
  pp_part_load(&whole, params);
  pp_io io = {.nseq = b->nseq, .ids = b->ids, .targets = b->targets, .mask = mask,
              .loss_scale = 1.0 / b->labelled};
  rc = pp_forward(&whole, 0, &io, loss);
  if (rc == 0) rc = pp_backward(&whole, 0, NULL);
  if (rc)
    snprintf(err, errlen, "%s", whole.err);
  else
    memcpy(grads, whole.grads, whole.nparams * pp_dtype_size(c->dtype));
  pp_part_free(&whole);
  return rc;
}
