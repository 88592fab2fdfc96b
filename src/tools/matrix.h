/* matrix.h - the scenario matrix: cases read from the YAML files in configs/, run one by one,
 * reported as a table, JUnit XML and JSON. */
#ifndef FG_TOOLS_MATRIX_H
#define FG_TOOLS_MATRIX_H

#include <stddef.h>

#define MATRIX_MAX_ARGS 32
#define MATRIX_MAX_MESH 4

typedef struct matrix_case {
  char *name;
  char *scenario;
  char *backend;  /* gloo, mpi, nccl */
  char *launcher; /* fgrun or mpirun */
  int processes;
  int mesh_dims;
  char *mesh_names[MATRIX_MAX_MESH];
  int mesh_sizes[MATRIX_MAX_MESH];
  char *args[MATRIX_MAX_ARGS];
  int nargs;
  double timeout;
  int expect_fail; /* a fault case: passing means the scenario failed */
  char *source;    /* "configs/x.yaml:12" */
  char *command;   /* the command line it ran, for reproducing it by hand */
  /* Results. */
  const char *result; /* PASS, FAIL, SKIP; NULL: not run (interrupted) */
  double seconds;
  int exit_code;
  char *log;   /* captured output */
  char *why;   /* for FAIL and SKIP */
} matrix_case;

typedef struct matrix {
  matrix_case *cases;
  size_t n, cap;
} matrix;

/* Appends the cases of one YAML file. On error returns -1 with a message naming the file,
 * the line and the field. */
int matrix_load(matrix *m, const char *path, char *err, size_t errlen);
void matrix_free(matrix *m);
void matrix_case_free(matrix_case *c);

int matrix_write_junit(const matrix *m, const char *path, double total);
int matrix_write_json(const matrix *m, const char *path, double total);

#endif
