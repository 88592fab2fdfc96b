/* hang.h - fgrun's side of hang attribution.
 *
 * fgrun makes the progress file (src/common/progress_slot.h: one slot per local rank, which
 * libfg, or fgrun's Python hook for torch, writes on entering and leaving every operation)
 * before the first attempt and names it in each worker's FG_PROGRESS_FILE. With
 * --hang_timeout, a timer reads the slots; once a running rank has been in one operation
 * longer than the timeout, fgrun looks at every local rank (its slot, its /proc state, the
 * CPU it used while its slot stood still: hang_classify.h) and reports, first the rank that
 * holds the others up, then where every rank is:
 *
 *   fgrun: hang: rank 2 (pid 123) is stopped (SIGSTOP) in allreduce #290 on world; ranks
 *   0,1,3 wait for it there for 3.0 s
 *   fgrun:   where: ranks 0-3 have been in allreduce #290 on world for 3.0 s
 *   fgrun:   rank 0 (pid 120): sleeping, 0.0 s CPU in 3.0 s; in allreduce #290 ... for 3.0 s
 *   ...
 *   fgrun:   stack of rank 2 (pid 123): ...
 *
 * Ranks that mark nothing (Python programs on torch without the hook's wrapper, or torch
 * collectives it does not wrap) are seen through their output and their Python stacks: when
 * no rank wrote output or changed its slot for the timeout, fgrun samples every Python
 * rank's traceback and groups the ranks by their innermost frame in the user's code
 * (hang_python.h).
 *
 * Stacks are read by fgrun-stack child processes, never on the agent's loop (hang_stacks.h):
 * the loop does only /proc reads and slot reads. A hang is reported once (until the waiting
 * ranks move on); the rank it named is kept as the attempt's hang cause for the summary.
 * The same slots explain a rank that exited 0 while its peers still needed it
 * (fg_hang_note_early_exits). */
#ifndef FG_LAUNCHER_HANG_H
#define FG_LAUNCHER_HANG_H

#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "launcher/worker.h"

/* fgrun's exit status when --hang_action kill ended the job (as timeout(1)). */
#define FG_HANG_EXIT_STATUS 124

/* Which ranks' stacks a report shows (--hang_stacks). */
enum fg_hang_stacks { FG_STACKS_NONE, FG_STACKS_CULPRIT, FG_STACKS_ALL };

/* The signal fgrun's Python hook has faulthandler dump tracebacks on: a real-time signal
 * that neither Slurm (SIGUSR1/2, SIGTERM, SIGCONT, SIGKILL), Open MPI nor torch use. */
#define FG_HANG_PY_SIGNAL (SIGRTMIN + 10)

/* How long each pass of stack reading may take before its fgrun-stack children are killed
 * (a rank's Python traceback and native frames; the report's own line never waits): 5 s, or
 * FG_HANG_STACKS_TIMEOUT seconds (for a machine, or a sanitizer build, that reads slowly). */
double fg_hang_stacks_bound_s(void);
#define FG_HANG_STACKS_BOUND_S fg_hang_stacks_bound_s()

typedef struct fg_hang_watch fg_hang_watch; /* hang.c: per-rank change tracking */
typedef struct fg_stacks fg_stacks;         /* hang_stacks.h */
typedef void (*fg_hang_cb)(void *data);

