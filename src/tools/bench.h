/* bench.h - fgbench's subcommands. Each is a main() of its own: it gets the arguments after
 * its name (argv[0] is the name) and returns the exit status. */
#ifndef FG_TOOLS_BENCH_H
#define FG_TOOLS_BENCH_H

/* fgbench store: our store server against torch 1.13's and 2.6's (bench_store*.c). */
int fg_bench_store(int argc, char **argv);

/* fgbench allreduce|allgather|...|all: nccl-tests for fgcomm, with the raw libraries side
 * by side (bench_coll*.c); argv[0] is the collective. */
int fg_bench_coll(int argc, char **argv);

/* The median of v[0..n), n > 0; sorts v (bench_median.c). */
double fg_bench_median(double *v, int n);

#endif
