/* util.h - small helpers every layer uses: clocks, strict number parsing,
 * host:port handling and error messages into caller buffers (as anet.c does). */
#ifndef FG_COMMON_UTIL_H
#define FG_COMMON_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define FG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define FG__MIN(a, b) ((a) < (b) ? (a) : (b))
#define FG__MAX(a, b) ((a) > (b) ? (a) : (b))

/* Monotonic clock. */
uint64_t fg__now_ns(void);
double fg__now_s(void);
int64_t fg__now_ms(void);

/* Whole string must be a base-10 integer within [min, max]; returns 0 or -EINVAL/-ERANGE. */
int fg__parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
int fg__parse_int(const char *s, int min, int max, int *out);
/* A non-negative decimal number of seconds ("1.5"); returns 0 or -EINVAL. */
int fg__parse_seconds(const char *s, double *out);
/* "64K", "8M", "1G" or plain bytes. */
int fg__parse_size(const char *s, uint64_t *out);

/* Splits "host:port" or "[v6]:port"; host gets at most hostlen-1 bytes. A missing port
 * leaves *port untouched. Returns 0 or -EINVAL. */
int fg__split_hostport(const char *s, char *host, size_t hostlen, int *port);

/* snprintf into err (if err is not NULL) and return code: for "return fg__fail(...)". */
int fg__fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int fg__vfail(char *err, size_t errlen, int code, const char *fmt, va_list ap);

/* A heap copy of the formatted string, or NULL when out of memory. */
char *fg__asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Name of a signal without the SIG ("TERM"); "SIG<n>" for unknown ones (static buffer). */
const char *fg__signame(int sig);
/* Parses "SIGTERM", "TERM" or "15"; returns the number or -1. */
int fg__signum(const char *name);

/* Raises the open-file limit to the hard limit (servers with thousands of clients);
 * returns the new soft limit. */
long fg__raise_nofile(void);
#endif
