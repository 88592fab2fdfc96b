/* summary.h - what fgrun says on stderr when a worker group ends badly. */
#ifndef FG_LAUNCHER_SUMMARY_H
#define FG_LAUNCHER_SUMMARY_H

#include <stddef.h>

#include "common/buf.h"
#include "launcher/worker.h"

typedef struct fg_summary {
  const fg_worker *workers;
  int nworkers;
  const fg_worker *root_cause; /* the first worker to fail; NULL when none did */
  int stop_signal;             /* the signal that stopped fgrun, or 0 */
  int attempt, max_restarts;
  int exit_code;               /* what fgrun exits with */
} fg_summary;

/* "exited with code 3", "killed by SIGSEGV", ... */
void fg_describe_end(const fg_worker *w, char *out, size_t outlen);
/* The exit status fgrun reports for a worker: its code, or 128+signal. */
int fg_worker_exit_status(const fg_worker *w);
/* Appends the report (one line per rank; the root cause's error file or stderr tail). */
void fg_summary_format(const fg_summary *s, fg_buf *out);
/* Writes it to stderr in one write. */
void fg_summary_print(const fg_summary *s);

#endif
