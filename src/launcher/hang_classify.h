/* hang_classify.h - which rank holds the others up, from what fgrun knows of each local
 * rank: its progress slot (progress_slot.h), its /proc state and the CPU it used while its
 * slot stood still. A pure function of its inputs, so the unit tests feed it synthetic
 * slots and states.
 *
 * The hang is the operation the longest-waiting rank is in (its group and number). Then:
 * - ranks in it at the same number with a different operation, count, dtype or root are a
 *   mismatch: the minority is named (a tie: the side without the lowest rank);
 * - point-to-point: the peer a blocked receive waits for, followed from rank to rank to one
 *   that is not itself waiting for a message (or round a cycle, or off this node);
 * - a collective: of the group's members that have not arrived, the most telling (exited,
 *   stopped or traced, in uninterruptible sleep, a zombie, busy burning CPU, then merely
 *   elsewhere); when all arrived, one that is stopped, traced, in D state or a zombie;
 * - otherwise nobody on this node stands out: the others are on other nodes, or none is.
 */
#ifndef FG_LAUNCHER_HANG_CLASSIFY_H
#define FG_LAUNCHER_HANG_CLASSIFY_H

#include <stdint.h>

#include "common/progress_slot.h"
#include "common/buf.h"
#include "launcher/procinfo.h"

/* One local rank as the classifier sees it. */
typedef struct fg_hang_rank {
  int rank, pid;
  int running;          /* 0: it ended; end says how */
  const char *end;      /* "exited with code 0", ... */
  fg_progress_slot s;   /* state FG_PROGRESS_NONE: it marked nothing (yet) */
  fg_proc_info p;       /* p.ok 0: unknown */
  uint64_t still_ns;    /* how long its slot has not changed (or since it started) */
  uint64_t cpu_still_ns; /* CPU time it used in that while */
  uint64_t runq_still_ns; /* and how long it waited for a CPU (a loaded machine) */
} fg_hang_rank;

enum fg_hang_kind {
  FG_HANG_NONE,      /* no rank has waited in an operation for the timeout */
  FG_HANG_CULPRIT,   /* culprits hold the waiters up */
  FG_HANG_MISMATCH,  /* culprits called the hang's number differently */
  FG_HANG_CYCLE,     /* the waiters wait for each other's messages */
  FG_HANG_REMOTE,    /* the waiters wait for ranks on other nodes */
  FG_HANG_UNCLEAR,   /* nobody on this node stands out */
};

/* Why a culprit holds the others up (its most telling fact). */
enum fg_hang_why {
  FG_WHY_ELSEWHERE, /* sleeping (or idle) somewhere else */
  FG_WHY_BUSY,      /* burning CPU */
  FG_WHY_ZOMBIE,
  FG_WHY_DSTATE,
  FG_WHY_TRACED,
  FG_WHY_STOPPED,
  FG_WHY_EXITED,
};

typedef struct fg_hang_verdict {
  enum fg_hang_kind kind;
  int hang;          /* the longest-waiting rank (index): its slot names the operation */
  int *culprits;     /* indices, ascending */
  int nculprits;
  int *waiters;      /* indices of the ranks in the hang's operation, culprits excluded */
  int nwaiters;
  int *ahead;        /* collectives: ranks already in a later operation of the same group,
                      * waiting there (they got through the hang's before the culprit stopped) */
  int nahead;
  enum fg_hang_why why;
  int remote_peer;   /* FG_HANG_REMOTE from a receive: the rank it waits for, else -1 */
  const char *field; /* FG_HANG_MISMATCH: "operation", "count", "dtype" or "root" */
} fg_hang_verdict;

/* Classifies n ranks at now_ns (CLOCK_MONOTONIC, as the slots' times). world_size: the
 * world's ranks on every node (0: unknown, taken as only these). Returns the kind (also
 * in v); v owns arrays: release with fg_hang_verdict_free. A rank is busy when it used at
 * least a quarter of the time since its last sign of life (slot or output) on a CPU or
 * waiting for one (on a loaded machine a spinning rank gets a fraction of a core). */
enum fg_hang_kind fg_hang_classify(const fg_hang_rank *r, int n, int world_size,
                                   uint64_t now_ns, uint64_t timeout_ns, fg_hang_verdict *v);
void fg_hang_verdict_free(fg_hang_verdict *v);

/* The culprit line, without "fgrun: hang: " and newline, e.g. "rank 2 (pid 123) is
 * stopped (SIGSTOP) in allreduce #290 on world; ranks 0,1,3 wait for it there for 3.0 s". */
void fg_hang_format_verdict(const fg_hang_rank *r, int n, const fg_hang_verdict *v,
                            uint64_t now_ns, fg_buf *out);
/* What the culprit did, after "rank 3 (...)", for the job's summary: "held the others up:
 * it never arrived at allreduce #3 on world; it was sleeping", "held the others up: it was
 * stopped (SIGSTOP) in allreduce #290 on world", "held the others up: it never sent what
 * rank 0 waited for in recv #4 on world; it was sleeping", "called allreduce #5 on world
 * with count 512 where ranks 0,2,3 passed count 1024". Empty for kinds without culprits. */
void fg_hang_format_cause(const fg_hang_rank *r, const fg_hang_verdict *v, int culprit,
                          char *out, size_t len);

/* After a failure: ranks whose slots (running or not) are in the same numbered collective,
 * or left it with an error, with different arguments (gloo aborts on a count mismatch instead of hanging). Returns
 * FG_HANG_MISMATCH with v filled as fg_hang_classify would, else FG_HANG_NONE. The line
 * (fg_hang_format_verdict) then says no "all wait" when the longest waiter has ended. */
enum fg_hang_kind fg_hang_find_mismatch(const fg_hang_rank *r, int n, fg_hang_verdict *v);

/* "allreduce #42 on world" (and the count, dtype, root or peer with args set). */
void fg_hang_put_op(fg_buf *b, const fg_progress_slot *s, int args);
/* "1.5 s", "31 s" */
void fg_hang_put_seconds(fg_buf *b, uint64_t ns);
/* "0-3,5,7": ranks in ascending order, runs of three or more as ranges. */
void fg_hang_format_ranks(const int *ranks, int n, char *out, size_t len);
/* A rank's state in words: "stopped (SIGSTOP)", "traced by pid 12", "busy (running, 2.9 s
 * CPU in 3.0 s)", "sleeping". */
void fg_hang_put_state(fg_buf *b, const fg_hang_rank *r);
/* Whether it counts as busy (and its state shows its CPU time): neither stopped, traced,
 * in D state nor a zombie, with at least a quarter of its still time on a CPU or waiting
 * for one. */
int fg_hang_rank_busy(const fg_hang_rank *r);

#endif
