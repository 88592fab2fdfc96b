/* slurm.c - Slurm's hostlist and compressed count lists, and the port derived from a job id. */
#include "common/slurm.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

int fg__slurm_in_step(void) {
  const char *step = getenv("SLURM_STEP_ID");
  return step && *step;
}

/* Copies n bytes to host at *at; -ENAMETOOLONG when they do not fit with the final NUL. */
static int put(char *host, size_t len, size_t *at, const char *s, size_t n) {
  if (*at + n >= len) return -ENAMETOOLONG;
  memcpy(host + *at, s, n);
  *at += n;
  host[*at] = '\0';
  return 0;
}

int fg__slurm_first_host(const char *list, char *host, size_t len) {
  if (!list || !len) return -EINVAL;
  size_t at = 0;
  host[0] = '\0';
  const char *p = list;
  int rc;
  /* The first item ends at the first comma outside brackets; each bracket contributes the
   * first number of its first range, written as the list writes it ("[03-05]" -> "03"). */
  while (*p && *p != ',') {
    if (*p == ']') return -EINVAL;
    if (*p != '[') {
      size_t n = strcspn(p, "[],");
      if ((rc = put(host, len, &at, p, n)) != 0) return rc;
      p += n;
      continue;
    }
    const char *close = strchr(p, ']');
    size_t digits = strspn(p + 1, "0123456789");
    if (!close || digits == 0 || !strchr("-,]", p[1 + digits]) ||
        memchr(p + 1, '[', (size_t)(close - p - 1)))
      return -EINVAL;
    if ((rc = put(host, len, &at, p + 1, digits)) != 0) return rc;
    p = close + 1;
  }
  return at ? 0 : -EINVAL;
}

/* A decimal number at *p of at most max; *p moves past it. */
static int number(const char **p, long max, long *out) {
  if (!isdigit((unsigned char)**p)) return -EINVAL;
  char *end;
  errno = 0;
  long n = strtol(*p, &end, 10);
  if (errno || n > max) return -EINVAL;
  *p = end;
  *out = n;
  return 0;
}

int fg__slurm_count_on_node(const char *list, int node, int *count) {
  if (!list || !*list || node < 0) return -EINVAL;
  const char *p = list;
  long first = 0; /* the node the current item starts at */
  int found = 0;
  /* The whole list is read, so a malformed one is refused whichever node asks. */
  for (;;) {
    long n, times = 1;
    if (number(&p, 1 << 24, &n) != 0) return -EINVAL;
    if (*p == '(') {
      p++;
      if (*p++ != 'x' || number(&p, 1 << 24, &times) != 0 || times < 1 || *p++ != ')')
        return -EINVAL;
    }
    if (*p && *p != ',') return -EINVAL;
    if (!found && node < first + times) {
      *count = (int)n;
      found = 1;
    }
    first += times;
    if (!*p) return found ? 0 : -ERANGE;
    p++; /* the comma */
  }
}

int fg__slurm_job_port(const char *job_id, int *port) {
  int64_t id;
  if (!job_id || fg__parse_i64(job_id, 0, INT64_MAX, &id) != 0) return -EINVAL;
  *port = FG_SLURM_PORT_BASE + (int)(id % FG_SLURM_PORT_SPAN);
  return 0;
}
