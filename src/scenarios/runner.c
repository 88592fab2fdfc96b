/* runner.c - options common to every scenario, the communicator, the output
 * directory, and the verdict every rank agrees on. */
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "scenarios/scenario.h"

/* In the order `all` runs them. */
static const scenario *const all_scenarios[] = {&scn_checkpoint, &scn_dispatcher, &scn_pipeline,
                                                 &scn_build_sync};

double scn_now(void) { return fg__now_s(); }

static void vprint(FILE *f, const scn *s, const char *tag, const char *fmt, va_list ap) {
  char line[1024];
  int n = snprintf(line, sizeof line, "%s%s", s->name ? s->name : "fgscenario", ": ");
  if (s->rank != 0) n += snprintf(line + n, sizeof line - (size_t)n, "rank %d: ", s->rank);
  if (tag) n += snprintf(line + n, sizeof line - (size_t)n, "%s ", tag);
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  fprintf(f, "%s\n", line);
  fflush(f);
}

void scn_check(scn *s, int ok, const char *fmt, ...) {
  s->checks++;
  if (!ok) s->failed++;
  if (s->rank != 0 && ok) return;
  va_list ap;
  va_start(ap, fmt);
  vprint(ok ? stdout : stderr, s, ok ? "[PASS]" : "[FAIL]", fmt, ap);
  va_end(ap);
}

void scn_log(scn *s, const char *fmt, ...) {
  if (s->rank != 0) return;
  va_list ap;
  va_start(ap, fmt);
  vprint(stdout, s, NULL, fmt, ap);
  va_end(ap);
}

void scn_error(scn *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprint(stderr, s, "error:", fmt, ap);
  va_end(ap);
}

int scn_usage_error(scn *s, const char *fmt, ...) {
  if (s->rank == 0) {
    va_list ap;
    va_start(ap, fmt);
    vprint(stderr, s, "error:", fmt, ap);
    va_end(ap);
  }
  return SCN_USAGE;
}

int scn_fault(const scn *s, const char *name) { return s->fault && !strcmp(s->fault, name); }

int scn_comm(scn *s, fg_comm *c, int rc, const char *what) {
  if (rc != 0) scn_error(s, "%s: %s", what, c ? fg_comm_errmsg(c) : strerror(rc < 0 ? -rc : rc));
  return rc;
}

/* --- host data through the backend's memory --------------------------------------------- */

/* A device copy of bytes of host (uploaded when upload is set), or host itself where the
 * backend works on host memory. */
static int stage_in(fg_comm *c, const void *host, size_t bytes, int upload, void **dev) {
  if (fg_comm_host_memory(c)) {
    *dev = (void *)host;
    return 0;
  }
  *dev = NULL;
  int rc = fg_comm_malloc(c, bytes ? bytes : 1, dev);
  if (rc == 0 && upload && bytes) rc = fg_comm_upload(c, *dev, host, bytes);
  return rc;
}

/* Back to host (when download is set and all went well), and the device copy freed. */
static int stage_out(fg_comm *c, void *host, void *dev, size_t bytes, int download, int rc) {
  if (dev == host || !dev) return rc;
  if (rc == 0 && download && bytes) rc = fg_comm_download(c, host, dev, bytes);
  fg_comm_free(c, dev);
  return rc;
}

int scn_allgather(scn *s, fg_comm *c, const void *mine, void *all, size_t bytes,
                  const char *what) {
  size_t total = bytes * (size_t)fg_comm_size(c);
  void *dev_mine = NULL, *dev_all = NULL;
  int rc = stage_in(c, mine, bytes, 1, &dev_mine);
  if (rc == 0) rc = stage_in(c, all, total, 0, &dev_all);
  if (rc == 0) rc = fg_allgather(c, dev_mine, dev_all, bytes, FG_UINT8);
  rc = stage_out(c, all, dev_all, total, 1, rc);
  rc = stage_out(c, (void *)mine, dev_mine, bytes, 0, rc);
  return scn_comm(s, c, rc, what);
}

int scn_broadcast(scn *s, fg_comm *c, void *buf, size_t count, fg_dtype dt, int root,
                  const char *what) {
  size_t bytes = count * fg_dtype_size(dt);
  int is_root = fg_comm_rank(c) == root;
  void *dev = NULL;
  int rc = stage_in(c, buf, bytes, is_root, &dev);
  if (rc == 0) rc = fg_broadcast(c, dev, count, dt, root);
  return scn_comm(s, c, stage_out(c, buf, dev, bytes, !is_root, rc), what);
}

