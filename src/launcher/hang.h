/* hang.h - fgrun's side of hang attribution.
 *
 * fgrun makes the progress file (src/comm/progress.h: one slot per local rank, which the
 * library writes on entering and leaving every operation) before the first attempt and
 * names it in each worker's FG_PROGRESS_FILE. With --hang_timeout, a timer reads the slots
 * and, once a running rank has been in one operation longer than the timeout, prints one
 * line that groups the ranks by where they are:
 *
 *   fgrun: hang: ranks 0,1,3 have been in allreduce #42 on world for 31 s; rank 2 has not
 *   arrived (last: barrier #41 on world, left 31 s ago)
 *
 * A hang is reported once (until the waiting ranks move on). The same slots explain a rank
 * that exited 0 while its peers still needed it (fg_hang_note_early_exits). */
#ifndef FG_LAUNCHER_HANG_H
#define FG_LAUNCHER_HANG_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "launcher/worker.h"

/* fgrun's exit status when --hang_action kill ended the job (as timeout(1)). */
#define FG_HANG_EXIT_STATUS 124

typedef struct fg_hang {
  char *path;        /* FG_PROGRESS_FILE; NULL when there is none */
  int fd;            /* kept open: the memfd behind /proc/<fgrun>/fd/<fd> */
  int remove;        /* path is a real file, removed at close */
  void *map;
  size_t size;
  int nslots;
  double timeout;    /* seconds; 0: no hang reports */
  uint64_t reported; /* the hang reported last */
} fg_hang;

/* Creates the progress file for nslots local ranks: a memfd the workers open as
 * /proc/<fgrun's pid>/fd/<n> (or, without memfd, a file in /dev/shm). Returns 0 or a
 * negative errno with a message; h is then empty and usable. */
int fg_hang_open(fg_hang *h, int nslots, double timeout, char *err, size_t errlen);
/* Clears every slot: a new attempt starts. */
void fg_hang_reset(fg_hang *h);
/* Unmaps and removes the file. */
void fg_hang_close(fg_hang *h);
/* How often to check: a tenth of the timeout, from 10 ms to 100 ms (a check reads a few
 * cache lines per rank, so a report need not wait). */
uint64_t fg_hang_period_ms(const fg_hang *h);

/* Checks the current attempt's workers at now_ns (fg_now_ns). Returns 1 when a running
 * rank has been in an operation for longer than the timeout and this hang was not reported
 * yet: the report line, "fgrun: hang: ...\n", is appended to out and *late_s says how long
 * after the timeout passed it was made. */
int fg_hang_check(fg_hang *h, const fg_worker *ws, int n, uint64_t now_ns, fg_buf *out,
                  double *late_s);

/* For every worker that exited 0 before `failed` ended: a line naming it, its last
 * operation and where the others were ("fgrun: rank 2 exited with code 0 while ..."). */
void fg_hang_note_early_exits(const fg_hang *h, const fg_worker *ws, int n,
                              const fg_worker *failed, fg_buf *out);

/* The two above, printed on stderr; fg_hang_tick returns what fg_hang_check does. */
int fg_hang_tick(fg_hang *h, const fg_worker *ws, int n);
void fg_hang_print_early_exits(const fg_hang *h, const fg_worker *ws, int n,
                               const fg_worker *failed);

/* "0-3,5,7": ranks in ascending order, runs of three or more as ranges. */
void fg_hang_format_ranks(const int *ranks, int n, char *out, size_t len);

#endif
