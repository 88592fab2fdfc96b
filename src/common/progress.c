/* progress.c - the writer's side of the progress file (see progress.h). */
#include "common/progress.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/trace.h"
#include "common/util.h"

/* Set up once, on the first operation: the environment does not change under a running
 * rank, and every later operation pays only for the two flags. */
static struct {
  int ready;
  int tracing;
  fg_progress_slot *slot; /* this rank's, or NULL */
  const fg_op_mark *last; /* the mark whose names the slot holds, until it leaves */
} g;

/* The first of names that holds a number: fgrun's and torchrun's, then Open MPI's and
 * Slurm's, as env.c reads them. */
static int env_int(const char *const *names, int fallback) {
  for (; *names; names++) {
    const char *v = getenv(*names);
    int n;
    if (v && fg__parse_int(v, 0, 1 << 30, &n) == 0) return n;
  }
  return fallback;
}

static const char *const local_rank_vars[] = {"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
                                              "SLURM_LOCALID", NULL};
static const char *const rank_vars[] = {"RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK",
                                        "SLURM_PROCID", NULL};

/* Maps this rank's slot. Anything unexpected leaves progress off: a hang report is a
 * diagnosis, never a reason for a rank to fail. */
static fg_progress_slot *map_slot(void) {
  const char *path = getenv("FG_PROGRESS_FILE");
  int local_rank = env_int(local_rank_vars, -1);
  if (!path || !*path || local_rank < 0) return NULL;
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return NULL;
  struct stat st;
  void *map = MAP_FAILED;
  size_t need = fg_progress_file_size(local_rank + 1); /* up to and with this rank's slot */
  if (fstat(fd, &st) == 0 && (size_t)st.st_size >= need)
    map = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return NULL;
  const fg_progress_header *h = map;
  if (h->magic != FG_PROGRESS_MAGIC || h->version != FG_PROGRESS_VERSION ||
      h->slot_size != FG_PROGRESS_SLOT_SIZE || (uint32_t)local_rank >= h->nslots) {
    munmap(map, need);
    return NULL;
  }
  fg_progress_slot *slot = fg_progress_slot_at(map, local_rank);
  slot->pid = (int32_t)getpid();
  slot->rank = env_int(rank_vars, -1);
  return slot;
}

/* A forked child that uses the library must not write its parent's slot. */
static void off_in_child(void) { g.slot = NULL; }

static void setup(void) {
  g.ready = 1;
  g.slot = map_slot();
  g.tracing = fg__trace_setup();
  if (g.slot) pthread_atfork(NULL, NULL, off_in_child);
}

static void copy_name(char *dst, size_t len, const char *src) {
  size_t i = 0;
  for (; src && src[i] && i + 1 < len; i++) dst[i] = src[i];
  dst[i] = '\0';
}

static int failed(const fg_op_mark *m) { return m->err && m->err[0]; }

static void publish(const fg_op_mark *m, uint32_t state, uint64_t t_ns) {
  fg_progress_slot *s = g.slot;
  fg_progress_write_begin(s);
  s->state = state;
  s->seq = m->seq;
  s->t_ns = t_ns;
  s->count = m->args.count;
  s->root = m->args.root;
  s->peer = m->args.peer;
  s->flags = state == FG_PROGRESS_OUT && failed(m) ? FG_PROGRESS_FAILED : 0;
  /* A leave right after its own enter finds its names in place: the slot has one writer,
   * and no other mark was published in between. */
  if (state == FG_PROGRESS_IN || g.last != m) {
    copy_name(s->dtype, sizeof s->dtype, m->args.dtype);
    copy_name(s->op, sizeof s->op, m->op);
    copy_name(s->group, sizeof s->group, m->group);
  }
  g.last = state == FG_PROGRESS_IN ? m : NULL;
  fg_progress_write_end(s);
}

void fg__op_enter(fg_op_mark *m, const char *op, const char *group, uint64_t seq,
                 const char *err, const fg_op_args *args) {
  if (!g.ready) setup();
  if (!g.slot && !g.tracing) return;
  *m = (fg_op_mark){.op = op, .group = group, .seq = seq, .t0_ns = fg__now_ns(), .err = err,
                    .args = args ? *args : FG_OP_ARGS_NONE};
  if (g.slot) publish(m, FG_PROGRESS_IN, m->t0_ns);
}

void fg__op_leave(fg_op_mark *m) {
  if (!m->op) return;
  uint64_t t1 = fg__now_ns();
  if (g.slot) publish(m, FG_PROGRESS_OUT, t1);
  if (g.tracing)
    fg__trace_op(m->op, m->group, m->seq, m->t0_ns, t1, failed(m) ? m->err : NULL);
  m->op = NULL;
}
