/* server.h - the store server on a libuv loop (embedded in fgrun, run alone by fgstore).
 *
 * One listening socket speaks both dialects, chosen per connection from its
 * first bytes. Everything runs on the caller's loop thread; nothing blocks.
 * A connection that breaks a limit or the protocol is closed with one log
 * line naming the peer and the reason; no other connection is affected. */
#ifndef FG_STORE_SERVER_H
#define FG_STORE_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct fg_server fg_server;

typedef struct fg_server_config {
  const char *host;          /* address to bind (default "127.0.0.1") */
  int port;                  /* 0: the OS picks a free port */
  uint64_t max_key;          /* bytes per key (default 8 KiB) */
  uint64_t max_value;        /* bytes per value (default 8 MiB) */
  uint64_t max_request;      /* bytes per request, and per reply to one request (64 MiB) */
  uint64_t max_total;        /* bytes of keys and values stored (default 1 GiB) */
  /* Bytes of partly received requests over 64 KiB, all connections together (256 MiB); the
   * connection whose request would pass it is closed. */
  uint64_t max_buffered;
  int max_connections;       /* open connections (default 16384) */
  int backlog;               /* listen backlog (default 4096) */
  /* A connection that owes the rest of a request, or its token, and sends nothing for this
   * long is closed (default 60000; 0: never). One that is quiet between requests is not. */
  int idle_timeout_ms;
  /* NULL or "": any client. Otherwise every connection must open with this token (proto.h),
   * which torch's own clients cannot do. Copied; never logged. */
  const char *token;
} fg_server_config;

/* Memory. The server's heap stays below roughly
 *     max_total x 1.5 (allocator overhead on small keys and values)
 *   + max_buffered
 *   + per connection: about 1 KiB; up to 64 KiB of a request that has not fully arrived
 *     (or of requests deferred as below); and the replies it asked for and has not read: once
 *     1 MiB of them wait, its further requests wait unread, so that is at most 1 MiB plus
 *     one reply (a value, or up to max_request for MULTI_GET and LIST_KEYS). Watch
 *     notifications, which other clients cause, can add up to 256 MiB before the watcher
 *     is closed for not reading them.
 * Reads use one 64 KiB buffer for all connections. */

void fg__server_config_init(fg_server_config *cfg);

/* Binds and listens. On failure returns a negative errno and writes a message naming the
 * address into err. */
int fg__server_start(uv_loop_t *loop, const fg_server_config *cfg, fg_server **out, char *err,
                    size_t errlen);

/* The bound port (useful when cfg->port was 0). */
int fg__server_port(const fg_server *srv);

/* Deletes every key that starts with prefix; returns how many. Waiters are not woken. */
size_t fg__server_erase_prefix(fg_server *srv, const char *prefix);

/* Counters for logs, tests and benchmarks. */
typedef struct fg_server_stats {
  uint64_t keys;
  uint64_t bytes;         /* stored key + value bytes */
  uint64_t connections;   /* open now */
  uint64_t accepted;      /* since start */
  uint64_t rejected;      /* connections closed for breaking a limit or the protocol */
  uint64_t requests;
  uint64_t buffered;      /* bytes held for partly received requests */
} fg_server_stats;

void fg__server_get_stats(const fg_server *srv, fg_server_stats *st);

/* Stops listening and closes every connection. The memory is released from close callbacks,
 * so the loop must run afterwards (uv_run until it returns). */
void fg__server_close(fg_server *srv);

#endif
