/* error.c - messages and names for libfg's error codes (fg.h's FG_ERRNO_MAP). */
#include <string.h>

#include "fg/fg.h"

const char *fg_strerror(int code) {
  switch (code) {
    case 0: return "success";
#define FG__ERR_MSG(name, value, msg) \
  case value: return msg;
    FG_ERRNO_MAP(FG__ERR_MSG)
#undef FG__ERR_MSG
  }
  if (code < 0 && code > -4096) return strerror(-code);
  return "unknown error";
}

const char *fg_err_name(int code) {
  switch (code) {
    case 0: return "0";
#define FG__ERR_NAME(name, value, msg) \
  case value: return "FG_" #name;
    FG_ERRNO_MAP(FG__ERR_NAME)
#undef FG__ERR_NAME
  }
  const char *name = code < 0 && code > -4096 ? strerrorname_np(-code) : NULL;
  return name ? name : "UNKNOWN";
}

const char *fg_version(void) { return FG_VERSION; }
