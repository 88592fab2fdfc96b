/* mpi_abi.c - an ELF program's dependency tree, and which MPI is in it. */
#include "launcher/mpi_abi.h"

#include <elf.h>
#include <fcntl.h>
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/util.h"

/* Libraries by the start of their soname: MPIs that have no PMIx client, and those that
 * talk to a PMIx server (Open MPI's, and libpmix itself). */
static const struct {
  const char *soname, *family; /* family NULL: a PMIx client */
} known[] = {
    {"libmpich.so", "MPICH"},
    {"libmpich_intel.so", "MPICH"},
    {"libmpi.so.12", "an MPICH-ABI MPI (MPICH, Intel MPI, MVAPICH)"},
    {"libmpi.so", NULL},
    {"libopen-pal.so", NULL},
    {"libpmix.so", NULL},
};

enum { MAX_OBJECTS = 512 };
/* Where the loader looks after RPATH, LD_LIBRARY_PATH and RUNPATH when ld.so.conf names
 * nothing (its cache is built from those directories and these). */
static const char *const default_dirs[] = {"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                                           "/lib64", "/usr/lib64", "/lib", "/usr/lib"};

typedef struct scan {
  fg_buf seen;     /* paths visited, NUL-separated */
  char **queue;    /* paths to read */
  int nqueue, next;
  char *conf_dirs; /* ld.so.conf's directories, ':'-separated; NULL until read */
  enum fg_mpi_link result;
  char *lib;
  size_t liblen;
  const char **family;
} scan;

/* --- one ELF file ------------------------------------------------------------------------ */

typedef struct elf_view {
  const unsigned char *buf;
  size_t len;
  const Elf64_Phdr *ph;
  int nph;
  const Elf64_Dyn *dyn;
  size_t ndyn;
  const char *strings;
  uint64_t strsz;
} elf_view;

static int64_t file_offset(const elf_view *e, uint64_t vaddr) {
  for (int i = 0; i < e->nph; i++)
    if (e->ph[i].p_type == PT_LOAD && vaddr >= e->ph[i].p_vaddr &&
        vaddr < e->ph[i].p_vaddr + e->ph[i].p_filesz)
      return (int64_t)(vaddr - e->ph[i].p_vaddr + e->ph[i].p_offset);
  return -1;
}

/* The dynamic section and its strings of a 64-bit little-endian ELF image; 0 if it has
 * none or is malformed (then it is not read further). */
static int open_view(elf_view *e, const unsigned char *buf, size_t len) {
  const Elf64_Ehdr *eh = (const Elf64_Ehdr *)buf;
  memset(e, 0, sizeof *e);
  if (len < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
      eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
      eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > len ||
      (size_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff)
    return 0;
  e->buf = buf;
  e->len = len;
  e->ph = (const Elf64_Phdr *)(buf + eh->e_phoff);
  e->nph = eh->e_phnum;
  for (int i = 0; i < e->nph; i++) {
    const Elf64_Phdr *p = &e->ph[i];
    if (p->p_type != PT_DYNAMIC || p->p_offset > len || p->p_filesz > len - p->p_offset)
      continue;
    e->dyn = (const Elf64_Dyn *)(buf + p->p_offset);
    e->ndyn = p->p_filesz / sizeof *e->dyn;
  }
  if (!e->dyn) return 1; /* static: no libraries */
  int64_t strtab = -1;
  for (size_t d = 0; d < e->ndyn && e->dyn[d].d_tag != DT_NULL; d++) {
    if (e->dyn[d].d_tag == DT_STRTAB) strtab = file_offset(e, e->dyn[d].d_un.d_ptr);
    if (e->dyn[d].d_tag == DT_STRSZ) e->strsz = e->dyn[d].d_un.d_val;
  }
  if (strtab < 0 || (uint64_t)strtab > len || e->strsz > len - (uint64_t)strtab) return 0;
  e->strings = (const char *)buf + strtab;
  return 1;
}

/* The string of dynamic entry d, or NULL. */
static const char *dyn_string(const elf_view *e, size_t d) {
  uint64_t off = e->dyn[d].d_un.d_val;
  if (off >= e->strsz || !memchr(e->strings + off, '\0', e->strsz - off)) return NULL;
  return e->strings + off;
}

static const char *dyn_tag_string(const elf_view *e, int64_t tag) {
  for (size_t d = 0; d < e->ndyn && e->dyn[d].d_tag != DT_NULL; d++)
    if (e->dyn[d].d_tag == tag) return dyn_string(e, d);
  return NULL;
}

/* --- finding a library as the loader does ------------------------------------------------ */

static void add_conf_file(fg_buf *dirs, const char *path, int depth);

static void add_conf_line(fg_buf *dirs, char *line, int depth) {
  line[strcspn(line, "#\n")] = '\0';
  char *s = line + strspn(line, " \t");
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
  if (!*s) return;
  if (!strncmp(s, "include", 7) && (s[7] == ' ' || s[7] == '\t')) {
    glob_t g;
    if (glob(s + 8 + strspn(s + 8, " \t"), 0, NULL, &g) == 0)
      for (size_t i = 0; i < g.gl_pathc; i++) add_conf_file(dirs, g.gl_pathv[i], depth + 1);
    globfree(&g);
  } else if (*s == '/') {
    fg__buf_printf(dirs, "%s:", s);
  }
}

static void add_conf_file(fg_buf *dirs, const char *path, int depth) {
  FILE *f = depth < 8 ? fopen(path, "re") : NULL;
  if (!f) return;
  char line[4096];
  while (fgets(line, sizeof line, f)) add_conf_line(dirs, line, depth);
  fclose(f);
}

static const char *conf_dirs(scan *s) {
  if (!s->conf_dirs) {
    fg_buf dirs;
    fg__buf_init(&dirs);
    add_conf_file(&dirs, "/etc/ld.so.conf", 0);
    for (size_t i = 0; i < FG_ARRAY_LEN(default_dirs); i++)
      fg__buf_printf(&dirs, "%s:", default_dirs[i]);
    fg__buf_put_u8(&dirs, '\0');
    s->conf_dirs = dirs.failed ? strdup("") : strdup((const char *)dirs.data);
    fg__buf_free(&dirs);
  }
  return s->conf_dirs ? s->conf_dirs : "";
}

/* Looks for name in a ':'-separated list; $ORIGIN is the directory of the object that needs
 * it. Returns a heap path, or NULL. Other $ tokens make that directory unusable. */
static char *search(const char *list, const char *name, const char *origin) {
  while (list && *list) {
    size_t n = strcspn(list, ":");
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", (int)n, list);
    list += n + (list[n] == ':');
    const char *rest = NULL;
    if (!strncmp(dir, "$ORIGIN", 7)) rest = dir + 7;
    else if (!strncmp(dir, "${ORIGIN}", 9)) rest = dir + 9;
    char *path = rest ? fg__asprintf("%s%s/%s", origin, rest, name)
                      : strchr(dir, '$') || !*dir ? NULL : fg__asprintf("%s/%s", dir, name);
    if (path && access(path, R_OK) == 0) return path;
    free(path);
  }
  return NULL;
}

static char *find_library(scan *s, const elf_view *e, const char *name, const char *origin) {
  if (strchr(name, '/')) return strdup(name);
  const char *runpath = dyn_tag_string(e, DT_RUNPATH);
  const char *rpath = runpath ? NULL : dyn_tag_string(e, DT_RPATH);
  char *found = search(rpath, name, origin);
  if (!found) found = search(getenv("LD_LIBRARY_PATH"), name, origin);
  if (!found) found = search(runpath, name, origin);
  if (!found) found = search(conf_dirs(s), name, origin);
  return found;
}

/* --- the tree ---------------------------------------------------------------------------- */

static void note(scan *s, enum fg_mpi_link r, const char *lib, const char *family) {
  if (r < s->result || (r == s->result && s->lib[0])) return;
  s->result = r;
  snprintf(s->lib, s->liblen, "%s", lib);
  if (family) *s->family = family;
}

static int seen(scan *s, const char *path) {
  for (size_t i = 0; i < s->seen.len; i += strlen((char *)s->seen.data + i) + 1)
    if (!strcmp((char *)s->seen.data + i, path)) return 1;
  fg__buf_put(&s->seen, path, strlen(path) + 1);
  return 0;
}

static void enqueue(scan *s, char *path) {
  if (!path) return;
  if (seen(s, path) || s->nqueue >= MAX_OBJECTS) {
    if (s->nqueue >= MAX_OBJECTS) note(s, FG_MPI_PMIX, "(too many libraries to read)", NULL);
    free(path);
    return;
  }
  s->queue[s->nqueue++] = path;
}

static void visit(scan *s, const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  void *map = MAP_FAILED;
  if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
      st.st_size >= (off_t)sizeof(Elf64_Ehdr))
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (fd >= 0) close(fd);
  elf_view e;
  if (map == MAP_FAILED || !open_view(&e, map, (size_t)st.st_size)) {
    note(s, FG_MPI_PMIX, path, NULL); /* a script, or nothing fgrun can read: not known */
    if (map != MAP_FAILED) munmap(map, (size_t)st.st_size);
    return;
  }
  char origin[4096] = ".";
  const char *slash = strrchr(path, '/');
  if (slash) snprintf(origin, sizeof origin, "%.*s", (int)(slash - path), path);
  for (size_t d = 0; d < e.ndyn && e.dyn[d].d_tag != DT_NULL; d++) {
    const char *name = e.dyn[d].d_tag == DT_NEEDED ? dyn_string(&e, d) : NULL;
    if (!name) continue;
    int matched = 0;
    for (size_t k = 0; k < FG_ARRAY_LEN(known) && !matched; k++)
      if (!strncmp(name, known[k].soname, strlen(known[k].soname))) {
        note(s, known[k].family ? FG_MPI_FOREIGN : FG_MPI_PMIX, name, known[k].family);
        matched = 1;
      }
    if (matched) continue;
    char *lib = find_library(s, &e, name, origin);
    if (!lib) note(s, FG_MPI_PMIX, name, NULL); /* not found: the loader may know better */
    enqueue(s, lib);
  }
  munmap(map, (size_t)st.st_size);
}

enum fg_mpi_link fg_mpi_link_of(const char *path, char *lib, size_t liblen,
                                const char **family) {
  scan s = {.result = FG_MPI_NONE, .lib = lib, .liblen = liblen, .family = family};
  lib[0] = '\0';
  fg__buf_init(&s.seen);
  s.queue = calloc(MAX_OBJECTS, sizeof *s.queue);
  if (!s.queue) return FG_MPI_PMIX;
  enqueue(&s, strdup(path));
  /* Breadth first; an MPICH library anywhere decides it, so the walk goes on after a
   * PMIx or unknown one. */
  while (s.next < s.nqueue && s.result != FG_MPI_FOREIGN) visit(&s, s.queue[s.next++]);
  for (int i = 0; i < s.nqueue; i++) free(s.queue[i]);
  free(s.queue);
  free(s.conf_dirs);
  fg__buf_free(&s.seen);
  return s.result;
}
