/* trace.h - fgrun --trace FILE: the run's timeline as a Chrome trace-event file, which
 * Perfetto (ui.perfetto.dev) and chrome://tracing open.
 *
 * Each rank's library writes its operations to a file of its own (src/common/trace.h), which
 * fgrun names in FG_TRACE_FILE: <run dir>/attempt_<n>/<local rank>/trace.jsonl. fgrun
 * records its own events - every worker's life from spawn to exit, every attempt and every
 * restart - and when the job ends merges everything into FILE:
 *
 *   {"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}
 *
 * with pid = node rank and tid = rank (a track per rank), and a track for fgrun itself.
 * Times are CLOCK_MONOTONIC microseconds on every track: one clock on one host, nothing to
 * convert; otherData holds the wall-clock time of fgrun's start for lining up nodes. FILE
 * is written under FILE.tmp, which is created before any worker starts (an unwritable
 * path is a usage error), and renamed into place only when complete. */
#ifndef FG_LAUNCHER_TRACE_H
#define FG_LAUNCHER_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "launcher/rundir.h"
#include "launcher/worker.h"

typedef struct fg_timeline {
  char *path, *tmp_path;
  int fd;       /* FILE.tmp; -1: no trace */
  int node, nproc;
  int attempts; /* attempts recorded */
  fg_buf events; /* fgrun's own events, each followed by ",\n" */
} fg_timeline;

/* Creates FILE.tmp. Returns 0 or a negative errno with a message naming the path. */
int fg_timeline_open(fg_timeline *t, const char *path, int node, int nproc, char *err,
                     size_t errlen);
/* 1 with --trace; a zeroed fg_timeline is off, and every call below does nothing. */
int fg_timeline_on(const fg_timeline *t);
/* One attempt is over: its workers' spans (spawn to exit) and the attempt's. */
void fg_timeline_attempt(fg_timeline *t, int attempt, const fg_worker *ws, int n,
                         const char *result);
/* The group restarts: attempt `next` follows, because of `why`. */
void fg_timeline_restart(fg_timeline *t, int next, const char *why);
/* Merges fgrun's events and every rank's file and renames FILE.tmp to FILE. Returns 0 or a
 * negative errno with a message; FILE.tmp is removed either way. */
int fg_timeline_finish(fg_timeline *t, const fg_rundir *rd, char *err, size_t errlen);
/* Frees; removes FILE.tmp when finish did not run. */
void fg_timeline_close(fg_timeline *t);

#endif
