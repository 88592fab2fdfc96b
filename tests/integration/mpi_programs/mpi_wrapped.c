/* Built twice: with -DLIBRARY as a shared library that calls MPI (with MPICH's mpicc), and
 * as a program that links only that library: MPI reached through a dependency. */
#ifdef LIBRARY
#include <mpi.h>
#include <stdio.h>

int wrapped_world_size(void) {
  int size = 0;
  MPI_Init(NULL, NULL);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Finalize();
  return size;
}
#else
#include <stdio.h>

int wrapped_world_size(void);

int main(void) {
  printf("world of %d\n", wrapped_world_size());
  return 0;
}
#endif
