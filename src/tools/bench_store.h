/* bench_store.h - what the parts of `fgbench store` share: the servers under test and the
 * load drivers.
 *
 *   bench_store.c          options, the runs, the report
 *   bench_store_servers.c  starting fgstore and torch 1.13's TCPStore, stopping them, RSS
 *   bench_store_load.c     the lean throughput load: K connections on a few epoll threads
 *   bench_store_rdzv.c     thousands of raw connections on one epoll loop */
#ifndef FG_TOOLS_BENCH_STORE_H
#define FG_TOOLS_BENCH_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "fg/store.h"

typedef struct bench_server {
  const char *label; /* "fgstore", "torch-1.13" or the --server address */
  char host[256];
  int port;
  fg_store_dialect dialect;
  pid_t pid;    /* 0 for a server this run did not start */
  int stdin_fd; /* torch's server lives until its stdin closes; -1 otherwise */
} bench_server;

/* Start a server on a free port of 127.0.0.1 and wait until it answers. 0 or -errno, with a
 * message in err. */
int bench_server_start_fgstore(bench_server *s, const char *path, char *err, size_t errlen);
int bench_server_start_torch(bench_server *s, const char *python, char *err, size_t errlen);
/* A server started elsewhere; its dialect is detected. */
int bench_server_attach(bench_server *s, const char *hostport, char *err, size_t errlen);
void bench_server_stop(bench_server *s);
/* CPU time a started server has used so far, in seconds (from schedstat, to the
 * nanosecond; else user + system in clock ticks); -1 if unknown. */
double bench_server_cpu_s(const bench_server *s);
/* Peak and current resident memory of a started server in KiB (VmHWM, VmRSS); -1 if unknown. */
long bench_server_rss_kib(const bench_server *s, const char *field);
/* The server's address, resolved. 0 or -errno. */
int bench_server_sockaddr(const bench_server *s, struct sockaddr_storage *ss, socklen_t *len);

/* The lean throughput load: `conns` connections (each its own key) spread over `threads`
 * epoll threads, each connection doing SET+WAIT, then GET, over and over. */
typedef struct bench_load bench_load;

/* Connects (and greets, in V2) every connection; not timed. */
int bench_load_open(bench_load **out, const bench_server *s, int conns, int threads,
                    int value_size, char *err, size_t errlen);
/* Lets the load run for `seconds` (once per bench_load); *pairs completed in that time. */
int bench_load_run(bench_load *l, double seconds, uint64_t *pairs, char *err, size_t errlen);
void bench_load_close(bench_load *l);

/* `conns` connections that each ADD to one counter and then WAIT for a key the last arrival
 * sets: the shape of a store-based rendezvous or barrier. */
typedef struct bench_rdzv bench_rdzv;

/* Connects (and greets, in V2) every connection, and shares them out among `threads`
 * driver threads; this part is not timed. */
int bench_rdzv_open(bench_rdzv **out, const bench_server *s, int conns, int threads, char *err,
                    size_t errlen);
/* One round under fresh keys named by round: *seconds from the first ADD sent to the last
 * connection released; *release from the last arrival's SET sent to the last release (the
 * server waking every waiter). */
int bench_rdzv_round(bench_rdzv *r, int round, double *seconds, double *release, char *err,
                     size_t errlen);
void bench_rdzv_close(bench_rdzv *r);

#endif
