/* store_client - drives libfg's store client for the integration tests.
 *
 *   store_client HOST PORT [auto|v2|legacy [CONNECT_TIMEOUT_MS]]
 *
 * Connects, prints "ok<TAB>DIALECT" (or an error line and exits 1), then runs one command per
 * line from stdin and answers each with one line:
 *
 *   ok[<TAB>FIELD]...               the call succeeded; FIELDs are its results
 *   err<TAB>CODE<TAB>MESSAGE        CODE is a name (ETIMEDOUT, FG_EPROTO, ...), MESSAGE is
 *                                   fg_store_errmsg()
 *
 * Fields are separated by tabs and percent-encoded both ways (%09 for a tab), so keys and
 * values can hold any byte; an empty field is an empty value. Commands:
 *
 *   set K V | get K | add K DELTA | check K... | wait MS K... | cas K EXPECTED DESIRED
 *   delete K | numkeys | mget K... | mset K V [K V]... | append K V
 *   barrier NAME RANK WORLD MS | timeout MS | dialect
 *   scope NAME PREFIX     a scope of the current handle, reachable as NAME
 *   use NAME              make NAME ("root" or a scope) the current handle
 *   threads N ITERS P     N threads share the current handle, each doing ITERS set/get of
 *                         P/<thread> and add of P/count
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fg/store.h"

#define MAX_FIELDS 64
#define MAX_SCOPES 16

typedef struct field {
  char *p;
  size_t len;
} field;

static struct {
  char name[64];
  fg_store *h;
} handles[MAX_SCOPES + 1];
static int nhandles;
static fg_store *cur;

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Splits line at tabs and percent-decodes each field in place (NUL-terminated too). */
static int split(char *line, field *f) {
  int n = 0;
  for (char *s = line; n < MAX_FIELDS; n++) {
    char *tab = strchr(s, '\t');
    if (tab) *tab = '\0';
    char *w = s;
    for (char *r = s; *r; r++) {
      if (*r == '%' && hexval(r[1]) >= 0 && hexval(r[2]) >= 0) {
        *w++ = (char)(hexval(r[1]) * 16 + hexval(r[2]));
        r += 2;
      } else {
        *w++ = *r;
      }
    }
    f[n] = (field){s, (size_t)(w - s)};
    *w = '\0';
    if (!tab) return n + 1;
    s = tab + 1;
  }
  return n;
}

static void put_field(const void *p, size_t len) {
  const unsigned char *b = p;
  putchar('\t');
  for (size_t i = 0; i < len; i++) {
    if (b[i] > ' ' && b[i] < 127 && b[i] != '%')
      putchar(b[i]);
    else
      printf("%%%02X", b[i]);
  }
}

static void reply_err(int rc, const char *msg) {
  printf("err\t%s\t", fg_err_name(rc));
  for (const char *p = msg; *p; p++) putchar(*p == '\n' || *p == '\t' ? ' ' : *p);
  putchar('\n');
}

static void reply(int rc) {
  if (rc < 0)
    reply_err(rc, fg_store_errmsg(cur));
  else
    puts("ok");
}

static void reply_value(int rc, void *v, size_t len) {
  if (rc < 0) return reply(rc);
  fputs("ok", stdout);
  put_field(v, len);
  putchar('\n');
  free(v);
}

static void reply_number(int rc, int64_t n) {
  if (rc < 0) return reply(rc);
  printf("ok\t%" PRId64 "\n", n);
}

static const char *dialect_name(fg_store_dialect d) {
  return d == FG_STORE_DIALECT_V2 ? "v2" : d == FG_STORE_DIALECT_LEGACY ? "legacy" : "auto";
}

static const char **keys_of(field *f, int n) {
  static const char *keys[MAX_FIELDS];
  for (int i = 0; i < n; i++) keys[i] = f[i].p;
  return keys;
}

static void cmd_set(field *f, int n) {
  (void)n;
  reply(fg_store_set(cur, f[0].p, f[1].p, f[1].len));
}

static void cmd_get(field *f, int n) {
  (void)n;
  void *v = NULL;
  size_t len = 0;
  int rc = fg_store_get(cur, f[0].p, &v, &len);
  reply_value(rc, v, len);
}

