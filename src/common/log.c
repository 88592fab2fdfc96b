#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *program = "fg";
static enum fg_log_level threshold = FG_LOG_INFO;

void fg__log_set_program(const char *name) { program = name; }
void fg__log_set_level(enum fg_log_level level) { threshold = level; }
enum fg_log_level fg__log_get_level(void) { return threshold; }

int fg__log_level_parse(const char *s) {
  static const char *names[] = {"error", "warn", "info", "debug"};
  for (int i = 0; i < 4; i++)
    if (strcmp(s, names[i]) == 0) return i;
  return -1;
}

void fg__log(enum fg_log_level level, const char *fmt, ...) {
  if (level > threshold) return;
  /* Format the whole line first and write it once, so lines from several
   * processes sharing stderr never interleave mid-line. */
  char line[2048];
  int n = snprintf(line, sizeof line, "%s: ", program);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  if (m < 0) return;
  n += m;
  if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
  line[n++] = '\n';
  ssize_t ignored = write(STDERR_FILENO, line, (size_t)n);
  (void)ignored;
}
