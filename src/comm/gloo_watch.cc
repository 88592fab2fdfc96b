/* gloo_watch.cc - the watch over each gloo context's connections, and the goodbye of a rank
 * that leaves cleanly. gloo (0.0~git20220518) does not watch well enough on its own:
 *  - a broken connection fails only the operations on that connection, so a rank waiting
 *    on a live peer (itself stuck) waits out the whole timeout;
 *  - a send still queued on a broken connection is never woken at all;
 *  - its messages name a peer by address, and not always by the address we know it by.
 * So every context posts, for every peer, a receive that no data ever completes (a
 * canary): a broken connection fails it, which names the peer. One more receive per peer,
 * on a shared buffer (the alarm), wakes a watcher thread on any failure; the watcher then
 * wakes the operation in flight and fails every connection of the context, so this rank
 * and, through the closed sockets, its peers fail within milliseconds. A rank that leaves
 * cleanly first completes both receives on its peers (a goodbye), so it is not mistaken
 * for a failed one. */
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>

#include "comm/gloo_internal.h"

using std::chrono::milliseconds;

namespace fg_gloo_detail {
namespace {

/* The watcher's wait; when it ends, gloo fails the context, so make it outlast any job. */
constexpr milliseconds kForever = milliseconds(1000LL * 3600 * 24 * 365);
/* How long a leaving rank waits for its goodbyes to be written. */
constexpr milliseconds kGoodbyeWait = milliseconds(2000);
/* How long it then waits for its peers' goodbyes: ranks that close together do so within a
 * few milliseconds; a peer still at work (this rank leaves early) sends none, and waiting
 * longer would only hold back the news that this rank is gone. */
constexpr milliseconds kGoodbyeLinger = milliseconds(300);
/* gloo's words for connections it closed after a timeout elsewhere in the context. */
constexpr const char *kTimeoutFallout = "Application timeout caused pair closure";

/* Which peer's connection broke, if one did: its canary holds the error. Probing aborts the
 * wait first, so a healthy canary answers at once and stays posted. */
int probe_canaries(fg_gloo *g) {
  std::lock_guard<std::mutex> lock(g->mu);
  for (size_t r = 0; g->blamed < 0 && r < g->canaries.size(); r++) {
    if (!g->canaries[r]) continue;
    try {
      g->canaries[r]->abortWaitRecv();
      g->canaries[r]->waitRecv(nullptr, milliseconds(1));
    } catch (const std::exception &x) {
      const char *msg = without_source(x.what());
      if (strstr(msg, kTimeoutFallout)) continue;
      g->blamed = (int)r;
      g->blame = msg;
    }
  }
  return g->blamed;
}

/* A broken connection fails its operations one after the other: the one that woke us may
 * come before the canary. Give the rest of them a moment. */
int find_blame(fg_gloo *g) {
  for (int tries = 0; tries < 50; tries++) {
    if (probe_canaries(g) >= 0) return g->blamed;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return -1;
}

/* Wakes whatever the main thread waits on, even a send gloo itself would never wake. */
void abort_inflight(fg_gloo *g) {
  std::lock_guard<std::mutex> lock(g->mu);
  for (Buffer *b : g->inflight) {
    b->abortWaitSend();
    b->abortWaitRecv();
  }
}

/* Fails every connection of the context, with gloo's own means: a receive that times out
 * makes it signal every pair, which closes their sockets (so the peers hear of it too). */
void poison(fg_gloo *g) {
  char byte = 0;
  try {
    auto b = g->ctx->createUnboundBuffer(&byte, 1);
    b->waitRecv(nullptr, milliseconds(1));
  } catch (...) {
  }
}

void record_failure(fg_gloo *g, int code, const fg_gloo_error *e) {
  {
    std::lock_guard<std::mutex> lock(g->mu);
    if (g->failed) return;
    g->failed = code;
    g->first_error = *e;
  }
  g->goodbye_cv.notify_all(); /* a leaving rank waits no longer */
}

void watch(fg_gloo *g) {
  for (;;) {
    try {
      if (!g->alarm->waitRecv(nullptr, kForever)) return; /* aborted: closing */
      {
        std::lock_guard<std::mutex> lock(g->mu);          /* a peer said goodbye */
        g->goodbyes++;
      }
      g->goodbye_cv.notify_all();
      continue;
    } catch (...) {
    }
    int peer = find_blame(g);
    if (peer < 0) return; /* a timeout in this rank: the operation that had it reports it */
    fg_gloo_error e{};
    record_failure(g, set_error(&e, FG_EPEER, peer, g->blame.c_str()), &e);
    abort_inflight(g);
    poison(g);
    return;
  }
}

}  // namespace

void start_watch(fg_gloo *g) {
  const int n = g->ctx->size, me = g->ctx->rank;
  g->canary_bytes.assign((size_t)n, 0);
  g->alarm_bytes.assign((size_t)n, 0);
  g->canaries.resize((size_t)n);
  g->alarm = g->ctx->createUnboundBuffer(g->alarm_bytes.data(), (size_t)n);
  for (int r = 0; r < n; r++) {
    if (r == me) continue;
    g->canaries[(size_t)r] = g->ctx->createUnboundBuffer(&g->canary_bytes[(size_t)r], 1);
    g->canaries[(size_t)r]->recv(r, kCanarySlot);
    g->alarm->recv(r, kAlarmSlot, (size_t)r, 1);
  }
  g->watcher = std::thread(watch, g);
}

/* Completes this rank's canary and alarm receives on every peer, and waits for theirs, before
 * it goes. */
void say_goodbye(fg_gloo *g) {
  char byte = 0;
  auto bye = g->ctx->createUnboundBuffer(&byte, 1);
  int posted = 0;
  for (int r = 0; r < g->ctx->size; r++) {
    if (r == g->ctx->rank) continue;
    try {
      bye->send(r, kCanarySlot);
      posted++;
      bye->send(r, kAlarmSlot);
      posted++;
    } catch (...) {
      /* A peer that is gone already needs no goodbye. */
    }
  }
  auto deadline = std::chrono::steady_clock::now() + kGoodbyeWait;
  for (int i = 0; i < posted; i++) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline -
                                                         std::chrono::steady_clock::now());
    bye->waitSend(std::max(left, milliseconds(1)));
  }
  /* Stay until every peer's goodbye has come too (the watcher counts them): a rank that closes
   * its sockets first would leave a slower peer's goodbye unwritten, and that peer waiting for
   * it until the deadline. No gloo wait here: one that timed out would fail the context. */
  auto linger = std::min(deadline, std::chrono::steady_clock::now() + kGoodbyeLinger);
  std::unique_lock<std::mutex> lock(g->mu);
  g->goodbye_cv.wait_until(lock, linger,
                           [&] { return g->goodbyes >= g->ctx->size - 1 || g->failed; });
}

void mark_failed(fg_gloo *g, int code, const fg_gloo_error *e) {
  if (!g) return;
  record_failure(g, code, e);
  poison(g);
}

int io_failure(fg_gloo *g, const char *what, int peer_hint, fg_gloo_error *e) {
  const char *msg = without_source(what);
  int timed_out = strcasestr(msg, "timed out") || strcasestr(msg, "timeout");
  int code = set_error(e, timed_out ? -ETIMEDOUT : FG_EPEER, peer_hint, msg);
  if (g && find_blame(g) >= 0) code = set_error(e, FG_EPEER, g->blamed, g->blame.c_str());
  mark_failed(g, code, e);
  return code;
}

}  // namespace fg_gloo_detail
