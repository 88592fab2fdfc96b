/* nproc.c - counting CPUs and GPUs without loading any GPU library. */
#include "launcher/nproc.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

static int count_entries(const char *dir, const char *prefix, int digits_only) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  size_t plen = strlen(prefix);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || strncmp(e->d_name, prefix, plen) != 0) continue;
    const char *rest = e->d_name + plen;
    if (digits_only && (!*rest || strspn(rest, "0123456789") != strlen(rest))) continue;
    n++;
  }
  closedir(d);
  return n;
}

static int physical_gpus(const char *root) {
  char path[4096];
  snprintf(path, sizeof path, "%s/proc/driver/nvidia/gpus", root);
  int n = count_entries(path, "", 0);
  if (n > 0) return n;
  snprintf(path, sizeof path, "%s/dev", root);
  return count_entries(path, "nvidia", 1);
}

int fg_gpu_count(const char *root, const char *cuda_visible) {
  int physical = physical_gpus(root);
  if (!cuda_visible || physical == 0) return physical;
  int visible = 0;
  unsigned long long used = 0; /* indices seen, to stop at a repeat as CUDA does */
  for (const char *p = cuda_visible; *p;) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    char item[128];
    while (n && *p == ' ') p++, n--;
    if (n == 0 || n >= sizeof item) break;
    memcpy(item, p, n);
    item[n] = '\0';
    int index;
    if (fg__parse_int(item, 0, 63, &index) == 0) {
      if (index >= physical || (used >> index & 1)) break;
      used |= 1ull << index;
    } else if (strncmp(item, "GPU-", 4) != 0 && strncmp(item, "MIG-", 4) != 0) {
      break;
    }
    if (++visible == physical) break;
    if (!comma) break;
    p = comma + 1;
  }
  return visible;
}

int fg_resolve_nproc(fg_launch_opts *o, char *err, size_t errlen) {
  if (o->nproc_kind == FG_NPROC_NUMBER) return 0;
  int gpus = o->nproc_kind == FG_NPROC_CPU ? 0 : fg_gpu_count("", getenv("CUDA_VISIBLE_DEVICES"));
  if (o->nproc_kind == FG_NPROC_GPU && gpus == 0)
    return fg__fail(err, errlen, -ENODEV,
                   "--nproc_per_node gpu: no GPU found (no /proc/driver/nvidia/gpus or "
                   "/dev/nvidia<N>, or CUDA_VISIBLE_DEVICES hides them)");
  if (gpus > 0) {
    o->nproc = gpus;
  } else {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    o->nproc = cpus > 0 ? (int)cpus : 1;
  }
  return 0;
}
