/* fgconform - checks that a backend keeps the promises of include/fg/comm.h.
 *
 * Every rank runs it (under fgrun, torchrun, mpirun, or alone). It calls every
 * operation on the world, on groups and on mesh dimensions, compares each result
 * with what it must be, prints one line per failed case, and exits 0 only when every
 * rank passed every check (the ranks agree with one allreduce). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/conform.h"

enum { PART_WORLD = 1, PART_GROUPS = 2, PART_MESH = 4 };

typedef struct options {
  const char *backend;
  int mesh[2]; /* 0x0: none */
  int quick, fault, print_digest, skip_if_no_device, verbose;
  int parts;   /* PART_* to run */
  int victim;  /* --die-at or --stall-at: that rank; -1: none */
  int stall;
  const char *mismatch;
  int timeout_ms;
} options;

static void usage(FILE *f) {
  fprintf(f,
          "usage: fgconform [options]   (run by every rank)\n"
          "  --backend NAME        gloo, mpi or nccl (default: $FG_BACKEND, else gloo)\n"
          "  --mesh RxC            also check an R x C device mesh (R*C = world size)\n"
          "  --parts LIST          what to check, of world,groups,mesh (default: all)\n"
          "  --quick               fewer sizes and roots\n"
          "  --fault               the last rank corrupts what it contributes: checks must fail\n"
          "  --print-digest        rank 0 prints a hash of every result, to compare backends\n"
          "  --verbose             rank 0 of each group prints each part's checks and time\n"
          "  --skip-if-no-device   exit 0 ('fgconform: skipped: ...') when the backend has no\n"
          "                        device (nccl without a GPU)\n"
          "  --timeout SECONDS     give up on any call after this long (default $FG_TIMEOUT)\n"
          "  --die-at RANK         fault mode: RANK kills itself during an allreduce; the\n"
          "                        others must report the failure\n"
          "  --stall-at RANK       fault mode: RANK stops for twice the timeout; the others\n"
          "                        must time out\n"
          "  --mismatch WHAT       fault mode: the last rank passes another count, dtype, root\n"
          "                        or op; with FG_DEBUG=detail every rank must report it\n"
          "  --help\n"
          "backends in this build: %s\n",
          fg_comm_backends());
}

static int parse_mesh(const char *s, int *dims) {
  char tail;
  return sscanf(s, "%dx%d%c", &dims[0], &dims[1], &tail) == 2 && dims[0] > 0 && dims[1] > 0;
}

static int parse_parts(const char *list) {
  char copy[64], *save = NULL;
  int parts = 0;
  snprintf(copy, sizeof copy, "%s", list);
  for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
    if (!strcmp(p, "world")) parts |= PART_WORLD;
    else if (!strcmp(p, "groups")) parts |= PART_GROUPS;
    else if (!strcmp(p, "mesh")) parts |= PART_MESH;
    else return -1;
  }
  return parts;
}

