/* rdzv_conf.c - --rdzv_conf's keys: torchrun's names and defaults, read into numbers.
 *
 * torchrun passes unknown keys on to backends that may want them, so an unknown key is
 * a warning here, not an error; a known key with a bad value stops fgrun before anything
 * starts. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "launcher/options.h"

enum conf_kind { CONF_SECONDS, CONF_COUNT, CONF_BOOL, CONF_STORE_TYPE };

typedef struct conf_key {
  const char *name;
  enum conf_kind kind;
  size_t offset; /* into fg_rdzv_conf; unused for CONF_STORE_TYPE */
} conf_key;

#define AT(field) offsetof(fg_rdzv_conf, field)

/* "timeout" is the static rendezvous's name for the join timeout, "heartbeat" a short
 * name for the keep-alive interval; the later key wins when both are given. */
static const conf_key keys[] = {
    {"join_timeout", CONF_SECONDS, AT(join_timeout)},
    {"timeout", CONF_SECONDS, AT(join_timeout)},
    {"last_call_timeout", CONF_SECONDS, AT(last_call_timeout)},
    {"close_timeout", CONF_SECONDS, AT(close_timeout)},
    {"read_timeout", CONF_SECONDS, AT(read_timeout)},
    {"keep_alive_interval", CONF_SECONDS, AT(keep_alive_interval)},
    {"heartbeat", CONF_SECONDS, AT(keep_alive_interval)},
    {"keep_alive_max_attempt", CONF_COUNT, AT(keep_alive_max_attempt)},
    {"is_host", CONF_BOOL, AT(is_host)},
    {"store_type", CONF_STORE_TYPE, 0},
};

static void set_defaults(fg_rdzv_conf *c) {
  *c = (fg_rdzv_conf){.join_timeout = 600, .last_call_timeout = 30, .close_timeout = 30,
                      .read_timeout = 60, .keep_alive_interval = 5,
                      .keep_alive_max_attempt = 3, .is_host = -1};
}

static int read_value(fg_rdzv_conf *c, const conf_key *k, const char *v, char *err,
                      size_t errlen) {
  void *field = (char *)c + k->offset;
  double seconds;
  switch (k->kind) {
    case CONF_SECONDS:
      if (fg__parse_seconds(v, &seconds) != 0 || seconds <= 0 || seconds > 1e6)
        return fg__fail(err, errlen, -EINVAL, "%s=%s: expected a positive number of seconds",
                       k->name, v);
      *(double *)field = seconds;
      return 0;
    case CONF_COUNT:
      if (fg__parse_int(v, 1, 1000, (int *)field) != 0)
        return fg__fail(err, errlen, -EINVAL, "%s=%s: expected a count from 1 to 1000", k->name,
                       v);
      return 0;
    case CONF_BOOL:
      if (fg_parse_bool(v, (int *)field) != 0)
        return fg__fail(err, errlen, -EINVAL, "%s=%s: expected 1 or 0", k->name, v);
      return 0;
    case CONF_STORE_TYPE:
      if (strcmp(v, "tcp") != 0)
        return fg__fail(err, errlen, -EINVAL,
                       "store_type=%s: fgrun's rendezvous runs on its TCP store (tcp)", v);
      return 0;
  }
  return 0;
}

int fg_read_rdzv_conf(fg_launch_opts *o, char *err, size_t errlen) {
  set_defaults(&o->rdzv);
  char detail[256];
  for (int i = 0; i < o->nrdzv_conf; i++) {
    const fg_conf_pair *p = &o->rdzv_conf[i];
    const conf_key *k = NULL;
    for (size_t j = 0; j < FG_ARRAY_LEN(keys) && !k; j++)
      if (strcmp(p->key, keys[j].name) == 0) k = &keys[j];
    if (!k) {
      fg_warn("--rdzv_conf: ignoring unknown key '%s' (fgrun reads join_timeout, "
              "last_call_timeout, close_timeout, read_timeout, keep_alive_interval, "
              "keep_alive_max_attempt, is_host)", p->key);
      continue;
    }
    if (read_value(&o->rdzv, k, p->value, detail, sizeof detail) != 0)
      return fg__fail(err, errlen, -EINVAL, "--rdzv_conf: %s", detail);
  }
  return 0;
}
