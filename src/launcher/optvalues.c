/* optvalues.c - parsers for the option values that have a little syntax of their own. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "launcher/options.h"

/* torchrun's Std.from_str: "0".."3" for every rank, or "LOCAL_RANK:STD,..." */
int fg_parse_std_spec(const char *s, fg_std_spec *out, char *err, size_t errlen) {
  free(out->map);
  memset(out, 0, sizeof *out);
  if (fg__parse_int(s, 0, 3, &out->all) == 0) return 0;
  if (!strchr(s, ':')) goto bad;
  size_t most = 1;
  for (const char *p = s; *p; p++) most += *p == ',';
  if (!(out->map = calloc(most, sizeof *out->map)))
    return fg__fail(err, errlen, -ENOMEM, "out of memory");
  for (const char *p = s;;) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    char item[32];
    if (n == 0 || n >= sizeof item) goto bad;
    memcpy(item, p, n);
    item[n] = '\0';
    char *colon = strchr(item, ':');
    if (!colon) goto bad;
    *colon = '\0';
    struct fg_std_pair *pair = &out->map[out->nmap++];
    if (fg__parse_int(item, 0, 1 << 16, &pair->local_rank) != 0 ||
        fg__parse_int(colon + 1, 0, 3, &pair->std) != 0)
      goto bad;
    if (!comma) return 0;
    p = comma + 1;
  }
bad:
  free(out->map);
  memset(out, 0, sizeof *out);
  return fg__fail(err, errlen, -EINVAL,
                 "expected 0-3 (0 none, 1 stdout, 2 stderr, 3 both) or LOCAL_RANK:0-3,... "
                 "like 0:1,1:3, got '%s'",
                 s);
}

int fg_std_for(const fg_std_spec *s, int local_rank) {
  if (s->nmap == 0) return s->all;
  int std = FG_STD_NONE;
  for (int i = 0; i < s->nmap; i++)
    if (s->map[i].local_rank == local_rank) std = s->map[i].std;
  return std;
}

int fg_parse_nnodes(const char *s, int *min, int *max, char *err, size_t errlen) {
  const char *colon = strchr(s, ':');
  char first[32];
  size_t n = colon ? (size_t)(colon - s) : strlen(s);
  if (n >= sizeof first) n = sizeof first - 1;
  memcpy(first, s, n);
  first[n] = '\0';
  if (fg__parse_int(first, 1, 1 << 20, min) != 0 ||
      fg__parse_int(colon ? colon + 1 : first, 1, 1 << 20, max) != 0)
    return fg__fail(err, errlen, -EINVAL, "expected N or MIN:MAX with positive numbers, got '%s'",
                   s);
  if (*min > *max)
    return fg__fail(err, errlen, -EINVAL, "'%s': MIN (%d) is larger than MAX (%d)", s, *min,
                   *max);
  return 0;
}

int fg_parse_bool(const char *s, int *out) {
  static const char *yes[] = {"1", "true", "yes", "on"};
  static const char *no[] = {"0", "false", "no", "off", ""};
  for (size_t i = 0; i < FG_ARRAY_LEN(yes); i++)
    if (strcasecmp(s, yes[i]) == 0) return *out = 1, 0;
  for (size_t i = 0; i < FG_ARRAY_LEN(no); i++)
    if (strcasecmp(s, no[i]) == 0) return *out = 0, 0;
  return -EINVAL;
}

/* torchrun's _parse_rendezvous_config: "k=v,k=v", no empty keys or values. */
int fg_parse_rdzv_conf(fg_launch_opts *o, const char *v, char *err, size_t errlen) {
  if (!*v) return 0;
  o->rdzv_conf_text = strdup(v);
  size_t most = 1;
  for (const char *p = v; *p; p++) most += *p == ',';
  o->rdzv_conf = calloc(most, sizeof *o->rdzv_conf);
  if (!o->rdzv_conf_text || !o->rdzv_conf) return fg__fail(err, errlen, -ENOMEM, "out of memory");
  for (char *item = o->rdzv_conf_text;;) {
    char *comma = strchr(item, ',');
    if (comma) *comma = '\0';
    char *eq = strchr(item, '=');
    if (!eq || eq == item || eq[1] == '\0')
      return fg__fail(err, errlen, -EINVAL, "'%s' is not KEY=VALUE (expected KEY=VALUE,...)",
                     item);
    *eq = '\0';
    o->rdzv_conf[o->nrdzv_conf++] = (fg_conf_pair){item, eq + 1};
    if (!comma) break;
    item = comma + 1;
  }
  return 0;
}

