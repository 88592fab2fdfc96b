/* json.c - see json.h. */
#include "common/json.h"

#include <math.h>

static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */

size_t fg__utf8_len(const unsigned char *s) {
  size_t n = s[0] < 0x80 ? 1 : (s[0] >> 5) == 0x6 ? 2 : (s[0] >> 4) == 0xe ? 3
             : (s[0] >> 3) == 0x1e ? 4 : 0;
  for (size_t i = 1; i < n; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  return n;
}

void fg__json_string(FILE *f, const char *text) {
  fputc('"', f);
  for (const unsigned char *s = (const unsigned char *)text; s && *s;) {
    size_t n = fg__utf8_len(s);
    unsigned char c = *s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c == '\n') fputs("\\n", f);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else if (n == 0) fputs(replacement, f);
    else fwrite(s, 1, n, f);
    s += n ? n : 1;
  }
  fputc('"', f);
}

void fg__jsonw_init(fg_jsonw *w, FILE *f) { *w = (fg_jsonw){.f = f}; }

/* Before a key or a value: the comma, unless it follows a key or comes first. */
static void element(fg_jsonw *w) {
  if (w->keyed) {
    w->keyed = 0;
    return;
  }
  if (w->depth > 0 && w->depth < 64) {
    if (w->some & (1ull << w->depth)) fputc(',', w->f);
    w->some |= 1ull << w->depth;
  }
}

void fg__jsonw_key(fg_jsonw *w, const char *key) {
  element(w);
  fg__json_string(w->f, key);
  fputc(':', w->f);
  w->keyed = 1;
}

void fg__jsonw_open(fg_jsonw *w, char bracket) {
  element(w);
  fputc(bracket, w->f);
  if (w->depth >= 63) return;
  w->depth++;
  uint64_t bit = 1ull << w->depth;
  w->some &= ~bit;
  w->lists = bracket == '[' ? w->lists | bit : w->lists & ~bit;
}

void fg__jsonw_close(fg_jsonw *w) {
  if (w->depth <= 0) return;
  fputc(w->lists & (1ull << w->depth) ? ']' : '}', w->f);
  w->depth--;
}

void fg__jsonw_str(fg_jsonw *w, const char *s) {
  element(w);
  fg__json_string(w->f, s);
}

void fg__jsonw_int(fg_jsonw *w, long long v) {
  element(w);
  fprintf(w->f, "%lld", v);
}

void fg__jsonw_double(fg_jsonw *w, double v) {
  element(w);
  if (isnan(v) || isinf(v))
    fputs(isnan(v) ? "\"nan\"" : v > 0 ? "\"inf\"" : "\"-inf\"", w->f);
  else
    fprintf(w->f, "%f", v);
}

void fg__jsonw_bool(fg_jsonw *w, int v) {
  element(w);
  fputs(v ? "true" : "false", w->f);
}

void fg__jsonw_null(fg_jsonw *w) {
  element(w);
  fputs("null", w->f);
}
