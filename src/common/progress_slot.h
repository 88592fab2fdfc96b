/* progress_slot.h - the progress file's layout: the protocol between a rank's writer (libfg's
 * progress.c, or the Python hook's torch wrapper, src/launcher/python/fgrun_hook.py) and its
 * reader (fgrun's hang.c). Nothing else lives here, so the protocol can move on its own.
 *
 * The file is a header, then nslots slots of FG_PROGRESS_SLOT_SIZE bytes; local rank r owns
 * the slot at fg_progress_slot_offset(r) (slot 0 starts one slot size in, after the header).
 * A slot has one writer, its rank, under a sequence lock: gen is odd while the rank writes,
 * and a reader that sees it odd or changed retries. Writes are plain stores: no syscall, no
 * lock, nothing the reader can block. */
#ifndef FG_COMMON_PROGRESS_SLOT_H
#define FG_COMMON_PROGRESS_SLOT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FG_PROGRESS_MAGIC 0x47504746u /* "FGPG" */
#define FG_PROGRESS_VERSION 2
#define FG_PROGRESS_SLOT_SIZE 192 /* three cache lines: no two ranks share one */

enum fg_progress_state { FG_PROGRESS_NONE = 0, FG_PROGRESS_IN = 1, FG_PROGRESS_OUT = 2 };
enum { FG_PROGRESS_FAILED = 1 }; /* flags: the operation left (OUT) with an error */
enum { FG_PROGRESS_NO_RANK = -1, FG_PROGRESS_SEVERAL = -2 }; /* root, peer */

typedef struct fg_progress_header {
  uint32_t magic, version, slot_size, nslots;
} fg_progress_header;

typedef struct fg_progress_slot {
  uint32_t gen;   /* odd while the owner writes */
  uint32_t state; /* fg_progress_state */
  uint64_t seq;   /* the operation's number on its group (0: not numbered) */
  uint64_t t_ns;  /* CLOCK_MONOTONIC of the last enter or leave */
  int32_t pid;
  int32_t rank;   /* world rank, -1 when unknown */
  uint64_t count; /* elements the rank passed (0: none or not counted) */
  int32_t root;   /* rooted collectives: the root; else FG_PROGRESS_NO_RANK */
  int32_t peer;   /* point-to-point: the rank a receive waits for (a batch without one: the
                   * send's peer); FG_PROGRESS_SEVERAL: receives from several ranks */
  uint32_t flags; /* FG_PROGRESS_FAILED */
  char dtype[12]; /* "float32", ... ("" when none) */
  char op[24];
  char group[96];
  char reserved[8];
} fg_progress_slot;

_Static_assert(sizeof(fg_progress_slot) == FG_PROGRESS_SLOT_SIZE, "one slot, three cache lines");
_Static_assert(offsetof(fg_progress_slot, op) == 64 && offsetof(fg_progress_slot, group) == 88,
               "the layout the Python hook writes");

/* Where local rank r's slot starts, and how big a file for n slots is. */
static inline size_t fg_progress_slot_offset(int local_rank) {
  return (size_t)(local_rank + 1) * FG_PROGRESS_SLOT_SIZE;
}
static inline size_t fg_progress_file_size(int nslots) { return fg_progress_slot_offset(nslots); }

static inline fg_progress_slot *fg_progress_slot_at(void *map, int local_rank) {
  return (fg_progress_slot *)((char *)map + fg_progress_slot_offset(local_rank));
}

/* The writer's two halves: between them the slot is marked busy. */
static inline void fg_progress_write_begin(fg_progress_slot *s) {
  __atomic_store_n(&s->gen, s->gen + 1, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
}
static inline void fg_progress_write_end(fg_progress_slot *s) {
  __atomic_store_n(&s->gen, s->gen + 1, __ATOMIC_RELEASE);
}

/* Reads a slot another process may be writing; 0, or -1 if the writer kept it busy. */
static inline int fg_progress_read(const volatile fg_progress_slot *slot, fg_progress_slot *out) {
  for (int tries = 0; tries < 1000; tries++) {
    uint32_t before = __atomic_load_n(&slot->gen, __ATOMIC_ACQUIRE);
    if (before & 1) continue;
    memcpy(out, (const void *)slot, sizeof *out);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&slot->gen, __ATOMIC_RELAXED) == before) {
      out->op[sizeof out->op - 1] = out->group[sizeof out->group - 1] = '\0';
      out->dtype[sizeof out->dtype - 1] = '\0';
      return 0;
    }
  }
  return -1;
}

#endif
