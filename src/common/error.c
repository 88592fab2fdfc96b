/* error.c - messages for libfg's error codes. */
#include <string.h>

#include "fg/fg.h"

const char *fg_strerror(int code) {
  switch (code) {
    case 0: return "success";
    case FG_EPROTO: return "protocol error";
    case FG_EPEER: return "a peer rank failed";
    case FG_EMISMATCH: return "ranks disagree on the call's arguments";
    case FG_EBACKEND: return "backend error";
    case FG_ENODEV: return "no device for this backend";
    case FG_ENOTBUILT: return "not compiled into this build";
    case FG_ECLOSED: return "connection closed by the peer";
    case FG_ELIMIT: return "limit exceeded";
  }
  if (code < 0 && code > -4096) return strerror(-code);
  return "unknown error";
}

const char *fg_version(void) { return FG_VERSION; }
