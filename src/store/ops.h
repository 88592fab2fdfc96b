/* ops.h - what the store does with a request, apart from any socket.
 *
 * A session is the protocol side of one connection: its dialect, the replies
 * waiting to be written and the keys it waits on. The core holds the table and
 * the sessions that have output to flush. server.c owns the sockets and feeds
 * bytes in; the fuzz target and unit tests feed bytes in directly. */
#ifndef FG_STORE_OPS_H
#define FG_STORE_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "store/kv.h"
#include "store/proto.h"

/* A value sent without a copy: its bytes belong at byte `at` of the session's out. */
typedef struct fg_share {
  size_t at;
  fg_kv_blob *blob;
  const uint8_t *p;
  size_t len;
} fg_share;

/* Values from this size on are sent from the table's memory (GET, MULTI_GET), not copied
 * into the reply. */
#define FG_SHARE_MIN (16u << 10)

typedef struct fg_session {
  enum fg_dialect dialect;
  int admitted;  /* past the token stage: the token matched, or none was asked for */
  fg_buf out;    /* replies and notifications not yet written, but shared values */
  fg_share *shares; /* the shared values, in order of `at` */
  size_t nshares, cap_shares;
  size_t shared;    /* their bytes */
  fg_link regs;  /* fg_kv_reg.on_owner: what this session waits on or watches */
  int pending;   /* wait registrations still unsatisfied */
  int waiting;   /* a WAIT or BARRIER reply is outstanding */
  fg_link dirty; /* on fg_core.dirty while out has bytes */
} fg_session;

typedef struct fg_core {
  fg_kv kv;
  fg_proto_limits limits;
  fg_link dirty;
  uint64_t requests;
  size_t out_batch;   /* a session with this much output queued runs no more requests */
  uint64_t max_reply; /* bytes one request may generate (MULTI_GET, LIST_KEYS) */
  uint8_t *token;     /* NULL: no token is asked for */
  size_t token_len;
} fg_core;

int fg__core_init(fg_core *core, uint64_t max_total, const fg_proto_limits *limits);
void fg__core_free(fg_core *core);
/* From now on every session must open with the token message (proto.h). 0 or -ENOMEM. */
int fg__core_set_token(fg_core *core, const void *token, size_t len);

void fg__session_init(fg_session *s);
/* Bytes of output waiting: out and the shared values. */
static inline size_t fg_session_pending(const fg_session *s) { return s->out.len + s->shared; }
/* Copies the shared values into out, for a reader of out alone (tests, the fuzz target). */
void fg__session_flatten(fg_session *s);
/* Hands the shared values over (the caller unrefs each blob and frees the array) and
 * forgets them. */
fg_share *fg__session_take_shares(fg_session *s, size_t *n);
/* Drops the output, written or not. */
void fg__session_clear_output(fg_session *s);
/* Forgets everything the session registered and frees its output; call on close. */
void fg__session_drop(fg_core *core, fg_session *s);

enum { FG_CORE_BLOCKED = 1 };

/* Decodes and executes the complete requests in p[0..len).
 * Returns 0 with *used = bytes consumed and *need = total bytes the next request needs
 * (from p + *used) before it can make progress; FG_CORE_BLOCKED when it stopped with
 * complete requests left because s->out reached core->out_batch (feed the rest once the
 * output has drained); or a negative code when the connection must be closed, with *why
 * saying why. Replies go to s->out (and to the out of sessions a request wakes); such
 * sessions are put on core->dirty. */
int fg__core_feed(fg_core *core, fg_session *s, const uint8_t *p, size_t len, size_t *used,
                 size_t *need, const char **why);

/* Deletes the values of every key that starts with prefix; returns how many. */
size_t fg__core_erase_prefix(fg_core *core, const uint8_t *prefix, size_t len);

#endif
