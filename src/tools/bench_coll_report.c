/* bench_coll_report.c - what `fgbench COLLECTIVE` prints and writes, in nccl-tests' formats
 * (its src/util.cu): the header with one line per rank, the table (out-of-place and in-place
 * groups), the footer; the same as nccl-tests' JSON with -J; and fgbench's CSV with --csv.
 * The side-by-side peers' figures are comment lines under each row, so that a parser written
 * for nccl-tests reads the table unchanged. Only rank 0 writes. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"
#include "tools/bench_coll.h"

/* The nccl-tests release whose output this follows. */
#define NCCL_TESTS_FORMAT "2.19.6"
#define JSON_FILE_VERSION 3
#define LINE_MAX_LEN 512

/* A peer's figures at one size: printed when the row has ended. */
typedef struct peer_line {
  double us, algbw, busbw, ratio;
  int set;
} peer_line;

typedef struct peer_ratios {
  double sum, min;
  int n;
  size_t min_at;
} peer_ratios;

struct bc_report {
  fg_comm *w;
  const bc_options *o;
  const char *launcher;
  int ranks, writer;
  char *lines; /* every rank's device line, LINE_MAX_LEN each (rank 0) */
  FILE *csv;
  /* The test under way. */
  const bc_coll *coll;
  const bc_peer *peers;
  int npeers;
  FILE *json_file;
  fg_jsonw json;
  double bw_sum;
  int bw_count;
  peer_ratios ratios[BC_MAX_PEERS];
  /* The row under way, for the CSV. */
  size_t bytes, count;
  fg_dtype dt;
  const char *redop;
  int root;
  peer_line pending[BC_MAX_PEERS];
};

/* nccl-tests' program names: what its "Collective test starting" lines say. */
static const char *program_name(const bc_coll *c) {
  static const char *const names[][2] = {
      {"allreduce", "all_reduce_perf"}, {"allgather", "all_gather_perf"},
      {"reduce_scatter", "reduce_scatter_perf"}, {"alltoall", "alltoall_perf"},
      {"broadcast", "broadcast_perf"}, {"reduce", "reduce_perf"},
      {"gather", "gather_perf"}, {"scatter", "scatter_perf"},
      {"sendrecv", "sendrecv_perf"}};
  for (size_t i = 0; i < FG_ARRAY_LEN(names); i++)
    if (!strcmp(names[i][0], c->name)) return names[i][1];
  return c->name;
}

/* --- every rank's device line ------------------------------------------------------------- */

static void device_line(fg_comm *w, char *line) {
  char host[256] = "", desc[256];
  gethostname(host, sizeof host - 1);
  int dev = fg_comm_device(w, desc, sizeof desc);
  snprintf(line, LINE_MAX_LEN, "#  Rank %2d Group %2d Pid %6d on %10s device %2d %s\n",
           fg_comm_rank(w), 0, (int)getpid(), host, dev, desc);
}

/* nccl-tests gathers fixed-size lines to rank 0; so does this, through backend memory. */
static int gather_lines(bc_report *r) {
  char mine[LINE_MAX_LEN] = "";
  device_line(r->w, mine);
  size_t all_bytes = (size_t)LINE_MAX_LEN * (size_t)r->ranks;
  void *dev_one = NULL, *dev_all = NULL;
  int rc = fg_comm_malloc(r->w, LINE_MAX_LEN, &dev_one);
  if (rc == 0) rc = fg_comm_malloc(r->w, all_bytes, &dev_all);
  if (rc == 0) rc = fg_comm_upload(r->w, dev_one, mine, LINE_MAX_LEN);
  if (rc == 0) rc = fg_allgather(r->w, dev_one, dev_all, LINE_MAX_LEN, FG_UINT8);
  if (rc == 0 && r->writer && !(r->lines = malloc(all_bytes))) rc = -ENOMEM;
  if (rc == 0 && r->writer) rc = fg_comm_download(r->w, r->lines, dev_all, all_bytes);
  fg_comm_free(r->w, dev_one);
  fg_comm_free(r->w, dev_all);
  return rc;
}

