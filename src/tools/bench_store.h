/* bench_store.h - what the parts of `fgbench store` share: the servers under test and the
 * rendezvous driver.
 *
 *   bench_store.c          options, the throughput runs, the report
 *   bench_store_servers.c  starting fgstore and torch 1.13's TCPStore, stopping them, RSS
 *   bench_store_rdzv.c     thousands of raw connections on one epoll loop */
#ifndef FG_TOOLS_BENCH_STORE_H
#define FG_TOOLS_BENCH_STORE_H

#include <stddef.h>
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
/* CPU time (user + system) a started server has used so far, in seconds; -1 if unknown. */
double bench_server_cpu_s(const bench_server *s);
/* Peak and current resident memory of a started server in KiB (VmHWM, VmRSS); -1 if unknown. */
long bench_server_rss_kib(const bench_server *s, const char *field);

/* `conns` connections that each ADD to one counter and then WAIT for a key the last arrival
 * sets: the shape of a store-based rendezvous or barrier. */
typedef struct bench_rdzv bench_rdzv;

/* Connects (and greets, in V2) every connection; this part is not timed. */
int bench_rdzv_open(bench_rdzv **out, const bench_server *s, int conns, char *err,
                    size_t errlen);
/* One round under fresh keys named by round: *seconds from the first ADD sent to the last
 * connection released. */
int bench_rdzv_round(bench_rdzv *r, int round, double *seconds, char *err, size_t errlen);
void bench_rdzv_close(bench_rdzv *r);

#endif
