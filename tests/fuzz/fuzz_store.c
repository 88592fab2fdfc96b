/* fuzz_store - a libFuzzer target for the store's request handling: the decoder (proto.c)
 * and everything a request does to the table, to waiters and to other sessions (ops.c,
 * kv.c), fed the way server.c feeds them, minus the sockets.
 *
 * Input layout:
 *   byte 0   the setup. Bits 0-3: session i starts with torch 2.x's VALIDATE already sent
 *            (the fuzzer then reaches the V2 opcodes without guessing the magic); bit 4: the
 *            core requires a token; bit 5: every session presents it first; bit 6: tiny
 *            limits (values of 16 bytes, a 512-byte table).
 *   then     chunks: a header byte, whose low 2 bits pick the session and whose high 6 bits
 *            say how many bytes follow (1 to 64), then those bytes, which are appended to
 *            that session's input and fed. A header of 0xff instead drops session 0 as a
 *            disconnect would (it starts afresh on its next chunk), and 0xfe drains every
 *            session's output as a client reading its replies would.
 *
 * Invariants checked on the way, beyond what ASan and UBSan see: the table never holds more
 * than its limit; a session's unread output never passes out_batch + max_reply (plus the
 * small replies and notifications one request can cause); consumed bytes never exceed what
 * was fed. tests/fuzz/make_corpus.py writes the seeds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "store/ops.h"
#include "store/proto.h"

#define SESSIONS 4
#define TOKEN "fuzz-token"

typedef struct fsession {
  fg_session s;
  fg_buf in;
  int open;
} fsession;

typedef struct world {
  fg_core core;
  fsession ses[SESSIONS];
  uint8_t setup;
} world;

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz_store: invariant broken: %s\n", what);
    abort();
  }
}

static void drop(world *w, int i) {
  fsession *f = &w->ses[i];
  if (!f->open) return;
  fg__session_drop(&w->core, &f->s);
  fg__buf_free(&f->in);
  f->open = 0;
}

/* Runs what session i's input holds, as server.c does after a read. */
static void run(world *w, int i) {
  fsession *f = &w->ses[i];
  for (int rounds = 0; rounds < 64 && f->open; rounds++) {
    size_t used, need;
    const char *why = NULL;
    int rc = fg__core_feed(&w->core, &f->s, f->in.data, f->in.len, &used, &need, &why);
    if (rc < 0) {
      check(why != NULL, "a refusal says why");
      drop(w, i);
      return;
    }
    check(used <= f->in.len, "used <= fed");
    check(need >= 1, "need >= 1");
    fg__buf_consume(&f->in, used);
    uint64_t cap = w->core.out_batch + w->core.max_reply + (64u << 10);
    check(fg_session_pending(&f->s) <= cap, "unread output is bounded");
    if (rc != FG_CORE_BLOCKED) return;
    fg__session_clear_output(&f->s); /* the client read its replies: the rest may run */
  }
}

static void open_session(world *w, int i) {
  fsession *f = &w->ses[i];
  fg__session_init(&f->s);
  fg__buf_init(&f->in);
  f->open = 1;
  if (w->setup & 0x20) fg__proto_put_token(&f->in, TOKEN, strlen(TOKEN));
  if (w->setup & (1u << i)) fg__proto_put_validate(&f->in);
  run(w, i);
}

static void feed(world *w, int i, const uint8_t *p, size_t n) {
  if (!w->ses[i].open) open_session(w, i);
  if (!w->ses[i].open) return; /* refused at once: a hello without the token it needs */
  fg__buf_put(&w->ses[i].in, p, n);
  run(w, i);
}

static void drain_all(world *w) {
  for (int i = 0; i < SESSIONS; i++)
    if (w->ses[i].open) fg__session_clear_output(&w->ses[i].s);
}

static void setup_core(world *w) {
  fg_proto_limits lim = {64, 4096, 64};
  uint64_t total = 64u << 10;
  if (w->setup & 0x40) {
    lim.max_value = 16;
    total = 512;
  }
  if (fg__core_init(&w->core, total, &lim) != 0) abort();
  w->core.out_batch = 16u << 10;
  w->core.max_reply = 256u << 10;
  if ((w->setup & 0x10) && fg__core_set_token(&w->core, TOKEN, strlen(TOKEN)) != 0) abort();
}

/* The decoders alone, on the raw input, in every dialect. */
static void decode_raw(const uint8_t *p, size_t n) {
  static const fg_proto_limits lim = {1 << 20, 1 << 20, 1 << 16};
  const enum fg_dialect ds[] = {FG_DIALECT_LEGACY, FG_DIALECT_V2};
  for (int d = 0; d < 2; d++) {
    fg_request req;
    size_t used;
    const char *why;
    int rc = fg__proto_decode(ds[d], p, n, &lim, &req, &used, &why);
    if (rc == FG_PROTO_OK) {
      check(used <= n, "decode: used <= len");
      fg_slice k, v, list = req.list;
      int pairs = req.op == FG_OP_MULTI_SET;
      uint64_t items = 0;
      while (fg__proto_next(&list, &k, pairs ? &v : NULL)) items++;
      check(items == req.nkeys, "decode: the list holds nkeys items");
    }
  }
  fg_slice t;
  size_t used;
  if (fg__proto_decode_token(p, n, &t, &used) == FG_PROTO_OK) check(used <= n, "token: used");
  (void)fg__proto_sniff(p, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  decode_raw(data, size);
  world w;
  memset(&w, 0, sizeof w);
  w.setup = data[0];
  setup_core(&w);
  size_t pos = 1;
  while (pos < size) {
    uint8_t head = data[pos++];
    if (head == 0xff) {
      drop(&w, 0);
      continue;
    }
    if (head == 0xfe) {
      drain_all(&w);
      continue;
    }
    size_t n = (size_t)(head >> 2) + 1;
    if (n > size - pos) n = size - pos;
    feed(&w, head & 3, data + pos, n);
    pos += n;
    check(w.core.kv.bytes <= w.core.kv.max_bytes, "the table stays within its limit");
  }
  for (int i = 0; i < SESSIONS; i++) drop(&w, i);
  check(w.core.kv.nvalues <= w.core.kv.nentries, "values <= entries");
  fg__core_free(&w.core);
  return 0;
}
