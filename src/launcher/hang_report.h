/* hang_report.h - the lines of a hang report after its first (hang_classify.h's culprit
 * line): where every rank is, grouped; one line per rank with its state, CPU and
 * operation; and the stacks fgrun-stack read. Each line starts "fgrun:   " so a report
 * keeps one "fgrun: hang:" line however long it is. */
#ifndef FG_LAUNCHER_HANG_REPORT_H
#define FG_LAUNCHER_HANG_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "launcher/hang_classify.h"

/* "ranks 0,1,3 have been in allreduce #4 on world for 31 s; rank 2 has not arrived (last:
 * allreduce #3 on world, left 31 s ago)": ranks grouped by the operation they are in (or
 * last left), those in one first. No prefix, no newline. */
void fg_hang_put_where(fg_buf *b, const fg_hang_rank *r, int n, uint64_t now);
/* "fgrun:   rank 0 (pid 120): sleeping, 0.0 s CPU in 3.0 s; in allreduce #4 on world
 * (count 1024 float32) for 3.0 s\n" for each rank. */
void fg_hang_put_details(fg_buf *b, const fg_hang_rank *r, int n, uint64_t now);
/* "fgrun:   stack of rank 2 (pid 123):\n" and the text, each line behind "fgrun:     ".
 * status: fgrun-stack's (-1: killed at the bound). */
void fg_hang_put_stack(fg_buf *b, int rank, int pid, const fg_buf *text, int status,
                       double bound_s);

#endif
