/* numa.c - see numa.h. */
#include "launcher/numa.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define MAX_NODES 64

static const char *const mode_names[] = {[FG_NUMA_OFF] = "off",
                                         [FG_NUMA_NODE] = "node",
                                         [FG_NUMA_SOCKET] = "socket",
                                         [FG_NUMA_EXCLUSIVE] = "exclusive",
                                         [FG_NUMA_CORE_COMPLEX] = "core-complex"};

int fg_numa_parse_mode(const char *v, enum fg_numa_mode *out, char *err, size_t errlen) {
  for (size_t i = FG_NUMA_NODE; i < FG_ARRAY_LEN(mode_names); i++)
    if (strcmp(v, mode_names[i]) == 0) {
      *out = (enum fg_numa_mode)i;
      return 0;
    }
  return fg__fail(err, errlen, -EINVAL, "expected node, socket, exclusive or core-complex, "
                 "got '%s'", v);
}

const char *fg_numa_mode_name(enum fg_numa_mode mode) { return mode_names[mode]; }

/* --- reading /sys ------------------------------------------------------------------------ */

static int read_text(const char *path, char *buf, size_t len) {
  FILE *f = fopen(path, "re");
  if (!f) return -errno;
  size_t n = fread(buf, 1, len - 1, f);
  fclose(f);
  buf[n] = '\0';
  return 0;
}

/* "0-3,8,10-11\n" */
static int parse_list(const char *s, cpu_set_t *set) {
  CPU_ZERO(set);
  while (*s && *s != '\n') {
    char *end;
    long lo = strtol(s, &end, 10), hi = lo;
    if (end == s) return -EINVAL;
    if (*end == '-') {
      const char *p = end + 1;
      hi = strtol(p, &end, 10);
      if (end == p) return -EINVAL;
    }
    if (lo < 0 || hi < lo || hi >= CPU_SETSIZE) return -EINVAL;
    for (long c = lo; c <= hi; c++) CPU_SET((int)c, set);
    if (*end == ',') end++;
    s = end;
  }
  return 0;
}

static int read_list(const char *path, cpu_set_t *set) {
  char text[4096];
  int rc = read_text(path, text, sizeof text);
  return rc < 0 ? rc : parse_list(text, set);
}

static int read_int(const char *path, int fallback) {
  char text[64];
  return read_text(path, text, sizeof text) == 0 ? atoi(text) : fallback;
}

static int lowest(const cpu_set_t *set) {
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, set)) return c;
  return -1;
}

/* The NUMA nodes with allowed CPUs, by node id; a kernel without NUMA has one. */
typedef struct topology {
  int n;
  int id[MAX_NODES];
  cpu_set_t cpus[MAX_NODES]; /* allowed CPUs only */
} topology;