int fg_parse_ranks_filter(fg_launch_opts *o, const char *v, char *err, size_t errlen) {
  if (!*v) return 0;
  size_t most = 1;
  for (const char *p = v; *p; p++) most += *p == ',';
  o->ranks_filter = calloc(most, sizeof *o->ranks_filter);
  if (!o->ranks_filter) return fg__fail(err, errlen, -ENOMEM, "out of memory");
  for (const char *p = v;;) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    char item[16];
    int rank;
    if (n == 0 || n >= sizeof item) goto bad;
    memcpy(item, p, n);
    item[n] = '\0';
    if (fg__parse_int(item, 0, 1 << 16, &rank) != 0) goto bad;
    o->ranks_filter[o->nranks_filter++] = rank;
    if (!comma) return 0;
    p = comma + 1;
  }
bad:
  return fg__fail(err, errlen, -EINVAL, "expected local ranks like 0,2,3, got '%s'", v);
}

int fg_parse_signals(fg_launch_opts *o, const char *v, char *err, size_t errlen) {
  o->nsignals = 0;
  for (const char *p = v; *p;) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    while (n && *p == ' ') p++, n--;
    while (n && p[n - 1] == ' ') n--;
    char name[32];
    if (n == 0 || n >= sizeof name)
      return fg__fail(err, errlen, -EINVAL, "expected signal names like SIGTERM,SIGINT, got '%s'",
                     v);
    memcpy(name, p, n);
    name[n] = '\0';
    int sig = fg__signum(name);
    if (sig <= 0 || sig >= 32)
      return fg__fail(err, errlen, -EINVAL, "unknown signal '%s'", name);
    if (sig == SIGKILL || sig == SIGSTOP || sig == SIGCHLD)
      return fg__fail(err, errlen, -EINVAL, "SIG%s cannot be handled", fg__signame(sig));
    int seen = 0;
    for (int i = 0; i < o->nsignals; i++) seen |= o->signals[i] == sig;
    if (!seen) o->signals[o->nsignals++] = sig;
    if (!comma) break;
    p = comma + 1;
  }
  return 0;
}

/* --- the options torchrun gained after 1.13 ------------------------------------------------ */

int fg_parse_nproc(fg_launch_opts *o, const char *v, char *err, size_t errlen) {
  static const struct {
    const char *word;
    enum fg_nproc_kind kind;
  } words[] = {{"auto", FG_NPROC_AUTO}, {"cpu", FG_NPROC_CPU}, {"gpu", FG_NPROC_GPU}};
  for (size_t i = 0; i < FG_ARRAY_LEN(words); i++)
    if (strcmp(v, words[i].word) == 0) {
      o->nproc_kind = words[i].kind;
      return 0;
    }
  if (strcmp(v, "xpu") == 0)
    return fg__fail(err, errlen, -EINVAL, "'xpu': fgrun cannot count Intel XPUs (it counts "
                   "NVIDIA GPUs without loading torch); give the number of workers, e.g. "
                   "--nproc_per_node=4");
  o->nproc_kind = FG_NPROC_NUMBER;
  if (fg__parse_int(v, 1, 1 << 16, &o->nproc) != 0)
    return fg__fail(err, errlen, -EINVAL,
                   "expected a number from 1 to 65536, auto, cpu or gpu, got '%s'", v);
  return 0;
}

/* It travels in the rendezvous record as one word (rdzv.c), so no spaces, and it must fit. */
int fg_parse_local_addr(fg_launch_opts *o, const char *v, char *err, size_t errlen) {
  if (!*v || strlen(v) >= 64 || strpbrk(v, " \t\n\r=,"))
    return fg__fail(err, errlen, -EINVAL, "expected a host name or address (1 to 63 "
                   "characters, no spaces), got '%s'", v);
  o->local_addr = v;
  return 0;
}

