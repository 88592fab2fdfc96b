/* trace.h - a rank's side of fgrun --trace: one Chrome trace event per operation.
 *
 * fgrun names a file per rank and attempt in FG_TRACE_FILE. Every operation the progress
 * marks see (progress.h) becomes one complete event ("ph":"X") on the rank's track, one
 * JSON object per line, with ts and dur in microseconds of CLOCK_MONOTONIC, the clock
 * fgrun's own events use, so fgrun can merge the files without parsing them. Events go into
 * a shared mapping of the file (no syscall per event, nothing lost when the rank is
 * killed); the file is cut to its length when the world communicator is destroyed and at
 * exit. When the disk is full tracing stops with one message; the rank goes on. A forked
 * child does not trace. */
#ifndef FG_COMMON_TRACE_H
#define FG_COMMON_TRACE_H

#include <stdint.h>

/* Opens FG_TRACE_FILE if it is set; 1 when tracing is on. */
int fg__trace_setup(void);
/* One operation from t0 to t1 (fg__now_ns); error is its message when it failed. */
void fg__trace_op(const char *op, const char *group, uint64_t seq, uint64_t t0_ns,
                 uint64_t t1_ns, const char *error);
/* Cuts the file to what was written (the next event reserves room again). */
void fg__trace_flush(void);

#endif