static int cmp_int(const void *a, const void *b) {
  return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

static void read_nodes(const char *root, const cpu_set_t *allowed, topology *t) {
  char path[4096];
  snprintf(path, sizeof path, "%s/sys/devices/system/node", root);
  int ids[MAX_NODES], n = 0;
  DIR *d = opendir(path);
  for (struct dirent *e; d && (e = readdir(d)) != NULL && n < MAX_NODES;)
    if (!strncmp(e->d_name, "node", 4) && e->d_name[4] &&
        strspn(e->d_name + 4, "0123456789") == strlen(e->d_name + 4))
      ids[n++] = atoi(e->d_name + 4);
  if (d) closedir(d);
  qsort(ids, (size_t)n, sizeof *ids, cmp_int);
  t->n = 0;
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/sys/devices/system/node/node%d/cpulist", root, ids[i]);
    cpu_set_t s;
    if (read_list(path, &s) != 0) continue;
    CPU_AND(&s, &s, allowed);
    if (CPU_COUNT(&s) == 0) continue;
    t->id[t->n] = ids[i];
    t->cpus[t->n++] = s;
  }
  if (t->n == 0) {
    t->n = 1;
    t->id[0] = 0;
    t->cpus[0] = *allowed;
  }
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The NUMA node index (into t) of each NVIDIA GPU, in PCI address order; returns how many. */
static int gpu_nodes(const char *root, const topology *t, int *node, int most) {
  char path[4096];
  snprintf(path, sizeof path, "%s/proc/driver/nvidia/gpus", root);
  char *names[MAX_NODES * 4];
  int n = 0;
  DIR *d = opendir(path);
  for (struct dirent *e; d && (e = readdir(d)) != NULL && n < (int)FG_ARRAY_LEN(names);)
    if (e->d_name[0] != '.' && (names[n] = strdup(e->d_name)) != NULL) n++;
  if (d) closedir(d);
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  for (int g = 0; g < n; g++) {
    snprintf(path, sizeof path, "%s/sys/bus/pci/devices/%s/numa_node", root, names[g]);
    int id = read_int(path, -1), index = 0; /* -1 (one node): the first */
    for (int i = 0; i < t->n; i++)
      if (t->id[i] == id) index = i;
    if (g < most) node[g] = index;
    free(names[g]);
  }
  return n;
}

/* A key per CPU of set naming its group: the lowest CPU of the group the file lists. */
static void group_keys(const char *root, const cpu_set_t *set, const char *what, int *key) {
  char path[4096];
  for (int c = 0; c < CPU_SETSIZE; c++) {
    if (!CPU_ISSET(c, set)) continue;
    cpu_set_t g;
    snprintf(path, sizeof path, "%s/sys/devices/system/cpu/cpu%d/%s", root, c, what);
    key[c] = read_list(path, &g) == 0 && CPU_COUNT(&g) ? lowest(&g) : c;
  }
}

/* The last-level data or unified cache's sharers, as group_keys does for cores. */
static void cache_keys(const char *root, const cpu_set_t *set, int *key) {
  char path[4096], text[64];
  for (int c = 0; c < CPU_SETSIZE; c++) {
    if (!CPU_ISSET(c, set)) continue;
    key[c] = -1; /* no cache information: one complex */
    int best = -1;
    for (int i = 0; i < 16; i++) {
      snprintf(path, sizeof path, "%s/sys/devices/system/cpu/cpu%d/cache/index%d/type", root,
               c, i);
      if (read_text(path, text, sizeof text) != 0) break;
      if (strncmp(text, "Unified", 7) && strncmp(text, "Data", 4)) continue;
      snprintf(path, sizeof path, "%s/sys/devices/system/cpu/cpu%d/cache/index%d/level", root,
               c, i);
      int level = read_int(path, 0);
      cpu_set_t g;
      snprintf(path, sizeof path, "%s/sys/devices/system/cpu/cpu%d/cache/index%d/shared_cpu_list",
               root, c, i);
      if (level > best && read_list(path, &g) == 0 && CPU_COUNT(&g)) {
        best = level;
        key[c] = lowest(&g);
      }
    }
  }
}

/* The distinct keys of set's CPUs, ascending, with how many CPUs each has. */
static int distinct(const cpu_set_t *set, const int *key, int *keys, int *count) {
  int n = 0;
  for (int c = 0; c < CPU_SETSIZE; c++) {
    if (!CPU_ISSET(c, set)) continue;
    int i = 0;
    while (i < n && keys[i] != key[c]) i++;
    if (i == n) keys[n] = key[c], count[n++] = 0;
    count[i]++;
  }
  for (int i = 1; i < n; i++) /* insertion sort by key: n is small */
    for (int j = i; j > 0 && keys[j] < keys[j - 1]; j--) {
      int k = keys[j], m = count[j];
      keys[j] = keys[j - 1], count[j] = count[j - 1];
      keys[j - 1] = k, count[j - 1] = m;
    }
  return n;
}

static void select_keys(const cpu_set_t *set, const int *key, const int *keys, int from, int to,
                        cpu_set_t *out) {
  CPU_ZERO(out);
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, set))
      for (int i = from; i < to; i++)
        if (key[c] == keys[i]) CPU_SET(c, out);
}

/* --- the modes --------------------------------------------------------------------------- */

typedef struct plan_ctx {
  const char *root;
  const cpu_set_t *allowed;
  const topology *t;
  int *key, *keys, *count; /* CPU_SETSIZE each */
} plan_ctx;

static void socket_cpus(const plan_ctx *p, int home, cpu_set_t *out) {
  char path[4096];
  snprintf(path, sizeof path, "%s/sys/devices/system/cpu/cpu%d/topology/physical_package_id",
           p->root, lowest(&p->t->cpus[home]));
  int package = read_int(path, 0);
  CPU_ZERO(out);
  for (int c = 0; c < CPU_SETSIZE; c++) {
    if (!CPU_ISSET(c, p->allowed)) continue;
    snprintf(path, sizeof path, "%s/sys/devices/system/cpu/cpu%d/topology/physical_package_id",
             p->root, c);
    if (read_int(path, 0) == package) CPU_SET(c, out);
  }
}

