/* rundir.c - creating and removing the run directory. */
#define _XOPEN_SOURCE 700
#include "launcher/rundir.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

static int mkdir_p(const char *path) {
  char buf[PATH_MAX];
  if (strlen(path) >= sizeof buf) return -ENAMETOOLONG;
  strcpy(buf, path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -errno;
    *p = '/';
  }
  if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -errno;
  return 0;
}

int fg_rundir_create(fg_rundir *rd, const char *log_dir, const char *run_id,
                     int keep_temporary, char *err, size_t errlen) {
  memset(rd, 0, sizeof *rd);
  if (!log_dir) {
    /* A directory that only holds error files and goes at exit is best in memory: on a
     * disk file system creating and removing a directory per worker costs more than
     * starting the worker. Logs the user wants kept go to TMPDIR. */
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = keep_temporary || access("/dev/shm", W_OK) != 0 ? "/tmp" : "/dev/shm";
    if (!(rd->path = fg__asprintf("%s/fgrun-XXXXXX", tmp)))
      return fg__fail(err, errlen, -ENOMEM, "out of memory");
    if (!mkdtemp(rd->path)) {
      int rc = -errno;
      fg__fail(err, errlen, rc, "cannot create a directory in %s: %s", tmp, strerror(-rc));
      fg_rundir_finish(rd);
      return rc;
    }
    rd->temporary = 1;
    rd->keep = keep_temporary;
    return 0;
  }

  int rc = mkdir_p(log_dir);
  if (rc < 0)
    return fg__fail(err, errlen, rc, "--log_dir: cannot create %s: %s", log_dir, strerror(-rc));
  char name[256];
  snprintf(name, sizeof name, "%s", run_id);
  for (char *p = name; *p; p++)
    if (*p == '/') *p = '_';
  rd->keep = 1;
  for (int n = 0; n < 10000; n++) {
    rd->path = n ? fg__asprintf("%s/%s.%d", log_dir, name, n) : fg__asprintf("%s/%s", log_dir, name);
    if (!rd->path) return fg__fail(err, errlen, -ENOMEM, "out of memory");
    if (mkdir(rd->path, 0755) == 0) return 0;
    rc = -errno;
    free(rd->path);
    rd->path = NULL;
    if (rc != -EEXIST)
      return fg__fail(err, errlen, rc, "--log_dir: cannot create a directory in %s: %s",
                     log_dir, strerror(-rc));
  }
  return fg__fail(err, errlen, -EEXIST, "--log_dir: %s/%s.1 ... %s.9999 all exist", log_dir,
                 name, name);
}

int fg_rundir_make_attempt(fg_rundir *rd, int attempt, int nproc, char *err, size_t errlen) {
  char path[PATH_MAX];
  int n = snprintf(path, sizeof path, "%s/attempt_%d", rd->path, attempt);
  /* torchrun clears a leftover attempt directory; a restart never reuses one here. */
  if (mkdir(path, 0755) != 0 && errno != EEXIST) goto fail;
  for (int r = 0; r < nproc; r++) {
    snprintf(path + n, sizeof path - (size_t)n, "/%d", r);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) goto fail;
  }
  return 0;
fail:;
  int rc = -errno;
  return fg__fail(err, errlen, rc, "cannot create %s: %s", path, strerror(-rc));
}

char *fg_rundir_file(const fg_rundir *rd, int attempt, int local_rank, const char *file) {
  return fg__asprintf("%s/attempt_%d/%d/%s", rd->path, attempt, local_rank, file);
}

char *fg_rundir_sibling(const char *path, const char *name) {
  const char *slash = strrchr(path, '/');
  return slash ? fg__asprintf("%.*s/%s", (int)(slash - path), path, name) : strdup(name);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st, (void)ftw;
  int rc = type == FTW_DP ? rmdir(path) : unlink(path);
  return rc == 0 || errno == ENOENT ? 0 : -errno;
}

int fg_remove_tree(const char *path) {
  return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void fg_rundir_finish(fg_rundir *rd) {
  if (rd->path && rd->temporary && !rd->keep) fg_remove_tree(rd->path);
  free(rd->path);
  rd->path = NULL;
}
