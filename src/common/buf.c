#include "common/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fg__buf_init(fg_buf *b) { memset(b, 0, sizeof *b); }

void fg__buf_free(fg_buf *b) {
  free(b->data);
  fg__buf_init(b);
}

void fg__buf_reset(fg_buf *b) {
  b->len = 0;
  b->failed = 0;
}

int fg__buf_reserve(fg_buf *b, size_t extra) {
  if (b->failed) return -1;
  if (extra > SIZE_MAX / 2 - b->len) {
    b->failed = 1;
    return -1;
  }
  size_t need = b->len + extra;
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap *= 2;
  uint8_t *p = realloc(b->data, cap);
  if (!p) {
    b->failed = 1;
    return -1;
  }
  b->data = p;
  b->cap = cap;
  return 0;
}

void fg__buf_put(fg_buf *b, const void *p, size_t n) {
  if (n == 0 || fg__buf_reserve(b, n) != 0) return;
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

void fg__buf_put_u8(fg_buf *b, uint8_t v) { fg__buf_put(b, &v, 1); }

void fg__buf_put_u32(fg_buf *b, uint32_t v) {
  uint8_t p[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  fg__buf_put(b, p, 4);
}

void fg__buf_put_u64(fg_buf *b, uint64_t v) {
  uint8_t p[8];
  fg_store_u64(p, v);
  fg__buf_put(b, p, 8);
}

void fg__buf_put_i64(fg_buf *b, int64_t v) { fg__buf_put_u64(b, (uint64_t)v); }

void fg__buf_put_bytes(fg_buf *b, const void *p, size_t n) {
  fg__buf_put_u64(b, n);
  fg__buf_put(b, p, n);
}

void fg__buf_consume(fg_buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void fg__buf_printf(fg_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n <= 0 || fg__buf_reserve(b, (size_t)n + 1) != 0) return;
  va_start(ap, fmt);
  vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}
