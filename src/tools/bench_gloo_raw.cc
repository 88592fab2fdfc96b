/* bench_gloo_raw.cc - fgbench's raw gloo rows: gloo's own collectives in a loop, on a context
 * that owes nothing to fgcomm (see bench_raw.h). Built with gloo; without it every call says
 * FG_ENOTBUILT. */
#include "tools/bench_raw.h"

#include <cerrno>
#include <cstdio>

#include "fg/fg.h"

#ifndef FG_HAVE_GLOO

extern "C" {
int fg_bench_raw_gloo_open(int, int, const char *, const char *, int, fg_bench_gloo **out,
                           char *err, size_t errlen) {
  *out = nullptr;
  snprintf(err, errlen, "gloo is not in this build");
  return FG_ENOTBUILT;
}
void fg_bench_raw_gloo_close(fg_bench_gloo *) {}
const char *fg_bench_raw_gloo_coll(int) { return nullptr; }
int fg_bench_raw_gloo(fg_bench_gloo *, const char *, size_t, int, int, double *us) {
  *us = 0;
  return FG_ENOTBUILT;
}
}

#else
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/alltoall.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/gather.h>
#include <gloo/math.h>
#include <gloo/reduce.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/scatter.h>
#include <gloo/transport/tcp/device.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <vector>

struct fg_bench_gloo {
  std::shared_ptr<gloo::rendezvous::Context> ctx;
  uint32_t tag = 0;
};

namespace {

using Clock = std::chrono::steady_clock;
/* A plain function, as torch's ProcessGroupGloo passes gloo::sum<float>. */
void (*const kSum)(void *, const void *, const void *, size_t) = &gloo::sum<float>;
constexpr uint64_t kSendrecvSlot = 0x46676272ull; /* any slot: only this loop uses the context */

struct Loop {
  fg_bench_gloo *g;
  int rank, size;
  size_t count; /* elements per call, per rank or per peer as bench_raw.h says */
  float *send, *recv;
};

template <typename O>
void tagged(Loop &l, O &o) {
  o.setTag(l.g->tag++);
}

template <typename O>
void summed(Loop &l, O &o) {
  o.setInput(l.send, l.count);
  o.setOutput(l.recv, l.count);
  o.setReduceFunction(kSum);
}

void run_allreduce(Loop &l) {
  gloo::AllreduceOptions o(l.g->ctx);
  summed(l, o);
  tagged(l, o);
  gloo::allreduce(o);
}

void run_broadcast(Loop &l) {
  gloo::BroadcastOptions o(l.g->ctx);
  o.setOutput(l.send, l.count);
  o.setRoot(0);
  tagged(l, o);
  gloo::broadcast(o);
}

void run_reduce(Loop &l) {
  gloo::ReduceOptions o(l.g->ctx);
  summed(l, o);
  o.setRoot(0);
  tagged(l, o);
  gloo::reduce(o);
}

void run_allgather(Loop &l) {
  gloo::AllgatherOptions o(l.g->ctx);
  o.setInput(l.send, l.count);
  o.setOutput(l.recv, l.count * (size_t)l.size);
  tagged(l, o);
  gloo::allgather(o);
}

void run_alltoall(Loop &l) {
  gloo::AlltoallOptions o(l.g->ctx);
  o.setInput(l.send, l.count * (size_t)l.size);
  o.setOutput(l.recv, l.count * (size_t)l.size);
  tagged(l, o);
  gloo::alltoall(o);
}

void run_gather(Loop &l) {
  gloo::GatherOptions o(l.g->ctx);
  o.setInput(l.send, l.count);
  if (l.rank == 0) o.setOutput(l.recv, l.count * (size_t)l.size);
  o.setRoot(0);
  tagged(l, o);
  gloo::gather(o);
}

void run_scatter(Loop &l) {
  gloo::ScatterOptions o(l.g->ctx);
  std::vector<float *> blocks;
  for (int r = 0; l.rank == 0 && r < l.size; r++) blocks.push_back(l.send + (size_t)r * l.count);
  if (l.rank == 0) o.setInputs(blocks, l.count);
  o.setOutput(l.recv, l.count);
  o.setRoot(0);
  tagged(l, o);
  gloo::scatter(o);
}

void run_sendrecv(Loop &l) {
  if (l.size == 1) return;
  const size_t bytes = l.count * sizeof(float);
  auto out = l.g->ctx->createUnboundBuffer(l.send, bytes);
  auto in = l.g->ctx->createUnboundBuffer(l.recv, bytes);
  in->recv((l.rank + l.size - 1) % l.size, kSendrecvSlot);
  out->send((l.rank + 1) % l.size, kSendrecvSlot);
  out->waitSend();
  in->waitRecv();
}

const struct {
  const char *name;
  void (*once)(Loop &);
  bool per_rank; /* the count is a size-th of the buffer */
} kColls[] = {
    {"allreduce", run_allreduce, false}, {"broadcast", run_broadcast, false},
    {"reduce", run_reduce, false},       {"allgather", run_allgather, true},
    {"alltoall", run_alltoall, true},    {"gather", run_gather, true},
    {"scatter", run_scatter, true},      {"sendrecv", run_sendrecv, false},
};
constexpr int kNumColls = sizeof kColls / sizeof kColls[0];

void barrier(fg_bench_gloo *g) {
  gloo::BarrierOptions o(g->ctx);
  o.setTag(g->tag++);
  gloo::barrier(o);
}

double slowest(fg_bench_gloo *g, double mine) {
  double all = 0;
  gloo::AllreduceOptions o(g->ctx);
  o.setInput(&mine, 1);
  o.setOutput(&all, 1);
  o.setReduceFunction(static_cast<void (*)(void *, const void *, const void *, size_t)>(
      &gloo::max<double>));
  o.setTag(g->tag++);
  gloo::allreduce(o);
  return all;
}

double timed_loop(Loop &l, void (*once)(Loop &), int iters, int warmup) {
  for (int i = 0; i < warmup; i++) once(l);
  barrier(l.g);
  auto t0 = Clock::now();
  for (int i = 0; i < iters; i++) once(l);
  std::chrono::duration<double, std::micro> took = Clock::now() - t0;
  return slowest(l.g, took.count() / iters);
}

}  // namespace