/* Worker k of the g whose home is node home gets its share of the node's cores. */
static int exclusive_cpus(const plan_ctx *p, int home, int k, int g, cpu_set_t *out, char *err,
                          size_t errlen) {
  const cpu_set_t *node = &p->t->cpus[home];
  group_keys(p->root, node, "topology/thread_siblings_list", p->key);
  int cores = distinct(node, p->key, p->keys, p->count);
  if (cores < g)
    return fg__fail(err, errlen, -EINVAL, "--numa_binding exclusive: NUMA node %d has %d "
                   "physical core%s fgrun may use, for %d workers (each needs one of its own)",
                   p->t->id[home], cores, cores == 1 ? "" : "s", g);
  int per = cores / g, extra = cores % g;
  int start = k * per + FG__MIN(k, extra);
  select_keys(node, p->key, p->keys, start, start + per + (k < extra), out);
  return 0;
}

static void core_complex_cpus(const plan_ctx *p, int home, int k, cpu_set_t *out) {
  const cpu_set_t *node = &p->t->cpus[home];
  cache_keys(p->root, node, p->key);
  int n = distinct(node, p->key, p->keys, p->count);
  for (int i = 1; i < n; i++) /* largest first, then lowest key: stable insertion */
    for (int j = i; j > 0 && p->count[j] > p->count[j - 1]; j--) {
      int kk = p->keys[j], m = p->count[j];
      p->keys[j] = p->keys[j - 1], p->count[j] = p->count[j - 1];
      p->keys[j - 1] = kk, p->count[j - 1] = m;
    }
  int pick = k % n;
  select_keys(node, p->key, p->keys, pick, pick + 1, out);
}

int fg_numa_plan(enum fg_numa_mode mode, int nproc, const char *root, const cpu_set_t *allowed,
                 cpu_set_t *cpus, char *err, size_t errlen) {
  topology *t = malloc(sizeof *t);
  int *home = calloc((size_t)nproc, sizeof *home);
  int *scratch = malloc(3 * CPU_SETSIZE * sizeof *scratch);
  int rc = 0;
  if (!t || !home || !scratch) {
    rc = fg__fail(err, errlen, -ENOMEM, "out of memory");
    goto out;
  }
  read_nodes(root, allowed, t);
  if (gpu_nodes(root, t, home, nproc) < nproc)
    for (int i = 0; i < nproc; i++) home[i] = (int)((long)i * t->n / nproc);
  plan_ctx p = {root, allowed, t, scratch, scratch + CPU_SETSIZE, scratch + 2 * CPU_SETSIZE};
  for (int i = 0; i < nproc && rc == 0; i++) {
    int k = 0, g = 0; /* this worker's place among those of its home node */
    for (int j = 0; j < nproc; j++)
      if (home[j] == home[i]) k += j < i, g++;
    switch (mode) {
      case FG_NUMA_NODE: cpus[i] = t->cpus[home[i]]; break;
      case FG_NUMA_SOCKET: socket_cpus(&p, home[i], &cpus[i]); break;
      case FG_NUMA_EXCLUSIVE: rc = exclusive_cpus(&p, home[i], k, g, &cpus[i], err, errlen); break;
      case FG_NUMA_CORE_COMPLEX: core_complex_cpus(&p, home[i], k, &cpus[i]); break;
      default: cpus[i] = *allowed; break;
    }
    if (rc == 0 && CPU_COUNT(&cpus[i]) == 0)
      rc = fg__fail(err, errlen, -EINVAL, "--numa_binding %s: no CPU for local rank %d",
                   mode_names[mode], i);
  }
out:
  free(t);
  free(home);
  free(scratch);
  return rc;
}

void fg_numa_format(const cpu_set_t *set, char *out, size_t len) {
  size_t used = 0;
  out[0] = '\0';
  for (int c = 0; c < CPU_SETSIZE && used < len; c++) {
    if (!CPU_ISSET(c, set)) continue;
    int end = c;
    while (end + 1 < CPU_SETSIZE && CPU_ISSET(end + 1, set)) end++;
    int n = end > c ? snprintf(out + used, len - used, "%s%d-%d", used ? "," : "", c, end)
                    : snprintf(out + used, len - used, "%s%d", used ? "," : "", c);
    used += n > 0 ? (size_t)n : 0;
    c = end;
  }
}
