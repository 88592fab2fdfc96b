/* fg.h - what every part of libfg shares: version, error codes, messages.
 *
 * Every call in libfg returns an int: 0 (or a non-negative count) on success,
 * a negative errno value or one of the FG_E* codes below on failure. A handle
 * also keeps a message for its last error (fg_store_errmsg and friends) that
 * names what failed: the key, the peer address, the rank. */
#ifndef FG_FG_H
#define FG_FG_H

#ifdef __cplusplus
extern "C" {
#endif

#define FG_VERSION_MAJOR 0
#define FG_VERSION_MINOR 1
#define FG_VERSION_PATCH 0
#define FG_VERSION "0.1.0"

/* Codes that have no errno counterpart. Errno-like failures use -errno
 * (-ETIMEDOUT, -ECONNREFUSED, -EINVAL, -ENOMEM, -ENOENT, ...). */
enum {
  FG_EPROTO = -1000,    /* the peer broke the wire protocol */
  FG_EPEER = -1001,     /* a peer rank failed or went away */
  FG_EMISMATCH = -1002, /* ranks called a collective with different arguments */
  FG_EBACKEND = -1003,  /* the backend library reported an error */
  FG_ENODEV = -1004,    /* no device for this backend (e.g. no CUDA GPU) */
  FG_ENOTBUILT = -1005, /* the feature was not compiled into this build */
  FG_ECLOSED = -1006,   /* the connection was closed by the peer */
  FG_ELIMIT = -1007,    /* a configured limit was exceeded */
};

/* A short, static description of an error code; never NULL. */
const char *fg_strerror(int code);

/* The version string of the linked library. */
const char *fg_version(void);

#ifdef __cplusplus
}
#endif
#endif
