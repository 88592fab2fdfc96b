/* program.h - what each worker executes: PROGRAM resolved to a path and an argv. */
#ifndef FG_LAUNCHER_PROGRAM_H
#define FG_LAUNCHER_PROGRAM_H

#include <stddef.h>

#include "launcher/options.h"

typedef struct fg_program {
  char *path;  /* the file each worker executes */
  char **argv; /* NULL-terminated; argv[0] is path */
  int argc;
  int has_local_rank_macro; /* an argument contains ${local_rank} (torchrun's macro) */
  int uses_python;
} fg_program;

/* Decides how PROGRAM runs: built-in scenario (fgscenario next to fgrun), *.py, -m module,
 * --run_path, --no_python, or an executable; checks that it exists. self_dir is the
 * directory of the fgrun binary. Returns 0, or -ENOENT/-EINVAL with one line in err. */
int fg_program_resolve(const fg_launch_opts *o, const char *self_dir, fg_program *p,
                       char *err, size_t errlen);
void fg_program_free(fg_program *p);

/* The argv for one local rank with ${local_rank} filled in: p->argv itself when there is
 * nothing to fill in, else a new array that fg_program_argv_free releases. */
char **fg_program_argv_for(const fg_program *p, int local_rank);
void fg_program_argv_free(const fg_program *p, char **argv);

/* An executable called name on PATH, copied into out. Returns 0 or -ENOENT. */
int fg_which(const char *name, char *out, size_t outlen);
/* The directory holding the running binary (/proc/self/exe). */
int fg_self_dir(char *out, size_t outlen);
/* A helper program: self_dir/name, else self_dir/../libexec/fgrun/name. */
int fg_find_helper(const char *self_dir, const char *name, char *out, size_t outlen);
/* The same for a directory of helper files (fgrun-pyhook). */
int fg_find_helper_dir(const char *self_dir, const char *name, char *out, size_t outlen);

/* Is name one of the built-in scenarios? */
int fg_is_scenario(const char *name);

#endif
