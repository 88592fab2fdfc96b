/* parse_opts.h - fgrun's command line parsed in a unit test: parse(&opts, "--flag", ..., NULL)
 * and expect_error("text", rc, &opts). Included by the launcher's tests that need options;
 * inline, so that a test using only one of the two compiles without warnings. */
#ifndef FG_TESTS_PARSE_OPTS_H
#define FG_TESTS_PARSE_OPTS_H

#include <stdarg.h>
#include <string.h>

#include "launcher/options.h"

static char err[1024];

/* Parses a NULL-terminated list of arguments after "fgrun". */
static inline int parse(fg_launch_opts *o, ...) {
  char *argv[64] = {"fgrun"};
  int argc = 1;
  va_list ap;
  va_start(ap, o);
  for (char *a; (a = va_arg(ap, char *)) != NULL;) argv[argc++] = a;
  va_end(ap);
  err[0] = '\0';
  return fg_opts_parse(o, argc, argv, err, sizeof err);
}

static inline void expect_error(const char *needle, int rc, fg_launch_opts *o) {
  if (rc == 0 || !strstr(err, needle))
    fail_msg("expected an error containing '%s', got rc=%d err='%s'", needle, rc, err);
  fg_opts_free(o);
}

#endif
