/* buf.h - a growable byte buffer with little-endian encoders.
 *
 * Used to build wire messages. On allocation failure the buffer remembers it
 * (failed = 1) and later appends do nothing, so callers check once at the end. */
#ifndef FG_COMMON_BUF_H
#define FG_COMMON_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct fg_buf {
  uint8_t *data;
  size_t len;
  size_t cap;
  int failed;
} fg_buf;

void fg__buf_init(fg_buf *b);
void fg__buf_free(fg_buf *b);
void fg__buf_reset(fg_buf *b); /* len = 0, keeps the memory */
int fg__buf_reserve(fg_buf *b, size_t extra);
void fg__buf_put(fg_buf *b, const void *p, size_t n);
void fg__buf_put_u8(fg_buf *b, uint8_t v);
void fg__buf_put_u32(fg_buf *b, uint32_t v);
void fg__buf_put_u64(fg_buf *b, uint64_t v);
void fg__buf_put_i64(fg_buf *b, int64_t v);
/* u64 length, then the bytes: the protocol's str/bytes field. */
void fg__buf_put_bytes(fg_buf *b, const void *p, size_t n);
/* Appends printf-style text, without its terminating NUL. */
void fg__buf_printf(fg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes. */
void fg__buf_consume(fg_buf *b, size_t n);

static inline uint64_t fg_load_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static inline uint32_t fg_load_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void fg_store_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

#endif
