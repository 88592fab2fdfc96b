/* gloo_internal.h - what the gloo shim's two C++ files share: the context behind an
 * fg_gloo handle, the message slots, and the watch's entry points (gloo_watch.cc) that the
 * calls in gloo_shim.cc use. Not for C: backend_gloo.c sees only gloo_shim.h. */
#ifndef FG_COMM_GLOO_INTERNAL_H
#define FG_COMM_GLOO_INTERNAL_H

#include <gloo/rendezvous/context.h>
#include <gloo/transport/device.h>
#include <gloo/transport/unbound_buffer.h>

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "comm/gloo_shim.h"

using Buffer = gloo::transport::UnboundBuffer;

struct fg_gloo_device {
  std::shared_ptr<gloo::transport::Device> dev;
};

struct fg_gloo {
  std::shared_ptr<gloo::rendezvous::Context> ctx;
  /* Point-to-point messages so far, per peer and direction: the slot of the next one. */
  std::vector<uint64_t> sent, received;
  uint32_t tag = 0;

  std::mutex mu; /* guards what follows: the main thread and the watcher share it */
  int failed = 0;
  fg_gloo_error first_error{};
  int blamed = -1; /* the peer whose connection broke, once known */
  std::string blame;
  std::vector<Buffer *> inflight; /* buffers an operation may be waiting on */

  std::vector<char> canary_bytes, alarm_bytes;
  std::vector<std::unique_ptr<Buffer>> canaries; /* [peer]; none for this rank */
  std::unique_ptr<Buffer> alarm;
  int goodbyes = 0; /* peers that said goodbye, counted by the watcher */
  std::condition_variable goodbye_cv;
  std::thread watcher;

  ~fg_gloo() {
    if (watcher.joinable()) {
      alarm->abortWaitRecv();
      watcher.join();
    }
    canaries.clear();
    alarm.reset();
    ctx.reset();
  }
};

struct fg_gloo_batch {
  fg_gloo *g;
  std::vector<fg_gloo_xfer> xfers;
  std::vector<std::unique_ptr<Buffer>> bufs;
};

/* Shared by gloo_shim.cc and gloo_watch.cc only: hidden from libfg.so's users. */
namespace __attribute__((visibility("hidden"))) fg_gloo_detail {

/* Above the prefixes gloo's collectives use (0x01..0x08), so these never meet them. */
constexpr uint64_t kP2pSlot = 0x40ull << 56;
constexpr uint64_t kP2pCounterMask = (1ull << 56) - 1;
constexpr uint64_t kCanarySlot = 0x41ull << 56;
constexpr uint64_t kAlarmSlot = 0x42ull << 56;

/* gloo starts its messages with "[/path/to/file.cc:123] ": noise for our users. */
inline const char *without_source(const char *msg) {
  if (msg[0] != '[') return msg;
  const char *end = strstr(msg, "] ");
  return end && memchr(msg, ':', (size_t)(end - msg)) ? end + 2 : msg;
}

inline int set_error(fg_gloo_error *e, int code, int peer, const char *msg) {
  e->peer = peer;
  snprintf(e->msg, sizeof e->msg, "%s", msg);
  return code;
}

/* --- gloo_watch.cc ----------------------------------------------------------------------- */
/* Posts g's canaries and alarm and starts its watcher; g->ctx is connected. */
void start_watch(fg_gloo *g);
/* Completes this rank's canary and alarm receives on every peer, and waits for theirs. */
void say_goodbye(fg_gloo *g);
/* Records g's first failure and fails every connection of the context; g may be null. */
void mark_failed(fg_gloo *g, int code, const fg_gloo_error *e);
/* A gloo IoException's message as a code in e, blaming the peer whose connection broke if
 * one did, else peer_hint; g (which may be null) fails with it. */
int io_failure(fg_gloo *g, const char *what, int peer_hint, fg_gloo_error *e);

}  // namespace fg_gloo_detail

#endif