typedef struct fg_hang {
  char *path;        /* FG_PROGRESS_FILE; NULL when there is none */
  int fd;            /* kept open: the memfd behind /proc/<fgrun>/fd/<fd> */
  int remove;        /* path is a real file, removed at close */
  void *map;
  size_t size;
  int nslots;
  double timeout;    /* seconds; 0: no hang reports */
  uint64_t reported; /* the hang reported last */
  int world_size;    /* every node's ranks (0: this node's only) */

  /* set by fg_hang_set_report */
  uv_loop_t *loop;
  const char *stack_helper; /* fgrun-stack, NULL: no stacks */
  enum fg_hang_stacks stacks;
  int py_signal;            /* the hook's faulthandler signal */
  fg_hang_cb on_reported;   /* a report, stacks included, is complete */
  void *cb_data;

  fg_hang_watch *watch;     /* nslots entries */
  uint64_t attempt_start_ns, last_activity_ns;
  int quiet_reported;       /* this quiet period was reported */
  uint64_t quiet_next_ns;   /* a silence is sampled again from then on */
  struct fg_py_where *quiet_prev; /* the last sample's places (nslots), to confirm it */
  uint64_t *quiet_prev_cpu; /* and each rank's CPU and CPU-wait time then (2 x nslots) */
  uint64_t quiet_prev_ns;
  int quiet_prev_ok;
  fg_stacks *reading;       /* the stacks being read, NULL when none */
  int report_open;          /* a report's stacks are still being read */

  /* The rank the last report named, kept until the ranks it held up move on. */
  int cause_rank, cause_pid;
  char cause[320];          /* "never arrived at allreduce #3 on world (it was sleeping)";
                             * "": no cause */
  int hang_local_rank;      /* the longest waiter, watched for the hang to resolve */
  uint64_t hang_seq;
  char hang_group[96];
} fg_hang;

/* Creates the progress file for nslots local ranks: a memfd the workers open as
 * /proc/<fgrun's pid>/fd/<n> (or, without memfd, a file in /dev/shm). Returns 0 or a
 * negative errno with a message; h is then empty and usable. */
int fg_hang_open(fg_hang *h, int nslots, double timeout, char *err, size_t errlen);
/* Where reports read stacks and whom they tell when done. helper NULL: no stacks. */
void fg_hang_set_report(fg_hang *h, uv_loop_t *loop, const char *helper,
                        enum fg_hang_stacks stacks, int py_signal, fg_hang_cb on_reported,
                        void *data);
/* Clears every slot and the hang cause: a new attempt starts. */
void fg_hang_reset(fg_hang *h);
/* Kills stack readers still running (their handles close on the loop). */
void fg_hang_stop(fg_hang *h);
/* Unmaps and removes the file. */
void fg_hang_close(fg_hang *h);
/* How often to check: a tenth of the timeout, from 10 ms to 100 ms (a check reads a few
 * cache lines per rank, and /proc/<pid>/stat of ranks whose slot changed). */
uint64_t fg_hang_period_ms(const fg_hang *h);

/* Checks the current attempt's workers at now_ns (fg__now_ns). Returns 1 when a running
 * rank has been in an operation for longer than the timeout and this hang was not reported
 * yet: the report, "fgrun: hang: ...\n" and its detail lines, is appended to out and
 * *late_s says how long after the timeout passed it was made. Reads no stacks. */
int fg_hang_check(fg_hang *h, const fg_worker *ws, int n, uint64_t now_ns, fg_buf *out,
                  double *late_s);

/* For every worker that exited 0 before `failed` ended: a line naming it, its last
 * operation and where the others were ("fgrun: rank 2 exited with code 0 while ..."). */
void fg_hang_note_early_exits(const fg_hang *h, const fg_worker *ws, int n,
                              const fg_worker *failed, fg_buf *out);

/* The timer's work: fg_hang_check printed on stderr, then the stacks it calls for (or, for
 * ranks that mark nothing, the quiet check); on_reported follows once they are printed.
 * Returns 1 when a report began. */
int fg_hang_tick(fg_hang *h, const fg_worker *ws, int n);
/* When `failed` ended the attempt: ranks that were in the same numbered collective with
 * different arguments ("fgrun: before rank 1 failed: rank 2 (pid 9) called allreduce #4 on
 * world with count 512, ranks 0,1,3 with count 1024: a mismatch at the same number"); the
 * rank named becomes the cause, unless a hang report named one already. */
void fg_hang_note_mismatch(fg_hang *h, const fg_worker *ws, int n, const fg_worker *failed,
                           fg_buf *out);
/* Both notes above, on stderr. */
void fg_hang_print_failure_notes(fg_hang *h, const fg_worker *ws, int n,
                                 const fg_worker *failed);

/* The worker the last report named as holding the others up, if still in ws. */
const fg_worker *fg_hang_cause(const fg_hang *h, const fg_worker *ws, int n);

#endif
