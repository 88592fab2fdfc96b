/* store.h - a client for the rendezvous store.
 *
 * The store is a key-value server that speaks PyTorch's TCPStore protocol:
 * fgrun's agent hosts one, `fgstore` runs one on its own, and torch's own
 * TCPStore server is one too. A client handle owns one TCP connection; calls
 * block until they complete, fail or time out, and return 0 (or a count) on
 * success, a negative errno or FG_E* code on failure, with fg_store_errmsg()
 * naming the key and the server address. A handle may be shared by threads:
 * calls on one connection are serialised.
 *
 * Keys are laid out as torch's: the client puts '/' in front of every key, and
 * a scope (torch's PrefixStore) puts "<prefix>/" in front of that, so C and
 * Python clients see the same keys. */
#ifndef FG_STORE_H
#define FG_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "fg/fg.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_store fg_store;

typedef enum fg_store_dialect {
  FG_STORE_DIALECT_AUTO = 0, /* try torch >= 2.2's; fall back to 1.13's if the server drops it */
  FG_STORE_DIALECT_V2,       /* torch >= 2.2: VALIDATE first, opcodes shifted by one */
  FG_STORE_DIALECT_LEGACY,   /* torch 1.9 to 2.0 (1.13): no handshake */
} fg_store_dialect;

typedef struct fg_store_options {
  int connect_timeout_ms; /* keep retrying the connection this long (default 30 s) */
  int timeout_ms;         /* default for get, wait and barrier (default 300 s, as torch) */
  fg_store_dialect dialect;
} fg_store_options;

FG_EXTERN void fg_store_options_init(fg_store_options *opts);

/* Connects to host:port, retrying with back-off until connect_timeout_ms. opts may be NULL.
 * With FG_STORE_TOKEN set in the environment, every connection presents that token first
 * (fgstore --store_token); a server that refuses it, or wants one that is not set, makes
 * this and later calls fail with -EACCES. */
FG_EXTERN int fg_store_connect(fg_store **out, const char *host, int port,
                               const fg_store_options *opts);

/* A view of `base` whose keys are "<prefix>/<key>" (torch's PrefixStore). It shares base's
 * connection, and base must outlive it. Scopes nest. */
FG_EXTERN int fg_store_scope(fg_store *base, const char *prefix, fg_store **out);

/* Closes a connection or releases a scope. NULL is allowed. */
FG_EXTERN void fg_store_close(fg_store *s);

/* The message of the last failed call on this handle ("" if none). With NULL: the message
 * of the calling thread's last failed fg_store_connect (which has no handle to keep it). */
FG_EXTERN const char *fg_store_errmsg(const fg_store *s);

/* The dialect the connection speaks, once connected. */
FG_EXTERN fg_store_dialect fg_store_get_dialect(const fg_store *s);

/* Sets the default timeout for get, wait and barrier. */
FG_EXTERN void fg_store_set_timeout(fg_store *s, int timeout_ms);

FG_EXTERN int fg_store_set(fg_store *s, const char *key, const void *value, size_t len);

/* Waits (up to the default timeout) for the key to exist, then returns a copy of its value in
 * *value (NUL-terminated for convenience, release with free()). */
FG_EXTERN int fg_store_get(fg_store *s, const char *key, void **value, size_t *len);

/* Adds delta to the integer stored as decimal text under key (absent = 0); *result may be NULL. */
FG_EXTERN int fg_store_add(fg_store *s, const char *key, int64_t delta, int64_t *result);

/* 1 if every key exists, 0 if one does not. */
FG_EXTERN int fg_store_check(fg_store *s, const char *const *keys, size_t n);

/* Waits until every key exists. timeout_ms < 0 means the default timeout. -ETIMEDOUT on
 * timeout; the connection stays usable. */
FG_EXTERN int fg_store_wait(fg_store *s, const char *const *keys, size_t n, int timeout_ms);

/* Sets key to desired if its value equals expected (an empty expected matches an absent key).
 * *current receives the value the server holds afterwards (release with free()); may be NULL. */
FG_EXTERN int fg_store_compare_set(fg_store *s, const char *key, const void *expected,
                                   size_t expected_len, const void *desired, size_t desired_len,
                                   void **current, size_t *current_len);

/* 1 if the key was deleted, 0 if it did not exist. */
FG_EXTERN int fg_store_delete(fg_store *s, const char *key);

/* Number of keys in the whole store (every scope, internal keys included), as torch counts. */
FG_EXTERN int fg_store_num_keys(fg_store *s, int64_t *count);

/* Waits for every key, then fetches them all; values[i] as from fg_store_get. */
FG_EXTERN int fg_store_multi_get(fg_store *s, const char *const *keys, size_t n, void **values,
                                 size_t *lens);

FG_EXTERN int fg_store_multi_set(fg_store *s, const char *const *keys, const void *const *values,
                                 const size_t *lens, size_t n);

/* Appends to the value (creating the key if absent). */
FG_EXTERN int fg_store_append(fg_store *s, const char *key, const void *value, size_t len);

/* Blocks until world_size ranks have called it with the same name (use each name once).
 * timeout_ms < 0 means the default timeout. On timeout returns -ETIMEDOUT and the message
 * lists the ranks that have not arrived. */
FG_EXTERN int fg_store_barrier(fg_store *s, const char *name, int rank, int world_size,
                               int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif
