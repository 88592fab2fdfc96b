/* hash.h - SipHash-2-4, keyed so that a client choosing keys cannot force
 * collisions in the store's table (hash flooding). */
#ifndef FG_COMMON_HASH_H
#define FG_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t fg__siphash(const void *data, size_t len, const uint8_t key[16]);

/* Fills key with random bytes from the kernel (falls back to time and pid). */
void fg__random_bytes(void *buf, size_t len);

#endif
