/* proto.c - opcode tables and the incremental request decoder. */
#include "store/proto.h"

#include <string.h>

#include "fg/fg.h"

/* Wire bytes per op, -1 where the dialect lacks the op. */
static const int legacy_codes[FG_OP_COUNT] = {
    [FG_OP_VALIDATE] = -1,  [FG_OP_SET] = 0,          [FG_OP_COMPARE_SET] = 1,
    [FG_OP_GET] = 2,        [FG_OP_ADD] = 3,          [FG_OP_CHECK] = 4,
    [FG_OP_WAIT] = 5,       [FG_OP_GETNUMKEYS] = 6,   [FG_OP_WATCH_KEY] = 7,
    [FG_OP_DELETE_KEY] = 8, [FG_OP_APPEND] = -1,      [FG_OP_MULTI_GET] = -1,
    [FG_OP_MULTI_SET] = -1, [FG_OP_CANCEL_WAIT] = -1, [FG_OP_PING] = -1,
    [FG_OP_QUEUE_PUSH] = -1, [FG_OP_QUEUE_POP] = -1,  [FG_OP_QUEUE_LEN] = -1,
    [FG_OP_LIST_KEYS] = -1, [FG_OP_BARRIER] = -1,
};

static const int v2_codes[FG_OP_COUNT] = {
    [FG_OP_VALIDATE] = 0,    [FG_OP_SET] = 1,          [FG_OP_COMPARE_SET] = 2,
    [FG_OP_GET] = 3,         [FG_OP_ADD] = 4,          [FG_OP_CHECK] = 5,
    [FG_OP_WAIT] = 6,        [FG_OP_GETNUMKEYS] = 7,   [FG_OP_WATCH_KEY] = -1,
    [FG_OP_DELETE_KEY] = 8,  [FG_OP_APPEND] = 9,       [FG_OP_MULTI_GET] = 10,
    [FG_OP_MULTI_SET] = 11,  [FG_OP_CANCEL_WAIT] = 12, [FG_OP_PING] = 13,
    [FG_OP_QUEUE_PUSH] = 14, [FG_OP_QUEUE_POP] = 15,   [FG_OP_QUEUE_LEN] = 16,
    [FG_OP_LIST_KEYS] = 17,  [FG_OP_BARRIER] = 18,
};

static const char *const op_names[FG_OP_COUNT] = {
    "VALIDATE",   "SET",        "COMPARE_SET", "GET",         "ADD",
    "CHECK",      "WAIT",       "GETNUMKEYS",  "WATCH_KEY",   "DELETE_KEY",
    "APPEND",     "MULTI_GET",  "MULTI_SET",   "CANCEL_WAIT", "PING",
    "QUEUE_PUSH", "QUEUE_POP",  "QUEUE_LEN",   "LIST_KEYS",   "BARRIER",
};

static const int *codes_of(enum fg_dialect d) {
  return d == FG_DIALECT_V2 ? v2_codes : d == FG_DIALECT_LEGACY ? legacy_codes : NULL;
}

int fg__proto_opcode(enum fg_dialect d, enum fg_op op) {
  const int *codes = codes_of(d);
  if (!codes || (unsigned)op >= FG_OP_COUNT) return -1;
  return codes[op];
}

int fg__proto_op(enum fg_dialect d, uint8_t byte) {
  const int *codes = codes_of(d);
  if (!codes) return -1;
  for (int op = 0; op < FG_OP_COUNT; op++)
    if (codes[op] == byte) return op;
  return -1;
}

const char *fg__proto_op_name(enum fg_op op) {
  return (unsigned)op < FG_OP_COUNT ? op_names[op] : "?";
}