int fg_parse_numa_binding(fg_launch_opts *o, const char *v, char *err, size_t errlen) {
  return fg_numa_parse_mode(v, &o->numa_binding, err, errlen);
}

int fg_parse_event_log_handler(fg_launch_opts *o, const char *v, char *err, size_t errlen) {
  if (strcmp(v, "null") && strcmp(v, "console"))
    return fg__fail(err, errlen, -EINVAL, "unknown event log handler '%s' (fgrun has null "
                   "and console)", v);
  o->event_log_console = strcmp(v, "console") == 0;
  return 0;
}

int fg_refuse_logs_specs(fg_launch_opts *o, const char *v, char *err, size_t errlen) {
  (void)o;
  return fg__fail(err, errlen, -EINVAL, "'%s': fgrun cannot load a Python entry point "
                 "(torchrun.logs_specs); its log layout is fixed: use --log_dir, --redirects, "
                 "--tee, --local_ranks_filter and --log_line_prefix_template instead", v);
}

/* --- the console prefix template ------------------------------------------------------- */

enum { VAR_RANK, VAR_LOCAL_RANK, VAR_ROLE_NAME, VAR_GROUP_RANK, VAR_DOLLAR, VAR_BAD };

/* Reads the variable that starts at tmpl (just past a '$'); *len gets its length. */
static int template_var(const char *tmpl, size_t *len) {
  static const char *names[] = {"rank", "local_rank", "role_name", "group_rank"};
  if (*tmpl == '$') return *len = 1, VAR_DOLLAR;
  int braced = *tmpl == '{';
  const char *start = tmpl + braced;
  size_t n = 0;
  while (start[n] == '_' || (start[n] >= 'a' && start[n] <= 'z') ||
         (start[n] >= 'A' && start[n] <= 'Z') || (start[n] >= '0' && start[n] <= '9'))
    n++;
  if (braced && start[n] != '}') return VAR_BAD;
  *len = n + (braced ? 2 : 0);
  for (size_t i = 0; i < FG_ARRAY_LEN(names); i++)
    if (strlen(names[i]) == n && strncmp(start, names[i], n) == 0) return (int)i;
  return VAR_BAD;
}

int fg_check_prefix_template(const char *tmpl, char *err, size_t errlen) {
  for (const char *p = tmpl; *p; p++) {
    if (*p != '$') continue;
    size_t len = 0;
    if (template_var(p + 1, &len) == VAR_BAD)
      return fg__fail(err, errlen, -EINVAL,
                     "unknown variable at '%s' (use ${rank}, ${local_rank}, ${role_name}, "
                     "${group_rank} or $$)",
                     p);
    p += len;
  }
  return 0;
}

char *fg_expand_prefix(const char *tmpl, int rank, int local_rank, const char *role) {
  return fg_expand_node_prefix(tmpl, rank, local_rank, role, 0);
}

char *fg_expand_node_prefix(const char *tmpl, int rank, int local_rank, const char *role,
                            int group_rank) {
  fg_buf b;
  fg__buf_init(&b);
  for (const char *p = tmpl; *p; p++) {
    size_t len = 0;
    int var = *p == '$' ? template_var(p + 1, &len) : VAR_BAD;
    char num[16];
    switch (var) {
      case VAR_RANK:
      case VAR_LOCAL_RANK:
      case VAR_GROUP_RANK:
        snprintf(num, sizeof num, "%d",
                 var == VAR_RANK ? rank : var == VAR_LOCAL_RANK ? local_rank : group_rank);
        fg__buf_put(&b, num, strlen(num));
        break;
      case VAR_ROLE_NAME: fg__buf_put(&b, role, strlen(role)); break;
      case VAR_DOLLAR: fg__buf_put_u8(&b, '$'); break;
      default: fg__buf_put_u8(&b, (uint8_t)*p); continue;
    }
    p += len;
  }
  fg__buf_put_u8(&b, '\0');
  if (b.failed) {
    fg__buf_free(&b);
    return NULL;
  }
  return (char *)b.data;
}
