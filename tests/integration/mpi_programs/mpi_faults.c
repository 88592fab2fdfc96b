/* Ways an MPI rank can end a job, chosen by argv[1]:
 *   abort R CODE     rank R calls MPI_Abort(MPI_COMM_WORLD, CODE) after a barrier
 *   nofinalize R     rank R exits 0 without MPI_Finalize; the others wait in a barrier
 *   spin             every rank loops in MPI_Allreduce; each writes its pid to
 *                    $FG_TEST_DIR/spin.<rank> once it is in the loop
 *   restart          each rank prints its attempt (TORCHELASTIC_RESTART_COUNT) and PMIx
 *                    namespace; in attempt 0 rank 1 calls MPI_Abort(3), later attempts
 *                    print an allreduce over the world */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void mark(int rank) {
  const char *dir = getenv("FG_TEST_DIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/spin.%d", dir ? dir : ".", rank);
  FILE *f = fopen(path, "w");
  if (f) {
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const char *mode = argc > 1 ? argv[1] : "";
  if (!strcmp(mode, "abort")) {
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == atoi(argv[2])) MPI_Abort(MPI_COMM_WORLD, atoi(argv[3]));
    MPI_Barrier(MPI_COMM_WORLD); /* never completes: the aborting rank is gone */
  } else if (!strcmp(mode, "nofinalize")) {
    if (rank == atoi(argv[2])) exit(0);
    MPI_Barrier(MPI_COMM_WORLD);
  } else if (!strcmp(mode, "spin")) {
    double x = 1, y = 0;
    for (long i = 0;; i++) {
      MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      if (i == 10) mark(rank);
    }
  } else if (!strcmp(mode, "restart")) {
    const char *attempt = getenv("TORCHELASTIC_RESTART_COUNT");
    printf("attempt %s rank %d of %d: namespace %s\n", attempt ? attempt : "-", rank, size,
           getenv("PMIX_NAMESPACE"));
    fflush(stdout);
    if (attempt && !strcmp(attempt, "0") && rank == 1) MPI_Abort(MPI_COMM_WORLD, 3);
    int one = 1, n = 0;
    MPI_Allreduce(&one, &n, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf("attempt %s rank %d: allreduce %d\n", attempt ? attempt : "-", rank, n);
    fflush(stdout);
  }
  MPI_Finalize();
  return 0;
}
