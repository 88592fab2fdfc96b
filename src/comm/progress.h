/* progress.h - which operation each rank is in, for fgrun's hang reports and timeline.
 *
 * fgrun makes a small shared-memory file (FG_PROGRESS_FILE in the workers' environment)
 * with one slot per local rank. The library writes its rank's slot on entering and on
 * leaving every collective, barrier, point-to-point batch, group split, init and store
 * barrier: {sequence number, operation, group, in or out, when}. fgrun reads the slots on a
 * timer and, when a rank has waited longer than --hang_timeout, names the ranks that wait,
 * where, and the ranks that have not arrived.
 *
 * A write is a handful of plain stores under a sequence lock (an odd generation while the
 * owner writes, which the reader retries on): no syscall, no lock, nothing fgrun can block.
 * The same enter/leave pair feeds the rank's trace (trace.h) under fgrun --trace. The slot
 * has one writer: like the communicators, the marks are for one thread at a time.
 *
 * The file layout is shared by the writer (the library) and the reader (fgrun): a header,
 * then nslots slots of FG_PROGRESS_SLOT_SIZE bytes from offset FG_PROGRESS_SLOT_SIZE. */
#ifndef FG_COMM_PROGRESS_H
#define FG_COMM_PROGRESS_H

#include <stdint.h>

#define FG_PROGRESS_MAGIC 0x47504746u /* "FGPG" */
#define FG_PROGRESS_VERSION 1
#define FG_PROGRESS_SLOT_SIZE 128 /* two cache lines: no two ranks share one */

enum fg_progress_state { FG_PROGRESS_NONE = 0, FG_PROGRESS_IN = 1, FG_PROGRESS_OUT = 2 };

typedef struct fg_progress_header {
  uint32_t magic, version, slot_size, nslots;
} fg_progress_header;

typedef struct fg_progress_slot {
  uint32_t gen;   /* odd while the owner writes */
  uint32_t state; /* fg_progress_state */
  uint64_t seq;   /* the operation's number on its group (0: not numbered) */
  uint64_t t_ns;  /* CLOCK_MONOTONIC of the last enter or leave */
  int32_t pid;
  int32_t rank;   /* world rank, -1 when unknown */
  char op[24];
  char group[72];
} fg_progress_slot;

_Static_assert(sizeof(fg_progress_slot) == FG_PROGRESS_SLOT_SIZE, "one slot, two cache lines");

/* One operation in flight, on the caller's stack. */
typedef struct fg_op_mark {
  const char *op;    /* NULL: nothing was entered, leave does nothing */
  const char *group;
  uint64_t seq;
  uint64_t t0_ns;
  const char *err;   /* the communicator's error text: non-empty at leave means it failed */
} fg_op_mark;

/* Records that this rank entered op (seq on group). err may be NULL. Cheap when neither
 * FG_PROGRESS_FILE nor FG_TRACE_FILE is set: one test of a static flag. */
void fg_op_enter(fg_op_mark *m, const char *op, const char *group, uint64_t seq,
                 const char *err);
/* Records that it left; a second call does nothing. */
void fg_op_leave(fg_op_mark *m);

/* A mark that is left however its function returns (GCC's cleanup attribute): declare it,
 * call fg_op_enter, and every return path records the leave after its value is computed. */
#define FG_OP_MARK(m) fg_op_mark m __attribute__((cleanup(fg_op_leave))) = {0}

/* Reads a slot that another process may be writing; 0, or -1 if the writer kept it busy. */
int fg_progress_read(const volatile fg_progress_slot *slot, fg_progress_slot *out);

#endif