int bc_report_open(bc_report **out, fg_comm *w, const bc_options *o, const char *launcher) {
  bc_report *r = calloc(1, sizeof *r);
  *out = r;
  if (!r) return -ENOMEM;
  *r = (bc_report){.w = w, .o = o, .launcher = launcher, .ranks = fg_comm_size(w),
                   .writer = fg_comm_rank(w) == 0};
  int rc = gather_lines(r);
  if (rc == 0 && r->writer && o->csv) {
    if (!(r->csv = fopen(o->csv, "a"))) {
      fprintf(stderr, "fgbench: cannot write %s: %s\n", o->csv, strerror(errno));
      rc = -errno;
    } else if (ftell(r->csv) == 0) {
      fputs("collective,backend,launcher,ranks,dtype,redop,root,impl,bytes,count,time_us,"
            "algbw_gbs,busbw_gbs,wrong,ratio,placement\n", r->csv);
    }
  }
  return rc;
}

void bc_report_close(bc_report *r) {
  if (!r) return;
  if (r->csv) fclose(r->csv);
  free(r->lines);
  free(r);
}

/* --- JSON (nccl-tests' -J: version 3 of its format) --------------------------------------- */

static void now_text(char *out, size_t len) {
  time_t t = time(NULL);
  struct tm tm;
  strftime(out, len, "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
}

/* Secrets stay out of the file: nccl-tests writes the whole environment. */
static int secret(const char *entry) {
  static const char *const words[] = {"TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"};
  const char *eq = strchr(entry, '=');
  size_t n = eq ? (size_t)(eq - entry) : strlen(entry);
  for (size_t i = 0; i < FG_ARRAY_LEN(words); i++)
    for (size_t k = 0; k + strlen(words[i]) <= n; k++)
      if (!strncasecmp(entry + k, words[i], strlen(words[i]))) return 1;
  return 0;
}

/* FILE, or FILE.0, FILE.1 ... when it exists, as nccl-tests does; with `all`, the
 * collective's name goes before the suffix. */
static FILE *open_json(const bc_report *r, char *path, size_t len) {
  const char *given = r->o->json;
  if (strcmp(r->o->coll, "all"))
    snprintf(path, len, "%s", given);
  else
    snprintf(path, len, "%.*s-%s.json", (int)(strlen(given) - 5), given, r->coll->name);
  char tried[4096];
  if (snprintf(tried, sizeof tried, "%s", path) >= (int)sizeof tried) return NULL;
  for (int i = 0; i < 1000; i++) {
    int fd = open(tried, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      snprintf(path, len, "%s", tried);
      return fdopen(fd, "w");
    }
    if (errno != EEXIST) break;
    if (snprintf(tried, sizeof tried, "%s.%d", path, i) >= (int)sizeof tried) break;
  }
  printf("# skipping json output; %s not accessible\n", tried);
  return NULL;
}

static void json_begin(bc_report *r) {
  char path[4096], when[64];
  if (!r->o->json || !(r->json_file = open_json(r, path, sizeof path))) return;
  printf("# Writing JSON output to %s\n", path);
  fg_jsonw *j = &r->json;
  fg__jsonw_init(j, r->json_file);
  fg__jsonw_open(j, '{');
  fg__jsonw_key(j, "version"), fg__jsonw_int(j, JSON_FILE_VERSION);
  now_text(when, sizeof when);
  fg__jsonw_key(j, "start_time"), fg__jsonw_str(j, when);
  fg__jsonw_key(j, "args"), fg__jsonw_open(j, '[');
  fg__jsonw_str(j, "fgbench");
  for (int i = 0; i < r->o->argc; i++) fg__jsonw_str(j, r->o->argv[i]);
  fg__jsonw_close(j);
  fg__jsonw_key(j, "env"), fg__jsonw_open(j, '[');
  extern char **environ;
  for (char **e = environ; *e; e++) {
    if (!secret(*e)) {
      fg__jsonw_str(j, *e);
      continue;
    }
    char *redacted = fg__asprintf("%.*s=<redacted>", (int)strcspn(*e, "="), *e);
    fg__jsonw_str(j, redacted ? redacted : "<redacted>");
    free(redacted);
  }
  fg__jsonw_close(j);
  fg__jsonw_key(j, "nccl_version"), fg__jsonw_int(j, 0);
  fg__jsonw_key(j, "fgbench"), fg__jsonw_open(j, '{');
  fg__jsonw_key(j, "version"), fg__jsonw_str(j, FG_VERSION);
  fg__jsonw_key(j, "collective"), fg__jsonw_str(j, r->coll->name);
  fg__jsonw_key(j, "backend"), fg__jsonw_str(j, fg_comm_backend(r->w));
  fg__jsonw_key(j, "launcher"), fg__jsonw_str(j, r->launcher);
  fg__jsonw_key(j, "ranks"), fg__jsonw_int(j, r->ranks);
  fg__jsonw_key(j, "repeat"), fg__jsonw_int(j, r->o->repeat);
  fg__jsonw_close(j);
}

static void json_config(bc_report *r) {
  const bc_options *o = r->o;
  fg_jsonw *j = &r->json;
  fg__jsonw_key(j, "config"), fg__jsonw_open(j, '{');
  fg__jsonw_key(j, "nthreads"), fg__jsonw_int(j, 1);
  fg__jsonw_key(j, "ngpus"), fg__jsonw_int(j, 1);
  fg__jsonw_key(j, "minimum_bytes"), fg__jsonw_int(j, (long long)o->min_bytes);
  fg__jsonw_key(j, "maximum_bytes"), fg__jsonw_int(j, (long long)o->max_bytes);
  if (o->step_factor > 1)
    fg__jsonw_key(j, "step_factor"), fg__jsonw_int(j, (long long)o->step_factor);
  else
    fg__jsonw_key(j, "step_bytes"), fg__jsonw_int(j, (long long)o->step_bytes);
  fg__jsonw_key(j, "warmup_iters"), fg__jsonw_int(j, o->warmup);
  fg__jsonw_key(j, "iterations"), fg__jsonw_int(j, o->iters);
  fg__jsonw_key(j, "aggregated_iterations"), fg__jsonw_int(j, o->agg_iters);
  fg__jsonw_key(j, "validation"), fg__jsonw_int(j, o->check);
  fg__jsonw_key(j, "graph"), fg__jsonw_int(j, 0);
  fg__jsonw_key(j, "blocking_collectives"), fg__jsonw_bool(j, o->blocking);
  fg__jsonw_key(j, "per_iter_timing"), fg__jsonw_bool(j, 0);
  fg__jsonw_key(j, "per_iter_skip"), fg__jsonw_int(j, 0);
  fg__jsonw_key(j, "parallel_init"), fg__jsonw_bool(j, o->parallel_init);
  fg__jsonw_key(j, "devices"), fg__jsonw_open(j, '[');
  for (int i = 0; i < r->ranks; i++) {
    const char *line = r->lines + (size_t)i * LINE_MAX_LEN;
    int rank = 0, group = 0, pid = 0, dev = 0, end = 0;
    char host[256] = "", hex[128] = "", info[256] = "";
    sscanf(line, "#  Rank %d Group %d Pid %d on %255s device %d [%127[^]]] %255[^\n]%n", &rank,
           &group, &pid, host, &dev, hex, info, &end);
    fg__jsonw_open(j, '{');
    fg__jsonw_key(j, "rank"), fg__jsonw_int(j, rank);
    fg__jsonw_key(j, "group"), fg__jsonw_int(j, group);
    fg__jsonw_key(j, "pid"), fg__jsonw_int(j, pid);
    fg__jsonw_key(j, "hostname"), fg__jsonw_str(j, host);
    fg__jsonw_key(j, "device"), fg__jsonw_int(j, dev);
    fg__jsonw_key(j, "device_hex"), fg__jsonw_str(j, hex);
    fg__jsonw_key(j, "device_info"), fg__jsonw_str(j, info);
    fg__jsonw_close(j);
  }
  fg__jsonw_close(j);
  fg__jsonw_close(j);
  fg__jsonw_key(j, "results"), fg__jsonw_open(j, '[');
}

static void json_end(bc_report *r, long long errors, double bw, double min_bw) {
  if (!r->json_file) return;
  fg_jsonw *j = &r->json;
  char when[64];
  fg__jsonw_close(j); /* results */
  fg__jsonw_key(j, "out_of_bounds"), fg__jsonw_open(j, '{');
  fg__jsonw_key(j, "count"), fg__jsonw_int(j, errors);
  fg__jsonw_key(j, "okay"), fg__jsonw_bool(j, errors == 0);
  fg__jsonw_close(j);
  fg__jsonw_key(j, "average_bus_bandwidth"), fg__jsonw_open(j, '{');
  fg__jsonw_key(j, "bandwidth"), fg__jsonw_double(j, bw);
  fg__jsonw_key(j, "okay");
  if (min_bw < 0)
    fg__jsonw_str(j, "unchecked");
  else
    fg__jsonw_bool(j, bw >= min_bw * 0.9);
  fg__jsonw_close(j);
  fg__jsonw_key(j, "errors"), fg__jsonw_open(j, '['), fg__jsonw_close(j);
  now_text(when, sizeof when);
  fg__jsonw_key(j, "end_time"), fg__jsonw_str(j, when);
  fg__jsonw_close(j);
  fputc('\n', r->json_file);
  fclose(r->json_file);
  r->json_file = NULL;
}

/* --- the text ----------------------------------------------------------------------------- */

static const char *time_label(const bc_report *r) { return r->o->cputime ? "cputime" : "time"; }

static void print_header(bc_report *r) {
  const bc_options *o = r->o;
  json_begin(r);
  printf("# fgbench version %s (nccl-tests %s format) backend %s launcher %s ranks %d\n",
         FG_VERSION, NCCL_TESTS_FORMAT, fg_comm_backend(r->w), r->launcher, r->ranks);
  printf("# Collective test starting: %s\n", program_name(r->coll));
  printf("# nThread 1 nGpus 1 minBytes %llu maxBytes %llu step: %llu(%s) warmup iters: %d "
         "iters: %d agg iters: %d validation: %d graph: 0 unalign: %d\n",
         (unsigned long long)o->min_bytes, (unsigned long long)o->max_bytes,
         (unsigned long long)(o->step_factor > 1 ? o->step_factor : o->step_bytes),
         o->step_factor > 1 ? "factor" : "bytes", o->warmup, o->iters, o->agg_iters, o->check,
         o->unalign);
  if (o->blocking == 1) printf("# Blocking Enabled: wait and barrier after each inner iteration (-m) \n");
  if (o->blocking == 2) printf("# Blocking Enabled: wait after each inner iteration (-m), no barrier \n");
  if (o->blocking == 3)
    printf("# Blocking Enabled: wait and barrier after each outer iteration (-n); time excludes "
           "barrier \n");
  if (o->parallel_init) printf("# Parallel Init Enabled: threads call into NcclInitRank concurrently \n");
  static const char *const average[] = {"rank 0's", "the mean over ranks", "the fastest rank's",
                                        "the slowest rank's"};
  printf("# fgbench: time is %s%s%s\n", average[o->average],
         o->repeat > 1 ? ", the median of --repeat batches" : "",
         o->corrupt ? "; CORRUPTING one rank's data (--corrupt)" : "");
  if (r->coll->flags & BC_ONE_BUFFER)
    printf("# fgbench: %s has one buffer in fgcomm: both groups time it in place\n",
           r->coll->name);
  printf("#\n");
  printf("# Using devices\n");
  for (int i = 0; i < r->ranks; i++) fputs(r->lines + (size_t)i * LINE_MAX_LEN, stdout);
  if (r->json_file) json_config(r);
}

static void print_table_header(const bc_report *r) {
  const char *t = time_label(r);
  int pad = r->o->timestamps ? 19 : 0;
  const char *label = r->o->timestamps ? "timestamp" : "", *format = r->o->timestamps ? "%Y-%m-%d %H:%M:%S" : "";
  printf("#\n");
  printf("# %10s  %12s  %8s  %6s  %6s           out-of-place                       in-place     "
         "     \n", "", "", "", "", "");
  printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s %*s\n", "size",
         "count", "type", "redop", "root", t, "algbw", "busbw", "#wrong", t, "algbw", "busbw",
         "#wrong", pad, label);
  printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s %*s\n", "(B)",
         "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "",
         pad, format);
}