enum fg_dialect fg__proto_sniff(const uint8_t *p, size_t len) {
  static const uint8_t hello[5] = {0x00, 0xce, 0xf7, 0x85, 0x3c};
  size_t n = len < 5 ? len : 5;
  if (n == 0) return FG_DIALECT_UNKNOWN; /* p may be NULL, which memcmp must not see */
  if (memcmp(p, hello, n) != 0) return FG_DIALECT_LEGACY;
  return len >= 5 ? FG_DIALECT_V2 : FG_DIALECT_UNKNOWN;
}

void fg__proto_limits_default(fg_proto_limits *l) {
  l->max_key = 8 << 10;
  l->max_value = 8 << 20;
  l->max_keys = 131072;
}

/* A bounds-checked cursor over the received bytes. `need` grows to the number of
 * bytes the request needs at least, so the caller does not retry before they arrive. */
typedef struct reader {
  const uint8_t *p;
  size_t len;
  size_t pos;
  size_t need;
  const fg_proto_limits *lim;
  const char *why;
  int err;
} reader;

static int want(reader *r, uint64_t n) {
  if (n <= r->len - r->pos) return 1;
  /* Saturate: with limits near 2^64, pos + n would wrap to a hint below what has arrived. */
  r->need = n > SIZE_MAX - r->pos ? SIZE_MAX : r->pos + (size_t)n;
  return 0;
}

static int get_u8(reader *r, uint8_t *v) {
  if (!want(r, 1)) return 0;
  *v = r->p[r->pos++];
  return 1;
}

static int get_u32(reader *r, uint32_t *v) {
  if (!want(r, 4)) return 0;
  *v = fg_load_u32(r->p + r->pos);
  r->pos += 4;
  return 1;
}

static int get_u64(reader *r, uint64_t *v) {
  if (!want(r, 8)) return 0;
  *v = fg_load_u64(r->p + r->pos);
  r->pos += 8;
  return 1;
}

static int reject(reader *r, int err, const char *why) {
  r->err = err;
  r->why = why;
  return 0;
}

/* A length-prefixed field no longer than max. */
static int get_field(reader *r, uint64_t max, const char *too_long, fg_slice *out) {
  uint64_t n;
  if (!get_u64(r, &n)) return 0;
  if (n > max) return reject(r, FG_ELIMIT, too_long);
  if (!want(r, n)) return 0;
  out->p = r->p + r->pos;
  out->len = n;
  r->pos += (size_t)n;
  return 1;
}

static int get_key(reader *r, fg_slice *k) {
  return get_field(r, r->lim->max_key, "key longer than the limit", k);
}

static int get_value(reader *r, fg_slice *v) {
  return get_field(r, r->lim->max_value, "value longer than the limit", v);
}

/* n x key (or n x (key, value)); remembers the raw region for fg__proto_next. */
static int get_list(reader *r, fg_request *req, int with_values) {
  if (!get_u64(r, &req->nkeys)) return 0;
  if (req->nkeys > r->lim->max_keys) return reject(r, FG_ELIMIT, "too many keys in one request");
  size_t start = r->pos;
  for (uint64_t i = 0; i < req->nkeys; i++) {
    fg_slice k, v;
    if (!get_key(r, &k) || (with_values && !get_value(r, &v))) {
      /* Every remaining item needs at least its length field(s). */
      uint64_t rest = (req->nkeys - i - 1) * (with_values ? 16u : 8u);
      if (!r->err && r->need + rest > r->need) r->need += (size_t)rest;
      return 0;
    }
  }
  req->list.p = r->p + start;
  req->list.len = r->pos - start;
  return 1;
}

