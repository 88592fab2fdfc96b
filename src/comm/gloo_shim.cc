/* gloo_shim.cc - see gloo_shim.h. C++ only because gloo is: this file turns templates into
 * byte sizes and exceptions into codes, around each call of gloo's API. The watch over each
 * context's connections, which turns a broken one into a failure of every rank within
 * milliseconds, is gloo_watch.cc's. */
#include <gloo/allgather.h>
#include <gloo/allgatherv.h>
#include <gloo/allreduce.h>
#include <gloo/alltoall.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/common/logging.h>
#include <gloo/gather.h>
#include <gloo/reduce.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/scatter.h>
#include <gloo/transport/tcp/device.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "comm/gloo_internal.h"

using std::chrono::milliseconds;
using fg_gloo_detail::io_failure;
using fg_gloo_detail::kP2pCounterMask;
using fg_gloo_detail::kP2pSlot;
using fg_gloo_detail::mark_failed;
using fg_gloo_detail::say_goodbye;
using fg_gloo_detail::set_error;
using fg_gloo_detail::start_watch;
using fg_gloo_detail::without_source;

namespace {

/* A failure of our store, with the code the store client returned. */
struct StoreError : std::runtime_error {
  int code, peer;
  StoreError(int code, int peer, const std::string &msg)
      : std::runtime_error(msg), code(code), peer(peer) {}
};

/* gloo's keys are "<rank>" and "rank_<rank>": the rank that has not written one yet. */
int rank_in_key(const std::string &key) {
  const char *p = key.c_str();
  if (!strncmp(p, "rank_", 5)) p += 5;
  if (!isdigit((unsigned char)*p)) return -1;
  char *end;
  long r = strtol(p, &end, 10);
  return *end ? -1 : (int)r;
}

class StoreAdapter : public gloo::rendezvous::Store {
 public:
  StoreAdapter(fg_store *s, int timeout_ms) : s_(s), timeout_(timeout_ms) {}

  void set(const std::string &key, const std::vector<char> &data) override {
    int rc = fg_store_set(s_, key.c_str(), data.data(), data.size());
    if (rc != 0) throw StoreError(rc, -1, "store: " + std::string(fg_store_errmsg(s_)));
  }

  std::vector<char> get(const std::string &key) override {
    wait({key}, timeout_);
    void *value = nullptr;
    size_t len = 0;
    int rc = fg_store_get(s_, key.c_str(), &value, &len);
    if (rc != 0) throw StoreError(rc, -1, "store: " + std::string(fg_store_errmsg(s_)));
    std::vector<char> out(static_cast<char *>(value), static_cast<char *>(value) + len);
    free(value);
    return out;
  }

  void wait(const std::vector<std::string> &keys) override { wait(keys, timeout_); }

  void wait(const std::vector<std::string> &keys, const milliseconds &timeout) override {
    std::vector<const char *> names;
    for (const auto &k : keys) names.push_back(k.c_str());
    int rc = fg_store_wait(s_, names.data(), names.size(), (int)timeout.count());
    if (rc == -ETIMEDOUT && keys.size() == 1 && rank_in_key(keys[0]) >= 0)
      throw StoreError(rc, rank_in_key(keys[0]),
                       "did not reach the rendezvous within " + std::to_string(timeout.count()) +
                           " ms");
    if (rc != 0) throw StoreError(rc, -1, "store: " + std::string(fg_store_errmsg(s_)));
  }

