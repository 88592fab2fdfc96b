/* conform_p2p.c - point-to-point (blocking pairs and whole batches), broadcast_bytes,
 * and the fault modes that show the library fails the way it promises: a rank killed
 * in the middle of an allreduce, and ranks that call a collective with different
 * arguments. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools/conform.h"

static const size_t sizes_per_peer[] = {13, 0, 5}; /* in one batch, matched in order */
#define MSGS_PER_PEER (sizeof sizes_per_peer / sizeof *sizes_per_peer)

/* Message k from rank `from` to rank `to`: its own values, so a misrouted one shows. */
static tcase message(fg_dtype dt, int from, int to, int k, size_t count) {
  return (tcase){"send/recv", dt, FG_REDOP_SUM, 0, -1, count, 0, 40 + from * 7 + to * 3 + k};
}

static int quick_dtype(const conform *cf, int d) {
  return !cf->quick || d == FG_INT8 || d == FG_BFLOAT16 || d == FG_FLOAT64;
}

/* Fills a device buffer with message (from, to, k); the host side is kept for checking. */
static int make_message(conform *cf, fg_comm *c, cf_buf *b, const tcase *t, int from) {
  int rc = cf_buf_alloc(c, b, t->count * fg_dtype_size(t->dt));
  if (rc != 0) return rc;
  for (size_t j = 0; j < t->count; j++) fg_dtype_set(b->host, t->dt, j, cf_input(t, from, j));
  if (cf->fault && fg_comm_rank(c) == fg_comm_size(c) - 1 && t->count)
    fg_dtype_set(b->host, t->dt, 0, fg_dtype_get(b->host, t->dt, 0) + 1);
  return cf_buf_upload(c, b);
}

static void check_message(conform *cf, fg_comm *c, cf_buf *b, const tcase *t, int from) {
  int rc = cf_buf_download(c, b);
  if (rc != 0) {
    cf_call_failed(cf, c, "download", rc);
    return;
  }
  double *want = calloc(t->count + 1, sizeof *want);
  if (!want) {
    cf_call_failed(cf, c, "allocation", -ENOMEM);
    return;
  }
  for (size_t j = 0; j < t->count; j++) want[j] = cf_input(t, from, j);
  char what[48];
  snprintf(what, sizeof what, "message from rank %d", from);
  cf_expect(cf, c, t, what, b->host, want, t->count, 1);
  free(want);
}

/* Blocking send and recv between every pair in turn: the lower rank sends first. */
static void pairs(conform *cf, fg_comm *c, fg_dtype dt) {
  int me = fg_comm_rank(c), n = fg_comm_size(c);
  for (int a = 0; a < n && !cf->broken; a++)
    for (int b = a + 1; b < n && !cf->broken; b++) {
      if (me != a && me != b) continue;
      int peer = me == a ? b : a;
      tcase out = message(dt, me, peer, 0, 13), in = message(dt, peer, me, 0, 13);
      cf_buf sb = {0}, rb = {0};
      int rc = make_message(cf, c, &sb, &out, me);
      if (rc == 0) rc = cf_buf_alloc(c, &rb, in.count * fg_dtype_size(dt));
      if (rc == 0 && me == a) rc = fg_send(c, sb.dev, out.count, dt, peer);
      if (rc == 0) rc = fg_recv(c, rb.dev, in.count, dt, peer);
      if (rc == 0 && me == b) rc = fg_send(c, sb.dev, out.count, dt, peer);
      if (rc != 0)
        cf_call_failed(cf, c, "send/recv", rc);
      else
        check_message(cf, c, &rb, &in, peer);
      cf_buf_free(c, &sb);
      cf_buf_free(c, &rb);
    }
}

/* One batch: several messages to and from every peer, receives posted first on odd
 * ranks and last on even ones, so neither order is assumed. */
