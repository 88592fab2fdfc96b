/* worker.h - one worker process and its two output streams.
 *
 * A worker is started by fg_spawn (spawn.h): the program itself, in a session and process
 * group of its own (signals go to the group, reaching the worker's children), dying with
 * fgrun (PR_SET_PDEATHSIG); its end is watched on the loop (child.h). */
#ifndef FG_LAUNCHER_WORKER_H
#define FG_LAUNCHER_WORKER_H

#include <sched.h>
#include <stdint.h>
#include <uv.h>

#include "launcher/child.h"
#include "launcher/output.h"

typedef struct fg_worker fg_worker;
typedef void (*fg_worker_cb)(fg_worker *w);

enum fg_worker_state {
  FG_WORKER_IDLE,    /* not started, or failed to start */
  FG_WORKER_RUNNING,
  FG_WORKER_EXITED,  /* reaped: exit_code / term_signal hold how it ended */
  FG_WORKER_LOST,    /* never reaped after SIGKILL (stuck in the kernel); given up on */
};

struct fg_worker {
  int local_rank, rank;
  char *prefix;     /* console line prefix, owned */
  char *error_file; /* TORCHELASTIC_ERROR_FILE, owned */
  fg_child child;
  fg_stream out, err;
  int pid;
  enum fg_worker_state state;
  int exit_code, term_signal;
  uint64_t start_ns, end_ns;
  int handles;      /* open libuv handles */
  int child_open;   /* the child's watch needs closing */
  int drained;      /* both output pipes have closed */
  int closing;
  fg_worker_cb on_exit, on_drained, on_closed;
  void *data;
};

typedef struct fg_worker_options {
  uv_loop_t *loop;
  const char *file;        /* the program's path */
  char **argv;
  char **env;
  int console_out, console_err; /* 1 and 2, or -1 for a stream the console does not get */
  const char *stdout_log, *stderr_log; /* NULL: none */
  const cpu_set_t *cpus;   /* --numa_binding's CPUs for it; NULL: fgrun's */
  int announce_fd;         /* the watchdog's pipe (fg_watchdog_fd), or -1 */
  fg_worker_cb on_exit;    /* the process was reaped */
  fg_worker_cb on_drained; /* both pipes reached EOF (or were closed) */
  fg_worker_cb on_closed;  /* after fg_worker_close, every handle is closed */
  void *data;
} fg_worker_options;

/* Starts the worker. local_rank, rank and prefix must be set. On failure the worker still
 * needs fg_worker_close. Returns 0 or a negative errno with a message in err. */
int fg_worker_spawn(fg_worker *w, const fg_worker_options *o, char *err, size_t errlen);
/* Sends sig to the worker's process group (the worker and what it started). */
void fg_worker_kill_group(const fg_worker *w, int sig);
/* Closes the process handle and the pipes (flushing any partial line); on_closed follows,
 * possibly before this returns. */
void fg_worker_close(fg_worker *w);
/* Frees what the worker owns; call from on_closed or when it never started. */
void fg_worker_free(fg_worker *w);
/* Seconds the worker ran (so far, while running). */
double fg_worker_runtime(const fg_worker *w);

#endif
