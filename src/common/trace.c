/* trace.c - the rank's trace file (see trace.h).
 *
 * The file is mapped shared and events are copied into the mapping: the kernel owns the
 * bytes as soon as they are copied, so a rank that is SIGKILLed, or dies of SIGTERM while
 * blocked in a collective, loses no event it finished - which a stdio-style buffer flushed
 * at exit would. Space is reserved with posix_fallocate a chunk at a time (a full disk is
 * an error there, never a SIGBUS on a page later), and the file is cut to its length at
 * destroy and exit; a rank killed before that leaves zeros after its last line, which
 * fgrun skips. */
#include "common/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/util.h"

enum { CHUNK = 1 << 20, LINE_MAX_BYTES = 1024 };

static struct {
  int fd;        /* -1: off */
  int pid, tid;  /* the track: node (GROUP_RANK) and rank */
  char *map;     /* cap bytes of the file, mapped shared */
  size_t cap, len;
  int trimmed;   /* the file was cut to len: reserve again before writing */
  char path[256];
} t = {.fd = -1};

static int env_int(const char *name) {
  const char *v = getenv(name);
  int n;
  return v && fg__parse_int(v, 0, 1 << 30, &n) == 0 ? n : 0;
}

/* One line on stderr, then silence: a trace is not worth failing the rank for. */
static void stop(const char *what, int err) {
  fprintf(stderr, "fgcomm: trace file %s: %s: %s; tracing stops\n", t.path, what,
          strerror(err));
  if (t.map) munmap(t.map, t.cap);
  if (t.fd >= 0) close(t.fd);
  t.map = NULL;
  t.fd = -1;
}

/* Makes room for `need` more bytes. */
static int reserve(size_t need) {
  size_t cap = t.cap;
  while (t.len + need > cap) cap += CHUNK;
  if (cap == t.cap && !t.trimmed) return 0;
  int rc = posix_fallocate(t.fd, 0, (off_t)cap);
  if (rc != 0) {
    stop("cannot grow it", rc);
    return -1;
  }
  t.trimmed = 0;
  if (cap == t.cap) return 0;
  void *map = t.map ? mremap(t.map, t.cap, cap, MREMAP_MAYMOVE)
                    : mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_SHARED, t.fd, 0);
  if (map == MAP_FAILED) {
    stop("cannot map it", errno);
    return -1;
  }
  t.map = map;
  t.cap = cap;
  return 0;
}

void fg__trace_flush(void) {
  if (t.fd < 0 || t.trimmed) return;
  if (ftruncate(t.fd, (off_t)t.len) == 0) t.trimmed = 1;
}

static void flush_at_exit(void) { fg__trace_flush(); }

/* A forked child shares the mapping: it must not write the parent's trace. */
static void off_in_child(void) {
  if (t.map) munmap(t.map, t.cap);
  if (t.fd >= 0) close(t.fd);
  t.map = NULL;
  t.fd = -1;
}

int fg__trace_setup(void) {
  const char *path = getenv("FG_TRACE_FILE");
  if (!path || !*path) return 0;
  snprintf(t.path, sizeof t.path, "%s", path);
  t.fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (t.fd < 0) {
    fprintf(stderr, "fgcomm: cannot open trace file %s: %s; no trace\n", path, strerror(errno));
    return 0;
  }
  t.pid = env_int("GROUP_RANK");
  t.tid = env_int("RANK");
  if (reserve(LINE_MAX_BYTES) != 0) return 0;
  atexit(flush_at_exit);
  pthread_atfork(NULL, NULL, off_in_child);
  return 1;
}

/* A JSON string's contents; the caller leaves room for the quotes around it. */
static size_t put_escaped(char *out, size_t room, const char *s) {
  size_t n = 0;
  for (; *s && n + 7 < room; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[n++] = '\\';
      out[n++] = (char)c;
    } else if (c < 0x20) {
      n += (size_t)snprintf(out + n, room - n, "\\u%04x", c);
    } else {
      out[n++] = (char)c;
    }
  }
  out[n] = '\0';
  return n;
}

void fg__trace_op(const char *op, const char *group, uint64_t seq, uint64_t t0_ns,
                 uint64_t t1_ns, const char *error) {
  if (t.fd < 0 || reserve(LINE_MAX_BYTES) != 0) return;
  char *line = t.map + t.len;
  char name[64], grp[128], msg[512];
  put_escaped(name, sizeof name, op);
  put_escaped(grp, sizeof grp, group ? group : "");
  uint64_t dur = t1_ns - t0_ns;
  int n = snprintf(line, LINE_MAX_BYTES,
                   "{\"ph\":\"X\",\"cat\":\"comm\",\"pid\":%d,\"tid\":%d,\"name\":\"%s\","
                   "\"ts\":%llu.%03u,\"dur\":%llu.%03u,\"args\":{\"seq\":%llu,\"group\":\"%s\"",
                   t.pid, t.tid, name, (unsigned long long)(t0_ns / 1000), (unsigned)(t0_ns % 1000),
                   (unsigned long long)(dur / 1000), (unsigned)(dur % 1000),
                   (unsigned long long)seq, grp);
  if (error) {
    put_escaped(msg, sizeof msg, error);
    n += snprintf(line + n, LINE_MAX_BYTES - (size_t)n, ",\"error\":\"%s\"", msg);
  }
  n += snprintf(line + n, LINE_MAX_BYTES - (size_t)n, "}}\n");
  if (n < LINE_MAX_BYTES) t.len += (size_t)n; /* always, with the bounds above */
}
