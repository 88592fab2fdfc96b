/* proto.h - the TCPStore wire protocol: opcodes of both dialects, an
 * incremental request decoder, and request/reply encoders.
 *
 * The protocol has no framing: a message is the fields its opcode implies
 * (see ../shared/reference/tcpstore-wire.md). The decoder therefore works on
 * whatever bytes have arrived and says "complete", "need more" or "invalid";
 * it never blocks and never trusts a length it has not checked against the
 * limits, which is what keeps a half-sent or hostile request from stalling or
 * exhausting the server. */
#ifndef FG_STORE_PROTO_H
#define FG_STORE_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* 2.2+ clients open with VALIDATE carrying this magic: bytes 00 ce f7 85 3c. */
#define FG_PROTO_MAGIC 0x3C85F7CEu

enum fg_dialect {
  FG_DIALECT_UNKNOWN = 0,
  FG_DIALECT_V2,     /* torch >= 2.2 */
  FG_DIALECT_LEGACY, /* torch 1.9 - 2.0 (1.13) */
};

/* Operations, independent of their wire numbers. */
enum fg_op {
  FG_OP_VALIDATE,
  FG_OP_SET,
  FG_OP_COMPARE_SET,
  FG_OP_GET,
  FG_OP_ADD,
  FG_OP_CHECK,
  FG_OP_WAIT,
  FG_OP_GETNUMKEYS,
  FG_OP_WATCH_KEY, /* legacy only */
  FG_OP_DELETE_KEY,
  FG_OP_APPEND, /* v2 from here on */
  FG_OP_MULTI_GET,
  FG_OP_MULTI_SET,
  FG_OP_CANCEL_WAIT,
  FG_OP_PING,
  FG_OP_QUEUE_PUSH,
  FG_OP_QUEUE_POP,
  FG_OP_QUEUE_LEN,
  FG_OP_LIST_KEYS,
  FG_OP_BARRIER,
  FG_OP_COUNT
};

/* Reply codes. */
enum { FG_CHECK_READY = 0, FG_CHECK_NOT_READY = 1 };
enum { FG_WAIT_STOP = 0, FG_WAIT_CANCELED = 1 };
enum {
  FG_WATCH_UPDATED = 0,
  FG_WATCH_CREATED = 1,
  FG_WATCH_DELETED = 2,
  FG_WATCH_REGISTERED = 3
};

/* The wire byte for op in dialect, or -1 if the dialect lacks it. */
int fg__proto_opcode(enum fg_dialect d, enum fg_op op);
/* The op a wire byte means in dialect, or -1. */
int fg__proto_op(enum fg_dialect d, uint8_t byte);
const char *fg__proto_op_name(enum fg_op op);

/* Tells the dialect from a connection's first bytes: V2 if they are VALIDATE with the
 * magic, LEGACY if they cannot be, UNKNOWN if more bytes are needed. */
enum fg_dialect fg__proto_sniff(const uint8_t *p, size_t len);

typedef struct fg_slice {
  const uint8_t *p;
  uint64_t len;
} fg_slice;

typedef struct fg_proto_limits {
  uint64_t max_key;   /* bytes in one key (default 8 KiB) */
  uint64_t max_value; /* bytes in one value (default 8 MiB) */
  uint64_t max_keys;  /* keys in one CHECK/WAIT/MULTI_* request (default 131072) */
} fg_proto_limits;

void fg__proto_limits_default(fg_proto_limits *l);

/* One decoded request. Slices point into the caller's buffer. */
typedef struct fg_request {
  enum fg_op op;
  fg_slice key;      /* SET, COMPARE_SET, GET, ADD, WATCH_KEY, DELETE_KEY, APPEND, QUEUE_*, BARRIER */
  fg_slice value;    /* SET, APPEND, QUEUE_PUSH; COMPARE_SET's desired */
  fg_slice expected; /* COMPARE_SET */
  int64_t number;    /* ADD's delta, BARRIER's world size */
  uint32_t u32;      /* VALIDATE's magic, PING's nonce */
  uint64_t nkeys;    /* CHECK, WAIT, MULTI_GET, MULTI_SET */
  fg_slice list;     /* raw n x str (or n x (str, bytes) for MULTI_SET); walk with fg__proto_next */
} fg_request;

enum { FG_PROTO_NEED_MORE = 0, FG_PROTO_OK = 1 };

/* Decodes one request from p[0..len).
 *  FG_PROTO_OK:        *req is filled and *used is the request's size.
 *  FG_PROTO_NEED_MORE: the request is incomplete; *used is how many bytes in total are
 *                      needed before another attempt can make progress.
 *  < 0 (FG_EPROTO, FG_ELIMIT): invalid; *why says what, for the log. */
int fg__proto_decode(enum fg_dialect d, const uint8_t *p, size_t len, const fg_proto_limits *lim,
                    fg_request *req, size_t *used, const char **why);

/* Walks a decoded list: the next str (and, if value is not NULL, the bytes after it).
 * Returns 1 while items remain, 0 at the end. */
int fg__proto_next(fg_slice *list, fg_slice *key, fg_slice *value);

/* Request encoders (client side). They append to b. */
void fg__proto_put_op(fg_buf *b, enum fg_dialect d, enum fg_op op);
void fg__proto_put_validate(fg_buf *b);

/* The store token, fgstore's own addition (torch has nothing like it). A client that has
 * one sends, before anything else, the magic "FGTK", a u32 LE length (1 to FG_TOKEN_MAX)
 * and the token's bytes; the server answers the single byte FG_TOKEN_ACCEPTED, or
 * FG_TOKEN_REFUSED and closes the connection. No torch client can be mistaken for one:
 * their first byte is an opcode, 0 to 18, and 'F' is 0x46. */
#define FG_TOKEN_MAGIC "FGTK"
#define FG_TOKEN_MAX 1024
#define FG_TOKEN_ACCEPTED 0x4b
/* What a server that wants a token sends before closing a connection without one (or with
 * a wrong one), so that libfg's client can say so instead of falling back to 1.13's
 * dialect: it reads these bytes where it expects the PING echo or the token's answer. */
#define FG_TOKEN_REFUSED "FGTR"

/* Decodes a token message from p[0..len): FG_PROTO_OK with *token and *used; NEED_MORE with
 * *used = the bytes needed; FG_EPROTO if the bytes cannot be one. */
int fg__proto_decode_token(const uint8_t *p, size_t len, fg_slice *token, size_t *used);
void fg__proto_put_token(fg_buf *b, const void *token, size_t len);

#endif
