/* test_client - the store client against a scripted peer: the bytes it sends, and what it does
 * with replies no well-behaved server gives (absurd lengths, stray bytes, hang-ups, late WAIT
 * answers). The peer is a thread that plays one fixed exchange, not a store. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/buf.h"
#include "fg/store.h"
#include "store/proto.h"

#define PEER_WAIT_MS 5000

typedef struct peer peer;
typedef void (*script_fn)(peer *p);

struct peer {
  int listen_fd;
  int port;
  pthread_t tid;
  script_fn script;
  char failure[512]; /* the peer's first complaint; cmocka cannot assert off the main thread */
};

static void complain(peer *p, const char *fmt, ...) {
  if (p->failure[0]) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->failure, sizeof p->failure, fmt, ap);
  va_end(ap);
}

static int readable(int fd) {
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  return poll(&pfd, 1, PEER_WAIT_MS) == 1;
}

static int peer_accept(peer *p) {
  if (p->failure[0] || !readable(p->listen_fd)) {
    complain(p, "the client did not connect");
    return -1;
  }
  return accept(p->listen_fd, NULL, NULL);
}

static void expect(peer *p, int fd, const void *want, size_t n, const char *what) {
  uint8_t got[4096];
  size_t have = 0;
  while (!p->failure[0] && have < n && readable(fd)) {
    ssize_t r = recv(fd, got + have, n - have, 0);
    if (r <= 0) break;
    have += (size_t)r;
  }
  if (have < n)
    complain(p, "%s: got %zu of %zu bytes", what, have, n);
  else if (memcmp(got, want, n) != 0)
    complain(p, "%s: the client sent other bytes", what);
}

static void expect_buf(peer *p, int fd, fg_buf *b, const char *what) {
  expect(p, fd, b->data, b->len, what);
  fg__buf_reset(b);
}

static void reply(int fd, const void *bytes, size_t n) {
  if (send(fd, bytes, n, MSG_NOSIGNAL) != (ssize_t)n) perror("peer send");
}

static void reply_u64(int fd, uint64_t v) {
  uint8_t b[8];
  fg_store_u64(b, v);
  reply(fd, b, sizeof b);
}

static void reply_bytes(int fd, const char *s) {
  reply_u64(fd, strlen(s));
  reply(fd, s, strlen(s));
}

/* Reads the V2 hello and echoes the nonce. */
static void accept_hello(peer *p, int fd) {
  static const uint8_t hello[] = {0x00, 0xce, 0xf7, 0x85, 0x3c, 0x0d};
  expect(p, fd, hello, sizeof hello, "VALIDATE + PING");
  uint8_t nonce[4] = {0};
  if (!p->failure[0] && (!readable(fd) || recv(fd, nonce, 4, MSG_WAITALL) != 4))
    complain(p, "no PING nonce");
  reply(fd, nonce, sizeof nonce);
}

static void *peer_main(void *arg) {
  peer *p = arg;
  p->script(p);
  return NULL;
}

