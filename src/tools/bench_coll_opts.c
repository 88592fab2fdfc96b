/* bench_coll_opts.c - the options of `fgbench COLLECTIVE` (see bench_coll.h): nccl-tests'
 * letters, long names, meanings and defaults (its src/common.cu), fgbench's own extras under
 * long names that do not clash, and one line on stderr for anything wrong. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"
#include "tools/bench_coll.h"

static const char usage_text[] =
    "usage: fgbench COLLECTIVE [options]   (run by every rank: under fgrun, torchrun or mpirun)\n"
    "\n"
    "COLLECTIVE is allreduce, allgather, reduce_scatter, alltoall, broadcast, reduce, gather,\n"
    "scatter, sendrecv, or all (each in turn). The options are nccl-tests' (same letters, names,\n"
    "meanings and defaults), and so is the table: a row per size with the out-of-place and the\n"
    "in-place time, algbw, busbw (nccl-tests' factors) and #wrong; exits 1 on any wrong result.\n"
    "\n"
    "  -b, --minbytes SIZE        smallest size (default 32M; 8, 4K, 64M, 1G)\n"
    "  -e, --maxbytes SIZE        largest size (default 32M)\n"
    "  -i, --stepbytes SIZE       add SIZE between rows unless -f is above 1 (default 1M)\n"
    "  -f, --stepfactor N         multiply the size by N between rows (default 1: use -i)\n"
    "  -n, --iters N              timed iterations per size (default 20)\n"
    "  -m, --agg_iters N          calls per iteration (default 1)\n"
    "  -w, --warmup_iters N       untimed calls per size, before any row (default 1)\n"
    "  -N, --run_cycles N         run the sweep N times, printing each (default 1; 0: forever)\n"
    "  -c, --check N              check the results N times per size and placement (default\n"
    "                             1; 0: no check, #wrong says N/A)\n"
    "  -o, --op NAME              sum prod max min avg, or all (default sum)\n"
    "  -d, --datatype NAME        int8 uint8 int32 int64 half float double bfloat16, or all;\n"
    "                             fgcomm's names too: float16 float32 float64 (default float)\n"
    "  -r, --root N               root of broadcast, reduce, gather, scatter; -1 or all: every\n"
    "                             rank in turn (default 0)\n"
    "  -a, --average 0|1|2|3      the time across ranks: rank 0's, the mean, the minimum, the\n"
    "                             maximum (default 1)\n"
    "  -z, --blocking 0|1|2|3     1: a barrier after each call, 3: after each iteration and\n"
    "                             not timed; fgcomm's calls always complete (default 0)\n"
    "  -C, --report_cputime 0|1   label the time column cputime (fgcomm's calls complete\n"
    "                             before they return: the same figure) (default 0)\n"
    "  -S, --report_timestamps 0|1  a timestamp at the end of each row (default 0)\n"
    "  -T, --timeout SECONDS      give up on any call after this long (default 0: the\n"
    "                             library's, $FG_TIMEOUT, else 300)\n"
    "  -J, --output_file FILE.json  nccl-tests' JSON of the run (FILE.json.0, ... when FILE\n"
    "                             exists; with all, FILE-COLLECTIVE.json for each)\n"
    "  -u, --unalign N            shift the buffers by N elements (default 0)\n"
    "  -p, --parallel_init 0|1    one rank per process: both mean the same (default 0)\n"
    "\n"
    "nccl-tests' settings for CUDA threads, graphs and NCCL's own APIs: fgbench accepts the\n"
    "default and says why it refuses anything else:\n"
    "  -t, --nthreads 1           one thread per process: more ranks come from the launcher\n"
    "  -g, --ngpus 1              one GPU per rank\n"
    "  -G, --cudagraph 0          no CUDA graphs\n"
    "  -R, --local_register 0     no NCCL buffer registration\n"
    "  -y, --stream_null 0        the nccl backend's own stream\n"
    "  -M, --memory 0             no GPU memory report\n"
    "  -I, --per_iter_timing 0    no per-iteration timing\n"
    "  -K, --per_iter_skip 0\n"
    "  -x, --cta_policy -1        NCCL's CTA policy is left alone\n"
    "  -D, --device_implementation 0  NCCL's device API is not used\n"
    "  -V, --device_cta_count 16\n"
    "\n"
    "fgbench's own:\n"
    "      --backend NAME         gloo, mpi or nccl (default $FG_BACKEND, else gloo)\n"
    "      --repeat N             timed batches per size and placement, interleaved with the\n"
    "                             peers'; the median is shown (default 1, 3 with\n"
    "                             --side-by-side)\n"
    "      --side-by-side         also time the raw libraries: gloo's own loop and torch 1.13's\n"
    "                             gloo beside gloo, MPI's own loop beside mpi (under mpirun)\n"
    "      --peers LIST           only these of raw-gloo, raw-mpi, torch\n"
    "      --csv FILE             append every row to FILE (one per implementation, size and\n"
    "                             placement)\n"
    "      --python PATH          python with torch 1.13 (default /usr/bin/python3)\n"
    "      --torch-script PATH    (default scripts/bench/torch_allreduce.py of this checkout)\n"
    "      --corrupt              one rank corrupts what it sends: every check must fail\n";

static const char *self;

static int bad(const char *what, const char *arg, const char *want) {
  fprintf(stderr, "fgbench %s: bad %s '%s': %s (see fgbench %s --help)\n", self, what, arg, want,
          self);
  return 2;
}

/* nccl-tests' settings that mean nothing without CUDA threads, graphs or NCCL's own
 * registration: their default is accepted, anything else refused with the reason. One row
 * per option: its letter, name, default and why. */