static void cmd_add(field *f, int n) {
  (void)n;
  int64_t v = 0;
  int rc = fg_store_add(cur, f[0].p, strtoll(f[1].p, NULL, 10), &v);
  reply_number(rc, v);
}

static void cmd_check(field *f, int n) {
  int rc = fg_store_check(cur, keys_of(f, n), (size_t)n);
  reply_number(rc, rc);
}

static void cmd_wait(field *f, int n) {
  reply(fg_store_wait(cur, keys_of(f + 1, n - 1), (size_t)n - 1, atoi(f[0].p)));
}

static void cmd_cas(field *f, int n) {
  (void)n;
  void *v = NULL;
  size_t len = 0;
  int rc = fg_store_compare_set(cur, f[0].p, f[1].p, f[1].len, f[2].p, f[2].len, &v, &len);
  reply_value(rc, v, len);
}

static void cmd_delete(field *f, int n) {
  (void)n;
  int rc = fg_store_delete(cur, f[0].p);
  reply_number(rc, rc);
}

static void cmd_numkeys(field *f, int n) {
  (void)f, (void)n;
  int64_t v = 0;
  int rc = fg_store_num_keys(cur, &v);
  reply_number(rc, v);
}

static void cmd_mget(field *f, int n) {
  void *values[MAX_FIELDS];
  size_t lens[MAX_FIELDS];
  int rc = fg_store_multi_get(cur, keys_of(f, n), (size_t)n, values, lens);
  if (rc < 0) return reply(rc);
  fputs("ok", stdout);
  for (int i = 0; i < n; i++) {
    put_field(values[i], lens[i]);
    free(values[i]);
  }
  putchar('\n');
}

static void cmd_mset(field *f, int n) {
  const char *keys[MAX_FIELDS / 2];
  const void *values[MAX_FIELDS / 2];
  size_t lens[MAX_FIELDS / 2];
  for (int i = 0; i < n / 2; i++) {
    keys[i] = f[2 * i].p;
    values[i] = f[2 * i + 1].p;
    lens[i] = f[2 * i + 1].len;
  }
  reply(fg_store_multi_set(cur, keys, values, lens, (size_t)(n / 2)));
}

static void cmd_append(field *f, int n) {
  (void)n;
  reply(fg_store_append(cur, f[0].p, f[1].p, f[1].len));
}

static void cmd_barrier(field *f, int n) {
  (void)n;
  reply(fg_store_barrier(cur, f[0].p, atoi(f[1].p), atoi(f[2].p), atoi(f[3].p)));
}

static void cmd_timeout(field *f, int n) {
  (void)n;
  fg_store_set_timeout(cur, atoi(f[0].p));
  reply(0);
}

static void cmd_dialect(field *f, int n) {
  (void)f, (void)n;
  printf("ok\t%s\n", dialect_name(fg_store_get_dialect(cur)));
}

static void cmd_scope(field *f, int n) {
  (void)n;
  if (nhandles > MAX_SCOPES) return reply_err(-ENOSPC, "too many scopes");
  fg_store *s;
  int rc = fg_store_scope(cur, f[1].p, &s);
  if (rc < 0) return reply(rc);
  snprintf(handles[nhandles].name, sizeof handles[0].name, "%s", f[0].p);
  handles[nhandles++].h = s;
  reply(0);
}

static void cmd_use(field *f, int n) {
  (void)n;
  for (int i = 0; i < nhandles; i++)
    if (strcmp(handles[i].name, f[0].p) == 0) {
      cur = handles[i].h;
      return reply(0);
    }
  reply_err(-ENOENT, "no such handle");
}

/* Threads sharing one handle must each get their own replies back. */
typedef struct hammer {
  pthread_t tid;
  int id, iters;
  const char *prefix;
  char failure[256];
} hammer;