static int decode_body(reader *r, fg_request *req) {
  switch (req->op) {
    case FG_OP_VALIDATE:
    case FG_OP_PING:
      return get_u32(r, &req->u32);
    case FG_OP_SET:
    case FG_OP_APPEND:
    case FG_OP_QUEUE_PUSH:
      return get_key(r, &req->key) && get_value(r, &req->value);
    case FG_OP_COMPARE_SET:
      return get_key(r, &req->key) && get_value(r, &req->expected) && get_value(r, &req->value);
    case FG_OP_GET:
    case FG_OP_WATCH_KEY:
    case FG_OP_DELETE_KEY:
    case FG_OP_QUEUE_POP:
    case FG_OP_QUEUE_LEN:
      return get_key(r, &req->key);
    case FG_OP_ADD:
    case FG_OP_BARRIER: {
      uint64_t n;
      if (!get_key(r, &req->key) || !get_u64(r, &n)) return 0;
      req->number = (int64_t)n;
      return 1;
    }
    case FG_OP_CHECK:
    case FG_OP_WAIT:
    case FG_OP_MULTI_GET:
      return get_list(r, req, 0);
    case FG_OP_MULTI_SET:
      return get_list(r, req, 1);
    case FG_OP_GETNUMKEYS:
    case FG_OP_CANCEL_WAIT:
    case FG_OP_LIST_KEYS:
      return 1;
    case FG_OP_COUNT:
      break;
  }
  return reject(r, FG_EPROTO, "unknown opcode");
}

int fg__proto_decode(enum fg_dialect d, const uint8_t *p, size_t len, const fg_proto_limits *lim,
                    fg_request *req, size_t *used, const char **why) {
  reader r = {.p = p, .len = len, .lim = lim};
  memset(req, 0, sizeof *req);
  uint8_t byte;
  if (!get_u8(&r, &byte)) {
    *used = 1;
    return FG_PROTO_NEED_MORE;
  }
  int op = fg__proto_op(d, byte);
  if (op < 0) {
    *why = "unknown opcode";
    return FG_EPROTO;
  }
  req->op = (enum fg_op)op;
  if (decode_body(&r, req)) {
    *used = r.pos;
    return FG_PROTO_OK;
  }
  if (r.err) {
    *why = r.why;
    return r.err;
  }
  *used = r.need;
  return FG_PROTO_NEED_MORE;
}

int fg__proto_next(fg_slice *list, fg_slice *key, fg_slice *value) {
  /* The list was validated by the decoder, so lengths are known to fit. */
  if (list->len == 0) return 0;
  uint64_t n = fg_load_u64(list->p);
  key->p = list->p + 8;
  key->len = n;
  size_t step = 8 + (size_t)n;
  if (value) {
    uint64_t m = fg_load_u64(list->p + step);
    value->p = list->p + step + 8;
    value->len = m;
    step += 8 + (size_t)m;
  }
  list->p += step;
  list->len -= step;
  return 1;
}

void fg__proto_put_op(fg_buf *b, enum fg_dialect d, enum fg_op op) {
  fg__buf_put_u8(b, (uint8_t)fg__proto_opcode(d, op));
}

void fg__proto_put_validate(fg_buf *b) {
  fg__proto_put_op(b, FG_DIALECT_V2, FG_OP_VALIDATE);
  fg__buf_put_u32(b, FG_PROTO_MAGIC);
}

int fg__proto_decode_token(const uint8_t *p, size_t len, fg_slice *token, size_t *used) {
  const size_t head = 8; /* magic + length */
  size_t n = len < 4 ? len : 4;
  if (n && memcmp(p, FG_TOKEN_MAGIC, n) != 0) return FG_EPROTO;
  if (len < head) {
    *used = head;
    return FG_PROTO_NEED_MORE;
  }
  uint32_t size = fg_load_u32(p + 4);
  if (size == 0 || size > FG_TOKEN_MAX) return FG_EPROTO;
  if (len < head + size) {
    *used = head + size;
    return FG_PROTO_NEED_MORE;
  }
  token->p = p + head;
  token->len = size;
  *used = head + size;
  return FG_PROTO_OK;
}

void fg__proto_put_token(fg_buf *b, const void *token, size_t len) {
  fg__buf_put(b, FG_TOKEN_MAGIC, 4);
  fg__buf_put_u32(b, (uint32_t)len);
  fg__buf_put(b, token, len);
}
