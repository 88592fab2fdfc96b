/* procinfo.c - a rank's state from /proc (see procinfo.h). */
#include "launcher/procinfo.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"

/* From the most to the least telling. */
static const struct {
  char state;
  const char *name;
} states[] = {
    {'T', "stopped"}, {'t', "traced"}, {'D', "in uninterruptible sleep (D)"},
    {'Z', "a zombie"}, {'X', "dead"},  {'R', "running"},
    {'S', "sleeping"}, {'I', "idle"},
};

int fg_proc_state_rank(char state) {
  for (size_t i = 0; i < FG_ARRAY_LEN(states); i++)
    if (states[i].state == state) return (int)(FG_ARRAY_LEN(states) - i);
  return 0;
}

const char *fg_proc_state_name(char state) {
  for (size_t i = 0; i < FG_ARRAY_LEN(states); i++)
    if (states[i].state == state) return states[i].name;
  static char other[16];
  snprintf(other, sizeof other, "in state %c", state ? state : '?');
  return other;
}

static int read_file(const char *path, char *buf, size_t len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = read(fd, buf, len - 1);
  int rc = n < 0 ? -errno : 0;
  close(fd);
  buf[n > 0 ? n : 0] = '\0';
  return rc;
}

/* /proc/<...>/stat: "pid (comm) S ppid ... utime stime ...": the command may hold spaces
 * and parentheses, so the fields start after the last ')'. */
static int parse_stat(const char *path, char *state, uint64_t *cpu_ticks) {
  char buf[1024];
  int rc = read_file(path, buf, sizeof buf);
  if (rc) return rc;
  char *p = strrchr(buf, ')');
  if (!p || p[1] != ' ' || !p[2]) return -EPROTO;
  *state = p[2];
  /* fields after the state: ppid pgrp session tty tpgid flags minflt cminflt majflt
   * cmajflt utime stime */
  unsigned long long utime = 0, stime = 0;
  if (sscanf(p + 3, "%*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
    return -EPROTO;
  *cpu_ticks = utime + stime;
  return 0;
}

static uint64_t ticks_to_ns(uint64_t ticks) {
  static long hz;
  if (!hz) hz = sysconf(_SC_CLK_TCK) > 0 ? sysconf(_SC_CLK_TCK) : 100;
  return ticks * (1000000000ull / (uint64_t)hz);
}

static uint64_t run_delay_ns(int pid) {
  char path[64], buf[128];
  snprintf(path, sizeof path, "/proc/%d/schedstat", pid); /* "on-cpu-ns run-delay-ns slices" */
  unsigned long long on_cpu, delay;
  if (read_file(path, buf, sizeof buf) != 0 || sscanf(buf, "%llu %llu", &on_cpu, &delay) != 2)
    return 0;
  return delay;
}

int fg_proc_cpu_ns(int pid, uint64_t *cpu, uint64_t *runq) {
  char path[64], state;
  uint64_t ticks;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int rc = parse_stat(path, &state, &ticks);
  if (rc == 0) *cpu = ticks_to_ns(ticks);
  if (rc == 0 && runq) *runq = run_delay_ns(pid);
  return rc;
}

char fg_proc_thread_state(int pid, int tid) {
  char path[96], state;
  uint64_t ticks;
  snprintf(path, sizeof path, "/proc/%d/task/%d/stat", pid, tid);
  return parse_stat(path, &state, &ticks) == 0 ? state : 0;
}

static void read_status(int pid, fg_proc_info *out) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  if (read_file(path, buf, sizeof buf) != 0) return;
  const char *p = strstr(buf, "\nTracerPid:");
  if (p) out->tracer = atoi(p + 11);
  p = strstr(buf, "\nThreads:");
  if (p) out->threads = atoi(p + 9);
  p = strstr(buf, "\nSigCgt:");
  if (p) out->sig_caught = strtoull(p + 8, NULL, 16);
}

/* The most telling state among the threads: a process is only as well as its worst. */
static void scan_threads(int pid, fg_proc_info *out) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    int tid = atoi(e->d_name);
    if (tid <= 0 || tid == pid) continue;
    char state = fg_proc_thread_state(pid, tid);
    if (state && fg_proc_state_rank(state) > fg_proc_state_rank('R') &&
        fg_proc_state_rank(state) > fg_proc_state_rank(out->state)) {
      out->state = state;
      out->state_tid = tid;
    }
  }
  closedir(d);
}

/* Which signal stopped it: only its parent can ask, and WNOWAIT leaves the stop for
 * whoever else waits (libuv reaps exits only, never stops). */
static int stop_signal(int pid) {
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (waitid(P_PID, (id_t)pid, &si, WSTOPPED | WNOHANG | WNOWAIT) != 0 || si.si_pid != pid)
    return 0;
  return si.si_code == CLD_STOPPED || si.si_code == CLD_TRAPPED ? si.si_status : 0;
}

int fg_proc_read(int pid, fg_proc_info *out) {
  memset(out, 0, sizeof *out);
  char path[64];
  uint64_t ticks;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int rc = parse_stat(path, &out->state, &ticks);
  if (rc) return rc;
  out->ok = 1;
  out->state_tid = pid;
  out->cpu_ns = ticks_to_ns(ticks);
  out->runq_ns = run_delay_ns(pid);
  read_status(pid, out);
  if (out->threads > 1) scan_threads(pid, out);
  if (out->state == 'T') out->stop_signal = stop_signal(pid);
  return 0;
}
