/* program.c - from PROGRAM and the launch flags to a path and argv, found before any
 * worker starts so that a typo fails fast with exit status 2. */
#include "launcher/program.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "scenarios/names.h"

static const char *const scenarios[] = {FG_SCENARIO_NAMES, FG_SCENARIO_ALL};

/* Runs the script the way torchrun's run_script_path does, in a fresh interpreter. */
static const char run_path_code[] =
    "import runpy, sys; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')";

int fg_is_scenario(const char *name) {
  for (size_t i = 0; i < FG_ARRAY_LEN(scenarios); i++)
    if (fg__scenario_name_eq(name, scenarios[i])) return 1;
  return 0;
}

static int is_executable_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int fg_which(const char *name, char *out, size_t outlen) {
  if (strchr(name, '/')) {
    if (!is_executable_file(name) || strlen(name) >= outlen) return -ENOENT;
    strcpy(out, name);
    return 0;
  }
  const char *path = getenv("PATH");
  if (!path) path = "/usr/local/bin:/usr/bin:/bin";
  for (const char *p = path;;) {
    const char *colon = strchr(p, ':');
    size_t n = colon ? (size_t)(colon - p) : strlen(p);
    int len = n ? snprintf(out, outlen, "%.*s/%s", (int)n, p, name)
                : snprintf(out, outlen, "%s", name); /* empty entry: the current directory */
    if (len > 0 && (size_t)len < outlen && is_executable_file(out)) return 0;
    if (!colon) return -ENOENT;
    p = colon + 1;
  }
}

int fg_self_dir(char *out, size_t outlen) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return -errno;
  exe[n] = '\0';
  char *slash = strrchr(exe, '/');
  if (!slash) return -ENOENT;
  *slash = '\0';
  if ((size_t)snprintf(out, outlen, "%s", exe) >= outlen) return -ENAMETOOLONG;
  return 0;
}

