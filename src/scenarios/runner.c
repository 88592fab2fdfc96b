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

double scn_now(void) { return fg_now_s(); }

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

int scn_comm(scn *s, int rc, const char *what) {
  if (rc != 0) scn_error(s, "%s: %s", what, fg_comm_errmsg(s->world));
  return rc;
}

/* --- options ------------------------------------------------------------------------- */

typedef struct common {
  const char *backend;
  const char *fault;
  const char *output_dir;
  int keep_outputs;
  double timeout;
  int help;
} common;

static const char usage[] =
    "usage: fgscenario [options] SCENARIO [scenario options]\n"
    "       fgrun --nproc_per_node=N SCENARIO [options]\n"
    "       mpirun -np N fgscenario [options] SCENARIO [scenario options]\n"
    "\n"
    "Runs one of the distributed scenarios on every rank and exits 0 only when every\n"
    "check held on every rank.\n"
    "\n"
    "scenarios:\n"
    "%s"
    "  all                      every scenario in turn, with defaults for the world size\n"
    "\n"
    "options (any scenario):\n"
    "  --backend gloo|mpi|nccl  communication backend (default $FG_BACKEND or gloo)\n"
    "  --fault NAME             break what the scenario checks, to show the checks bite\n"
    "  --output-dir DIR         where files go (default: a fresh temporary directory)\n"
    "  --keep-outputs           keep the files afterwards\n"
    "  --timeout SECONDS        give up on any collective after this long (default 60)\n"
    "  -h, --help               this help, or a scenario's with SCENARIO --help\n"
    "\n"
    "Exit status: 0 every check passed, 1 a check failed or a rank failed, 2 bad usage.\n";

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
    if (!strcmp(sc->name, name)) return sc;
  }
  /* Accept the Forgather spellings too: build-sync, checkpoint_integration, ... */
  char canon[64];
  snprintf(canon, sizeof canon, "%s", name);
  for (char *p = canon; *p; p++) *p = *p == '_' ? '-' : *p;
  for (size_t i = 0; i < FG_ARRAY_LEN(all_scenarios); i++) {
    char other[64];
    snprintf(other, sizeof other, "%s", all_scenarios[i]->name);
    for (char *p = other; *p; p++) *p = *p == '_' ? '-' : *p;
    if (!strcmp(canon, other)) return all_scenarios[i];
  }
  return NULL;
}

/* Takes the common options out of argv wherever they are; returns the rest's count. */
static int take_common(int argc, char **argv, common *c, char **rest) {
  int n = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = NULL;
    const char *names[] = {"--backend", "--fault", "--output-dir", "--timeout"};
    int matched = -1;
    for (int k = 0; k < 4; k++) {
      size_t len = strlen(names[k]);
      if (!strncmp(a, names[k], len) && (a[len] == '\0' || a[len] == '=')) {
        matched = k;
        if (a[len] == '=')
          val = a + len + 1;
        else if (i + 1 < argc)
          val = argv[++i];
        else {
          fprintf(stderr, "fgscenario: error: %s needs a value\n", names[k]);
          return -1;
        }
      }
    }
    switch (matched) {
      case 0: c->backend = val; continue;
      case 1: c->fault = val; continue;
      case 2: c->output_dir = val; continue;
      case 3:
        if (fg_parse_seconds(val, &c->timeout) != 0 || c->timeout <= 0) {
          fprintf(stderr, "fgscenario: error: bad --timeout '%s'\n", val);
          return -1;
        }
        continue;
    }
    if (!strcmp(a, "--keep-outputs") || !strcmp(a, "--keep_outputs")) {
      c->keep_outputs = 1;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      c->help = 1;
    } else if (!strcmp(a, "--output_dir")) { /* underscore spelling of a common option */
      if (i + 1 >= argc) return -1;
      c->output_dir = argv[++i];
    } else {
      rest[n++] = argv[i];
    }
  }
  rest[n] = NULL;
  return n;
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
  if ((rc = scn_comm(s, fg_broadcast_bytes(s->world, (void **)&path, &len, 0), "sharing the output directory")))
    return rc;
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
  void *buf = &all; /* nccl reduces device memory only */
  int rc = fg_comm_host_memory(s->world) ? 0 : fg_comm_malloc(s->world, sizeof all, &buf);
  if (rc == 0 && buf != &all) rc = fg_comm_upload(s->world, buf, &all, sizeof all);
  if (rc == 0) rc = fg_allreduce(s->world, buf, buf, 1, FG_INT32, FG_MIN);
  if (rc == 0 && buf != &all) rc = fg_comm_download(s->world, &all, buf, sizeof all);
  if (buf != &all) fg_comm_free(s->world, buf);
  if (rc != 0) {
    scn_error(s, "agreeing on the verdict: %s", fg_comm_errmsg(s->world));
    return 0;
  }
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

int fg_scenario_main(int argc, char **argv) {
  common c = {.timeout = 60};
  char **rest = calloc((size_t)argc + 1, sizeof *rest);
  int n = take_common(argc, argv, &c, rest);
  if (n < 0) {
    free(rest);
    return 2;
  }
  if (n == 0 || !strcmp(rest[0], "list")) {
    print_usage(n == 0 && !c.help ? stderr : stdout);
    free(rest);
    return n == 0 && !c.help ? 2 : 0;
  }
  const scenario *sc = find_scenario(rest[0]);
  if (!sc && strcmp(rest[0], "all")) {
    fprintf(stderr, "fgscenario: error: unknown scenario '%s' (one of: checkpoint-integration, "
                    "dataloader-dispatcher, pipeline-split, build_sync, all)\n", rest[0]);
    free(rest);
    return 2;
  }
  if (c.help) {
    if (sc)
      print_scenario_usage(sc);
    else
      print_usage(stdout);
    free(rest);
    return 0;
  }
  if (c.fault && sc) {
    int known = 0;
    for (const char *const *f = sc->faults; f && *f; f++) known |= !strcmp(*f, c.fault);
    if (!known) {
      fprintf(stderr, "fgscenario: error: %s has no fault '%s' (see %s --help)\n", sc->name,
              c.fault, sc->name);
      free(rest);
      return 2;
    }
  }

  fg_comm_options o;
  fg_comm_options_init(&o);
  o.backend = c.backend;
  o.timeout_ms = (int)(c.timeout * 1000);
  char err[512];
  scn s = {.fault = c.fault, .keep_outputs = c.keep_outputs};
  int rc = fg_comm_init(&s.world, &o, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "fgscenario: error: %s\n", err);
    free(rest);
    return 1;
  }
  s.rank = fg_comm_rank(s.world);
  s.size = fg_comm_size(s.world);
  s.backend = fg_comm_backend(s.world);
  char *dir = NULL;
  int status = 1;
  if (setup_output(&s, c.output_dir, &dir) == 0) {
    if (sc) {
      status = run_one(&s, sc, n, rest);
    } else {
      status = 0;
      for (size_t i = 0; i < FG_ARRAY_LEN(all_scenarios); i++) {
        char *only[] = {(char *)all_scenarios[i]->name, NULL};
        int r = run_one(&s, all_scenarios[i], 1, only);
        if (r > status) status = r;
      }
      if (s.rank == 0)
        printf("all: %s\n", status == 0 ? "every scenario passed" : "a scenario failed");
    }
    fg_barrier(s.world); /* nobody removes files another rank still uses */
    cleanup_output(&s, c.output_dir == NULL);
  }
  free(dir);
  free(rest);
  fg_comm_destroy(s.world);
  return status;
}
