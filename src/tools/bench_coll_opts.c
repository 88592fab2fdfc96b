/* bench_coll_opts.c - the options of `fgbench COLLECTIVE` (see bench_coll.h): nccl-tests'
 * names, and one line on stderr for anything wrong. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "tools/bench_coll.h"

static const char usage_text[] =
    "usage: fgbench COLLECTIVE [options]   (run by every rank: under fgrun, torchrun or mpirun)\n"
    "\n"
    "COLLECTIVE is allreduce, allgather, reduce_scatter, alltoall, broadcast, reduce, gather,\n"
    "scatter, sendrecv, or all (each in turn). Prints nccl-tests' table: a row per size with\n"
    "time, algbw and busbw (nccl-tests' factors) and #wrong; exits 1 on any wrong result.\n"
    "\n"
    "  -b, --minbytes SIZE     smallest size (default 8; 4K, 64M, 1G also accepted)\n"
    "  -e, --maxbytes SIZE     largest size (default 64M)\n"
    "  -f, --stepfactor N      multiply the size by N between rows (default 2)\n"
    "  -i, --iters N           timed calls per batch (default 20)\n"
    "  -w, --warmup_iters N    untimed calls before the first batch (default 5)\n"
    "  -R, --repeat N          timed batches per size, interleaved with the peers' (median;\n"
    "                          default 1, 3 with --side-by-side)\n"
    "  -d, --datatype NAME     int8 uint8 int32 int64 float16 bfloat16 float32 float64\n"
    "                          (default float32)\n"
    "  -o, --op NAME           sum prod min max avg (default sum)\n"
    "  -r, --root N            root of broadcast, reduce, gather, scatter (default 0)\n"
    "  -c, --check 0|1         check results (default 1)\n"
    "      --backend NAME      gloo, mpi or nccl (default $FG_BACKEND, else gloo)\n"
    "      --side-by-side      also time the raw libraries: gloo's own loop and torch 1.13's\n"
    "                          gloo beside gloo, MPI's own loop beside mpi (under mpirun)\n"
    "      --peers LIST        only these of raw-gloo, raw-mpi, torch\n"
    "      --csv FILE          append every row to FILE (one per implementation and size)\n"
    "      --python PATH       python with torch 1.13 (default /usr/bin/python3)\n"
    "      --torch-script PATH (default scripts/bench/torch_allreduce.py of this checkout)\n"
    "      --timeout SECONDS   give up on any call after this long (default $FG_TIMEOUT)\n"
    "      --corrupt           one rank corrupts what it sends: every check must fail\n";

static const char *self;

static int bad(const char *what, const char *arg, const char *want) {
  fprintf(stderr, "fgbench %s: bad %s '%s': %s (see fgbench %s --help)\n", self, what, arg, want,
          self);
  return 2;
}

#define SIZE_WANTED "a size like 8, 4K, 64M"

static int parse_count(const char *what, const char *arg, int min, int max, int *out) {
  char want[64];
  snprintf(want, sizeof want, "a whole number from %d to %d", min, max);
  return fg_parse_int(arg, min, max, out) ? bad(what, arg, want) : 0;
}

static int parse_option(int c, const char *arg, bc_options *o) {
  int n;
  switch (c) {
    case 'b': return fg_parse_size(arg, &o->min_bytes) ? bad("-b", arg, SIZE_WANTED) : 0;
    case 'e': return fg_parse_size(arg, &o->max_bytes) ? bad("-e", arg, SIZE_WANTED) : 0;
    case 'f':
      if (fg_parse_seconds(arg, &o->step_factor) || o->step_factor <= 1)
        return bad("-f", arg, "a factor above 1");
      return 0;
    case 'i': return parse_count("-i", arg, 1, 1 << 20, &o->iters);
    case 'w': return parse_count("-w", arg, 0, 1 << 20, &o->warmup);
    case 'R': return parse_count("-R", arg, 1, BC_MAX_REPEAT, &o->repeat);
    case 'r': return parse_count("-r", arg, 0, 1 << 24, &o->root);
    case 'c': return parse_count("-c", arg, 0, 1, &o->check);
    case 'd':
      if ((n = fg_dtype_parse(arg)) < 0)
        return bad("-d", arg, "int8 uint8 int32 int64 float16 bfloat16 float32 or float64");
      o->dt = (fg_dtype)n;
      return 0;
    case 'o':
      if ((n = fg_redop_parse(arg)) < 0) return bad("-o", arg, "sum prod min max or avg");
      o->op = (fg_redop)n;
      return 0;
    case 't': {
      double s;
      if (fg_parse_seconds(arg, &s) || s <= 0) return bad("--timeout", arg, "seconds above 0");
      o->timeout_ms = (int)FG_MIN(s * 1000, 1 << 30);
      return 0;
    }
    case 'B': o->backend = arg; return 0;
    case 'S': o->side_by_side = 1; return 0;
    case 'P': o->peers = arg; return 0;
    case 'C': o->csv = arg; return 0;
    case 'y': o->python = arg; return 0;
    case 'T': o->torch_script = arg; return 0;
    case 'X': o->corrupt = 1; return 0;
  }
  return 2;
}

int bc_parse_options(int argc, char **argv, bc_options *o) {
  static const struct option longs[] = {
      {"minbytes", required_argument, 0, 'b'},   {"maxbytes", required_argument, 0, 'e'},
      {"stepfactor", required_argument, 0, 'f'}, {"iters", required_argument, 0, 'i'},
      {"warmup_iters", required_argument, 0, 'w'}, {"repeat", required_argument, 0, 'R'},
      {"datatype", required_argument, 0, 'd'},   {"op", required_argument, 0, 'o'},
      {"root", required_argument, 0, 'r'},       {"check", required_argument, 0, 'c'},
      {"backend", required_argument, 0, 'B'},    {"side-by-side", no_argument, 0, 'S'},
      {"peers", required_argument, 0, 'P'},      {"csv", required_argument, 0, 'C'},
      {"python", required_argument, 0, 'y'},     {"torch-script", required_argument, 0, 'T'},
      {"timeout", required_argument, 0, 't'},    {"corrupt", no_argument, 0, 'X'},
      {"help", no_argument, 0, 'h'},             {0, 0, 0, 0},
  };
  *o = (bc_options){.coll = argv[0], .min_bytes = 8, .max_bytes = 64 << 20, .step_factor = 2,
                    .iters = 20, .warmup = 5, .dt = FG_FLOAT32, .op = FG_SUM, .check = 1,
                    .python = "/usr/bin/python3"};
  self = argv[0];
  opterr = 0;
  int c, rc;
  while ((c = getopt_long(argc, argv, ":b:e:f:i:w:R:d:o:r:c:h", longs, NULL)) != -1) {
    if (c == 'h') return fputs(usage_text, stdout), -1;
    if (c == ':')
      return fprintf(stderr, "fgbench %s: option '%s' needs a value\n", self, argv[optind - 1]), 2;
    if (c == '?')
      return fprintf(stderr, "fgbench %s: unknown option '%s' (see fgbench %s --help)\n", self,
                     argv[optind - 1], self), 2;
    if ((rc = parse_option(c, optarg, o)) != 0) return rc;
  }
  if (optind < argc) return bad("argument", argv[optind], "options only");
  if (o->min_bytes > o->max_bytes) {
    char arg[32];
    snprintf(arg, sizeof arg, "%llu", (unsigned long long)o->min_bytes);
    return bad("-b", arg, "more than -e");
  }
  if (!o->repeat) o->repeat = o->side_by_side ? 3 : 1;
  return 0;
}
