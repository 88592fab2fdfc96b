/* bench_coll.h - `fgbench <collective>`, in the shape of nccl-tests: one driver
 * (bench_coll.c: the size sweep, timing, checking, the table; its options in
 * bench_coll_opts.c), one small struct per collective (bench_coll_ops.c) and the raw
 * libraries set beside fgcomm in --side-by-side mode (bench_coll_peers.c).
 *
 * Sizes follow nccl-tests and bench_raw.h: a swept size is the larger buffer of one rank; a
 * collective whose buffer holds a block per rank moves size / ranks per block. */
#ifndef FG_TOOLS_BENCH_COLL_H
#define FG_TOOLS_BENCH_COLL_H

#include <stddef.h>
#include <stdint.h>

#include "fg/comm.h"

/* The values every rank contributes repeat with this period in the element index, so a
 * rank can tabulate every rank's values, and every result, once per run. */
#define BC_PERIOD 1100

/* What a collective's expectations read: every rank's values and their reduction, for one
 * element index modulo BC_PERIOD. */
typedef struct bc_values {
  int size;
  double *input;  /* [rank * BC_PERIOD + j] */
  double *folded; /* [j]: the reduction over every rank (AVG divided) */
} bc_values;

/* One call of a collective: what its run and expect functions get. */
typedef struct bc_call {
  fg_comm *comm;
  int rank, size;
  fg_dtype dt;
  fg_redop op;
  int root;
  size_t count;      /* the count argument of the fg_* call */
  void *send, *recv; /* backend memory; the same buffer for broadcast */
  size_t shift;      /* element offset into the value tables: a check's own data */
  const bc_values *v;
} bc_call;

enum {
  BC_REDUCES = 1,    /* takes a reduction (-o) */
  BC_ROOTED = 2,     /* takes a root (-r) */
  BC_ONE_BUFFER = 4, /* one buffer (broadcast): the root's holds the data */
  BC_PER_RANK = 8,   /* count is a ranks-th of the swept size */
  BC_FROM_ROOT = 16, /* only the root's data reaches anyone (what --corrupt must touch) */
  BC_NO_IN_PLACE_CHECK = 32 /* in place, results are not promised (nccl-tests: N/A) */
};

/* One collective, as nccl-tests describes one: how big its buffers are, where its in-place
 * call reads and writes, what it must produce, how to call it once, and its bus-bandwidth
 * factor. */
typedef struct bc_coll {
  const char *name;
  unsigned flags;
  /* Buffers in blocks of count elements: 1, or 0 for one block per rank. */
  int send_blocks, recv_blocks;
  /* In place, both buffers lie in one: send at rank * send_in_place blocks, recv at
   * rank * recv_in_place blocks (nccl-tests' in-place offsets). */
  int send_in_place, recv_in_place;
  int (*run)(const bc_call *k);
  /* What element j of the receive buffer must hold afterwards; NAN where nothing is
   * promised (reduce and gather away from the root). */
  double (*expect)(const bc_call *k, size_t j);
  /* busbw = algbw * factor, as nccl-tests computes it. */
  double (*busbw_factor)(int ranks);
} bc_coll;

/* The collectives, in the order `fgbench all` runs them; NULL-terminated. */
extern const bc_coll *const bc_colls[];
const bc_coll *bc_find(const char *name);

/* Element j of rank r's send buffer (through the table). */
double bc_input(const bc_call *k, int r, size_t j);
/* Fills v for these arguments (dtype, op, ranks); 0 or -ENOMEM. */
int bc_values_make(bc_values *v, int size, fg_dtype dt, fg_redop op, int reduces);
void bc_values_free(bc_values *v);

/* --- the raw libraries beside fgcomm (--side-by-side) ------------------------------------- */

typedef struct bc_options bc_options;