void bc_report_begin(bc_report *r, const bc_coll *coll, const bc_peer *peers, int npeers) {
  r->coll = coll;
  r->peers = peers;
  r->npeers = npeers;
  r->bw_sum = 0;
  r->bw_count = 0;
  memset(r->ratios, 0, sizeof r->ratios);
  if (!r->writer) return;
  print_header(r);
  if (npeers) {
    printf("# side by side:");
    for (int i = 0; i < npeers; i++) printf(" %s", peers[i].name);
    printf(" (out of place, under each row: their time, algbw, busbw, and x fgcomm busbw / "
           "theirs, batch by batch, the slowest rank's on both sides)\n");
  }
  print_table_header(r);
}

/* nccl-tests' number cells: as many decimals as fit the width, then an exponent. */
static void cell(char *out, int width, double v) {
  if (snprintf(out, (size_t)width + 1, "%*.2f", width, v) <= width) return;
  if (snprintf(out, (size_t)width + 1, "%*.1f", width, v) <= width) return;
  if (snprintf(out, (size_t)width + 1, "%*.0f", width, v) <= width) return;
  snprintf(out, (size_t)width + 1, width >= 7 ? "%*.1e" : "%*.0e", width, v);
}

void bc_report_row(bc_report *r, size_t bytes, size_t count, fg_dtype dt, const char *redop,
                   int root) {
  r->bytes = bytes, r->count = count, r->dt = dt, r->redop = redop, r->root = root;
  if (!r->writer) return;
  char root_text[16];
  snprintf(root_text, sizeof root_text, "%6i", root);
  printf("%12zu  %12zu  %8s  %6s  %6s", bytes, count, bc_type_name(dt), redop, root_text);
  if (!r->json_file) return;
  fg_jsonw *j = &r->json;
  fg__jsonw_open(j, '{');
  fg__jsonw_key(j, "size"), fg__jsonw_int(j, (long long)bytes);
  fg__jsonw_key(j, "count"), fg__jsonw_int(j, (long long)count);
  fg__jsonw_key(j, "type"), fg__jsonw_str(j, bc_type_name(dt));
  fg__jsonw_key(j, "redop"), fg__jsonw_str(j, redop);
  fg__jsonw_key(j, "root"), fg__jsonw_str(j, root_text);
}