int scn_allreduce_i32(scn *s, fg_comm *c, int32_t *vals, size_t n, fg_redop op,
                      const char *what) {
  void *dev = NULL;
  int rc = stage_in(c, vals, n * sizeof *vals, 1, &dev);
  if (rc == 0) rc = fg_allreduce(c, dev, dev, n, FG_INT32, op);
  return scn_comm(s, c, stage_out(c, vals, dev, n * sizeof *vals, 1, rc), what);
}

/* --- options ------------------------------------------------------------------------- */

typedef struct common {
  const char *backend;
  const char *fault;
  const char *output_dir;
  int keep_outputs;
  double timeout;
  int help;
  char err[512]; /* a usage error, said once every rank has joined */
} common;

static const char usage[] =
    "usage: fgscenario [options] SCENARIO [scenario options]\n"
    "       fgrun --nproc_per_node=N SCENARIO [options]\n"
    "       mpirun -np N fgscenario [options] SCENARIO [scenario options]\n"
    "\n"
    "Runs one of the distributed scenarios on every rank and exits 0 only when every\n"
    "check held on every rank.\n"
    "fgscenario accepts each scenario name with '-' or '_' (build-sync, pipeline_split).\n"
    "\n"
    "scenarios:\n"
    "%s"
    "  all                      every scenario in turn, each with its defaults for the\n"
    "                           world size (dispatcher: dp 2 x mp N/2 when N is even and\n"
    "                           over 2, else pure DP; pipeline: N stages; build_sync: the\n"
    "                           file lock at 1 rank); takes no scenario options\n"
    "  list                     this list\n"
    "\n"
    "options (any scenario):\n"
    "  --backend gloo|mpi|nccl  communication backend (default $FG_BACKEND or gloo)\n"
    "  --fault NAME             break what the scenario checks, to show the checks bite\n"
    "  --output-dir DIR         where files go, created by rank 0 and shared with every\n"
    "                           rank (default: a fresh /tmp/fgscenario-XXXXXX, removed after)\n"
    "  --keep-outputs           keep the files afterwards (and say where they are)\n"
    "  --timeout SECONDS        give up on any collective after this long (default 60)\n"
    "  -h, --help               this help, or a scenario's with SCENARIO --help\n"
    "\n"
    "Rank 0 prints every check as [PASS] or [FAIL] with its values; other ranks print only\n"
    "the checks that fail on them; then every rank agrees on one verdict.\n"
    "\n"
    "Exit status: 0 every check passed, 1 a check failed or a rank failed, 2 bad usage\n"
    "(said once, by rank 0).\n";

static void print_usage(FILE *f) {
  char list[1024] = "";
  size_t n = 0;
  for (size_t i = 0; i < FG_ARRAY_LEN(all_scenarios); i++)
    n += (size_t)snprintf(list + n, sizeof list - n, "  %-24s %s\n", all_scenarios[i]->name,
                          all_scenarios[i]->summary);
  fprintf(f, usage, list);
}

static void print_scenario_usage(const scenario *sc) {
  printf("usage: fgscenario [options] %s [options]\n\n%s\n\n%s", sc->name, sc->summary,
         sc->usage);
  if (sc->faults && sc->faults[0]) {
    printf("\nfaults (--fault NAME):");
    for (const char *const *f = sc->faults; *f; f++) printf(" %s", *f);
    printf("\n");
  }
  printf("\nCommon options: --backend, --fault, --output-dir, --keep-outputs, --timeout "
         "(see fgscenario --help).\n");
}

static const scenario *find_scenario(const char *name) {
  for (size_t i = 0; i < FG_ARRAY_LEN(all_scenarios); i++) {
    const scenario *sc = all_scenarios[i];
    if (fg__scenario_name_eq(sc->name, name)) return sc;
  }
  return NULL;
}

/* A usage error found before the communicator exists: kept until every rank has joined,
 * so that rank 0 alone says it (and is not killed by the launcher before it can). */
static int usage_later(common *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_later(common *c, const char *fmt, ...) {
  if (c->err[0]) return -1; /* the first one is the one to fix */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, sizeof c->err, fmt, ap);
  va_end(ap);
  return -1;
}