typedef struct bc_peer {
  const char *name; /* "raw-gloo", "raw-mpi", "torch" */
  void *state;
  /* 1 if it can run this collective with these arguments. */
  int (*supports)(void *state, const char *coll, fg_dtype dt, fg_redop op, int root);
  /* Microseconds per call of `iters` back-to-back calls after `warmup`, behind a barrier of
   * its own; the slowest rank's. bytes is the swept size. */
  int (*time)(void *state, const char *coll, size_t bytes, int iters, int warmup, double *us);
  void (*close)(void *state);
} bc_peer;

enum { BC_MAX_PEERS = 3 };

/* Opens the peers that fit this run (raw gloo beside gloo, raw MPI beside mpi under mpirun,
 * torch beside gloo), collectively over world: every rank gets the same list. A peer that
 * cannot start is left out with a note on rank 0's stdout. Returns how many. */
int bc_peers_open(fg_comm *world, const bc_options *o, bc_peer *peers);
void bc_peers_close(bc_peer *peers, int n);

/* --- the report (bench_coll_report.c): rank 0's nccl-tests text, JSON and our CSV -------- */

typedef struct bc_report bc_report;

/* Collective over world: every rank's device line reaches rank 0. 0 or a failure code;
 * on ranks other than 0 every other call below does nothing. */
int bc_report_open(bc_report **out, fg_comm *w, const bc_options *o, const char *launcher);
void bc_report_close(bc_report *r);
/* One test (one collective): nccl-tests' header, device lines and table header; its JSON
 * file when -J is given. */
void bc_report_begin(bc_report *r, const bc_coll *coll, const bc_peer *peers, int npeers);
/* A row: its first columns, then out-of-place and in-place results, then the peers'
 * out-of-place figures (comment lines under the row), then its end. */
void bc_report_row(bc_report *r, size_t bytes, size_t count, fg_dtype dt, const char *redop,
                   int root);
/* checked 0: #wrong says N/A. */
void bc_report_result(bc_report *r, int in_place, double us, double algbw, double busbw,
                      int checked, long long wrong);
void bc_report_peer(bc_report *r, int p, double us, double algbw, double busbw, double ratio);
void bc_report_row_end(bc_report *r);
/* nccl-tests' footer, with errors (the checks that found a wrong value, over every rank).
 * Returns 1 if the average bus bandwidth is below 0.9 of $NCCL_TESTS_MIN_BW, else 0. */
int bc_report_end(bc_report *r, long long errors);

/* --- options (bench_coll_opts.c): nccl-tests' letters, names, meanings and defaults ---- */

enum { BC_MAX_REPEAT = 99 };

struct bc_options {
  const char *coll; /* a name, or "all" */
  const char *backend;
  uint64_t min_bytes, max_bytes, step_bytes; /* -b -e -i */
  uint64_t step_factor;                      /* -f: above 1 multiplies, else -i adds */
  int iters, agg_iters, warmup, run_cycles;  /* -n -m -w -N (0: forever) */
  int check;                                 /* -c: checks per size and placement, 0 off */
  int ntypes, nops;                          /* -d and -o: one, or every one ("all") */
  fg_dtype types[FG_DTYPE_COUNT];
  fg_redop ops[FG_REDOP_COUNT];
  int root;          /* -r: -1 for every root */
  int average;       /* -a: 0 rank 0's time, 1 the mean, 2 the minimum, 3 the maximum */
  int blocking;      /* -z 0..3 */
  int cputime;       /* -C: the column says cputime */
  int timestamps;    /* -S */
  int parallel_init; /* -p */
  int unalign;       /* -u: elements the buffers are shifted by */
  int timeout_ms;    /* -T */
  const char *json;  /* -J */
  int argc;          /* the command line, for the JSON file */
  char **argv;
  /* fgbench's own */
  int repeat;
  int corrupt; /* one rank corrupts its contribution: every check must fail */
  int side_by_side;
  const char *peers; /* comma list limiting the peers; NULL: every one that fits */
  const char *csv;
  const char *python, *torch_script;
};

/* argv[0] is the collective. 0, -1 after --help (exit 0), or 2 with one line on stderr. */
int bc_parse_options(int argc, char **argv, bc_options *o);

/* nccl-tests' name of a type ("float", "half", ...). */
const char *bc_type_name(fg_dtype dt);

#endif
