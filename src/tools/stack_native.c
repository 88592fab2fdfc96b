/* stack_native.c - native stacks through ptrace and libdw (see stack_native.h). */
#include "tools/stack_native.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "launcher/procinfo.h"

/* A thread in uninterruptible sleep: what the kernel says it waits in. */
static void put_kernel_stack(int pid, int tid, const char *indent, FILE *out) {
  char path[96], line[256];
  snprintf(path, sizeof path, "/proc/%d/task/%d/stack", pid, tid);
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(out, "%s    (kernel stack unreadable: %s%s)\n", indent, strerror(errno),
            errno == EACCES || errno == EPERM ? "; only root may read it" : "");
    return;
  }
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    char *fn = strchr(line, ']'); /* "[<0>] wait_for_vfork_done+0x3f/0x70" */
    fn = fn ? fn + 1 : line;
    while (*fn == ' ') fn++;
    fn[strcspn(fn, "+\n")] = '\0';
    fprintf(out, "%s    #%-2d %s (kernel)\n", indent, n++, fn);
  }
  if (!n) fprintf(out, "%s    (kernel stack empty)\n", indent);
  fclose(f);
}

static void thread_name(int pid, int tid, char *out, size_t len) {
  char path[96];
  snprintf(path, sizeof path, "/proc/%d/task/%d/comm", pid, tid);
  FILE *f = fopen(path, "r");
  out[0] = '\0';
  if (f) {
    if (fgets(out, (int)len, f)) out[strcspn(out, "\n")] = '\0';
    fclose(f);
  }
}

/* The main thread first, then the others in /proc's order. */
static int list_threads(int pid, int *tids, int max) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (!d) return -errno;
  int n = 0;
  tids[n++] = pid;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < max) {
    int tid = atoi(e->d_name);
    if (tid > 0 && tid != pid) tids[n++] = tid;
  }
  closedir(d);
  return n;
}

#ifdef FG_HAVE_LIBDW

#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

enum { MAX_THREADS = 512, MAX_FRAMES = 64 };

/* libstdc++'s demangler (C linkage), for gloo's and torch's C++ frames. */
extern char *__cxa_demangle(const char *mangled, char *out, size_t *len, int *status);

typedef struct thread {
  int tid;
  char state;
  int seized, stopped, err;
  int nframes;
  Dwarf_Addr pc[MAX_FRAMES];
} thread;

static int on_frame(Dwfl_Frame *f, void *arg) {
  thread *t = arg;
  Dwarf_Addr pc;
  bool activation;
  if (!dwfl_frame_pc(f, &pc, &activation)) return DWARF_CB_ABORT;
  /* a return address points after the call: step back into it for the right line */
  t->pc[t->nframes++] = activation ? pc : pc - 1;
  return t->nframes < MAX_FRAMES ? DWARF_CB_OK : DWARF_CB_ABORT;
}

static int wait_stopped(int tid, uint64_t deadline_ns) {
  for (;;) {
    int status;
    pid_t r = waitpid(tid, &status, __WALL | WNOHANG);
    if (r == tid) return WIFSTOPPED(status) ? 0 : -ESRCH;
    if (r < 0 && errno != EINTR) return -errno;
    if (fg__now_ns() >= deadline_ns) return -ETIMEDOUT;
    usleep(500);
  }
}

static const char *base_name(const char *path) {
  const char *slash = path ? strrchr(path, '/') : NULL;
  return slash ? slash + 1 : path ? path : "?";
}

static void put_frame(Dwfl *d, int i, Dwarf_Addr pc, const char *indent, FILE *out) {
  Dwfl_Module *m = dwfl_addrmodule(d, pc);
  const char *name = NULL, *file = NULL, *module = NULL;
  int line = 0;
  if (m) {
    GElf_Off off;
    GElf_Sym sym;
    name = dwfl_module_addrinfo(m, pc, &off, &sym, NULL, NULL, NULL);
    dwfl_module_info(m, NULL, NULL, NULL, NULL, NULL, &module, NULL);
    Dwfl_Line *l = dwfl_module_getsrc(m, pc);
    if (l) file = dwfl_lineinfo(l, NULL, &line, NULL, NULL, NULL);
  }
  char *pretty = NULL;
  int status = -1;
  if (name && name[0] == '_' && name[1] == 'Z') pretty = __cxa_demangle(name, NULL, NULL, &status);
  fprintf(out, "%s    #%-2d %s", indent, i, pretty && status == 0 ? pretty : name ? name : "??");
  if (!name) fprintf(out, " 0x%llx", (unsigned long long)pc);
  if (file && line > 0)
    fprintf(out, " (%s:%d)\n", base_name(file), line);
  else
    fprintf(out, " (%s)\n", base_name(module));
  free(pretty);
}