static int is_directory(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int find_in_places(const char *self_dir, const char *name, int (*fits)(const char *),
                          char *out, size_t outlen) {
  static const char *const places[] = {"%s/%s", "%s/../libexec/fgrun/%s"};
  for (size_t i = 0; i < FG_ARRAY_LEN(places); i++) {
    int n = snprintf(out, outlen, places[i], self_dir, name);
    if (n > 0 && (size_t)n < outlen && fits(out)) return 0;
  }
  snprintf(out, outlen, "%s/%s", self_dir, name);
  return -ENOENT;
}

int fg_find_helper(const char *self_dir, const char *name, char *out, size_t outlen) {
  return find_in_places(self_dir, name, is_executable_file, out, outlen);
}

int fg_find_helper_dir(const char *self_dir, const char *name, char *out, size_t outlen) {
  return find_in_places(self_dir, name, is_directory, out, outlen);
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int find_python(const fg_launch_opts *o, char *out, size_t outlen, char *err,
                       size_t errlen) {
  const char *python = o->python;
  const char *source = "--python";
  if (!python && (python = getenv("PYTHON_EXEC")) && *python) source = "PYTHON_EXEC";
  if (!python || !*python) {
    python = "python3";
    source = "PATH";
  }
  if (fg_which(python, out, outlen) != 0)
    return fg__fail(err, errlen, -ENOENT,
                   "Python interpreter '%s' (from %s) not found; set --python or PYTHON_EXEC",
                   python, source);
  return 0;
}

/* Fills p->argv from a head (interpreter and its flags) and the user's arguments. */
static int build_argv(fg_program *p, const char *const *head, int nhead,
                      const fg_launch_opts *o) {
  p->argc = nhead + o->nprogram_args;
  p->argv = calloc((size_t)p->argc + 1, sizeof *p->argv);
  if (!p->argv) return -ENOMEM;
  for (int i = 0; i < nhead; i++)
    if (!(p->argv[i] = strdup(head[i]))) return -ENOMEM;
  for (int i = 0; i < o->nprogram_args; i++) {
    if (!(p->argv[nhead + i] = strdup(o->program_args[i]))) return -ENOMEM;
    if (strstr(o->program_args[i], "${local_rank}")) p->has_local_rank_macro = 1;
  }
  return 0;
}

/* An executable named on the command line: a path (or file here) with the exec bit, or a
 * bare name on PATH. */
static int find_executable(const char *prog, char *path, size_t pathlen) {
  if (strchr(prog, '/') || is_file(prog)) {
    if (!is_executable_file(prog)) return 0;
    snprintf(path, pathlen, "%s", prog);
    return 1;
  }
  return fg_which(prog, path, pathlen) == 0;
}

int fg_program_resolve(const fg_launch_opts *o, const char *self_dir, fg_program *p,
                       char *err, size_t errlen) {
  memset(p, 0, sizeof *p);
  char path[PATH_MAX];
  const char *prog = o->program;
  int rc;

  if (fg_is_scenario(prog) && !o->module && !o->run_path) {
    if (fg_find_helper(self_dir, "fgscenario", path, sizeof path) != 0)
      return fg__fail(err, errlen, -ENOENT,
                     "scenario '%s' needs the scenario program %s, which is missing", prog,
                     path);
    const char *head[] = {path, prog};
    rc = build_argv(p, head, 2, o);
  } else if (o->no_python && !o->run_path) {
    if (fg_which(prog, path, sizeof path) != 0)
      return fg__fail(err, errlen, -ENOENT, "program '%s' not found%s", prog,
                     strchr(prog, '/') ? " or not executable" : " on PATH");
    const char *head[] = {path};
    rc = build_argv(p, head, 1, o);
  } else if (!o->module && !o->run_path && !ends_with(prog, ".py") &&
             find_executable(prog, path, sizeof path)) {
    const char *head[] = {path};
    rc = build_argv(p, head, 1, o);
  } else {
    if (!o->module && !is_file(prog))
      return fg__fail(err, errlen, -ENOENT, "program '%s' not found%s", prog,
                     strchr(prog, '/') || ends_with(prog, ".py")
                         ? ""
                         : " (not a file, a scenario or an executable on PATH)");
    if ((rc = find_python(o, path, sizeof path, err, errlen)) != 0) return rc;
    p->uses_python = 1;
    if (o->run_path) {
      const char *head[] = {path, "-u", "-c", run_path_code, prog};
      rc = build_argv(p, head, 5, o);
    } else if (o->module) {
      const char *head[] = {path, "-u", "-m", prog};
      rc = build_argv(p, head, 4, o);
    } else {
      const char *head[] = {path, "-u", prog};
      rc = build_argv(p, head, 3, o);
    }
  }
  if (rc < 0 || !(p->path = strdup(p->argv[0]))) {
    fg_program_free(p);
    return fg__fail(err, errlen, -ENOMEM, "out of memory");
  }
  return 0;
}

void fg_program_free(fg_program *p) {
  if (p->argv)
    for (int i = 0; i < p->argc; i++) free(p->argv[i]);
  free(p->argv);
  free(p->path);
  memset(p, 0, sizeof *p);
}

static char *replace_all(const char *s, const char *what, const char *with) {
  size_t count = 0, wlen = strlen(what), rlen = strlen(with);
  for (const char *q = strstr(s, what); q; q = strstr(q + wlen, what)) count++;
  char *out = malloc(strlen(s) + count * rlen + 1);
  if (!out) return NULL;
  char *w = out;
  for (const char *q; (q = strstr(s, what)) != NULL; s = q + wlen) {
    memcpy(w, s, (size_t)(q - s));
    w += q - s;
    memcpy(w, with, rlen);
    w += rlen;
  }
  strcpy(w, s);
  return out;
}

char **fg_program_argv_for(const fg_program *p, int local_rank) {
  if (!p->has_local_rank_macro) return p->argv;
  char **argv = calloc((size_t)p->argc + 1, sizeof *argv);
  char rank[16];
  snprintf(rank, sizeof rank, "%d", local_rank);
  for (int i = 0; argv && i < p->argc; i++)
    if (!(argv[i] = replace_all(p->argv[i], "${local_rank}", rank))) {
      fg_program_argv_free(p, argv);
      return NULL;
    }
  return argv;
}

void fg_program_argv_free(const fg_program *p, char **argv) {
  if (!argv || argv == p->argv) return;
  for (int i = 0; i < p->argc; i++) free(argv[i]);
  free(argv);
}
