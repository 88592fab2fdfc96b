/* rundir.h - the directory of a run: error files and, when asked for, log files.
 *
 * With --log_dir it is <log_dir>/<run id> (or <run id>.1, .2, ... when that exists) and
 * stays; without, a private temporary directory that is removed at exit unless it holds
 * logs the user asked for. */
#ifndef FG_LAUNCHER_RUNDIR_H
#define FG_LAUNCHER_RUNDIR_H

#include <stddef.h>

typedef struct fg_rundir {
  char *path;
  int temporary; /* made by mkdtemp */
  int keep;      /* leave it in place at exit */
} fg_rundir;

/* Creates the run directory. keep_temporary: the temporary directory will hold logs. */
int fg_rundir_create(fg_rundir *rd, const char *log_dir, const char *run_id,
                     int keep_temporary, char *err, size_t errlen);
/* Creates attempt_<n>/<local rank>/ for every local rank. */
int fg_rundir_make_attempt(fg_rundir *rd, int attempt, int nproc, char *err, size_t errlen);
/* A heap path: <run dir>/attempt_<n>/<local rank>/<file>. NULL when out of memory. */
char *fg_rundir_file(const fg_rundir *rd, int attempt, int local_rank, const char *file);
/* A heap path: name in the directory of path (a rank's error file), such as the rank's
 * trace or its Python tracebacks. NULL when out of memory. */
char *fg_rundir_sibling(const char *path, const char *name);
#define FG_RUNDIR_TRACE "trace.jsonl"
#define FG_RUNDIR_PYSTACK "pystack.txt" /* fgrun's Python hook dumps tracebacks here */

/* Removes a temporary directory (unless kept) and frees the path. */
void fg_rundir_finish(fg_rundir *rd);

/* rm -rf; returns 0 or a negative errno. */
int fg_remove_tree(const char *path);

#endif
