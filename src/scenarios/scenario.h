/* scenario.h - the frame every scenario runs in (as nccl-tests' common driver):
 * the runner owns options, the communicator, the checks and the verdict; a
 * scenario is one file that supplies its steps and what it checks. */
#ifndef FG_SCENARIO_H
#define FG_SCENARIO_H

#include <stddef.h>
#include <stdint.h>

#include "fg/comm.h"
#include "scenarios/names.h"

typedef struct scn {
  fg_comm *world;
  int rank;
  int size;
  const char *backend;
  const char *fault;      /* --fault NAME, or NULL */
  const char *output_dir; /* where files go; the same path on every rank */
  int keep_outputs;
  int checks;             /* checks made on this rank */
  int failed;             /* checks that did not hold on this rank */
  const char *name;       /* the scenario running */
} scn;

typedef struct scenario {
  const char *name;
  const char *summary;      /* one line for the list */
  const char *usage;        /* its own options, for --help */
  const char *const *faults; /* what --fault accepts; NULL-terminated */
  /* Parses argv (its own options only; argv[0] is the scenario name) and runs.
   * Returns 0 when it ran (checks decide the verdict), a negative code on an error
   * that stopped it (with a message printed), or SCN_USAGE for bad options. */
  int (*run)(scn *s, int argc, char **argv);
} scenario;

enum { SCN_USAGE = -10000 };

extern const scenario scn_checkpoint, scn_dispatcher, scn_pipeline, scn_build_sync;

/* Records a check. Rank 0 prints every check; other ranks print only the ones that fail,
 * so a failure on any rank names the check, the rank and the values. */
void scn_check(scn *s, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Rank 0 prints a line of progress. */
void scn_log(scn *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints an error naming the rank, on any rank. */
void scn_error(scn *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 if --fault named this fault. */
int scn_fault(const scn *s, const char *name);
/* Wraps a call on communicator c: on failure prints c's message (the group that failed
 * knows why, not the world) and returns rc. c may be NULL for a failure outside any
 * communicator; then rc (a negative errno) is the message. */
int scn_comm(scn *s, fg_comm *c, int rc, const char *what);

/* Collectives on host memory for every backend: on nccl, whose buffers live on the GPU,
 * the data is staged through device memory. Each reports a failure as scn_comm does,
 * under the name `what`, and returns its code. */
/* Every rank's `bytes` bytes of mine, in rank order, into all (size * bytes). */
int scn_allgather(scn *s, fg_comm *c, const void *mine, void *all, size_t bytes,
                  const char *what);
/* count elements of buf from root to every rank of c. */
int scn_broadcast(scn *s, fg_comm *c, void *buf, size_t count, fg_dtype dt, int root,
                  const char *what);
/* vals[0..n) reduced with op across c, in place. */
int scn_allreduce_i32(scn *s, fg_comm *c, int32_t *vals, size_t n, fg_redop op,
                      const char *what);
/* Usage error from a scenario's option parser: prints it and returns SCN_USAGE. */
int scn_usage_error(scn *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The whole program: fgscenario's main. */
int fg_scenario_main(int argc, char **argv);

/* Monotonic seconds. */
double scn_now(void);

#endif
