#include "common/hash.h"

#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                            \
  do {                                                                      \
    v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);               \
    v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                  \
    v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                  \
    v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);               \
  } while (0)

uint64_t fg__siphash(const void *data, size_t len, const uint8_t key[16]) {
  const uint8_t *in = data;
  uint64_t k0 = fg_load_u64(key), k1 = fg_load_u64(key + 8);
  uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
  uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
  uint64_t v3 = 0x7465646279746573ULL ^ k1;
  const uint8_t *end = in + (len & ~(size_t)7);
  for (; in != end; in += 8) {
    uint64_t m = fg_load_u64(in);
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t i = 0; i < (len & 7); i++) b |= (uint64_t)in[i] << (8 * i);
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

void fg__random_bytes(void *buf, size_t len) {
  if (getrandom(buf, len, GRND_NONBLOCK) == (ssize_t)len) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
  uint8_t *p = buf;
  for (size_t i = 0; i < len; i++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    p[i] = (uint8_t)(seed >> 56);
  }
}
