/* ckpt_io.c - checkpoint directories: written under a temporary name and renamed, read
 * back and checked against their manifest. */
#include "scenarios/ckpt_io.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

uint64_t ckpt_fnv1a(const void *data, size_t len) {
  const uint8_t *p = data;
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

static int write_synced(const char *path, const void *data, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -errno;
  const char *p = data;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      return -e;
    }
    p += n;
    len -= (size_t)n;
  }
  int rc = fsync(fd) == 0 ? 0 : -errno;
  if (close(fd) != 0 && rc == 0) rc = -errno;
  return rc;
}

static int sync_dir(const char *path) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int rc = fsync(fd) == 0 ? 0 : -errno;
  close(fd);
  return rc;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

int ckpt_remove(const char *dir) {
  if (access(dir, F_OK) != 0) return 0;
  return nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -errno;
}

int ckpt_name_step(const char *name, int *step) {
  char tail;
  return sscanf(name, "checkpoint-%d%c", step, &tail) == 1;
}

int ckpt_write(const char *dir, const char *final, const ckpt_file *files, size_t n,
               const ckpt_hook *hook, int atomic) {
  char tmp[4096], dst[4096], path[4096];
  snprintf(dst, sizeof dst, "%s/%s", dir, final);
  snprintf(tmp, sizeof tmp, "%s/.tmp-%s", dir, final);
  const char *target = atomic ? tmp : dst;
  ckpt_remove(target); /* left by a crash, or written by an earlier run */
  if (mkdir(target, 0755) != 0) return -errno;

  char *manifest = NULL;
  size_t mlen = 0;
  FILE *m = open_memstream(&manifest, &mlen);
  if (!m) return -ENOMEM;
  int rc = 0;
  for (size_t i = 0; i <= n && rc == 0; i++) {
    if (hook && i == hook->after) rc = hook->fn(hook->arg);
    if (rc != 0 || i == n) break;
    if (snprintf(path, sizeof path, "%s/%s", target, files[i].name) >= (int)sizeof path)
      rc = -ENAMETOOLONG;
    else
      rc = write_synced(path, files[i].data, files[i].len);
    fprintf(m, "%s %zu %016" PRIx64 "\n", files[i].name, files[i].len,
            ckpt_fnv1a(files[i].data, files[i].len));
  }
  fclose(m);
  if (rc == 0)
    rc = snprintf(path, sizeof path, "%s/manifest", target) >= (int)sizeof path
             ? -ENAMETOOLONG
             : write_synced(path, manifest, mlen);
  free(manifest);
  if (rc == 0) rc = sync_dir(target);
  if (rc == 0 && atomic) {
    ckpt_remove(dst); /* a checkpoint of the same step from an earlier run */
    rc = rename(tmp, dst) == 0 ? 0 : -errno;
  }
  if (rc == 0) rc = sync_dir(dir);
  if (rc != 0 && atomic) ckpt_remove(tmp);
  return rc;
}

int ckpt_read(const char *dir, const char *name, char **data, size_t *len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) return -errno;
  char *buf = NULL;
  size_t cap = 0, n = 0;
  for (;;) {
    if (n + 4096 + 1 > cap) {
      cap = cap ? cap * 2 : 8192;
      char *p = realloc(buf, cap);
      if (!p) {
        free(buf);
        fclose(f);
        return -ENOMEM;
      }
      buf = p;
    }
    size_t got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0) break;
  }
  int err = ferror(f) ? -EIO : 0;
  fclose(f);
  if (err) {
    free(buf);
    return err;
  }
  buf[n] = '\0';
  *data = buf;
  *len = n;
  return 0;
}

int ckpt_verify(const char *dir, char *why, size_t whylen) {
  char *manifest;
  size_t mlen;
  if (ckpt_read(dir, "manifest", &manifest, &mlen) != 0) {
    snprintf(why, whylen, "%s has no manifest", dir);
    return -1;
  }
  int rc = 0, files = 0;
  char *save = NULL;
  for (char *line = strtok_r(manifest, "\n", &save); line && rc == 0;
       line = strtok_r(NULL, "\n", &save)) {
    char name[256];
    size_t size;
    uint64_t sum;
    if (sscanf(line, "%255s %zu %" SCNx64, name, &size, &sum) != 3) {
      snprintf(why, whylen, "%s: bad manifest line '%s'", dir, line);
      rc = -1;
      break;
    }
    char *data;
    size_t len;
    if (ckpt_read(dir, name, &data, &len) != 0) {
      snprintf(why, whylen, "%s: %s is missing", dir, name);
      rc = -1;
    } else {
      if (len != size || ckpt_fnv1a(data, len) != sum) {
        snprintf(why, whylen, "%s: %s has %zu bytes, checksum %016" PRIx64 " (manifest: %zu, %016" PRIx64 ")",
                 dir, name, len, ckpt_fnv1a(data, len), size, sum);
        rc = -1;
      }
      free(data);
    }
    files++;
  }
  if (rc == 0 && files == 0) {
    snprintf(why, whylen, "%s: empty manifest", dir);
    rc = -1;
  }
  free(manifest);
  return rc;
}
