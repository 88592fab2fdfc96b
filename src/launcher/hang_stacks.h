/* hang_stacks.h - ranks' stacks read off the agent's loop: one fgrun-stack child per rank
 * (src/tools/fgrun-stack.c), all at once, each killed when the bound passes. The loop only
 * spawns them and reads their pipes; a rank that is slow to read (a huge binary to
 * symbolize, a thread that will not stop) costs wall time, never the loop's. */
#ifndef FG_LAUNCHER_HANG_STACKS_H
#define FG_LAUNCHER_HANG_STACKS_H

#include <uv.h>

#include "common/buf.h"

typedef struct fg_stack_job {
  int rank, pid;
  int native;           /* native frames too (else the Python traceback only) */
  char *py_file;        /* the hook's dump file; NULL: no Python traceback */
  int py_signal;
  fg_buf text;          /* what fgrun-stack printed */
  int status;           /* its exit status; -1: killed at the bound, -2: not started */
} fg_stack_job;

typedef struct fg_stacks fg_stacks;
/* Called on the loop once every child ended; jobs are freed after it returns. */
typedef void (*fg_stacks_cb)(fg_stacks *s, fg_stack_job *jobs, int n, void *data);

/* Starts reading n jobs (copied; rank, pid, native, py_file and py_signal are read).
 * Returns the handle, or NULL when out of memory (cb is not called then). cb never runs
 * before this returns. */
fg_stacks *fg_stacks_start(uv_loop_t *loop, const char *helper, const fg_stack_job *jobs,
                           int n, double bound_s, fg_stacks_cb cb, void *data);
/* Kills the children now; cb still follows. */
void fg_stacks_cancel(fg_stacks *s);

#endif
