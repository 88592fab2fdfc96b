/* fg.h - what every part of libfg shares: version, error codes, messages.
 *
 * Every call in libfg returns an int: 0 (or a non-negative count) on success,
 * a negative errno value or one of the FG_E* codes below on failure. A handle
 * also keeps a message for its last error that names what failed: the key, the
 * peer address, the rank: fg_store_errmsg(s), fg_comm_errmsg(c); with NULL, the
 * calling thread's last failed fg_store_connect or fg_comm_init, which have no
 * handle to keep it in. */
#ifndef FG_FG_H
#define FG_FG_H

#ifdef __cplusplus
extern "C" {
#endif

#define FG_VERSION_MAJOR 0
#define FG_VERSION_MINOR 1
#define FG_VERSION_PATCH 0
#define FG_VERSION "0.1.0"

/* Marks what libfg.so exports: the declarations in include/fg and nothing else. libfg is
 * built with -fvisibility=hidden, so its internals (the fg__ names and the rest of src/) are
 * not part of the ABI, whatever their names. */
#if defined(__GNUC__) || defined(__clang__)
#define FG_EXTERN __attribute__((visibility("default")))
#define FG_DEPRECATED(msg) __attribute__((deprecated(msg)))
#else
#define FG_EXTERN
#define FG_DEPRECATED(msg)
#endif

/* libfg's own codes, one list (as libuv's UV_ERRNO_MAP) that makes the enum, fg_strerror and
 * fg_err_name. They say more than the errno value beside them would: FG_EPROTO is a peer
 * that broke the store's or a collective's wire protocol (-EPROTO is the kernel's), FG_ENODEV
 * a backend without its device. Everything else uses -errno (-ETIMEDOUT, -ECONNREFUSED,
 * -EINVAL, -ENOMEM, -ENOENT, ...). */
#define FG_ERRNO_MAP(XX)                                                        \
  XX(EPROTO, -1000, "protocol error")                 /* the peer broke the protocol */ \
  XX(EPEER, -1001, "a peer rank failed")              /* or went away */                \
  XX(EMISMATCH, -1002, "ranks disagree on the call's arguments")                        \
  XX(EBACKEND, -1003, "backend error")                /* the backend library's */       \
  XX(ENODEV, -1004, "no device for this backend")     /* e.g. no CUDA GPU for nccl */   \
  XX(ENOTBUILT, -1005, "not compiled into this build")                                  \
  XX(ECLOSED, -1006, "connection closed by the peer")                                   \
  XX(ELIMIT, -1007, "limit exceeded")                 /* a configured limit */

enum {
#define FG__ERR_ENUM(name, code, msg) FG_##name = code,
  FG_ERRNO_MAP(FG__ERR_ENUM)
#undef FG__ERR_ENUM
};

/* A short, static description of an error code; never NULL. */
FG_EXTERN const char *fg_strerror(int code);

/* The code's name: "FG_EPROTO", "ETIMEDOUT" (for -ETIMEDOUT), "0"; "UNKNOWN" if unknown. */
FG_EXTERN const char *fg_err_name(int code);

/* The version string of the linked library. */
FG_EXTERN const char *fg_version(void);

#ifdef __cplusplus
}
#endif
#endif
