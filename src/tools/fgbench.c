/* fgbench - side-by-side benchmarks of fgrun's parts against the torch pieces they replace.
 *
 *   fgbench SUBCOMMAND [options]     (fgbench SUBCOMMAND --help for its options)
 *
 * A subcommand is one row of the table below and a main() of its own in bench_*.c. */
#include <stdio.h>
#include <string.h>

#include "fg/fg.h"
#include "tools/bench.h"

static const struct subcommand {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} subcommands[] = {
    {"store", fg_bench_store, "store server throughput and rendezvous, fgstore vs torch 1.13"},
    {"allreduce", fg_bench_coll, "nccl-tests for fgcomm (--side-by-side: raw gloo, MPI, torch)"},
    {"allgather", fg_bench_coll, "the same for allgather"},
    {"reduce_scatter", fg_bench_coll, "reduce_scatter"},
    {"alltoall", fg_bench_coll, "alltoall"},
    {"broadcast", fg_bench_coll, "broadcast"},
    {"reduce", fg_bench_coll, "reduce"},
    {"gather", fg_bench_coll, "gather"},
    {"scatter", fg_bench_coll, "scatter"},
    {"sendrecv", fg_bench_coll, "sendrecv: a ring, to rank + 1, from rank - 1"},
    {"all", fg_bench_coll, "every collective above in turn"},
};

static void usage(FILE *to) {
  fprintf(to, "usage: fgbench SUBCOMMAND [options]\n\nsubcommands:\n");
  for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
    fprintf(to, "  %-15s %s\n", subcommands[i].name, subcommands[i].summary);
  fprintf(to, "\nfgbench SUBCOMMAND --help lists its options.\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("fgbench %s\n", FG_VERSION);
    return 0;
  }
  for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
    if (!strcmp(argv[1], subcommands[i].name)) return subcommands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "fgbench: unknown subcommand '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
