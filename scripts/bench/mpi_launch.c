/* mpi_launch.c - the launch benchmark's rank (scripts/bench-mpi.sh): MPI_Init, MPI_Finalize.
 * With FG_BENCH_STAMPS=<dir> it writes <dir>/<pid> with the CLOCK_MONOTONIC seconds at which
 * main began and MPI_Finalize returned, so that a job's wall time splits into the ranks' own
 * (first begin to last end) and the launcher's (before the first rank, after the last). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  double begin = now();
  MPI_Init(&argc, &argv);
  MPI_Finalize();
  double end = now();
  const char *dir = getenv("FG_BENCH_STAMPS");
  if (dir && *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%ld", dir, (long)getpid());
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%.6f %.6f\n", begin, end) < 0 || fclose(f) != 0) {
      perror(path);
      return 1;
    }
  }
  return 0;
}