static void peer_start(peer *p, script_fn script) {
  memset(p, 0, sizeof *p);
  p->script = script;
  p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  assert_int_equal(bind(p->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(p->listen_fd, 8), 0);
  assert_int_equal(getsockname(p->listen_fd, (struct sockaddr *)&sa, &len), 0);
  p->port = ntohs(sa.sin_port);
  assert_int_equal(pthread_create(&p->tid, NULL, peer_main, p), 0);
}

static void peer_finish(peer *p) {
  pthread_join(p->tid, NULL);
  close(p->listen_fd);
  assert_string_equal(p->failure, "");
}

static fg_store *connect_to(peer *p, fg_store_dialect dialect) {
  fg_store_options o;
  fg_store_options_init(&o);
  o.dialect = dialect;
  o.connect_timeout_ms = 2000;
  o.timeout_ms = 2000;
  fg_store *s = NULL;
  int rc = fg_store_connect(&s, "127.0.0.1", p->port, &o);
  if (rc != 0) fprintf(stderr, "connect: %s\n", fg_store_errmsg(NULL));
  assert_int_equal(rc, 0);
  return s;
}

/* A request as the client should write it, keys laid out with the client's '/'. */
static void put_key(fg_buf *b, const char *key) {
  fg__buf_put_u64(b, strlen(key) + 1);
  fg__buf_put_u8(b, '/');
  fg__buf_put(b, key, strlen(key));
}

static void put_str(fg_buf *b, const char *s) { fg__buf_put_bytes(b, s, strlen(s)); }

static void put_one_key(fg_buf *b, enum fg_dialect d, enum fg_op op, const char *key) {
  fg__proto_put_op(b, d, op);
  if (op == FG_OP_WAIT || op == FG_OP_CHECK) fg__buf_put_u64(b, 1);
  put_key(b, key);
}

/* ---- the store token ------------------------------------------------------------------------ */

/* With FG_STORE_TOKEN set, the token goes first on every connection, before the hello. */
static void script_takes_the_token(peer *p) {
  int fd = peer_accept(p);
  fg_buf b;
  fg__buf_init(&b);
  fg__proto_put_token(&b, "t0ken", 5);
  expect_buf(p, fd, &b, "the token message");
  uint8_t ok = FG_TOKEN_ACCEPTED;
  reply(fd, &ok, 1);
  accept_hello(p, fd);
  put_one_key(&b, FG_DIALECT_V2, FG_OP_SET, "k");
  put_str(&b, "v");
  expect_buf(p, fd, &b, "a V2 SET");
  fg__buf_free(&b);
  close(fd);
}

static void the_token_goes_first(void **state) {
  (void)state;
  peer p;
  setenv("FG_STORE_TOKEN", "t0ken", 1);
  peer_start(&p, script_takes_the_token);
  fg_store *s = connect_to(&p, FG_STORE_DIALECT_AUTO);
  unsetenv("FG_STORE_TOKEN");
  assert_int_equal(fg_store_set(s, "k", "v", 1), 0);
  peer_finish(&p);
  fg_store_close(s);
}

/* A server that wants a token answers the hello with FG_TOKEN_REFUSED and hangs up. */
static void script_wants_a_token(peer *p) {
  int fd = peer_accept(p);
  uint8_t hello[10];
  if (readable(fd)) recv(fd, hello, sizeof hello, MSG_WAITALL);
  reply(fd, FG_TOKEN_REFUSED, 4);
  close(fd);
}

static void a_missing_token_is_refused_not_taken_for_torch_1_13(void **state) {
  (void)state;
  peer p;
  peer_start(&p, script_wants_a_token);
  fg_store_options o;
  fg_store_options_init(&o);
  o.connect_timeout_ms = 2000;
  fg_store *s = NULL;
  assert_int_equal(fg_store_connect(&s, "127.0.0.1", p.port, &o), -EACCES);
  assert_non_null(strstr(fg_store_errmsg(NULL), "requires a store token"));
  peer_finish(&p);
}

/* A token too long for the handshake is an error of its own, not a silent no-token. */
static void a_token_too_long_is_named(void **state) {
  (void)state;
  char token[FG_TOKEN_MAX + 2];
  memset(token, 'x', sizeof token - 1);
  token[sizeof token - 1] = '\0';
  setenv("FG_STORE_TOKEN", token, 1);
  fg_store *s = NULL;
  int rc = fg_store_connect(&s, "127.0.0.1", 1, NULL);
  unsetenv("FG_STORE_TOKEN");
  assert_int_equal(rc, -EINVAL);
  assert_null(s);
  assert_non_null(strstr(fg_store_errmsg(NULL), "FG_STORE_TOKEN is 1025 bytes"));
}

/* ---- dialects ----------------------------------------------------------------------------- */

/* A torch 1.13 server takes the hello for a SET and hangs up; AUTO then speaks 1.13. */
static void script_drops_hello(peer *p) {
  int fd = peer_accept(p);
  uint8_t hello[10] = {0};
  if (readable(fd)) recv(fd, hello, sizeof hello, MSG_WAITALL);
  /* The key length 1.13 would read: bytes 1..8. Its top byte must make it >= 2^63. */
  if (!(hello[8] & 0x80)) complain(p, "the hello's key length is below 2^63");
  close(fd);
  fd = peer_accept(p);
  fg_buf b;
  fg__buf_init(&b);
  put_one_key(&b, FG_DIALECT_LEGACY, FG_OP_SET, "k");
  put_str(&b, "v");
  expect_buf(p, fd, &b, "a 1.13 SET");
  fg__buf_free(&b);
  close(fd);
}

static void auto_falls_back_to_legacy_when_the_hello_is_dropped(void **state) {
  (void)state;
  peer p;
  peer_start(&p, script_drops_hello);
  fg_store *s = connect_to(&p, FG_STORE_DIALECT_AUTO);
  assert_int_equal(fg_store_get_dialect(s), FG_STORE_DIALECT_LEGACY);
  assert_int_equal(fg_store_set(s, "k", "v", 1), 0);
  peer_finish(&p);
  fg_store_close(s);
}

static void script_v2_set(peer *p) {
  int fd = peer_accept(p);
  accept_hello(p, fd);
  fg_buf b;
  fg__buf_init(&b);
  put_one_key(&b, FG_DIALECT_V2, FG_OP_SET, "k");
  put_str(&b, "v");
  expect_buf(p, fd, &b, "a V2 SET");
  fg__buf_free(&b);
  close(fd);
}

static void auto_speaks_v2_when_the_ping_is_echoed(void **state) {
  (void)state;
  peer p;
  peer_start(&p, script_v2_set);
  fg_store *s = connect_to(&p, FG_STORE_DIALECT_AUTO);
  assert_int_equal(fg_store_get_dialect(s), FG_STORE_DIALECT_V2);
  assert_int_equal(fg_store_set(s, "k", "v", 1), 0);
  peer_finish(&p);
  fg_store_close(s);
}

static void script_wrong_echo(peer *p) {
  int fd = peer_accept(p);
  uint8_t hello[10];
  if (readable(fd)) recv(fd, hello, sizeof hello, MSG_WAITALL);
  reply(fd, "nope", 4);
  readable(fd); /* until the client hangs up */
  close(fd);
}

static void wrong_ping_echo_is_a_protocol_error(void **state) {
  (void)state;
  peer p;
  peer_start(&p, script_wrong_echo);
  fg_store_options o;
  fg_store_options_init(&o);
  o.connect_timeout_ms = 2000;
  fg_store *s = NULL;
  assert_int_equal(fg_store_connect(&s, "127.0.0.1", p.port, &o), FG_EPROTO);
  assert_null(s);
  assert_non_null(strstr(fg_store_errmsg(NULL), "PING echoed"));
  peer_finish(&p);
}

/* ---- replies no server should send -------------------------------------------------------- */

/* A length over the cap is taken for a broken stream; the next call uses a new connection. */
static void script_absurd_length(peer *p) {
  int fd = peer_accept(p);
  fg_buf b;
  fg__buf_init(&b);
  fg__proto_put_op(&b, FG_DIALECT_LEGACY, FG_OP_COMPARE_SET);
  put_key(&b, "k");
  put_str(&b, "");
  put_str(&b, "v");
  expect_buf(p, fd, &b, "COMPARE_SET");
  reply_u64(fd, (uint64_t)1 << 62);
  int fd2 = peer_accept(p);
  put_one_key(&b, FG_DIALECT_LEGACY, FG_OP_ADD, "n");
  fg__buf_put_i64(&b, 1);
  expect_buf(p, fd2, &b, "ADD on a new connection");
  reply_u64(fd2, 1);
  fg__buf_free(&b);
  close(fd);
  close(fd2);
}

static void reply_longer_than_the_cap_is_a_protocol_error(void **state) {
  (void)state;
  peer p;
  peer_start(&p, script_absurd_length);
  fg_store *s = connect_to(&p, FG_STORE_DIALECT_LEGACY);
  void *cur = NULL;
  size_t len;
  assert_int_equal(fg_store_compare_set(s, "k", "", 0, "v", 1, &cur, &len), FG_EPROTO);
  assert_null(cur);
  assert_non_null(strstr(fg_store_errmsg(s), "COMPARE_SET '/k' on 127.0.0.1:"));
  assert_non_null(strstr(fg_store_errmsg(s), "cap"));
  int64_t n = 0;
  assert_int_equal(fg_store_add(s, "n", 1, &n), 0);
  assert_int_equal(n, 1);
  peer_finish(&p);
  fg_store_close(s);
}

static void script_bad_wait_reply(peer *p) {
  int fd = peer_accept(p);
  fg_buf b;
  fg__buf_init(&b);
  put_one_key(&b, FG_DIALECT_LEGACY, FG_OP_WAIT, "k");
  expect_buf(p, fd, &b, "WAIT");
  reply(fd, "\x07", 1);
  readable(fd);
  fg__buf_free(&b);
  close(fd);
}

static void unknown_wait_reply_is_a_protocol_error(void **state) {
  (void)state;
  peer p;
  peer_start(&p, script_bad_wait_reply);
  fg_store *s = connect_to(&p, FG_STORE_DIALECT_LEGACY);
  const char *keys[] = {"k"};
  assert_int_equal(fg_store_wait(s, keys, 1, 2000), FG_EPROTO);
  assert_non_null(strstr(fg_store_errmsg(s), "unexpected reply 0x07 to WAIT"));
  fg_store_close(s);
  peer_finish(&p);
}

static void script_hangs_up(peer *p) {
  int fd = peer_accept(p);
  char req[64];
  if (readable(fd)) recv(fd, req, sizeof req, 0);
  close(fd);
}

static void hang_up_mid_call_is_reported_not_fatal(void **state) {
  (void)state;
  peer p;
  peer_start(&p, script_hangs_up);
  fg_store *s = connect_to(&p, FG_STORE_DIALECT_LEGACY);
  int64_t n;
  int rc = fg_store_add(s, "n", 1, &n);
  assert_true(rc == FG_ECLOSED || rc == -ECONNRESET);
  assert_non_null(strstr(fg_store_errmsg(s), "ADD '/n' on 127.0.0.1:"));
  peer_finish(&p);
  fg_store_close(s);
}

/* ---- WAIT timeouts ------------------------------------------------------------------------ */

/* After the client's CANCEL_WAIT, send `answer` (00 01: the keys came first; 01: canceled). */
static void cancel_script(peer *p, const char *answer, size_t n) {
  int fd = peer_accept(p);
  accept_hello(p, fd);
  fg_buf b;
  fg__buf_init(&b);
  put_one_key(&b, FG_DIALECT_V2, FG_OP_WAIT, "k");
  fg__proto_put_op(&b, FG_DIALECT_V2, FG_OP_CANCEL_WAIT);
  expect_buf(p, fd, &b, "WAIT then CANCEL_WAIT");
  reply(fd, answer, n);
  fg__proto_put_op(&b, FG_DIALECT_V2, FG_OP_GETNUMKEYS);
  expect_buf(p, fd, &b, "GETNUMKEYS after the cancel");
  reply_u64(fd, 42);
  fg__buf_free(&b);
  close(fd);
}

static void script_canceled(peer *p) { cancel_script(p, "\x01", 1); }
static void script_stop_then_canceled(peer *p) { cancel_script(p, "\x00\x01", 2); }

static void v2_wait_timeout(script_fn script, int want) {
  peer p;
  peer_start(&p, script);
  fg_store *s = connect_to(&p, FG_STORE_DIALECT_V2);
  const char *keys[] = {"k"};
  assert_int_equal(fg_store_wait(s, keys, 1, 100), want);
  int64_t n = 0;
  assert_int_equal(fg_store_num_keys(s, &n), 0); /* the stream is still in step */
  assert_int_equal(n, 42);
  peer_finish(&p);
  fg_store_close(s);
}

static void v2_wait_timeout_cancels_the_wait(void **state) {
  (void)state;
  v2_wait_timeout(script_canceled, -ETIMEDOUT);
}

static void v2_wait_answered_just_before_the_cancel_succeeds(void **state) {
  (void)state;
  v2_wait_timeout(script_stop_then_canceled, 0);
}

/* 1.13 cannot cancel: the client must leave that connection for a new one. */
static void script_legacy_wait_timeout(peer *p) {
  int fd = peer_accept(p);
  fg_buf b;
  fg__buf_init(&b);
  put_one_key(&b, FG_DIALECT_LEGACY, FG_OP_WAIT, "k");
  expect_buf(p, fd, &b, "WAIT");
  int fd2 = peer_accept(p);
  reply(fd, "\x00", 1); /* the stray answer to the abandoned WAIT */
  fg__proto_put_op(&b, FG_DIALECT_LEGACY, FG_OP_GETNUMKEYS);
  expect_buf(p, fd2, &b, "GETNUMKEYS on a new connection");
  reply_u64(fd2, 7);
  fg__buf_free(&b);
  close(fd);
  close(fd2);
}

static void legacy_wait_timeout_moves_to_a_new_connection(void **state) {
  (void)state;
  peer p;
  peer_start(&p, script_legacy_wait_timeout);
  fg_store *s = connect_to(&p, FG_STORE_DIALECT_LEGACY);
  const char *keys[] = {"k"};
  assert_int_equal(fg_store_wait(s, keys, 1, 100), -ETIMEDOUT);
  char want[128];
  snprintf(want, sizeof want, "WAIT '/k' on 127.0.0.1:%d: timed out after 100 ms", p.port);
  assert_string_equal(fg_store_errmsg(s), want);
  int64_t n = 0;
  assert_int_equal(fg_store_num_keys(s, &n), 0);
  assert_int_equal(n, 7);
  peer_finish(&p);
  fg_store_close(s);
}

/* ---- APPEND on 1.13 ----------------------------------------------------------------------- */

/* The key is deleted between the client's read and its COMPARE_SET: the server echoes
 * `expected`, and the client must start again from an absent key. */
static void script_append_key_vanishes(peer *p) {
  int fd = peer_accept(p);
  fg_buf b;
  fg__buf_init(&b);
  put_one_key(&b, FG_DIALECT_LEGACY, FG_OP_CHECK, "k");
  expect_buf(p, fd, &b, "CHECK");
  reply(fd, "\x00", 1);
  put_one_key(&b, FG_DIALECT_LEGACY, FG_OP_GET, "k");
  expect_buf(p, fd, &b, "GET");
  reply_bytes(fd, "ab");
  const char *expected[] = {"ab", ""}, *desired[] = {"abX", "X"}, *answer[] = {"ab", "X"};
  for (int i = 0; i < 2; i++) {
    put_one_key(&b, FG_DIALECT_LEGACY, FG_OP_COMPARE_SET, "k");
    put_str(&b, expected[i]);
    put_str(&b, desired[i]);
    expect_buf(p, fd, &b, "COMPARE_SET");
    reply_bytes(fd, answer[i]);
  }
  fg__buf_free(&b);
  close(fd);
}

static void legacy_append_restarts_when_the_key_vanishes(void **state) {
  (void)state;
  peer p;
  peer_start(&p, script_append_key_vanishes);
  fg_store *s = connect_to(&p, FG_STORE_DIALECT_LEGACY);
  assert_int_equal(fg_store_append(s, "k", "X", 1), 0);
  peer_finish(&p);
  fg_store_close(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(the_token_goes_first),
      cmocka_unit_test(a_missing_token_is_refused_not_taken_for_torch_1_13),
      cmocka_unit_test(a_token_too_long_is_named),
      cmocka_unit_test(auto_falls_back_to_legacy_when_the_hello_is_dropped),
      cmocka_unit_test(auto_speaks_v2_when_the_ping_is_echoed),
      cmocka_unit_test(wrong_ping_echo_is_a_protocol_error),
      cmocka_unit_test(reply_longer_than_the_cap_is_a_protocol_error),
      cmocka_unit_test(unknown_wait_reply_is_a_protocol_error),
      cmocka_unit_test(hang_up_mid_call_is_reported_not_fatal),
      cmocka_unit_test(v2_wait_timeout_cancels_the_wait),
      cmocka_unit_test(v2_wait_answered_just_before_the_cancel_succeeds),
      cmocka_unit_test(legacy_wait_timeout_moves_to_a_new_connection),
      cmocka_unit_test(legacy_append_restarts_when_the_key_vanishes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
