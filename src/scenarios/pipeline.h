/* pipeline.h - what the pipeline-split scenario's files share: the model's shape
 * and parameter layout, the batch, the block mask, the kernel table the math runs
 * on (CPU or CUDA), and one stage's part of the model.
 *
 * The model is a small causal language model: token + position embedding, L blocks
 * of masked multi-head self-attention and a GELU MLP (no norms, residuals around
 * both), an output head and a mean cross-entropy loss. Linear weights are
 * [out][in] and apply as y = x W^T. Every parameter of the whole model lives in one
 * vector (wte, wpe, the layers in order, wout), so a stage's parameters are one
 * contiguous slice of it and compare directly with a single-process reference. */
#ifndef FG_SCENARIOS_PIPELINE_H
#define FG_SCENARIOS_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pp_dtype { PP_F64, PP_F32 } pp_dtype;

static inline size_t pp_dtype_size(pp_dtype dt) { return dt == PP_F64 ? 8 : 4; }

/* splitmix64: our own generator, so weights and data are the same everywhere. */
static inline uint64_t pp_rand(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static inline double pp_rand_unit(uint64_t *state) {
  return (double)(pp_rand(state) >> 11) * 0x1.0p-52 - 1.0;
}

typedef struct pp_config {
  int layers;
  int dim;
  int heads;
  int ffn;        /* MLP hidden width */
  int seq_len;
  int vocab;      /* token 0 ends a document */
  int block_size; /* of the block mask */
  int microbatches;
  int mb_seqs;    /* sequences per microbatch */
  pp_dtype dtype;
  uint64_t seed;
} pp_config;

/* --- parameters ------------------------------------------------------------------------- */

enum { PP_LAYER_TENSORS = 6 }; /* wq wk wv wo w1 w2 */

typedef struct pp_tensor {
  char name[24];
  size_t offset; /* in elements, within the whole model's vector */
  size_t count;
} pp_tensor;

size_t pp_param_count(const pp_config *c);
/* Where layer l's parameters start; l == layers gives wout's offset. */
size_t pp_layer_offset(const pp_config *c, int l);
/* Every tensor in vector order; out holds 3 + 6 * layers entries. Returns the count. */
int pp_tensors(const pp_config *c, pp_tensor *out);
/* The whole model's parameters from the seed, in dtype (host memory). */
int pp_init_params(const pp_config *c, void *out);

/* --- the batch ---------------------------------------------------------------------------- */

typedef struct pp_batch {
  int nseq, seq_len;
  int32_t *ids;     /* nseq * seq_len tokens, several documents packed per sequence */
  int32_t *targets; /* the next token; -1 (no loss) at the end of each sequence */
  int labelled;     /* targets that count */
} pp_batch;

int pp_batch_make(const pp_config *c, pp_batch *b);
void pp_batch_free(pp_batch *b);

/* --- the block mask (flex-attention's BlockMask) ----------------------------------------- */

/* Everything lives in words, which is also the serialised form; the pointers index it. */
typedef struct pp_block_mask {
  int32_t *words;
  size_t nwords;
  int nseq, q_len, kv_len, block_size, q_blocks, kv_blocks;
  int32_t *kv_num_blocks;      /* [nseq][q_blocks]: key blocks partly masked */
  int32_t *kv_indices;         /* [nseq][q_blocks][kv_blocks]; -1 past the count */
  int32_t *full_kv_num_blocks; /* [nseq][q_blocks]: key blocks fully visible */
  int32_t *full_kv_indices;
  int32_t *doc_ids;            /* [nseq][kv_len]: what mask_mod reads in partial blocks */
} pp_block_mask;

/* Document of every token: the number of end-of-document tokens before it. */
void pp_doc_ids(const int32_t *ids, int len, int32_t *docs);
/* The mask function: causal, and no attention across documents. */
static inline int pp_mask_mod(const int32_t *docs, int q, int k) {
  return k <= q && docs[k] == docs[q];
}
int pp_block_mask_build(pp_block_mask *m, const int32_t *ids, int nseq, int seq_len,
                        int block_size);
/* Reads a serialised mask (words of another process), checking that it is well formed. */
int pp_block_mask_parse(pp_block_mask *m, const void *bytes, size_t len, char *err,
                        size_t errlen);
void pp_block_mask_free(pp_block_mask *m);
/* 1 if identical; otherwise 0 with the first difference described in why. */
int pp_block_mask_equal(const pp_block_mask *a, const pp_block_mask *b, char *why, size_t len);
/* Key blocks over all sequences and query blocks: partly masked, fully visible. */
void pp_block_mask_counts(const pp_block_mask *m, long *partial, long *full);
/* The element-level mask [nseq][q_len][kv_len] the block mask stands for: full blocks
 * visible, partial blocks through mask_mod, the rest hidden. */
void pp_block_mask_dense(const pp_block_mask *m, uint8_t *out);
/* The same mask straight from mask_mod, without blocks (what the reference uses). */
int pp_dense_mask(const int32_t *ids, int nseq, int seq_len, uint8_t *out);

/* --- kernels ------------------------------------------------------------------------------ */

/* C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b] for every batch index b = (b0, b1),
 * row-major, op(A) m x k, op(B) k x n. Strides and leading dimensions in elements. */
typedef struct pp_gemm {
  int trans_a, trans_b;
  int m, n, k;
  double alpha, beta;
  const void *a, *b;
  void *c;
  int lda, ldb, ldc;
  int batch[2];
  size_t stride_a[2], stride_b[2], stride_c[2];
} pp_gemm;

/* The math on one kind of memory. Pointers are that memory (host for cpu, device for
 * cuda) except where named host. Launch errors are sticky and reported by sync. */
typedef struct pp_kernels {
  const char *name;
  void *(*alloc)(size_t bytes); /* zeroed; NULL when out of memory */
  void (*release)(void *p);
  void (*upload)(void *dst, const void *host, size_t bytes);
  void (*download)(void *host, const void *src, size_t bytes);
  void (*zero)(void *p, size_t bytes);
  void (*copy)(void *dst, const void *src, size_t bytes);
  void (*gemm)(pp_dtype dt, const pp_gemm *g);
  void (*gelu)(pp_dtype dt, size_t n, const void *x, void *y);
  /* dx = dy * gelu'(x); dx may be dy */
  void (*gelu_bwd)(pp_dtype dt, size_t n, const void *x, const void *dy, void *dx);
  /* s [nseq][heads][t][t] in place: row softmax over the keys mask [nseq][t][t] allows;
   * hidden entries become exactly 0 */
  void (*softmax)(pp_dtype dt, int nseq, int heads, int t, const uint8_t *mask, void *s);
  /* dp (rows x cols) becomes ds = p * (dp - sum(p * dp)) */
  void (*softmax_bwd)(pp_dtype dt, size_t rows, int cols, const void *p, void *dp);
  /* x[r] = wte[ids[r]] + wpe[r % t] */
  void (*embed)(pp_dtype dt, int rows, int t, int dim, const int32_t *ids, const void *wte,
                const void *wpe, void *x);
  /* dwte += scatter of dx by ids, dwpe += dx summed over sequences */
  void (*embed_bwd)(pp_dtype dt, int rows, int t, int dim, int vocab, const int32_t *ids,
                    const void *dx, void *dwte, void *dwpe);
  /* Per row: loss[r] = scale * -log softmax(logits[r])[target], dlogits = its gradient;
   * target -1: loss 0, gradient 0. */
  void (*xent)(pp_dtype dt, int rows, int vocab, const void *logits, const int32_t *targets,
               double scale, void *loss, void *dlogits);
  /* Waits for the queued work; 0, or -EIO with the first error in err. */
  int (*sync)(char *err, size_t errlen);
} pp_kernels;

const pp_kernels *pp_cpu_kernels(void);
/* NULL, with the reason in err, when there is no device or no CUDA in this build. */
const pp_kernels *pp_cuda_kernels(char *err, size_t errlen);

/* --- one stage's part of the model ---------------------------------------------------- */

typedef struct pp_layer_acts {
  void *q, *k, *v, *p, *att, *xmid, *hpre, *h;
} pp_layer_acts;

/* What one microbatch's forward keeps for its backward. */
typedef struct pp_slot {
  void **x;             /* nlayers + 1 residual streams; x[0] is the part's input */
  pp_layer_acts *layer; /* nlayers */
  void *dlogits;        /* head only */
  void *dinput;         /* gradient of x[0], for the previous stage */
  const int32_t *ids;   /* embedding only: the microbatch's ids */
  int nseq;
} pp_slot;

typedef struct pp_part {
  const pp_config *cfg;
  const pp_kernels *k;
  int first_layer, nlayers;
  int has_embed, has_head;
  size_t param_begin, nparams; /* the slice of the whole model's vector */
  void *params, *grads;        /* kernel memory */
  int max_seqs;                /* sequences in the largest microbatch */
  int nslots;
  pp_slot *slots;
  /* backward scratch, shared by the slots */
  void *dx, *dxmid, *datt, *dq, *dk, *dv, *dp, *dh, *logits, *loss_rows;
  char err[256];
} pp_part;

/* One microbatch's inputs, in kernel memory. */
typedef struct pp_io {
  int nseq;
  const int32_t *ids;     /* first stage */
  const int32_t *targets; /* last stage */
  const uint8_t *mask;    /* [nseq][seq_len][seq_len] element mask */
  double loss_scale;      /* 1 / labelled tokens in the whole batch */
} pp_io;

int pp_part_init(pp_part *p, const pp_config *c, const pp_kernels *k, int first_layer,
                 int nlayers, int has_embed, int has_head, int nslots, int max_seqs);
void pp_part_free(pp_part *p);
/* Copies the part's slice of the whole model's parameters (host) in; zeroes the grads. */
void pp_part_load(pp_part *p, const void *all_params);
/* Forward of one microbatch into slot. Reads pp_slot_input unless the part embeds;
 * writes pp_slot_output unless it has the head, where *loss gets the microbatch's
 * share of the loss. */
int pp_forward(pp_part *p, int slot, const pp_io *io, double *loss);
/* Backward of the slot's microbatch: dout is the gradient of its output (ignored with
 * the head); parameter gradients accumulate; pp_slot_dinput gets the input's. */
int pp_backward(pp_part *p, int slot, const void *dout);
void *pp_slot_input(pp_part *p, int slot);
void *pp_slot_output(pp_part *p, int slot);
void *pp_slot_dinput(pp_part *p, int slot);
/* The whole model on the whole batch at once, on the host, in one process: what every
 * stage is checked against. params and grads hold the whole model's vector; mask is the
 * batch's element mask. */
int pp_reference(const pp_config *c, const void *params, const pp_batch *b, const uint8_t *mask,
                 double *loss, void *grads, char *err, size_t errlen);
/* Elements of one stage boundary's activation for nseq sequences. */
size_t pp_act_count(const pp_config *c, int nseq);

#ifdef __cplusplus
}
#endif
#endif
