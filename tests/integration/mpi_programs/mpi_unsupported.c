/* MPI calls fgrun's PMIx server does not serve: each must fail with an error, not hang. */
#include <mpi.h>
#include <stdio.h>

static void report(const char *what, int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  printf("%s: %s\n", what, rc == MPI_SUCCESS ? "succeeded" : text);
  fflush(stdout);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    char port[MPI_MAX_PORT_NAME] = "fgrun-test-port";
    report("MPI_Publish_name", MPI_Publish_name("fgrun-test", MPI_INFO_NULL, port));
    report("MPI_Lookup_name", MPI_Lookup_name("fgrun-test", MPI_INFO_NULL, port));
    MPI_Comm child;
    int errcode;
    char *args[] = {NULL};
    report("MPI_Comm_spawn", MPI_Comm_spawn("/bin/true", args, 1, MPI_INFO_NULL, 0,
                                            MPI_COMM_SELF, &child, &errcode));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  MPI_Finalize();
  return 0;
}
