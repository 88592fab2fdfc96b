/* pmix_lib.c - libpmix, loaded when the agent starts its PMIx server.
 *
 * fgrun does not link libpmix: a machine without it (or with --pmix off) runs torch and
 * libfg jobs as before, and only the PMIx server is missing, with one message saying why. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "launcher/pmix_internal.h"

#ifndef FG_PMIX_LIBDIR
#define FG_PMIX_LIBDIR "/usr/lib"
#endif
#define FG_PMIX_SONAME "libpmix.so.2"

int fg_pmix_api_load(fg_pmix_api *api, char *err, size_t errlen) {
  memset(api, 0, sizeof *api);
  /* The soname first (the loader's search path, ldconfig), then where the build saw it. */
  const char *tries[] = {FG_PMIX_SONAME, FG_PMIX_LIBDIR "/" FG_PMIX_SONAME};
  char why[512] = "";
  for (size_t i = 0; i < FG_ARRAY_LEN(tries) && !api->handle; i++) {
    api->handle = dlopen(tries[i], RTLD_NOW | RTLD_LOCAL);
    if (!api->handle && i == 0) { /* "libpmix.so.2: cannot open ...": the name once is enough */
      const char *e = dlerror();
      size_t n = strlen(FG_PMIX_SONAME ": ");
      snprintf(why, sizeof why, "%s", e && !strncmp(e, FG_PMIX_SONAME ": ", n) ? e + n : e);
    }
  }
  if (!api->handle)
    return fg__fail(err, errlen, -ENOENT, "cannot load %s: %s", FG_PMIX_SONAME, why);
#define FG_PMIX_RESOLVE(name)                                                             \
  if (!(*(void **)&api->name = dlsym(api->handle, #name))) {                              \
    fg__fail(err, errlen, -ENOENT, "%s has no %s (PMIx 4 or later is needed)",             \
            FG_PMIX_SONAME, #name);                                                       \
    fg_pmix_api_unload(api);                                                              \
    return -ENOENT;                                                                       \
  }
  FG_PMIX_FUNCTIONS(FG_PMIX_RESOLVE)
#undef FG_PMIX_RESOLVE
  return 0;
}

void fg_pmix_api_unload(fg_pmix_api *api) {
  /* Never dlclose: libpmix's threads and atexit handlers may outlive the server. */
  memset(api, 0, sizeof *api);
}
