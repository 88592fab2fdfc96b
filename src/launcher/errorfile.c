/* errorfile.c - a small JSON reader, just enough to pull strings out of nested objects. */
#include "launcher/errorfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

typedef struct json {
  const char *p, *end;
} json;

static void skip_ws(json *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
    j->p++;
}

static int hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

static void put_utf8(fg_buf *b, unsigned cp) {
  if (cp < 0x80) {
    fg__buf_put_u8(b, (uint8_t)cp);
  } else if (cp < 0x800) {
    fg__buf_put_u8(b, (uint8_t)(0xc0 | cp >> 6));
    fg__buf_put_u8(b, (uint8_t)(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    fg__buf_put_u8(b, (uint8_t)(0xe0 | cp >> 12));
    fg__buf_put_u8(b, (uint8_t)(0x80 | ((cp >> 6) & 0x3f)));
    fg__buf_put_u8(b, (uint8_t)(0x80 | (cp & 0x3f)));
  } else {
    fg__buf_put_u8(b, (uint8_t)(0xf0 | cp >> 18));
    fg__buf_put_u8(b, (uint8_t)(0x80 | ((cp >> 12) & 0x3f)));
    fg__buf_put_u8(b, (uint8_t)(0x80 | ((cp >> 6) & 0x3f)));
    fg__buf_put_u8(b, (uint8_t)(0x80 | (cp & 0x3f)));
  }
}

/* Reads a string at j->p; into out when out is not NULL. Returns 0 or -1 on bad JSON. */
static int read_string(json *j, fg_buf *out) {
  if (j->p >= j->end || *j->p != '"') return -1;
  j->p++;
  while (j->p < j->end) {
    char c = *j->p++;
    if (c == '"') return 0;
    if ((unsigned char)c < 0x20) return -1;
    if (c != '\\') {
      if (out) fg__buf_put_u8(out, (uint8_t)c);
      continue;
    }
    if (j->p >= j->end) return -1;
    char e = *j->p++;
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *k = e ? strchr(from, e) : NULL;
    if (k) {
      if (out) fg__buf_put_u8(out, (uint8_t)to[k - from]);
      continue;
    }
    unsigned cp, lo;
    if (e != 'u' || j->end - j->p < 4 || hex4(j->p, &cp) != 0) return -1;
    j->p += 4;
    if (cp >= 0xd800 && cp < 0xdc00 && j->end - j->p >= 6 && j->p[0] == '\\' &&
        j->p[1] == 'u' && hex4(j->p + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      j->p += 6;
    }
    if (out) put_utf8(out, cp);
  }
  return -1;
}

static int skip_value(json *j, int depth);

static int skip_container(json *j, int depth, char close, int keyed) {
  j->p++;
  skip_ws(j);
  if (j->p < j->end && *j->p == close) return j->p++, 0;
  for (;;) {
    if (keyed) {
      if (read_string(j, NULL) != 0) return -1;
      skip_ws(j);
      if (j->p >= j->end || *j->p++ != ':') return -1;
    }
    if (skip_value(j, depth + 1) != 0) return -1;
    skip_ws(j);
    if (j->p >= j->end) return -1;
    char c = *j->p++;
    if (c == close) return 0;
    if (c != ',') return -1;
    skip_ws(j);
  }
}

static int skip_value(json *j, int depth) {
  skip_ws(j);
  if (j->p >= j->end || depth > 64) return -1;
  switch (*j->p) {
    case '"': return read_string(j, NULL);
    case '{': return skip_container(j, depth, '}', 1);
    case '[': return skip_container(j, depth, ']', 0);
  }
  const char *start = j->p;
  while (j->p < j->end && strchr("+-.0123456789eEtruefalsn", *j->p)) j->p++;
  size_t n = (size_t)(j->p - start);
  if (n == 0) return -1;
  if ((n == 4 && !memcmp(start, "true", 4)) || (n == 5 && !memcmp(start, "false", 5)) ||
      (n == 4 && !memcmp(start, "null", 4)))
    return 0;
  char num[64];
  if (n >= sizeof num) return -1;
  memcpy(num, start, n);
  num[n] = '\0';
  char *end;
  strtod(num, &end);
  return *end == '\0' ? 0 : -1;
}

/* The string at path (keys of nested objects) in a document already checked to be valid;
 * a number there is returned as its text. NULL when absent or of another type. */
static char *find_string(const char *text, size_t len, const char *const *path) {
  json j = {text, text + len};
  for (; *path; path++) {
    skip_ws(&j);
    if (j.p >= j.end || *j.p != '{') return NULL;
    j.p++;
    for (;;) {
      skip_ws(&j);
      if (j.p >= j.end || *j.p != '"') return NULL;
      fg_buf key;
      fg__buf_init(&key);
      read_string(&j, &key);
      int match = key.len == strlen(*path) && memcmp(key.data, *path, key.len) == 0;
      fg__buf_free(&key);
      skip_ws(&j);
      j.p++; /* ':' */
      skip_ws(&j);
      if (match) break;
      skip_value(&j, 0);
      skip_ws(&j);
      if (j.p >= j.end || *j.p++ != ',') return NULL;
    }
  }
  fg_buf out;
  fg__buf_init(&out);
  if (j.p < j.end && *j.p == '"') {
    read_string(&j, &out);
  } else {
    const char *start = j.p;
    if (skip_value(&j, 0) != 0 || start == j.p || *start == '{' || *start == '[') return NULL;
    fg__buf_put(&out, start, (size_t)(j.p - start));
  }
  fg__buf_put_u8(&out, '\0');
  if (out.failed) {
    fg__buf_free(&out);
    return NULL;
  }
  return (char *)out.data;
}

int fg_error_text_parse(const char *text, size_t len, fg_error_info *info) {
  memset(info, 0, sizeof *info);
  json j = {text, text + len};
  int valid = skip_value(&j, 0) == 0;
  skip_ws(&j);
  if (valid && j.p == j.end) {
    static const char *const msg[] = {"message", "message", NULL};
    static const char *const stack[] = {"message", "extraInfo", "py_callstack", NULL};
    static const char *const stamp[] = {"message", "extraInfo", "timestamp", NULL};
    static const char *const flat[] = {"message", NULL};
    info->message = find_string(text, len, msg);
    if (!info->message) info->message = find_string(text, len, flat);
    info->callstack = find_string(text, len, stack);
    info->timestamp = find_string(text, len, stamp);
    if (info->message) return FG_ERRFILE_PARSED;
    fg_error_info_free(info);
  }
  if (!(info->raw = malloc(len + 1))) return FG_ERRFILE_NONE;
  memcpy(info->raw, text, len);
  info->raw[len] = '\0';
  return FG_ERRFILE_RAW;
}

int fg_error_file_read(const char *path, fg_error_info *info) {
  memset(info, 0, sizeof *info);
  FILE *f = path ? fopen(path, "rb") : NULL;
  if (!f) return FG_ERRFILE_NONE;
  enum { LIMIT = 1 << 20 };
  char *text = malloc(LIMIT);
  size_t n = text ? fread(text, 1, LIMIT, f) : 0;
  fclose(f);
  int rc = n ? fg_error_text_parse(text, n, info) : FG_ERRFILE_NONE;
  free(text);
  return rc;
}

void fg_error_info_free(fg_error_info *info) {
  free(info->message);
  free(info->callstack);
  free(info->timestamp);
  free(info->raw);
  memset(info, 0, sizeof *info);
}
