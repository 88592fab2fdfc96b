#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

uint64_t fg__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double fg__now_s(void) { return (double)fg__now_ns() / 1e9; }
int64_t fg__now_ms(void) { return (int64_t)(fg__now_ns() / 1000000u); }

int fg__parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) {
  if (!s || !*s || isspace((unsigned char)*s)) return -EINVAL;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (*end != '\0') return -EINVAL;
  if (errno == ERANGE || v < min || v > max) return -ERANGE;
  *out = v;
  return 0;
}

int fg__parse_int(const char *s, int min, int max, int *out) {
  int64_t v;
  int rc = fg__parse_i64(s, min, max, &v);
  if (rc == 0) *out = (int)v;
  return rc;
}

int fg__parse_seconds(const char *s, double *out) {
  if (!s || !*s || isspace((unsigned char)*s)) return -EINVAL;
  char *end;
  double v = strtod(s, &end);
  if (*end != '\0' || !(v >= 0) || v > 1e9) return -EINVAL;
  *out = v;
  return 0;
}

int fg__parse_size(const char *s, uint64_t *out) {
  if (!s || !isdigit((unsigned char)*s)) return -EINVAL;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno == ERANGE) return -ERANGE;
  unsigned shift = 0;
  switch (toupper((unsigned char)*end)) {
    case '\0': break;
    case 'K': shift = 10; break;
    case 'M': shift = 20; break;
    case 'G': shift = 30; break;
    default: return -EINVAL;
  }
  if (*end && end[1] != '\0' && strcasecmp(end + 1, "B") && strcasecmp(end + 1, "iB"))
    return -EINVAL;
  if (shift && v > (UINT64_MAX >> shift)) return -ERANGE;
  *out = (uint64_t)v << shift;
  return 0;
}

int fg__split_hostport(const char *s, char *host, size_t hostlen, int *port) {
  const char *colon;
  const char *hstart = s;
  size_t hlen;
  if (*s == '[') {
    const char *close = strchr(s, ']');
    if (!close) return -EINVAL;
    hstart = s + 1;
    hlen = (size_t)(close - hstart);
    colon = close[1] == ':' ? close + 1 : NULL;
    if (!colon && close[1] != '\0') return -EINVAL;
  } else {
    colon = strrchr(s, ':');
    if (colon && strchr(s, ':') != colon) colon = NULL; /* bare IPv6 address, no port */
    hlen = colon ? (size_t)(colon - s) : strlen(s);
  }
  if (hlen == 0 || hlen >= hostlen) return -EINVAL;
  memcpy(host, hstart, hlen);
  host[hlen] = '\0';
  if (colon && fg__parse_int(colon + 1, 0, 65535, port) != 0) return -EINVAL;
  return 0;
}

int fg__vfail(char *err, size_t errlen, int code, const char *fmt, va_list ap) {
  if (err && errlen) vsnprintf(err, errlen, fmt, ap);
  return code;
}

int fg__fail(char *err, size_t errlen, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fg__vfail(err, errlen, code, fmt, ap);
  va_end(ap);
  return code;
}

char *fg__asprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0) s = NULL;
  va_end(ap);
  return s;
}

static const struct {
  int num;
  const char *name;
} signals[] = {
    {SIGHUP, "HUP"},   {SIGINT, "INT"},   {SIGQUIT, "QUIT"}, {SIGILL, "ILL"},
    {SIGTRAP, "TRAP"}, {SIGABRT, "ABRT"}, {SIGBUS, "BUS"},   {SIGFPE, "FPE"},
    {SIGKILL, "KILL"}, {SIGUSR1, "USR1"}, {SIGSEGV, "SEGV"}, {SIGUSR2, "USR2"},
    {SIGPIPE, "PIPE"}, {SIGALRM, "ALRM"}, {SIGTERM, "TERM"}, {SIGCHLD, "CHLD"},
    {SIGCONT, "CONT"}, {SIGSTOP, "STOP"}, {SIGTSTP, "TSTP"}, {SIGTTIN, "TTIN"},
    {SIGTTOU, "TTOU"}, {SIGURG, "URG"},   {SIGXCPU, "XCPU"}, {SIGXFSZ, "XFSZ"},
    {SIGVTALRM, "VTALRM"}, {SIGPROF, "PROF"}, {SIGWINCH, "WINCH"}, {SIGIO, "IO"},
    {SIGPWR, "PWR"},   {SIGSYS, "SYS"},
};

const char *fg__signame(int sig) {
  for (size_t i = 0; i < FG_ARRAY_LEN(signals); i++)
    if (signals[i].num == sig) return signals[i].name;
  static __thread char buf[16];
  snprintf(buf, sizeof buf, "SIG%d", sig);
  return buf;
}

int fg__signum(const char *name) {
  int n;
  if (fg__parse_int(name, 1, 64, &n) == 0) return n;
  if (strncasecmp(name, "SIG", 3) == 0) name += 3;
  for (size_t i = 0; i < FG_ARRAY_LEN(signals); i++)
    if (strcasecmp(signals[i].name, name) == 0) return signals[i].num;
  return -1;
}

long fg__raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  return (long)rl.rlim_cur;
}