static void batch(conform *cf, fg_comm *c, fg_dtype dt) {
  int me = fg_comm_rank(c), n = fg_comm_size(c);
  size_t nops = (size_t)(n - 1) * 2 * MSGS_PER_PEER, k = 0;
  fg_p2p_op *ops = calloc(nops + 1, sizeof *ops);
  cf_buf *bufs = calloc(nops + 1, sizeof *bufs);
  tcase *cases = calloc(nops + 1, sizeof *cases);
  int *from = calloc(nops + 1, sizeof *from);
  int rc = ops && bufs && cases && from ? 0 : -ENOMEM;
  for (int pass = 0; pass < 2 && rc == 0; pass++) {
    int sending = (pass == 0) == (me % 2 == 0);
    for (int p = 0; p < n && rc == 0; p++)
      for (size_t m = 0; p != me && m < MSGS_PER_PEER && rc == 0; m++, k++) {
        cases[k] = sending ? message(dt, me, p, (int)m, sizes_per_peer[m])
                           : message(dt, p, me, (int)m, sizes_per_peer[m]);
        from[k] = sending ? me : p;
        rc = sending ? make_message(cf, c, &bufs[k], &cases[k], me)
                     : cf_buf_alloc(c, &bufs[k], cases[k].count * fg_dtype_size(dt));
        ops[k] = (fg_p2p_op){sending, bufs[k].dev, cases[k].count, dt, p};
      }
  }
  fg_batch *b = NULL;
  if (rc == 0 && (rc = fg_batch_start(c, ops, k, &b)) == 0) rc = fg_batch_wait(b);
  if (rc != 0)
    cf_call_failed(cf, c, "batch", rc);
  for (size_t i = 0; i < k && rc == 0; i++)
    if (!ops[i].is_send) check_message(cf, c, &bufs[i], &cases[i], from[i]);
  for (size_t i = 0; bufs && i < k; i++) cf_buf_free(c, &bufs[i]);
  free(ops);
  free(bufs);
  free(cases);
  free(from);
}

void cf_run_p2p(conform *cf, fg_comm *c) {
  fg_batch *b = NULL;
  int rc = fg_batch_start(c, NULL, 0, &b);
  if (rc == 0) rc = fg_batch_wait(b);
  if (rc != 0) {
    cf_call_failed(cf, c, "empty batch", rc);
    return;
  }
  cf_true(cf, c, 1, "empty batch");
  for (int d = 0; d < FG_DTYPE_COUNT && !cf->broken; d++) {
    if (!quick_dtype(cf, d)) continue;
    pairs(cf, c, (fg_dtype)d);
    if (!cf->broken) batch(cf, c, (fg_dtype)d);
  }
}

/* --- broadcast_bytes ------------------------------------------------------------------ */

static void fill_bytes(unsigned char *p, size_t len, int root) {
  for (size_t i = 0; i < len; i++) p[i] = (unsigned char)(i * 13 + (size_t)root * 29 + i / 251);
}

static void bytes_case(conform *cf, fg_comm *c, int root, size_t len) {
  int me = fg_comm_rank(c);
  unsigned char *want = malloc(len + 1);
  void *data = NULL;
  size_t got_len = 0;
  if (!want) {
    cf_call_failed(cf, c, "allocation", -ENOMEM);
    return;
  }
  fill_bytes(want, len, root);
  if (me == root) {
    data = want;
    got_len = len;
  }
  int rc = fg_broadcast_bytes(c, &data, &got_len, root);
  if (rc != 0) {
    cf_call_failed(cf, c, "broadcast_bytes", rc);
  } else if (me != root) {
    int same = got_len == len && data && !memcmp(data, want, len);
    cf_true(cf, c, same && ((char *)data)[len] == '\0',
            "broadcast_bytes of %zu bytes from root %d: got %zu bytes%s", len, root, got_len,
            same ? " without the terminating NUL" : ", not the root's");
    if (same) cf_hash(cf, data, len);
    free(data);
  } else {
    cf_true(cf, c, data == want && got_len == len, "broadcast_bytes changed the root's blob");
  }
  free(want);
}

void cf_run_bytes(conform *cf, fg_comm *c) {
  int n = fg_comm_size(c);
  for (int root = 0; root < n && !cf->broken; root++) {
    if (cf->quick && root != 0 && root != n - 1) continue;
    bytes_case(cf, c, root, 0);
    if (!cf->broken) bytes_case(cf, c, root, 5);
  }
  if (!cf->broken) bytes_case(cf, c, n - 1, 1 << 20);
}

/* --- fault modes ---------------------------------------------------------------------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Both ends of a fault say when, on the clock every process shares, so a test can tell how
 * long the news took. */
static void *kill_me_soon(void *arg) {
  (void)arg;
  usleep(300 * 1000);
  fprintf(stderr, "fgconform: rank %d: killing itself at %.3f\n", *(int *)arg, now_s());
  kill(getpid(), SIGKILL);
  return NULL;
}