 private:
  fg_store *s_;
  milliseconds timeout_;
};

/* --- failures as codes ------------------------------------------------------------------ */

/* Called from a catch block: the exception in flight, as a code and a message. */
int caught(fg_gloo *g, int peer_hint, int fatal, fg_gloo_error *e) {
  int code;
  try {
    throw;
  } catch (const StoreError &x) {
    return set_error(e, x.code, x.peer, x.what());
  } catch (const gloo::IoException &x) {
    return io_failure(g, x.what(), peer_hint, e);
  } catch (const gloo::EnforceNotMet &x) {
    code = set_error(e, FG_EBACKEND, -1, without_source(x.what()));
  } catch (const std::bad_alloc &) {
    code = set_error(e, -ENOMEM, -1, "out of memory");
  } catch (const std::invalid_argument &x) {
    code = set_error(e, -EINVAL, -1, x.what());
  } catch (const std::system_error &x) {
    int err = x.code().value();
    code = set_error(e, err > 0 ? -err : FG_EBACKEND, -1, x.what());
  } catch (const std::exception &x) {
    code = set_error(e, FG_EBACKEND, -1, without_source(x.what()));
  } catch (...) {
    code = set_error(e, FG_EBACKEND, -1, "unknown C++ exception");
  }
  if (fatal) mark_failed(g, code, e);
  return code;
}

/* A context that failed stays failed: the first error, at once. */
int failed_before(fg_gloo *g, fg_gloo_error *e) {
  std::lock_guard<std::mutex> lock(g->mu);
  if (!g->failed) return 0;
  std::string msg = "unusable after an earlier failure: " + std::string(g->first_error.msg);
  return set_error(e, g->failed, g->first_error.peer, msg.c_str());
}

template <typename F>
int guarded(fg_gloo *g, fg_gloo_error *e, F &&body) {
  e->peer = -1;
  e->msg[0] = '\0';
  int rc = g ? failed_before(g, e) : 0;
  if (rc != 0) return rc;
  try {
    body();
    return 0;
  } catch (...) {
    return caught(g, -1, 0, e);
  }
}

/* The buffers of one operation, made here so the watcher can wake a wait on them. Declare
 * it after the operation's options: it must let go of them before the options free them. */
class Watched {
 public:
  explicit Watched(fg_gloo *g) : g_(g) {}
  ~Watched() {
    std::lock_guard<std::mutex> lock(g_->mu);
    for (Buffer *b : mine_)
      g_->inflight.erase(std::find(g_->inflight.begin(), g_->inflight.end(), b));
  }
  std::unique_ptr<Buffer> operator()(const void *ptr, size_t bytes) {
    auto b = g_->ctx->createUnboundBuffer(const_cast<void *>(ptr), bytes);
    std::lock_guard<std::mutex> lock(g_->mu);
    g_->inflight.push_back(b.get());
    mine_.push_back(b.get());
    return b;
  }

 private:
  fg_gloo *g_;
  std::vector<Buffer *> mine_;
};

/* gloo's options are templated on the element type, but only its size matters to them. */
template <typename F>
void with_element(size_t size, F &&f) {
  switch (size) {
    case 1: f(uint8_t{}); break;
    case 2: f(uint16_t{}); break;
    case 4: f(uint32_t{}); break;
    case 8: f(uint64_t{}); break;
    default: throw std::invalid_argument("unsupported element size " + std::to_string(size));
  }
}

std::function<void(void *, const void *, const void *, size_t)> reducer(const fg_gloo_op *op) {
  fg_gloo_reduce_fn fn = op->reduce;
  void *arg = op->reduce_arg;
  return [fn, arg](void *d, const void *a, const void *b, size_t n) { fn(d, a, b, n, arg); };
}

/* What every collective's options share. */
template <typename O>
void common(fg_gloo *g, O &o, const fg_gloo_op *op) {
  o.setTag(g->tag++);
  o.setTimeout(milliseconds(op->timeout_ms));
}

size_t bytes_of(const fg_gloo_op *op, size_t blocks) { return op->count * op->elem_size * blocks; }

const char *at_block(const void *base, const fg_gloo_op *op, size_t index) {
  return static_cast<const char *>(base) + bytes_of(op, index);
}

/* The input (none in place) of op->count elements and the output of out_blocks times that. */
template <typename T, typename O>
void in_out(O &o, Watched &w, const fg_gloo_op *op, size_t out_blocks) {
  if (op->send) o.template setInput<T>(w(op->send, bytes_of(op, 1)));
  o.template setOutput<T>(w(op->recv, bytes_of(op, out_blocks)));
}

/* One collective: its options, its buffers under watch, then fill_and_run with the element
 * type. Nothing to move is no call, but the tag still advances, as on every other rank. */
template <typename O, typename F>
int collective(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e, F &&fill_and_run) {
  return guarded(g, e, [&] {
    O o(g->ctx);
    Watched w(g);
    common(g, o, op);
    if (op->count == 0) return;
    with_element(op->elem_size, [&](auto t) { fill_and_run(o, w, t); });
  });
}

/* The batch's buffers leave the watch before they are freed. */
void forget(fg_gloo_batch *b) {
  std::lock_guard<std::mutex> lock(b->g->mu);
  for (auto &buf : b->bufs)
    b->g->inflight.erase(std::find(b->g->inflight.begin(), b->g->inflight.end(), buf.get()));
}

}  // namespace

