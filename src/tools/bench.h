/* bench.h - fgbench's subcommands. Each is a main() of its own: it gets the arguments after
 * its name (argv[0] is the name) and returns the exit status. */
#ifndef FG_TOOLS_BENCH_H
#define FG_TOOLS_BENCH_H

/* fgbench store: our store server against torch 1.13's (bench_store*.c). */
int fg_bench_store(int argc, char **argv);

/* fgbench allreduce|allgather|...|all: nccl-tests for fgcomm, with the raw libraries side
 * by side (bench_coll*.c); argv[0] is the collective. */
int fg_bench_coll(int argc, char **argv);

#endif