static void csv_row(bc_report *r, const char *impl, double us, double algbw, double busbw,
                    const char *wrong, double ratio, const char *placement) {
  if (!r->csv) return;
  fprintf(r->csv, "%s,%s,%s,%d,%s,%s,%d,%s,%zu,%zu,%.3f,%.6f,%.6f,%s,", r->coll->name,
          fg_comm_backend(r->w), r->launcher, r->ranks, fg_dtype_name(r->dt), r->redop, r->root,
          impl, r->bytes, r->count, us, algbw, busbw, wrong);
  if (!isnan(ratio)) fprintf(r->csv, "%.4f", ratio);
  fprintf(r->csv, ",%s\n", placement);
}

void bc_report_result(bc_report *r, int in_place, double us, double algbw, double busbw,
                      int checked, long long wrong) {
  r->bw_sum += busbw;
  r->bw_count++;
  if (!r->writer) return;
  char t[8], a[7], b[7], w[32];
  cell(t, 7, us), cell(a, 6, algbw), cell(b, 6, busbw);
  if (checked)
    printf("  %7s  %6s  %6s  %6g", t, a, b, (double)wrong);
  else
    printf("  %7s  %6s  %6s    N/A", t, a, b);
  if (in_place && r->o->timestamps) {
    char when[64];
    now_text(when, sizeof when);
    printf("%21s", when);
  }
  snprintf(w, sizeof w, checked ? "%lld" : "", wrong);
  csv_row(r, "fgcomm", us, algbw, busbw, w, NAN, in_place ? "in-place" : "out-of-place");
  if (!r->json_file) return;
  fg_jsonw *j = &r->json;
  fg__jsonw_key(j, in_place ? "in_place" : "out_of_place"), fg__jsonw_open(j, '{');
  fg__jsonw_key(j, r->o->cputime ? "cpu_time" : "time"), fg__jsonw_double(j, us);
  fg__jsonw_key(j, "alg_bw"), fg__jsonw_double(j, algbw);
  fg__jsonw_key(j, "bus_bw"), fg__jsonw_double(j, busbw);
  fg__jsonw_key(j, "nwrong");
  if (checked)
    fg__jsonw_double(j, (double)wrong);
  else
    fg__jsonw_null(j);
  fg__jsonw_close(j);
}

