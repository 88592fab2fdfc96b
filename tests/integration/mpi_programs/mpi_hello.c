/* One MPI world: its size is fgrun's WORLD_SIZE, and an allreduce, a split communicator and
 * a ring of point-to-point messages all give the right answers. Prints one line per rank,
 * exits 1 on a wrong answer. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size, bad = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const char *expected = getenv("WORLD_SIZE");
  if (expected && atoi(expected) != size) bad |= 1;

  long mine = rank + 1, sum = 0; /* 1 + 2 + ... + size */
  MPI_Allreduce(&mine, &sum, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
  if (sum != (long)size * (size + 1) / 2) bad |= 2;

  MPI_Comm half; /* even and odd ranks; each sums its world ranks */
  MPI_Comm_split(MPI_COMM_WORLD, rank % 2, rank, &half);
  int hrank, hsize;
  long part = 0, want = 0;
  MPI_Comm_rank(half, &hrank);
  MPI_Comm_size(half, &hsize);
  mine = rank;
  MPI_Allreduce(&mine, &part, 1, MPI_LONG, MPI_SUM, half);
  for (int r = rank % 2; r < size; r += 2) want += r;
  if (part != want || hsize != (size + 1 - rank % 2) / 2 || hrank != rank / 2) bad |= 4;
  MPI_Comm_free(&half);

  int next = (rank + 1) % size, prev = (rank + size - 1) % size, got = -1;
  MPI_Sendrecv(&rank, 1, MPI_INT, next, 7, &got, 1, MPI_INT, prev, 7, MPI_COMM_WORLD,
               MPI_STATUS_IGNORE);
  if (got != prev) bad |= 8;

  const char *ns = getenv("PMIX_NAMESPACE");
  printf("rank %d of %d: allreduce %ld, split %ld, p2p from %d, namespace %s: %s\n", rank, size,
         sum, part, got, ns ? ns : "-", bad ? "WRONG" : "ok");
  fflush(stdout);
  MPI_Finalize();
  return bad ? 1 : 0;
}