extern "C" {

int fg__gloo_device_open(const char *hostname, const char *iface, fg_gloo_device **out,
                        fg_gloo_error *e) {
  *out = nullptr;
  return guarded(nullptr, e, [&] {
    gloo::transport::tcp::attr attr;
    if (iface && *iface)
      attr.iface = iface;
    else if (hostname && *hostname)
      attr.hostname = hostname;
    auto dev = gloo::transport::tcp::CreateDevice(attr);
    *out = new fg_gloo_device{dev};
  });
}

void fg__gloo_device_close(fg_gloo_device *d) { delete d; }

int fg__gloo_connect(fg_gloo_device *d, fg_store *store, int rank, int size, int timeout_ms,
                    fg_gloo **out, fg_gloo_error *e) {
  *out = nullptr;
  std::unique_ptr<fg_gloo> g;
  int rc = guarded(nullptr, e, [&] {
    g.reset(new fg_gloo);
    g->ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
    g->ctx->setTimeout(milliseconds(timeout_ms));
    StoreAdapter adapter(store, timeout_ms);
    g->ctx->connectFullMesh(adapter, d->dev);
    g->sent.assign((size_t)size, 0);
    g->received.assign((size_t)size, 0);
    start_watch(g.get());
  });
  if (rc == 0) *out = g.release();
  return rc;
}

void fg__gloo_close(fg_gloo *g) {
  if (!g) return;
  fg_gloo_error ignored;
  if (!failed_before(g, &ignored)) {
    try {
      say_goodbye(g);
    } catch (...) {
      /* A goodbye that cannot be written: the peer learns of it from the closed socket. */
    }
  }
  delete g;
}

int fg__gloo_barrier(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e) {
  return guarded(g, e, [&] {
    gloo::BarrierOptions o(g->ctx);
    common(g, o, op);
    gloo::barrier(o);
  });
}

int fg__gloo_broadcast(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e) {
  return collective<gloo::BroadcastOptions>(g, op, e, [&](auto &o, Watched &w, auto t) {
    o.template setOutput<decltype(t)>(w(op->recv, bytes_of(op, 1)));
    o.setRoot(op->root);
    gloo::broadcast(o);
  });
}

int fg__gloo_reduce(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e) {
  return collective<gloo::ReduceOptions>(g, op, e, [&](auto &o, Watched &w, auto t) {
    in_out<decltype(t)>(o, w, op, 1);
    o.setRoot(op->root);
    o.setReduceFunction(reducer(op));
    gloo::reduce(o);
  });
}

int fg__gloo_allreduce(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e) {
  return collective<gloo::AllreduceOptions>(g, op, e, [&](auto &o, Watched &w, auto t) {
    in_out<decltype(t)>(o, w, op, 1);
    o.setReduceFunction(reducer(op));
    gloo::allreduce(o);
  });
}

int fg__gloo_allgather(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e) {
  return collective<gloo::AllgatherOptions>(g, op, e, [&](auto &o, Watched &w, auto t) {
    in_out<decltype(t)>(o, w, op, (size_t)g->ctx->size);
    gloo::allgather(o);
  });
}

/* op->count is the total here: nothing to move when every rank gives nothing. */
int fg__gloo_allgatherv(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e) {
  return collective<gloo::AllgathervOptions>(g, op, e, [&](auto &o, Watched &w, auto t) {
    using T = decltype(t);
    std::vector<size_t> counts(op->counts, op->counts + g->ctx->size);
    if (op->send) o.template setInput<T>(w(op->send, counts[(size_t)g->ctx->rank] * sizeof(T)));
    o.template setOutput<T>(w(op->recv, bytes_of(op, 1)), counts);
    gloo::allgatherv(o);
  });
}

int fg__gloo_gather(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e) {
  return collective<gloo::GatherOptions>(g, op, e, [&](auto &o, Watched &w, auto t) {
    using T = decltype(t);
    const int rank = g->ctx->rank;
    /* gloo always wants an input; in place it is root's own block. */
    const void *in = op->send ? op->send : at_block(op->recv, op, (size_t)rank);
    o.template setInput<T>(w(in, bytes_of(op, 1)));
    if (rank == op->root)
      o.template setOutput<T>(w(op->recv, bytes_of(op, (size_t)g->ctx->size)));
    o.setRoot(op->root);
    gloo::gather(o);
  });
}

int fg__gloo_scatter(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e) {
  return collective<gloo::ScatterOptions>(g, op, e, [&](auto &o, Watched &w, auto t) {
    using T = decltype(t);
    if (g->ctx->rank == op->root) {
      std::vector<std::unique_ptr<Buffer>> blocks;
      for (int r = 0; r < g->ctx->size; r++)
        blocks.push_back(w(at_block(op->send, op, (size_t)r), bytes_of(op, 1)));
      o.template setInputs<T>(std::move(blocks));
    }
    o.template setOutput<T>(w(op->recv, bytes_of(op, 1)));
    o.setRoot(op->root);
    gloo::scatter(o);
  });
}

int fg__gloo_alltoall(fg_gloo *g, const fg_gloo_op *op, fg_gloo_error *e) {
  /* gloo sends from its input while receiving into its output: in place needs a copy. */
  const size_t bytes = bytes_of(op, (size_t)g->ctx->size);
  std::vector<char> copy;
  return collective<gloo::AlltoallOptions>(g, op, e, [&](auto &o, Watched &w, auto t) {
    using T = decltype(t);
    if (!op->send) copy.assign(static_cast<char *>(op->recv), static_cast<char *>(op->recv) + bytes);
    o.template setInput<T>(w(op->send ? op->send : copy.data(), bytes));
    o.template setOutput<T>(w(op->recv, bytes));
    gloo::alltoall(o);
  });
}

int fg__gloo_batch_start(fg_gloo *g, const fg_gloo_xfer *x, size_t n, fg_gloo_batch **out,
                        fg_gloo_error *e) {
  *out = nullptr;
  std::unique_ptr<fg_gloo_batch> b;
  int rc = guarded(g, e, [&] { b.reset(new fg_gloo_batch{g, {x, x + n}, {}}); });
  if (rc != 0) return rc;
  size_t i = 0;
  try {
    for (i = 0; i < n; i++) {
      const fg_gloo_xfer &t = x[i];
      b->bufs.push_back(g->ctx->createUnboundBuffer(t.buf, t.bytes));
      {
        std::lock_guard<std::mutex> lock(g->mu);
        g->inflight.push_back(b->bufs.back().get());
      }
      if (t.is_send)
        b->bufs.back()->send(t.peer, kP2pSlot | (g->sent[(size_t)t.peer]++ & kP2pCounterMask));
      else
        b->bufs.back()->recv(t.peer,
                             kP2pSlot | (g->received[(size_t)t.peer]++ & kP2pCounterMask));
    }
  } catch (...) {
    /* Half a batch is posted: the counters no longer match the peers'. */
    rc = caught(g, x[i].peer, 1, e);
    forget(b.get());
    return rc;
  }
  *out = b.release();
  return 0;
}

int fg__gloo_batch_wait(fg_gloo_batch *batch, int timeout_ms, fg_gloo_error *e) {
  std::unique_ptr<fg_gloo_batch> b(batch);
  fg_gloo *g = b->g;
  e->peer = -1;
  e->msg[0] = '\0';
  int rc = 0;
  auto deadline = std::chrono::steady_clock::now() + milliseconds(timeout_ms);
  for (size_t i = 0; rc == 0 && i < b->bufs.size(); i++) {
    const fg_gloo_xfer &t = b->xfers[i];
    try {
      auto left = std::chrono::duration_cast<milliseconds>(deadline -
                                                           std::chrono::steady_clock::now());
      left = std::max(left, milliseconds(1));
      bool done = t.is_send ? b->bufs[i]->waitSend(left) : b->bufs[i]->waitRecv(left);
      if (!done) throw gloo::IoException(std::string(t.is_send ? "send" : "recv") + " aborted");
    } catch (...) {
      rc = caught(g, t.peer, 1, e);
    }
  }
  forget(b.get());
  return rc;
}

}  // extern "C"
