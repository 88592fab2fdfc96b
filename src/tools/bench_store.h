/* bench_store.h - what the parts of `fgbench store` share: the servers under test and the
 * load drivers.
 *
 *   bench_store.c          options and the runs
 *   bench_store_report.c   medians, the tables and the ratios
 *   bench_store_servers.c  starting fgstore and torch's TCPStore (1.13, 2.6), stopping them
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
  const char *label; /* "fgstore", "torch-1.13", "torch-2.6" or the --server address */
  char host[256];
  int port;
  fg_store_dialect dialect;
  pid_t pid;    /* 0 for a server this run did not start */
  int stdin_fd; /* torch's server lives until its stdin closes; -1 otherwise */
} bench_server;

/* Start a server on a free port of 127.0.0.1 and wait until it answers. 0 or -errno, with a
 * message in err. */
int bench_server_start_fgstore(bench_server *s, const char *path, char *err, size_t errlen);
/* torch's server in `python` (1.13's python3, or the torch 2.6 root's wrapper), spoken to in
 * `dialect` (LEGACY for 1.13, V2 for 2.x). */
int bench_server_start_torch(bench_server *s, const char *label, const char *python,
                             fg_store_dialect dialect, char *err, size_t errlen);
/* A server started elsewhere; its dialect is detected. */
int bench_server_attach(bench_server *s, const char *hostport, char *err, size_t errlen);
void bench_server_stop(bench_server *s);
/* CPU time a started server has used so far, in seconds (from schedstat, to the
 * nanosecond; else user + system in clock ticks); -1 if unknown. */
double bench_server_cpu_s(const bench_server *s);
/* Its user and system CPU time so far, in seconds (/proc/<pid>/stat: clock ticks). 0 or -errno. */
int bench_server_cpu_split(const bench_server *s, double *user, double *sys);
/* Peak and current resident memory of a started server in KiB (VmHWM, VmRSS); -1 if unknown. */
long bench_server_rss_kib(const bench_server *s, const char *field);
/* Pins every thread of process pid (0: this one) to one CPU. 0 or -errno. */
int bench_pin(pid_t pid, int cpu);
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

/* ---- the report (bench_store_report.c) --------------------------------------------------- */

#define BENCH_MAX_SERVERS 3 /* ours, then torch 1.13's and torch 2.6's */
#define BENCH_MAX_REPEAT 51

/* What one run (or the medians of several) measured on one server. */
typedef struct bench_sample {
  double value;   /* pairs per second, or seconds until everyone was released */
  double release; /* rendezvous: seconds from the last arrival to the last release */
  double cpu;     /* the server's CPU time per pair (us) or per round (ms); < 0 if unknown */
  double driver;  /* the load driver's CPU time, in the same unit */
  double sys;     /* throughput: the system (kernel) part of cpu, same unit; < 0 if unknown */
  long rss_kib;   /* the server's peak RSS; < 0 if unknown */
  long base_kib;  /* its RSS before the connections were opened */
} bench_sample;

typedef enum { BENCH_VALUE, BENCH_RELEASE, BENCH_CPU, BENCH_DRIVER, BENCH_RSS } bench_field;

double bench_sample_field(const bench_sample *s, bench_field f);
/* The median of each field over n runs (RSS: the last run's). */
bench_sample bench_median_sample(const bench_sample *runs, int n);
/* How many times better ours (med[0]) is than the best of med[1..nsrv-1]; -1 if unknown. */
double bench_better(const bench_sample *med, int nsrv, bench_field f, int higher_is_better);
const char *bench_dialect_name(fg_store_dialect d);
const char *bench_with_commas(double v, char *buf, size_t len);
/* The two header lines: the groups' names, then a column per server (and "better"). */
void bench_print_header(const char *first, const char *const *groups, const int *compare,
                        int ngroups, const bench_server *srv, int nsrv);
/* A cell per server of field f formatted with fmt ("-" when unknown). */
void bench_cells(const bench_sample *med, int nsrv, bench_field f, const char *fmt,
                 char (*buf)[32], const char **out);
/* One group of columns: the cells, then the ratio (> 0), nothing (== 0: not a comparison) or
 * "-" (unknown). */
void bench_print_group(const char *const *cells, int nsrv, double ratio);
void bench_print_rss(const bench_server *srv, int nsrv, const char *when);
/* The servers' CPU per pair as user + system. */
void bench_print_cpu_split(const bench_sample *med, const bench_server *srv, int nsrv);

#endif
