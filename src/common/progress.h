/* progress.h - which operation each rank is in, for fgrun's hang reports and timeline.
 *
 * fgrun makes a small shared-memory file (FG_PROGRESS_FILE in the workers' environment)
 * with one slot per local rank. The library writes its rank's slot on entering and on
 * leaving every collective, barrier, point-to-point batch, group split, init and store
 * barrier: {sequence number, operation, group, in or out, when, and what the rank passed:
 * count, dtype, root, the peer a receive waits for}. fgrun reads the slots on a
 * timer and, when a rank has waited longer than --hang_timeout, names the ranks that wait,
 * where, and the ranks that have not arrived.
 *
 * A write is a handful of plain stores under a sequence lock (an odd generation while the
 * owner writes, which the reader retries on): no syscall, no lock, nothing fgrun can block.
 * The same enter/leave pair feeds the rank's trace (trace.h) under fgrun --trace. The slot
 * has one writer: like the communicators, the marks are for one thread at a time.
 *
 * The file layout, shared by the writers (the library, fgrun's Python hook) and the reader
 * (fgrun), is progress_slot.h. */
#ifndef FG_COMMON_PROGRESS_H
#define FG_COMMON_PROGRESS_H

#include <stdint.h>

#include "common/progress_slot.h"

/* What the rank passed, so that ranks that called the same number differently are told
 * apart. FG_OP_ARGS_NONE: no count, no dtype, no root, no peer. */
typedef struct fg_op_args {
  uint64_t count;
  const char *dtype; /* NULL: none */
  int root, peer;
} fg_op_args;

#define FG_OP_ARGS_NONE ((fg_op_args){0, NULL, FG_PROGRESS_NO_RANK, FG_PROGRESS_NO_RANK})

/* One operation in flight, on the caller's stack. */
typedef struct fg_op_mark {
  const char *op;    /* NULL: nothing was entered, leave does nothing */
  const char *group;
  uint64_t seq;
  uint64_t t0_ns;
  const char *err;   /* the communicator's error text: non-empty at leave means it failed */
  fg_op_args args;
} fg_op_mark;

/* Records that this rank entered op (seq on group) with args (NULL: none). err may be NULL.
 * Cheap when neither FG_PROGRESS_FILE nor FG_TRACE_FILE is set: one test of a static flag. */
void fg__op_enter(fg_op_mark *m, const char *op, const char *group, uint64_t seq,
                 const char *err, const fg_op_args *args);
/* Records that it left; a second call does nothing. */
void fg__op_leave(fg_op_mark *m);

/* A mark that is left however its function returns (GCC's cleanup attribute): declare it,
 * call fg__op_enter, and every return path records the leave after its value is computed. */
#define FG_OP_MARK(m) fg_op_mark m __attribute__((cleanup(fg__op_leave))) = {0}

#endif
