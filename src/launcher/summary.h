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
  const char *root_cause_note; /* what it told the PMIx server ("called MPI_Abort ..."), or NULL */
  int stop_signal;             /* the signal that stopped fgrun, or 0 */
  int attempt, max_restarts;
  int exit_code;               /* what fgrun exits with */
  /* A hang report (or the slots at the failure: a mismatch) named the rank that held the
   * others up: the job's cause, whatever failed first after it (a library's timeout,
   * --hang_action kill). */
  const fg_worker *hang_cause; /* NULL: no report, or it named nobody */
  const char *hang_what;       /* "held the others up: it never arrived at ..." */
  int hang_killed;             /* --hang_action kill ended the attempt */
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
