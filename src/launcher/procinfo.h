/* procinfo.h - what /proc says about a rank, for hang reports: its state (over all its
 * threads), the signal that stopped it, a tracer, and the CPU time it used.
 *
 * Every read is of /proc/<pid>/stat, /proc/<pid>/status or /proc/<pid>/task/<tid>/stat,
 * which the kernel answers without waiting on the process (unlike /proc/<pid>/cmdline or
 * /mem, which take its memory lock): safe to call on the agent's loop for a rank in any
 * state, including uninterruptible sleep.
 *
 * The state is the main thread's, unless another thread is stopped, traced, in
 * uninterruptible sleep or a zombie: a helper thread running for an instant says nothing
 * about a rank whose main thread sleeps. */
#ifndef FG_LAUNCHER_PROCINFO_H
#define FG_LAUNCHER_PROCINFO_H

#include <stdint.h>

typedef struct fg_proc_info {
  int ok;              /* 0: nothing could be read (the process is gone, or no /proc) */
  char state;          /* the most telling of its threads': T t D Z R S I (see below) */
  int state_tid;       /* the thread in that state */
  int stop_signal;     /* state T: the signal that stopped it, when fgrun is its parent */
  int tracer;          /* TracerPid: a debugger (or fgrun-stack) holds it */
  int threads;
  uint64_t cpu_ns;     /* user + system time of all its threads */
  uint64_t runq_ns;    /* time its main thread spent runnable, waiting for a CPU */
  uint64_t sig_caught; /* SigCgt: bit n-1 set when it handles signal n */
} fg_proc_info;

/* Reads it all. Returns 0 or a negative errno (out->ok is 0 then). */
int fg_proc_read(int pid, fg_proc_info *out);
/* Only the CPU time (one read of /proc/<pid>/stat) and, when runq is not NULL, the main
 * thread's time waiting for a CPU (/proc/<pid>/schedstat; 0 where the kernel has none). */
int fg_proc_cpu_ns(int pid, uint64_t *cpu, uint64_t *runq);
/* One thread's state letter, or 0 when it cannot be read. */
char fg_proc_thread_state(int pid, int tid);

/* "stopped", "traced", "in uninterruptible sleep (D)", "a zombie", "running", "sleeping",
 * "idle", or "in state X". Ordered by fg_proc_state_rank: a stopped thread says more about
 * a hang than a sleeping one. */
const char *fg_proc_state_name(char state);
int fg_proc_state_rank(char state);

#endif
