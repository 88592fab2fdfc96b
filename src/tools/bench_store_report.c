/* bench_store_report.c - the tables of `fgbench store`: medians of repeated runs, a cell per
 * server, and how many times better ours (slot 0) is than the best of the others. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/bench.h"
#include "tools/bench_store.h"

double bench_sample_field(const bench_sample *s, bench_field f) {
  switch (f) {
    case BENCH_VALUE: return s->value;
    case BENCH_RELEASE: return s->release;
    case BENCH_CPU: return s->cpu;
    case BENCH_DRIVER: return s->driver;
    case BENCH_RSS: return (double)s->rss_kib;
  }
  return -1;
}

bench_sample bench_median_sample(const bench_sample *runs, int n) {
  double f[5][BENCH_MAX_REPEAT];
  for (int i = 0; i < n; i++) {
    for (int k = 0; k < 4; k++) f[k][i] = bench_sample_field(&runs[i], (bench_field)k);
    f[4][i] = runs[i].sys;
  }
  double m[5];
  for (int k = 0; k < 5; k++) m[k] = fg_bench_median(f[k], n);
  return (bench_sample){m[0], m[1], m[2], m[3], m[4], runs[n - 1].rss_kib, runs[n - 1].base_kib};
}

const char *bench_dialect_name(fg_store_dialect d) {
  return d == FG_STORE_DIALECT_V2 ? "v2" : d == FG_STORE_DIALECT_LEGACY ? "1.13" : "?";
}

const char *bench_with_commas(double v, char *buf, size_t len) {
  char digits[32];
  int n = snprintf(digits, sizeof digits, "%.0f", v), out = 0;
  for (int i = 0; i < n && out < (int)len - 2; i++) {
    if (i > 0 && (n - i) % 3 == 0) buf[out++] = ',';
    buf[out++] = digits[i];
  }
  buf[out] = '\0';
  return buf;
}

double bench_better(const bench_sample *med, int nsrv, bench_field f, int higher_is_better) {
  double ours = bench_sample_field(&med[0], f), best = -1;
  for (int i = 1; i < nsrv; i++) {
    double v = bench_sample_field(&med[i], f);
    if (v > 0 && (best < 0 || (higher_is_better ? v > best : v < best))) best = v;
  }
  if (ours <= 0 || best <= 0) return -1;
  return higher_is_better ? ours / best : best / ours;
}

void bench_print_group(const char *const *cells, int nsrv, double ratio) {
  for (int i = 0; i < nsrv; i++) printf(" %10s", cells[i]);
  if (nsrv >= 2 && ratio > 0) printf(" %6.2fx", ratio);
  if (nsrv >= 2 && ratio < 0) printf(" %7s", "-");
}

void bench_print_header(const char *first, const char *const *groups, const int *compare,
                        int ngroups, const bench_server *srv, int nsrv) {
  printf("  %-7s", "");
  for (int g = 0; g < ngroups; g++) {
    int width = nsrv * 11 + (nsrv >= 2 && compare[g] ? 8 : 0);
    printf("%s %-*s", g ? " |" : "", width - 1, groups[g]);
  }
  printf("\n  %-7s", first);
  for (int g = 0; g < ngroups; g++) {
    printf(g ? " |" : "");
    for (int i = 0; i < nsrv; i++) printf(" %10.10s", srv[i].label);
    if (nsrv >= 2 && compare[g]) printf(" %7s", "better");
  }
  printf("\n");
}

void bench_cells(const bench_sample *med, int nsrv, bench_field f, const char *fmt,
                 char (*buf)[32], const char **out) {
  for (int i = 0; i < nsrv; i++) {
    double v = bench_sample_field(&med[i], f);
    snprintf(buf[i], sizeof buf[i], fmt, v);
    out[i] = v < 0 ? "-" : buf[i];
  }
}

void bench_print_rss(const bench_server *srv, int nsrv, const char *when) {
  printf("  peak RSS (VmHWM) %s:", when);
  for (int i = 0; i < nsrv; i++) {
    long kib = bench_server_rss_kib(&srv[i], "VmHWM");
    if (kib < 0)
      printf("%s %s -", i ? "," : "", srv[i].label);
    else
      printf("%s %s %.1f MiB", i ? "," : "", srv[i].label, (double)kib / 1024);
  }
  printf("\n");
}

/* The server CPU per pair as user + system: the system part is the kernel's socket work,
 * which every server pays for the same reads and writes. */
void bench_print_cpu_split(const bench_sample *med, const bench_server *srv, int nsrv) {
  printf("  %-7s server CPU/pair = user + system (us):", "");
  for (int i = 0; i < nsrv; i++)
    if (med[i].sys < 0)
      printf("%s %s -", i ? "," : "", srv[i].label);
    else
      printf("%s %s %.2f + %.2f", i ? "," : "", srv[i].label, med[i].cpu - med[i].sys,
             med[i].sys);
  printf("\n");
}