/* Takes the common options out of argv wherever they are; returns the rest's count. */
static int take_common(int argc, char **argv, common *c, char **rest) {
  static const char *const names[] = {"--backend", "--fault", "--output-dir", "--timeout",
                                      "--output_dir"};
  int n = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *val = NULL;
    int matched = -1;
    for (int k = 0; k < (int)FG_ARRAY_LEN(names) && matched < 0; k++) {
      size_t len = strlen(names[k]);
      if (strncmp(a, names[k], len) || (a[len] != '\0' && a[len] != '=')) continue;
      matched = k;
      if (a[len] == '=')
        val = a + len + 1;
      else if (i + 1 < argc)
        val = argv[++i];
      else
        return usage_later(c, "%s needs a value", names[k]);
    }
    switch (matched) {
      case 0: c->backend = val; continue;
      case 1: c->fault = val; continue;
      case 2:
      case 4: c->output_dir = val; continue;
      case 3:
        if (fg__parse_seconds(val, &c->timeout) != 0 || c->timeout <= 0)
          return usage_later(c, "bad --timeout '%s'", val);
        continue;
    }
    if (!strcmp(a, "--keep-outputs") || !strcmp(a, "--keep_outputs"))
      c->keep_outputs = 1;
    else if (!strcmp(a, "-h") || !strcmp(a, "--help"))
      c->help = 1;
    else
      rest[n++] = argv[i];
  }
  rest[n] = NULL;
  return n;
}

static int known_fault(const scenario *sc, const char *fault) {
  for (const char *const *f = sc->faults; f && *f; f++)
    if (!strcmp(*f, fault)) return 1;
  return 0;
}

/* What the command line asks for, or why it cannot be run (in c->err). */
static const scenario *check_command(common *c, int n, char **rest) {
  const scenario *sc = find_scenario(rest[0]);
  if (!sc && strcmp(rest[0], "all")) {
    char names[256] = "";
    size_t len = 0;
    for (size_t i = 0; i < FG_ARRAY_LEN(all_scenarios); i++)
      len += (size_t)snprintf(names + len, sizeof names - len, "%s, ", all_scenarios[i]->name);
    usage_later(c, "unknown scenario '%s' (one of: %sall)", rest[0], names);
    return NULL;
  }
  if (!sc && n > 1) {
    usage_later(c, "all runs every scenario with its defaults and takes no scenario "
                "options ('%s')", rest[1]);
    return NULL;
  }
  if (!c->fault) return sc;
  int known = sc && known_fault(sc, c->fault);
  for (size_t i = 0; !sc && i < FG_ARRAY_LEN(all_scenarios); i++)
    known |= known_fault(all_scenarios[i], c->fault);
  if (!known && sc)
    usage_later(c, "%s has no fault '%s' (see %s --help)", sc->name, c->fault, sc->name);
  else if (!known)
    usage_later(c, "no scenario has a fault '%s' (see fgscenario SCENARIO --help)", c->fault);
  return sc;
}

/* --- the output directory ------------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

/* Rank 0 makes (or checks) the directory and tells everyone its path. */
static int setup_output(scn *s, const char *given, char **owned) {
  char *path = NULL;
  size_t len = 0;
  int rc = 0;
  if (s->rank == 0) {
    char tmpl[] = "/tmp/fgscenario-XXXXXX";
    if (given) {
      if (mkdir(given, 0755) != 0 && errno != EEXIST) {
        scn_error(s, "cannot create --output-dir %s: %s", given, strerror(errno));
        given = "";
      }
      path = strdup(given);
    } else {
      path = strdup(mkdtemp(tmpl) ? tmpl : "");
      if (!path[0]) scn_error(s, "cannot create a temporary directory: %s", strerror(errno));
    }
    len = strlen(path) + 1;
  }
  rc = fg_broadcast_bytes(s->world, (void **)&path, &len, 0);
  if (scn_comm(s, s->world, rc, "sharing the output directory")) {
    if (s->rank == 0) free(path);
    return rc;
  }
  if (!path[0]) {
    free(path);
    return -EIO;
  }
  *owned = path;
  s->output_dir = path;
  return 0;
}

