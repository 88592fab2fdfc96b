/* json.h - writing JSON: well-formed strings from any bytes, and a writer that places the
 * commas (fgmatrix's report, fgbench's nccl-tests JSON). */
#ifndef FG_COMMON_JSON_H
#define FG_COMMON_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The length of the well-formed UTF-8 sequence at s, or 0. */
size_t fg__utf8_len(const unsigned char *s);
/* text as a JSON string: escapes, and U+FFFD for bytes that are not UTF-8. */
void fg__json_string(FILE *f, const char *text);

/* A writer: open containers, keys inside objects, values; it writes the commas and the
 * closing brackets. Nesting deeper than 63 is not supported. */
typedef struct fg_jsonw {
  FILE *f;
  int depth;
  uint64_t some;  /* bit d: the container at depth d has an element already */
  uint64_t lists; /* bit d: the container at depth d is a list */
  int keyed;     /* a key was just written: the value follows without a comma */
} fg_jsonw;

void fg__jsonw_init(fg_jsonw *w, FILE *f);
void fg__jsonw_key(fg_jsonw *w, const char *key);
void fg__jsonw_open(fg_jsonw *w, char bracket); /* '{' or '[' */
void fg__jsonw_close(fg_jsonw *w);              /* the innermost */
void fg__jsonw_str(fg_jsonw *w, const char *s);
void fg__jsonw_int(fg_jsonw *w, long long v);
void fg__jsonw_double(fg_jsonw *w, double v); /* "nan" for a NaN, as nccl-tests writes */
void fg__jsonw_bool(fg_jsonw *w, int v);
void fg__jsonw_null(fg_jsonw *w);

#endif