static char *debuginfo_path;
static const Dwfl_Callbacks callbacks = {.find_elf = dwfl_linux_proc_find_elf,
                                         .find_debuginfo = dwfl_standard_find_debuginfo,
                                         .debuginfo_path = &debuginfo_path};

int fg_native_stacks(int pid, int stop_ms, const char *indent, FILE *out) {
  static thread threads[MAX_THREADS];
  int tids[MAX_THREADS];
  int n = list_threads(pid, tids, MAX_THREADS);
  if (n < 0) {
    fprintf(out, "%snative: cannot list its threads: %s\n", indent, strerror(-n));
    return -1;
  }
  unsetenv("DEBUGINFOD_URLS"); /* symbols come from this machine's files, never a server */
  Dwfl *d = dwfl_begin(&callbacks);
  if (!d) {
    fprintf(out, "%snative: libdw: %s\n", indent, dwfl_errmsg(-1));
    return -1;
  }
  dwfl_report_begin(d);
  int rc = dwfl_linux_proc_report(d, pid);
  dwfl_report_end(d, NULL, NULL);
  if (rc != 0) {
    fprintf(out, "%snative: cannot read its memory map: %s\n", indent,
            rc > 0 ? strerror(rc) : dwfl_errmsg(-1));
    dwfl_end(d);
    return -1;
  }
  /* Stop every thread that can be stopped, then walk them all while they stand still. */
  uint64_t t0 = fg__now_ns(), deadline = t0 + (uint64_t)stop_ms * 1000000u;
  for (int i = 0; i < n; i++) {
    thread *t = &threads[i];
    memset(t, 0, sizeof *t);
    t->tid = tids[i];
    t->state = fg_proc_thread_state(pid, t->tid);
    if (t->state == 'D') continue;
    if (ptrace(PTRACE_SEIZE, t->tid, NULL, NULL) != 0) {
      t->err = errno;
      continue;
    }
    t->seized = 1;
    if (ptrace(PTRACE_INTERRUPT, t->tid, NULL, NULL) != 0) t->err = errno;
  }
  for (int i = 0; i < n; i++) {
    thread *t = &threads[i];
    if (!t->seized || t->err) continue;
    int w = wait_stopped(t->tid, deadline);
    t->stopped = w == 0;
    if (w) t->err = -w;
  }
  int attached = dwfl_linux_proc_attach(d, pid, true) == 0;
  for (int i = 0; i < n; i++)
    if (threads[i].stopped && attached) dwfl_getthread_frames(d, threads[i].tid, on_frame, &threads[i]);
  for (int i = 0; i < n; i++)
    if (threads[i].stopped) ptrace(PTRACE_DETACH, threads[i].tid, NULL, NULL);
  double held_ms = (double)(fg__now_ns() - t0) / 1e6;

  fprintf(out, "%snative stacks (libdw; threads held %.1f ms, then let go):\n", indent, held_ms);
  if (!attached) fprintf(out, "%s  (libdw could not attach: %s)\n", indent, dwfl_errmsg(-1));
  for (int i = 0; i < n; i++) {
    thread *t = &threads[i];
    char comm[32];
    thread_name(pid, t->tid, comm, sizeof comm);
    fprintf(out, "%s  thread %d (%s)%s", indent, t->tid, comm, i == 0 ? ", main" : "");
    if (t->state == 'D') {
      fprintf(out, ": in uninterruptible sleep (D), cannot be stopped; in the kernel:\n");
      put_kernel_stack(pid, t->tid, indent, out);
    } else if (!t->stopped) {
      fprintf(out, ": cannot be read: %s%s\n", strerror(t->err ? t->err : EIO),
              t->err == EPERM ? " (another tracer holds it, or no permission)" : "");
    } else {
      fprintf(out, ":\n");
      for (int f = 0; f < t->nframes; f++) put_frame(d, f, t->pc[f], indent, out);
      if (!t->nframes) fprintf(out, "%s    (no frames: %s)\n", indent, dwfl_errmsg(-1));
    }
  }
  dwfl_end(d);
  return 0;
}

#else /* no libdw */

int fg_native_stacks(int pid, int stop_ms, const char *indent, FILE *out) {
  (void)stop_ms;
  int tids[512];
  int n = list_threads(pid, tids, 512);
  fprintf(out, "%snative stacks: unavailable: fgrun-stack was built without elfutils' libdw "
          "(apt-get install libdw-dev, then rebuild)\n", indent);
  for (int i = 0; i < n; i++)
    if (fg_proc_thread_state(pid, tids[i]) == 'D') {
      fprintf(out, "%s  thread %d: in uninterruptible sleep (D); in the kernel:\n", indent, tids[i]);
      put_kernel_stack(pid, tids[i], indent, out);
    }
  return -1;
}

#endif