static void *hammer_main(void *arg) {
  hammer *h = arg;
  for (int i = 0; i < h->iters && !h->failure[0]; i++) {
    char key[128], val[64];
    snprintf(key, sizeof key, "%s/%d", h->prefix, h->id);
    int len = snprintf(val, sizeof val, "%d:%d", h->id, i);
    void *got = NULL;
    size_t got_len = 0;
    int64_t n = 0;
    int rc = fg_store_set(cur, key, val, (size_t)len);
    if (rc == 0) rc = fg_store_get(cur, key, &got, &got_len);
    if (rc == 0 && (got_len != (size_t)len || memcmp(got, val, got_len) != 0))
      snprintf(h->failure, sizeof h->failure, "thread %d read '%s' for '%s'", h->id,
               (char *)got, val);
    snprintf(key, sizeof key, "%s/count", h->prefix);
    if (rc == 0) rc = fg_store_add(cur, key, 1, &n);
    if (rc < 0) snprintf(h->failure, sizeof h->failure, "%s", fg_store_errmsg(cur));
    free(got);
  }
  return NULL;
}

static void cmd_threads(field *f, int nf) {
  (void)nf;
  hammer hs[64];
  int n = atoi(f[0].p), iters = atoi(f[1].p);
  const char *prefix = f[2].p;
  n = n > 64 ? 64 : n;
  for (int i = 0; i < n; i++) {
    hs[i] = (hammer){.id = i, .iters = iters, .prefix = prefix};
    pthread_create(&hs[i].tid, NULL, hammer_main, &hs[i]);
  }
  const char *failure = NULL;
  for (int i = 0; i < n; i++) {
    pthread_join(hs[i].tid, NULL);
    if (hs[i].failure[0] && !failure) failure = hs[i].failure;
  }
  if (failure) return reply_err(FG_EPROTO, failure);
  reply(0);
}

static const struct command {
  const char *name;
  int min_args;
  void (*run)(field *args, int nargs);
} commands[] = {
    {"set", 2, cmd_set},         {"get", 1, cmd_get},         {"add", 2, cmd_add},
    {"check", 0, cmd_check},     {"wait", 1, cmd_wait},       {"cas", 3, cmd_cas},
    {"delete", 1, cmd_delete},   {"numkeys", 0, cmd_numkeys}, {"mget", 0, cmd_mget},
    {"mset", 0, cmd_mset},       {"append", 2, cmd_append},   {"barrier", 4, cmd_barrier},
    {"timeout", 1, cmd_timeout}, {"dialect", 0, cmd_dialect}, {"scope", 2, cmd_scope},
    {"use", 1, cmd_use},         {"threads", 3, cmd_threads},
};

static void run(field *f, int n) {
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    if (strcmp(f[0].p, commands[i].name) != 0) continue;
    if (n - 1 < commands[i].min_args) return reply_err(-EINVAL, "missing arguments");
    return commands[i].run(f + 1, n - 1);
  }
  reply_err(-EINVAL, "unknown command");
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: store_client HOST PORT [auto|v2|legacy [CONNECT_TIMEOUT_MS]]\n");
    return 2;
  }
  fg_store_options opts;
  fg_store_options_init(&opts);
  if (argc > 3 && !strcmp(argv[3], "v2")) opts.dialect = FG_STORE_DIALECT_V2;
  if (argc > 3 && !strcmp(argv[3], "legacy")) opts.dialect = FG_STORE_DIALECT_LEGACY;
  if (argc > 4) opts.connect_timeout_ms = atoi(argv[4]);
  fg_store *root;
  int rc = fg_store_connect(&root, argv[1], atoi(argv[2]), &opts);
  if (rc < 0) {
    reply_err(rc, fg_store_errmsg(NULL));
    return 1;
  }
  snprintf(handles[0].name, sizeof handles[0].name, "root");
  handles[nhandles++].h = cur = root;
  printf("ok\t%s\n", dialect_name(fg_store_get_dialect(root)));
  fflush(stdout);
  char *line = NULL;
  size_t cap = 0;
  ssize_t got;
  field f[MAX_FIELDS];
  while ((got = getline(&line, &cap, stdin)) > 0) {
    if (line[got - 1] == '\n') line[got - 1] = '\0';
    if (!strcmp(line, "quit")) break;
    run(f, split(line, f));
    fflush(stdout);
  }
  free(line);
  for (int i = nhandles - 1; i >= 0; i--) fg_store_close(handles[i].h);
  return 0;
}