/* The victim dies (SIGKILL from another thread, so mid-transfer) or stalls for twice the
 * timeout while the others loop over 4 MB allreduces; they must all report the failure,
 * as FG_EPEER or -ETIMEDOUT, instead of hanging. */
int cf_fault_at(conform *cf, int victim, int stall) {
  fg_comm *c = cf->world;
  int me = fg_comm_rank(c);
  const size_t n = 1 << 20;
  cf_buf b = {0};
  int rc = cf_buf_alloc(c, &b, n * sizeof(float));
  if (rc == 0) rc = cf_buf_upload(c, &b);
  if (rc == 0) rc = fg_barrier(c);
  if (rc != 0) {
    cf_buf_free(c, &b);
    return cf_call_failed(cf, c, "setup", rc), 1;
  }
  pthread_t killer;
  if (me == victim && !stall && pthread_create(&killer, NULL, kill_me_soon, &me) != 0) abort();
  for (int i = 0; i < 100000; i++) {
    if (me == victim && stall && i == 3) {
      fprintf(stderr, "fgconform: rank %d: stalling at %.3f\n", me, now_s());
      usleep((useconds_t)fg_comm_timeout(c) * 2000);
    }
    double t0 = now_s();
    rc = fg_allreduce(c, b.dev, b.dev, n, FG_FLOAT32, FG_REDOP_SUM);
    if (rc != 0) {
      double t1 = now_s();
      fprintf(stderr, "fgconform: rank %d: allreduce %d failed at %.3f after %.3f s (%s): %s\n",
              me, i, t1, t1 - t0, fg_strerror(rc), fg_comm_errmsg(c));
      break;
    }
    if (victim >= fg_comm_size(c) && i >= 20) break;
  }
  cf_buf_free(c, &b);
  return rc ? 1 : 0;
}

/* With FG_DEBUG=detail every rank must see the mismatch as FG_EMISMATCH; the
 * communicator stays usable, so the ranks can agree on that. */
int cf_mismatch(conform *cf, const char *what) {
  fg_comm *c = cf->world;
  int me = fg_comm_rank(c), odd = me == fg_comm_size(c) - 1 && fg_comm_size(c) > 1;
  cf_buf b = {0};
  int rc = cf_buf_alloc(c, &b, 16 * sizeof(double));
  if (rc == 0) rc = cf_buf_upload(c, &b);
  if (rc != 0) return cf_call_failed(cf, c, "setup", rc), 1;
  if (!strcmp(what, "count"))
    rc = fg_allreduce(c, b.dev, b.dev, odd ? 5 : 4, FG_FLOAT32, FG_REDOP_SUM);
  else if (!strcmp(what, "dtype"))
    rc = fg_allreduce(c, b.dev, b.dev, 4, odd ? FG_INT32 : FG_FLOAT32, FG_REDOP_SUM);
  else if (!strcmp(what, "root"))
    rc = fg_broadcast(c, b.dev, 4, FG_FLOAT32, odd ? 1 : 0);
  else
    rc = odd ? fg_broadcast(c, b.dev, 4, FG_FLOAT32, 0)
             : fg_allreduce(c, b.dev, b.dev, 4, FG_FLOAT32, FG_REDOP_SUM);
  if (rc == FG_EMISMATCH)
    fprintf(stderr, "fgconform: rank %d: %s (%s)\n", me, fg_comm_errmsg(c), fg_strerror(rc));
  else
    fprintf(stderr, "fgconform: rank %d: mismatched %s went unnoticed (%s)%s%s\n", me, what,
            rc ? fg_strerror(rc) : "call returned 0", rc ? ": " : "", rc ? fg_comm_errmsg(c) : "");
  int32_t caught = rc == FG_EMISMATCH, all = 0;
  int vrc = fg_comm_upload(c, b.dev, &caught, sizeof caught);
  if (vrc == 0) vrc = fg_allreduce(c, b.dev, b.dev, 1, FG_INT32, FG_REDOP_MIN);
  if (vrc == 0) vrc = fg_comm_download(c, &all, b.dev, sizeof all);
  cf_buf_free(c, &b);
  if (vrc != 0) return cf_call_failed(cf, c, "verdict", vrc), 1;
  if (me == 0)
    printf("fgconform: mismatched %s %s on every rank\n", what,
           all ? "detected" : "NOT detected");
  return all ? 0 : 1;
}
