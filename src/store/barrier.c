/* barrier.c - fg_store_barrier, written on plain SET/ADD/WAIT so that it works on every
 * server and in both dialects.
 *
 * Each rank marks `<name>/arrived/<rank>` and counts itself in `<name>/count`; the arrival
 * that brings the count to world_size sets `<name>/done`, which everyone waits for. The
 * arrival marks exist only so that a timed-out rank can say who is missing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/progress.h"
#include "common/util.h"
#include "store/client_internal.h"

/* Every rank that times out lists the missing ones with one CHECK per rank, so at scale only
 * the first arrivals do it: the others would cost the server world_size^2 CHECKs. */
#define LIST_ALL_UP_TO 1024
#define LISTING_ARRIVALS 16
#define LIST_AT_MOST 32
/* A timed-out barrier keeps up to this much of its own time (or a quarter of it) to cancel
 * its WAIT and list the missing ranks, so that it still ends by its deadline. */
#define DIAGNOSIS_MAX_MS 1000

static char **rank_keys(const char *name, int world_size) {
  char **keys = calloc((size_t)world_size, sizeof *keys);
  for (int r = 0; keys && r < world_size; r++) {
    keys[r] = fg__asprintf("%s/arrived/%d", name, r);
    if (!keys[r]) {
      while (r-- > 0) free(keys[r]);
      free(keys);
      return NULL;
    }
  }
  return keys;
}

static void free_keys(char **keys, int n) {
  for (int i = 0; keys && i < n; i++) free(keys[i]);
  free(keys);
}

/* "ranks 1, 3 of 4 have not arrived", from which arrival marks exist. */
static void missing_text(const uint8_t *present, int world_size, char *out, size_t outlen) {
  int missing = 0, listed = 0;
  for (int r = 0; r < world_size; r++) missing += !present[r];
  if (missing == 0) {
    snprintf(out, outlen, "every rank arrived, but the last one did not mark it done");
    return;
  }
  size_t len = (size_t)snprintf(out, outlen, "rank%s ", missing == 1 ? "" : "s");
  for (int r = 0; r < world_size && listed < LIST_AT_MOST && len < outlen; r++) {
    if (present[r]) continue;
    len += (size_t)snprintf(out + len, outlen - len, "%s%d", listed ? ", " : "", r);
    listed++;
  }
  if (missing > listed && len < outlen)
    len += (size_t)snprintf(out + len, outlen - len, " and %d more", missing - listed);
  if (len < outlen)
    snprintf(out + len, outlen - len, " of %d %s not arrived", world_size,
             missing == 1 ? "has" : "have");
}

static int timed_out(fg_store *s, const char *name, int world_size, int timeout_ms,
                     int64_t arrival) {
  char text[400] = "";
  uint8_t *present = NULL;
  char **keys = NULL;
  int listed = 0;
  if (world_size <= LIST_ALL_UP_TO || arrival <= LISTING_ARRIVALS) {
    present = malloc((size_t)world_size);
    keys = present ? rank_keys(name, world_size) : NULL;
    listed = keys && fg__store_check_each(s, (const char *const *)keys, (size_t)world_size,
                                          present) == 0;
  }
  if (listed) {
    missing_text(present, world_size, text, sizeof text);
  } else {
    char *count = fg__asprintf("%s/count", name);
    int64_t n = -1;
    if (count && fg_store_add(s, count, 0, &n) == 0)
      snprintf(text, sizeof text, "%lld of %d ranks arrived", (long long)n, world_size);
    else
      snprintf(text, sizeof text, "the missing ranks are unknown (%s)", fg_store_errmsg(s));
    free(count);
  }
  free_keys(keys, keys ? world_size : 0);
  free(present);
  return fg__store_failf(s, -ETIMEDOUT, "barrier '%s' timed out after %d ms: %s", name, timeout_ms,
                         text);
}

static int arrive(fg_store *s, const char *name, int rank, int64_t *arrival) {
  char *mark = fg__asprintf("%s/arrived/%d", name, rank);
  char *count = fg__asprintf("%s/count", name);
  int rc = mark && count ? fg_store_set(s, mark, "1", 1) : -ENOMEM;
  if (rc == 0) rc = fg_store_add(s, count, 1, arrival);
  free(mark);
  free(count);
  return rc;
}

int fg_store_barrier(fg_store *s, const char *name, int rank, int world_size, int timeout_ms) {
  if (!s || !name || world_size < 1 || rank < 0 || rank >= world_size)
    return s ? fg__store_failf(s, -EINVAL, "barrier: invalid argument") : -EINVAL;
  FG_OP_MARK(m); /* fgrun's hang report sees store barriers too */
  fg__op_enter(&m, "store_barrier", name, 0, NULL, NULL);
  int timeout = fg__store_timeout(s, timeout_ms);
  int64_t deadline = fg__now_ms() + timeout;
  char *done = fg__asprintf("%s/done", name);
  if (!done) return -ENOMEM;
  fg__store_cap_steps(deadline); /* every step below, reconnects included, ends by then */
  int64_t arrival = 0;
  int rc = arrive(s, name, rank, &arrival);
  if (rc == 0 && arrival > world_size)
    rc = fg__store_failf(s, FG_EMISMATCH,
                         "barrier '%s': %lld arrivals for a world of %d (a name used twice, or "
                         "ranks that disagree on the world size)",
                         name, (long long)arrival, world_size);
  if (rc == 0 && arrival == world_size) rc = fg_store_set(s, done, "1", 1);
  if (rc == 0) {
    const char *keys[] = {done};
    int64_t until = deadline - FG__MIN(timeout / 4, DIAGNOSIS_MAX_MS); /* to name the missing */
    rc = fg_store_wait(s, keys, 1, (int)FG__MAX(until - fg__now_ms(), 0));
  }
  if (rc == -ETIMEDOUT) rc = timed_out(s, name, world_size, timeout, arrival);
  fg__store_cap_steps(0);
  free(done);
  return rc;
}