void bc_report_peer(bc_report *r, int p, double us, double algbw, double busbw, double ratio) {
  peer_ratios *q = &r->ratios[p];
  if (q->n == 0 || ratio < q->min) q->min = ratio, q->min_at = r->bytes;
  q->sum += ratio;
  q->n++;
  if (!r->writer) return;
  r->pending[p] = (peer_line){us, algbw, busbw, ratio, 1};
  csv_row(r, r->peers[p].name, us, algbw, busbw, "", ratio, "out-of-place");
}

void bc_report_row_end(bc_report *r) {
  if (!r->writer) return;
  putchar('\n');
  for (int p = 0; p < r->npeers; p++) {
    peer_line *l = &r->pending[p];
    if (!l->set) continue;
    l->set = 0;
    char t[8], a[7], b[7];
    cell(t, 7, l->us), cell(a, 6, l->algbw), cell(b, 6, l->busbw);
    printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  x%5.2f\n", r->peers[p].name, "", "", "",
           "", t, a, b, l->ratio);
  }
  if (r->json_file) {
    fg_jsonw *j = &r->json;
    fg__jsonw_key(j, "actual_iterations"), fg__jsonw_int(j, r->o->iters);
    fg__jsonw_key(j, "experiment_name"), fg__jsonw_str(j, "");
    fg__jsonw_close(j);
  }
  fflush(stdout);
}

int bc_report_end(bc_report *r, long long errors) {
  double bw = r->bw_count ? r->bw_sum / r->bw_count : 0;
  const char *min_env = getenv("NCCL_TESTS_MIN_BW");
  double min_bw = min_env ? atof(min_env) : -1;
  int slow = min_bw >= 0 && bw < min_bw * 0.9;
  if (!r->writer) return slow;
  printf("# %-20s : %lld %s\n", "Out of bounds values", errors, errors ? "FAILED" : "OK");
  printf("# %-20s : %g %s\n", "Avg bus bandwidth", bw,
         min_bw < 0 ? "" : slow ? "FAILED" : "OK");
  for (int p = 0; p < r->npeers; p++) {
    const peer_ratios *q = &r->ratios[p];
    if (q->n)
      printf("# fgcomm / %s busbw : avg %.3f, min %.3f at %zu B\n", r->peers[p].name,
             q->sum / q->n, q->min, q->min_at);
  }
  printf("#\n# Collective test concluded: %s\n#\n\n", program_name(r->coll));
  json_end(r, errors, bw, min_bw);
  fflush(stdout);
  return slow;
}