#define FIXED_OPTIONS(X)                                                                     \
  X('t', "nthreads", 1, "fgbench runs one rank per process; start more ranks with the launcher") \
  X('g', "ngpus", 1, "one GPU per rank; start a rank per GPU with the launcher")             \
  X('G', "cudagraph", 0, "fgcomm's calls are not captured in CUDA graphs")                   \
  X('R', "local_register", 0, "fgcomm does not register buffers with NCCL")                  \
  X('y', "stream_null", 0, "the nccl backend runs on a stream of its own")                   \
  X('M', "memory", 0, "no GPU memory report")                                                \
  X('I', "per_iter_timing", 0, "no per-iteration timing")                                    \
  X('K', "per_iter_skip", 0, "no per-iteration timing")                                      \
  X('x', "cta_policy", -1, "NCCL's CTA policy is not set by fgcomm")                         \
  X('D', "device_implementation", 0, "NCCL's device API is not used by fgcomm")              \
  X('V', "device_cta_count", 16, "NCCL's device API is not used by fgcomm")

static int fixed_option(int c, const char *arg) {
#define FIXED_CASE(letter, name, value, why)                                                 \
  case letter: {                                                                             \
    int v;                                                                                   \
    char want[160], flag[3] = {'-', letter, 0};                                              \
    snprintf(want, sizeof want, "only %d: %s", value, why);                                  \
    return fg__parse_int(arg, -(1 << 30), 1 << 30, &v) || v != (value) ? bad(flag, arg, want) : 0; \
  }
  switch (c) { FIXED_OPTIONS(FIXED_CASE) }
#undef FIXED_CASE
  return -1;
}

#define SIZE_WANTED "a size like 8, 4K, 64M"

static int parse_count(const char *what, const char *arg, int min, int max, int *out) {
  char want[64];
  snprintf(want, sizeof want, "a whole number from %d to %d", min, max);
  return fg__parse_int(arg, min, max, out) ? bad(what, arg, want) : 0;
}

/* nccl-tests' types, in the order -d all runs them (its uint32 and uint64 are not fgcomm's). */
static const struct {
  const char *name;
  fg_dtype dt;
} types[] = {
    {"int8", FG_INT8},    {"uint8", FG_UINT8},  {"int32", FG_INT32},    {"int64", FG_INT64},
    {"half", FG_FLOAT16}, {"float", FG_FLOAT32}, {"double", FG_FLOAT64}, {"bfloat16", FG_BFLOAT16},
};

/* nccl-tests' reductions, in the order -o all runs them. */
static const fg_redop ops[] = {FG_REDOP_SUM, FG_REDOP_PROD, FG_REDOP_MAX, FG_REDOP_MIN,
                               FG_REDOP_AVG};

const char *bc_type_name(fg_dtype dt) {
  for (size_t i = 0; i < FG_ARRAY_LEN(types); i++)
    if (types[i].dt == dt) return types[i].name;
  return "?";
}