static void cleanup_output(scn *s, int created_by_us) {
  if (s->rank == 0 && !s->keep_outputs && created_by_us)
    nftw(s->output_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  else if (s->rank == 0 && s->keep_outputs)
    printf("fgscenario: outputs kept in %s\n", s->output_dir);
}

/* --- running ------------------------------------------------------------------------- */

/* Every rank learns whether every rank passed: one collective. */
static int agree(scn *s, int ok) {
  int32_t all = ok;
  if (scn_allreduce_i32(s, s->world, &all, 1, FG_REDOP_MIN, "agreeing on the verdict") != 0)
    return 0;
  return all;
}

static int run_one(scn *s, const scenario *sc, int argc, char **argv) {
  s->name = sc->name;
  s->checks = s->failed = 0;
  double t0 = scn_now();
  int rc = sc->run(s, argc, argv);
  if (rc == SCN_USAGE) return 2;
  int ok = agree(s, rc == 0 && s->failed == 0);
  if (s->rank == 0)
    printf("%s: %s (%d checks on rank 0, %d ranks, %s, %.2f s)\n", sc->name,
           ok ? "ALL CHECKS PASSED" : "SOME CHECKS FAILED", s->checks, s->size, s->backend,
           scn_now() - t0);
  fflush(stdout);
  s->name = NULL;
  return ok ? 0 : 1;
}

/* Every scenario in turn, each with its defaults for this world size. */
static int run_all(scn *s) {
  int status = 0;
  double t0 = scn_now();
  for (size_t i = 0; i < FG_ARRAY_LEN(all_scenarios); i++) {
    char *only[] = {(char *)all_scenarios[i]->name, NULL};
    int r = run_one(s, all_scenarios[i], 1, only);
    if (r > status) status = r;
  }
  if (s->rank == 0)
    printf("all: %s (%zu scenarios, %d ranks, %s, %.2f s)\n",
           status == 0 ? "every scenario passed" : "a scenario failed",
           FG_ARRAY_LEN(all_scenarios), s->size, s->backend, scn_now() - t0);
  return status;
}

static int join_world(scn *s, const common *c) {
  fg_comm_options o;
  fg_comm_options_init(&o);
  o.backend = c->backend;
  o.timeout_ms = (int)(c->timeout * 1000);
  char err[512];
  int rc = fg_comm_init(&s->world, &o, err, sizeof err);
  if (rc != 0) {
    /* Without a world every rank speaks: a usage error first, it is the likelier cause. */
    fprintf(stderr, "fgscenario: error: %s\n", c->err[0] ? c->err : err);
    return c->err[0] ? 2 : 1;
  }
  s->rank = fg_comm_rank(s->world);
  s->size = fg_comm_size(s->world);
  s->backend = fg_comm_backend(s->world);
  if (!c->err[0]) return 0;
  if (s->rank == 0) fprintf(stderr, "fgscenario: error: %s\n", c->err);
  fflush(stderr);
  fg_barrier(s->world); /* every rank exits after rank 0 has said why */
  fg_comm_destroy(s->world);
  return 2;
}

int fg_scenario_main(int argc, char **argv) {
  common c = {.timeout = 60};
  char **rest = calloc((size_t)argc + 1, sizeof *rest);
  int n = take_common(argc, argv, &c, rest);
  if (n == 0 && !c.err[0]) { /* nothing to run: the usage, on every rank (no world yet) */
    print_usage(c.help ? stdout : stderr);
    free(rest);
    return c.help ? 0 : 2;
  }
  if (n > 0 && !strcmp(rest[0], "list")) {
    print_usage(stdout);
    free(rest);
    return 0;
  }
  const scenario *sc = n > 0 && !c.err[0] ? check_command(&c, n, rest) : NULL;
  if (c.help && !c.err[0]) {
    if (sc)
      print_scenario_usage(sc);
    else
      print_usage(stdout);
    free(rest);
    return 0;
  }
  scn s = {.fault = c.fault, .keep_outputs = c.keep_outputs};
  int status = join_world(&s, &c);
  if (status != 0) {
    free(rest);
    return status;
  }
  char *dir = NULL;
  status = 1;
  if (setup_output(&s, c.output_dir, &dir) == 0) {
    status = sc ? run_one(&s, sc, n, rest) : run_all(&s);
    fg_barrier(s.world); /* nobody removes files another rank still uses */
    cleanup_output(&s, c.output_dir == NULL);
  }
  free(dir);
  free(rest);
  fg_comm_destroy(s.world);
  return status;
}