extern "C" {

int fg_bench_raw_gloo_open(int rank, int size, const char *dir, const char *host, int timeout_ms,
                           fg_bench_gloo **out, char *err, size_t errlen) {
  *out = nullptr;
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = host;
    auto dev = gloo::transport::tcp::CreateDevice(attr);
    auto g = std::unique_ptr<fg_bench_gloo>(new fg_bench_gloo);
    g->ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
    g->ctx->setTimeout(std::chrono::milliseconds(timeout_ms));
    gloo::rendezvous::FileStore files(dir);
    gloo::rendezvous::PrefixStore store("fgbench-raw-gloo", files);
    g->ctx->connectFullMesh(store, dev);
    *out = g.release();
    return 0;
  } catch (const std::exception &x) {
    snprintf(err, errlen, "%s", x.what());
    return FG_EBACKEND;
  }
}

void fg_bench_raw_gloo_close(fg_bench_gloo *g) { delete g; }

const char *fg_bench_raw_gloo_coll(int i) {
  return i >= 0 && i < kNumColls ? kColls[i].name : nullptr;
}

int fg_bench_raw_gloo(fg_bench_gloo *g, const char *coll, size_t bytes, int iters, int warmup,
                      double *us) {
  *us = 0;
  int which = 0;
  while (which < kNumColls && strcmp(kColls[which].name, coll)) which++;
  if (!g || which == kNumColls || iters < 1 || warmup < 0) return -EINVAL;
  Loop l{g, g->ctx->rank, g->ctx->size, 0, nullptr, nullptr};
  size_t elements = bytes / sizeof(float);
  l.count = kColls[which].per_rank ? elements / (size_t)l.size : elements;
  if (l.count == 0) return -EINVAL;
  try {
    /* Every collective here fits in two buffers of `bytes`. */
    std::vector<float> send(elements), recv(elements);
    for (size_t i = 0; i < elements; i++) send[i] = (float)((i + (size_t)l.rank) % 7);
    l.send = send.data();
    l.recv = recv.data();
    *us = timed_loop(l, kColls[which].once, iters, warmup);
    return 0;
  } catch (const std::bad_alloc &) {
    return -ENOMEM;
  } catch (const std::exception &x) {
    fprintf(stderr, "fgbench: raw gloo %s: %s\n", coll, x.what());
    return FG_EBACKEND;
  }
}

}  // extern "C"
#endif