static int parse_types(const char *arg, bc_options *o) {
  if (!strcmp(arg, "all")) {
    o->ntypes = (int)FG_ARRAY_LEN(types);
    for (int i = 0; i < o->ntypes; i++) o->types[i] = types[i].dt;
    return 0;
  }
  int n = fg_dtype_parse(arg);
  if (n >= 0) {
    o->ntypes = 1;
    o->types[0] = (fg_dtype)n;
    return 0;
  }
  if (!strcasecmp(arg, "uint32") || !strcasecmp(arg, "uint64"))
    return bad("-d", arg, "nccl-tests' type, but not one fgcomm has");
  return bad("-d", arg, "int8 uint8 int32 int64 half float double bfloat16 or all");
}

static int parse_ops(const char *arg, bc_options *o) {
  if (!strcmp(arg, "all")) {
    o->nops = (int)FG_ARRAY_LEN(ops);
    memcpy(o->ops, ops, sizeof ops);
    return 0;
  }
  int n = fg_redop_parse(arg);
  if (n >= 0) {
    o->nops = 1;
    o->ops[0] = (fg_redop)n;
    return 0;
  }
  if (!strcmp(arg, "mulsum")) return bad("-o", arg, "NCCL's pre-multiplied sum is not fgcomm's");
  return bad("-o", arg, "sum prod max min avg or all");
}

static int parse_json(const char *arg, bc_options *o) {
  const char *dot = strrchr(arg, '.'), *slash = strrchr(arg, '/');
  if (!dot || (slash && slash > dot) || strcasecmp(dot, ".json"))
    return bad("-J", arg, "a file name ending in .json (nccl-tests writes JSON only)");
  o->json = arg;
  return 0;
}

/* Long options without a letter. */
enum { OPT_BACKEND = 256, OPT_REPEAT, OPT_SIDE, OPT_PEERS, OPT_CSV, OPT_PYTHON, OPT_SCRIPT,
       OPT_CORRUPT };

static int parse_option(int c, const char *arg, bc_options *o) {
  int rc = fixed_option(c, arg);
  if (rc >= 0) return rc;
  switch (c) {
    case 'b': return fg__parse_size(arg, &o->min_bytes) ? bad("-b", arg, SIZE_WANTED) : 0;
    case 'e': return fg__parse_size(arg, &o->max_bytes) ? bad("-e", arg, SIZE_WANTED) : 0;
    case 'i': return fg__parse_size(arg, &o->step_bytes) ? bad("-i", arg, SIZE_WANTED) : 0;
    case 'f': {
      int f;
      if ((rc = parse_count("-f", arg, 0, 1 << 20, &f)) == 0) o->step_factor = (uint64_t)f;
      return rc;
    }
    case 'n': return parse_count("-n", arg, 1, 1 << 20, &o->iters);
    case 'm': return parse_count("-m", arg, 1, 1 << 20, &o->agg_iters);
    case 'w': return parse_count("-w", arg, 0, 1 << 20, &o->warmup);
    case 'N': return parse_count("-N", arg, 0, 1 << 20, &o->run_cycles);
    case 'c': return parse_count("-c", arg, 0, 1 << 10, &o->check);
    case 'a': return parse_count("-a", arg, 0, 3, &o->average);
    case 'z': return parse_count("-z", arg, 0, 3, &o->blocking);
    case 'C': return parse_count("-C", arg, 0, 1, &o->cputime);
    case 'S': return parse_count("-S", arg, 0, 1, &o->timestamps);
    case 'p': return parse_count("-p", arg, 0, 1, &o->parallel_init);
    case 'u': return parse_count("-u", arg, 0, 1 << 20, &o->unalign);
    case 'd': return parse_types(arg, o);
    case 'o': return parse_ops(arg, o);
    case 'r':
      if (!strcmp(arg, "all")) return o->root = -1, 0;
      return parse_count("-r", arg, -1, 1 << 24, &o->root);
    case 'T': {
      double s;
      if (fg__parse_seconds(arg, &s)) return bad("-T", arg, "seconds, 0 for the library's");
      o->timeout_ms = (int)FG__MIN(s * 1000, 1 << 30);
      return 0;
    }
    case 'J': return parse_json(arg, o);
    case OPT_BACKEND: o->backend = arg; return 0;
    case OPT_REPEAT: return parse_count("--repeat", arg, 1, BC_MAX_REPEAT, &o->repeat);
    case OPT_SIDE: o->side_by_side = 1; return 0;
    case OPT_PEERS: o->peers = arg; return 0;
    case OPT_CSV: o->csv = arg; return 0;
    case OPT_PYTHON: o->python = arg; return 0;
    case OPT_SCRIPT: o->torch_script = arg; return 0;
    case OPT_CORRUPT: o->corrupt = 1; return 0;
  }
  return 2;
}