static int parse_options(int argc, char **argv, options *o) {
  static const struct option longs[] = {
      {"backend", required_argument, NULL, 'b'}, {"mesh", required_argument, NULL, 'm'},
      {"quick", no_argument, NULL, 'q'},         {"fault", no_argument, NULL, 'f'},
      {"print-digest", no_argument, NULL, 'd'},  {"skip-if-no-device", no_argument, NULL, 's'},
      {"timeout", required_argument, NULL, 't'}, {"die-at", required_argument, NULL, 'k'},
      {"mismatch", required_argument, NULL, 'x'}, {"verbose", no_argument, NULL, 'v'},
      {"parts", required_argument, NULL, 'p'},   {"stall-at", required_argument, NULL, 'l'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  *o = (options){.victim = -1, .parts = PART_WORLD | PART_GROUPS | PART_MESH};
  int ch;
  while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
    switch (ch) {
      case 'b': o->backend = optarg; break;
      case 'm':
        if (!parse_mesh(optarg, o->mesh)) return fprintf(stderr, "fgconform: --mesh wants RxC\n"), 2;
        break;
      case 'q': o->quick = 1; break;
      case 'f': o->fault = 1; break;
      case 'd': o->print_digest = 1; break;
      case 's': o->skip_if_no_device = 1; break;
      case 't': o->timeout_ms = (int)(atof(optarg) * 1000); break;
      case 'k': o->victim = atoi(optarg); break;
      case 'l':
        o->victim = atoi(optarg);
        o->stall = 1;
        break;
      case 'x': o->mismatch = optarg; break;
      case 'v': o->verbose = 1; break;
      case 'p':
        if ((o->parts = parse_parts(optarg)) <= 0)
          return fprintf(stderr, "fgconform: --parts wants a list of world, groups, mesh\n"), 2;
        break;
      case 'h': usage(stdout); exit(0);
      default: usage(stderr); return 2;
    }
  }
  if (optind < argc) return fprintf(stderr, "fgconform: unexpected '%s'\n", argv[optind]), 2;
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void part(conform *cf, fg_comm *c, const char *name, void (*run)(conform *, fg_comm *)) {
  if (cf->broken) return;
  long before = cf->checks;
  double t0 = now_s();
  run(cf, c);
  if (cf->verbose && fg_comm_rank(c) == 0)
    printf("fgconform: %s on %s: %ld checks in %.2f s\n", name, fg_comm_name(c),
           cf->checks - before, now_s() - t0);
}

static void suite(conform *cf, fg_comm *c) {
  part(cf, c, "collectives", cf_run_collectives);
  part(cf, c, "send/recv", cf_run_p2p);
  part(cf, c, "broadcast_bytes", cf_run_bytes);
}

/* Groups and mesh dimensions get the quick sweep: the world had the full one. */
static void group_suite(conform *cf, fg_comm *g) {
  int quick = cf->quick;
  cf->quick = 1;
  suite(cf, g);
  cf->quick = quick;
}

/* g must hold exactly the world ranks `members`, in that order, and must really connect
 * them: an allgather of world ranks over g shows which processes answered. */
static void check_members(conform *cf, fg_comm *g, const int *members, int n) {
  int me = fg_comm_rank(cf->world), pos = -1;
  for (int i = 0; i < n; i++)
    if (members[i] == me) pos = i;
  cf_true(cf, g, fg_comm_size(g) == n, "size %d, expected %d", fg_comm_size(g), n);
  cf_true(cf, g, fg_comm_rank(g) == pos, "rank %d, expected %d", fg_comm_rank(g), pos);
  for (int i = 0; i < n && i < fg_comm_size(g); i++)
    cf_true(cf, g, fg_comm_world_rank(g, i) == members[i], "rank %d is world rank %d, not %d", i,
            fg_comm_world_rank(g, i), members[i]);
  cf_true(cf, g, fg_comm_world_rank(g, n) == -1, "world_rank(%d) of a group of %d is not -1", n,
          n);
  cf_buf mine = {0}, all = {0};
  int rc = cf_buf_alloc(g, &mine, sizeof(int32_t));
  if (rc == 0) rc = cf_buf_alloc(g, &all, sizeof(int32_t) * (size_t)fg_comm_size(g));
  if (rc == 0) {
    *(int32_t *)mine.host = me;
    rc = cf_buf_upload(g, &mine);
  }
  if (rc == 0) rc = fg_allgather(g, mine.dev, all.dev, 1, FG_INT32);
  if (rc == 0) rc = cf_buf_download(g, &all);
  if (rc != 0) {
    cf_call_failed(cf, g, "membership allgather", rc);
  } else {
    const int32_t *got = all.host;
    for (int i = 0; i < n && i < fg_comm_size(g); i++)
      cf_true(cf, g, got[i] == members[i], "rank %d of the group answered as world rank %d, not %d",
              i, got[i], members[i]);
  }
  cf_buf_free(g, &mine);
  cf_buf_free(g, &all);
}

/* Collective over the world: the group of ranks whose colour is mine, or none. */
static void check_split(conform *cf, const char *what, int colour, int key, const int *members,
                        int n) {
  fg_comm *g = NULL;
  int rc = fg_comm_split(cf->world, colour, key, &g);
  if (rc != 0) {
    cf_call_failed(cf, cf->world, what, rc);
    return;
  }
  if (cf_true(cf, cf->world, (g != NULL) == (colour >= 0), "%s: %s a group", what,
              g ? "got" : "did not get") &&
      g) {
    check_members(cf, g, members, n);
    group_suite(cf, g);
  }
  fg_comm_destroy(g);
}

static void check_groups(conform *cf) {
  int n = fg_comm_size(cf->world), me = fg_comm_rank(cf->world);
  int *members = calloc((size_t)n, sizeof *members), k = 0;
  if (!members) return (void)cf_call_failed(cf, cf->world, "allocation", -ENOMEM);

  for (int r = 0; r < n; r += 2) members[k++] = r;
  fg_comm *g = NULL;
  int rc = fg_comm_new_group(cf->world, members, k, &g);
  if (rc != 0) {
    cf_call_failed(cf, cf->world, "new_group of the even ranks", rc);
  } else if (cf_true(cf, cf->world, (g != NULL) == (me % 2 == 0), "new_group of the even ranks: %s",
                     g ? "a member by mistake" : "left out") && g) {
    check_members(cf, g, members, k);
    group_suite(cf, g);
  }
  fg_comm_destroy(g);

  /* Split by parity, keys reversed: group rank 0 is the highest world rank. */
  k = 0;
  for (int r = n - 1; r >= 0; r--)
    if (r % 2 == me % 2) members[k++] = r;
  if (!cf->broken) check_split(cf, "split by rank % 2", me % 2, -me, members, k);

  /* colour < 0 joins nothing. */
  k = 0;
  for (int r = 1; r < n; r++) members[k++] = r;
  if (!cf->broken && n > 1) check_split(cf, "split without rank 0", me == 0 ? -1 : 7, me, members, k);
  free(members);
}

static void check_mesh_dim(conform *cf, fg_mesh *m, int d, const int *dims) {
  int me = fg_comm_rank(cf->world), c0 = me / dims[1], c1 = me % dims[1];
  int members[64], n = dims[d];
  for (int i = 0; i < n && i < 64; i++) members[i] = d == 0 ? i * dims[1] + c1 : c0 * dims[1] + i;
  fg_comm *g = fg_mesh_group(m, d);
  if (!cf_true(cf, cf->world, g != NULL, "mesh dimension %d has no group", d) || n > 64) return;
  cf_true(cf, g, fg_mesh_coord(m, d) == (d ? c1 : c0), "coordinate %d is %d, expected %d", d,
          fg_mesh_coord(m, d), d ? c1 : c0);
  cf_true(cf, g, fg_mesh_size(m, d) == n, "dimension %d has size %d, expected %d", d,
          fg_mesh_size(m, d), n);
  check_members(cf, g, members, n);
  group_suite(cf, g);
}

static void check_mesh(conform *cf, const int *dims) {
  fg_comm *w = cf->world;
  int n = fg_comm_size(w);
  if (!cf_true(cf, w, dims[0] * dims[1] == n, "a %dx%d mesh needs %d ranks, the world has %d",
               dims[0], dims[1], dims[0] * dims[1], n))
    return;
  static const char *const names[] = {"dp", "tp"};
  fg_mesh *m = NULL;
  int rc = fg_mesh_create(w, 2, dims, names, &m);
  if (rc != 0) return (void)cf_call_failed(cf, w, "mesh", rc);
  cf_true(cf, w, fg_mesh_ndims(m) == 2, "ndims %d", fg_mesh_ndims(m));
  cf_true(cf, w, fg_mesh_dim(m, "dp") == 0 && fg_mesh_dim(m, "tp") == 1 &&
                     fg_mesh_dim(m, "pp") == -1,
          "dimension names: dp %d, tp %d, pp %d", fg_mesh_dim(m, "dp"), fg_mesh_dim(m, "tp"),
          fg_mesh_dim(m, "pp"));
  for (int i = 0; i < dims[0]; i++)
    for (int j = 0; j < dims[1]; j++) {
      int at[2] = {i, j};
      cf_true(cf, w, fg_mesh_rank_at(m, at) == i * dims[1] + j, "rank_at(%d, %d) = %d", i, j,
              fg_mesh_rank_at(m, at));
    }
  int outside[2] = {dims[0], 0};
  cf_true(cf, w, fg_mesh_rank_at(m, outside) == -1, "rank_at outside the mesh is not -1");
  cf_true(cf, w, fg_mesh_group(m, 2) == NULL, "a third dimension has a group");
  for (int d = 0; d < 2 && !cf->broken; d++) check_mesh_dim(cf, m, d, dims);
  fg_mesh_destroy(m);
}

/* The ranks agree on the verdict and the digest; rank 0 reports them. */
static int verdict(conform *cf, const options *o) {
  fg_comm *w = cf->world;
  int n = fg_comm_size(w);
  if (cf->broken) return 1;
  cf_buf tally = {0}, mine = {0}, all = {0};
  int rc = cf_buf_alloc(w, &tally, 2 * sizeof(int64_t));
  if (rc == 0) rc = cf_buf_alloc(w, &mine, sizeof(uint64_t));
  if (rc == 0) rc = cf_buf_alloc(w, &all, sizeof(uint64_t) * (size_t)n);
  if (rc == 0) {
    int64_t *t = tally.host;
    t[0] = cf->failures;
    t[1] = cf->checks;
    memcpy(mine.host, &cf->digest, sizeof cf->digest);
    rc = cf_buf_upload(w, &tally);
  }
  if (rc == 0) rc = cf_buf_upload(w, &mine);
  if (rc == 0) rc = fg_allreduce(w, tally.dev, tally.dev, 2, FG_INT64, FG_REDOP_SUM);
  if (rc == 0) rc = fg_allgather(w, mine.dev, all.dev, sizeof(uint64_t), FG_UINT8);
  if (rc == 0) rc = cf_buf_download(w, &tally);
  if (rc == 0) rc = cf_buf_download(w, &all);
  int64_t failed = 1, checks = 0;
  if (rc != 0) {
    cf_call_failed(cf, w, "verdict", rc);
  } else {
    failed = ((int64_t *)tally.host)[0];
    checks = ((int64_t *)tally.host)[1];
  }
  if (rc == 0 && fg_comm_rank(w) == 0) {
    const char *be = fg_comm_backend(w);
    if (failed == 0)
      printf("fgconform: %lld checks passed on %d ranks (%s)\n", (long long)checks, n, be);
    else
      printf("fgconform: %lld of %lld checks FAILED on %d ranks (%s)\n", (long long)failed,
             (long long)checks, n, be);
    if (o->print_digest)
      printf("fgconform: digest %016llx\n",
             (unsigned long long)cf_fnv1a(0xcbf29ce484222325ull, all.host, all.bytes));
  }
  cf_buf_free(w, &tally);
  cf_buf_free(w, &mine);
  cf_buf_free(w, &all);
  return failed != 0;
}

static int run_all(conform *cf, const options *o) {
  fg_comm *w = cf->world;
  int n = fg_comm_size(w), me = fg_comm_rank(w);
  cf_true(cf, w, !strcmp(fg_comm_name(w), "world"), "the world is named '%s'", fg_comm_name(w));
  for (int r = 0; r < n; r++)
    cf_true(cf, w, fg_comm_world_rank(w, r) == r, "world rank of %d is %d", r,
            fg_comm_world_rank(w, r));
  cf_true(cf, w, me >= 0 && me < n, "rank %d of %d", me, n);
  if (o->parts & PART_WORLD) suite(cf, w);
  if (!cf->broken && (o->parts & PART_GROUPS)) check_groups(cf);
  if (!cf->broken && (o->parts & PART_MESH) && o->mesh[0]) check_mesh(cf, o->mesh);
  return verdict(cf, o);
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  options o;
  int status = parse_options(argc, argv, &o);
  if (status != 0) return status;

  fg_comm_options co;
  fg_comm_options_init(&co);
  co.backend = o.backend;
  co.timeout_ms = o.timeout_ms;
  fg_comm *world = NULL;
  char err[512];
  int rc = fg_comm_init(&world, &co, err, sizeof err);
  if (rc == FG_ENODEV && o.skip_if_no_device) {
    printf("fgconform: skipped: %s\n", err);
    return 0;
  }
  if (rc != 0) {
    fprintf(stderr, "fgconform: cannot join the world (%s): %s\n", fg_strerror(rc), err);
    return 1;
  }

  conform cf = {.world = world, .quick = o.quick, .fault = o.fault, .verbose = o.verbose,
                .digest = 0xcbf29ce484222325ull};
  if (o.victim >= 0)
    status = cf_fault_at(&cf, o.victim, o.stall);
  else if (o.mismatch)
    status = cf_mismatch(&cf, o.mismatch);
  else
    status = run_all(&cf, &o);
  /* After a failure some peers may be gone: do not wait long for them on the way out. */
  if (status != 0) fg_comm_set_timeout(world, 1000);
  fg_comm_destroy(world);
  return status;
}
