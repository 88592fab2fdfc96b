/* hang_internal.h - what hang.c shares with hang_tick.c (reports completed with stacks,
 * silences) and hang_notes.c (what a failure's summary adds). */
#ifndef FG_LAUNCHER_HANG_INTERNAL_H
#define FG_LAUNCHER_HANG_INTERNAL_H

#include <stdint.h>

#include "common/progress_slot.h"
#include "common/buf.h"
#include "launcher/hang.h"
#include "launcher/hang_classify.h"

enum { SAME_PASS_NS = 2000000 }; /* exits reaped this close together came in one pass */
enum { END_LEN = 128 };

/* What changed last for one local rank, so a report can say how long it stood still and
 * how much CPU it used meanwhile. */
struct fg_hang_watch {
  int pid;             /* the worker this tracks; another pid: a new attempt */
  uint32_t gen;        /* its slot's generation when last looked at */
  uint64_t changed_ns; /* when its slot or output last changed (or it started) */
  uint64_t cpu_ns;     /* its CPU time then */
  uint64_t runq_ns;    /* its main thread's time waiting for a CPU then */
  uint64_t out_bytes, err_bytes;
  int culprit;         /* named by the report being completed */
};

uint64_t fg__hang_since(uint64_t now, uint64_t then);
/* The cause a report named is forgotten (its ranks moved on, or a new attempt). */
void fg__hang_clear_cause(fg_hang *h);
/* A worker's progress slot, copied consistently. 0 or -1. */
int fg__hang_read_slot(const fg_hang *h, const fg_worker *w, fg_progress_slot *out);
fg_hang_watch *fg__hang_watch_of(const fg_hang *h, const fg_worker *w);
/* Notes what changed since the last look; whether anything did. */
int fg__hang_observe(fg_hang *h, const fg_worker *ws, int n, uint64_t now);
/* Every worker as the classifier sees it; with_proc: with its /proc state (a report), else
 * slots only. ends holds n strings of END_LEN for the ranks' ends. */
void fg__hang_gather(const fg_hang *h, const fg_worker *ws, int n, uint64_t now, int with_proc,
                     fg_hang_rank *r, char *ends);
/* The rank runs fgrun's Python hook (it has the traceback signal's handler). */
int fg__hang_hooked(const fg_hang *h, const fg_hang_rank *x);
/* Writes b to stderr in one write, and frees it. */
void fg__hang_print(fg_buf *b);
/* The first report's culprit stays the cause until the ranks it held up move on. */
void fg__hang_keep_cause(fg_hang *h, const fg_worker *ws, const fg_hang_rank *r,
                         const fg_hang_verdict *v);

#endif