#define FIXED_LONG(letter, name, value, why) {name, required_argument, 0, letter},

static const struct option longs[] = {
    {"minbytes", required_argument, 0, 'b'},
    {"maxbytes", required_argument, 0, 'e'},
    {"stepbytes", required_argument, 0, 'i'},
    {"stepfactor", required_argument, 0, 'f'},
    {"iters", required_argument, 0, 'n'},
    {"agg_iters", required_argument, 0, 'm'},
    {"warmup_iters", required_argument, 0, 'w'},
    {"run_cycles", required_argument, 0, 'N'},
    {"check", required_argument, 0, 'c'},
    {"op", required_argument, 0, 'o'},
    {"datatype", required_argument, 0, 'd'},
    {"root", required_argument, 0, 'r'},
    {"average", required_argument, 0, 'a'},
    {"blocking", required_argument, 0, 'z'},
    {"report_cputime", required_argument, 0, 'C'},
    {"report_timestamps", required_argument, 0, 'S'},
    {"parallel_init", required_argument, 0, 'p'},
    {"unalign", required_argument, 0, 'u'},
    {"timeout", required_argument, 0, 'T'},
    {"output_file", required_argument, 0, 'J'},
    FIXED_OPTIONS(FIXED_LONG)
    {"backend", required_argument, 0, OPT_BACKEND},
    {"repeat", required_argument, 0, OPT_REPEAT},
    {"side-by-side", no_argument, 0, OPT_SIDE},
    {"peers", required_argument, 0, OPT_PEERS},
    {"csv", required_argument, 0, OPT_CSV},
    {"python", required_argument, 0, OPT_PYTHON},
    {"torch-script", required_argument, 0, OPT_SCRIPT},
    {"corrupt", no_argument, 0, OPT_CORRUPT},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

static int check_sweep(const bc_options *o) {
  char arg[32];
  if (o->min_bytes > o->max_bytes) {
    snprintf(arg, sizeof arg, "%llu", (unsigned long long)o->min_bytes);
    return bad("-b", arg, "more than -e");
  }
  if (o->step_factor <= 1 && o->step_bytes == 0 && o->min_bytes < o->max_bytes)
    return bad("-i", "0", "the sweep would not move: a size above 0, or -f above 1");
  if (o->step_factor > 1 && o->min_bytes == 0 && o->max_bytes > 0)
    return bad("-b", "0", "a sweep by a factor starts above 0");
  return 0;
}

int bc_parse_options(int argc, char **argv, bc_options *o) {
  *o = (bc_options){.coll = argv[0], .min_bytes = 32 << 20, .max_bytes = 32 << 20,
                    .step_bytes = 1 << 20, .step_factor = 1, .iters = 20, .agg_iters = 1,
                    .warmup = 1, .run_cycles = 1, .check = 1, .ntypes = 1,
                    .types = {FG_FLOAT32}, .nops = 1, .ops = {FG_REDOP_SUM}, .average = 1,
                    .argc = argc, .argv = argv, .python = "/usr/bin/python3"};
  self = argv[0];
  opterr = 0;
  int c, rc;
  while ((c = getopt_long(argc, argv, ":t:g:b:e:i:f:n:m:w:N:p:I:K:c:o:d:r:z:y:T:hG:C:a:R:x:D:V:J:S:M:u:",
                          longs, NULL)) != -1) {
    if (c == 'h') return fputs(usage_text, stdout), -1;
    if (c == ':')
      return fprintf(stderr, "fgbench %s: option '%s' needs a value\n", self, argv[optind - 1]), 2;
    if (c == '?')
      return fprintf(stderr, "fgbench %s: unknown option '%s' (see fgbench %s --help)\n", self,
                     argv[optind - 1], self), 2;
    if ((rc = parse_option(c, optarg, o)) != 0) return rc;
  }
  if (optind < argc) return bad("argument", argv[optind], "options only");
  if ((rc = check_sweep(o)) != 0) return rc;
  if (!o->repeat) o->repeat = o->side_by_side ? 3 : 1;
  return 0;
}
