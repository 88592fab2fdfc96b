/* ckpt_io.h - checkpoint directories written atomically, and read back whole.
 *
 * A checkpoint is a directory of files plus a manifest (name, size, FNV-1a
 * checksum of each). It is written under a temporary name, every file and the
 * directory fsync'd, then renamed into place: a crash at any point leaves
 * either no checkpoint-<step> or a complete one, never one that looks complete
 * but is not. */
#ifndef FG_SCENARIOS_CKPT_IO_H
#define FG_SCENARIOS_CKPT_IO_H

#include <stddef.h>
#include <stdint.h>

typedef struct ckpt_file {
  const char *name;
  const void *data;
  size_t len;
} ckpt_file;

/* Called in the middle of a write, after `after` files: the moment a crash or a reader
 * would find the checkpoint half written. A non-zero return abandons the write. */
typedef struct ckpt_hook {
  size_t after;
  int (*fn)(void *arg);
  void *arg;
} ckpt_hook;

/* Writes dir/<final> atomically; hook may be NULL. atomic = 0 writes straight into the
 * final name (the fault that shows why the temporary name matters). Returns 0 or -errno
 * (or the hook's code). */
int ckpt_write(const char *dir, const char *final, const ckpt_file *files, size_t n,
               const ckpt_hook *hook, int atomic);

/* 1 if name is a checkpoint's final name (checkpoint-<step>), with the step. */
int ckpt_name_step(const char *name, int *step);

/* Checks that dir is a complete checkpoint: its manifest exists and every file in it has
 * the recorded size and checksum. Returns 0, or -1 with why filled in. */
int ckpt_verify(const char *dir, char *why, size_t whylen);

/* Reads one file of a checkpoint (malloc'd, NUL-terminated). */
int ckpt_read(const char *dir, const char *name, char **data, size_t *len);

/* Removes a checkpoint directory and everything in it. */
int ckpt_remove(const char *dir);

uint64_t ckpt_fnv1a(const void *data, size_t len);

#endif
