/* conform.h - what fgconform's parts share: the run's state, one test case, the
 * values every rank contributes, checking and reporting, and buffers that live
 * where the backend wants them (device memory for nccl).
 *
 * fgconform.c   options, the world, groups, meshes, the verdict
 * conform_check.c  values, comparisons, failure lines, the digest, buffers
 * conform_ops.c    the collectives, each against expectations computed here
 * conform_p2p.c    send/recv, batches, broadcast_bytes, and the fault modes */
#ifndef FG_TOOLS_CONFORM_H
#define FG_TOOLS_CONFORM_H

#include <stddef.h>
#include <stdint.h>

#include "fg/comm.h"

typedef struct conform {
  fg_comm *world;
  int quick;        /* fewer sizes and roots */
  int fault;        /* the last rank corrupts its contributions */
  int verbose;      /* rank 0 of each group says what it ran and how long it took */
  long checks;      /* on this rank */
  long failures;
  long reported;    /* failure lines printed (the rest are counted only) */
  int broken;       /* a call failed: the communicator cannot be trusted any more */
  uint64_t digest;  /* FNV-1a over every result this rank checked */
} conform;

/* One call of one collective. */
typedef struct tcase {
  const char *op;
  fg_dtype dt;
  fg_redop rop;
  int reducing; /* the values follow rop's pattern */
  int root;     /* -1 when the operation has none */
  size_t count;
  int in_place;
  int salt;     /* differs per operation, so results of one cannot pass for another */
} tcase;

/* --- values (conform_check.c) ------------------------------------------------------- */
/* Element j of rank's send buffer: small integers, so every result is exact in every
 * dtype (sums stay within int8, products are powers of two, signed only where the
 * dtype is). */
double cf_input(const tcase *t, int rank, size_t j);
/* The reduction of element j over ranks 0..size-1. */
double cf_fold(const tcase *t, int size, size_t j);
/* A value no result takes, for output that must be overwritten. */
#define CF_SENTINEL 123.0

/* Fills n elements of rank's input; with --fault the last rank adds 1 to the first. */
void cf_fill_input(const conform *cf, const fg_comm *c, const tcase *t, void *host, size_t n);

/* --- checking ----------------------------------------------------------------------- */
/* Compares got[0..n) with want, counts one check, prints one line on a mismatch and
 * hashes got into the digest when hash is set. Returns 1 if it passed. */
int cf_expect(conform *cf, const fg_comm *c, const tcase *t, const char *what,
              const void *got, const double *want, size_t n, int hash);
/* A check of a property (sizes, ranks, coordinates); the message says what was wrong. */
int cf_true(conform *cf, const fg_comm *c, int ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A call that returned rc != 0: reports it and marks the run broken. */
int cf_call_failed(conform *cf, const fg_comm *c, const char *what, int rc);
void cf_hash(conform *cf, const void *data, size_t len);
uint64_t cf_fnv1a(uint64_t h, const void *data, size_t len);
/* "int8 sum count 13 root 2 in place" */
void cf_describe(const tcase *t, char *out, size_t len);

/* --- buffers where the backend wants them --------------------------------------------- */
typedef struct cf_buf {
  void *dev;
  void *host;
  size_t bytes;
} cf_buf;

int cf_buf_alloc(fg_comm *c, cf_buf *b, size_t bytes);
int cf_buf_upload(fg_comm *c, cf_buf *b);
int cf_buf_download(fg_comm *c, cf_buf *b);
void cf_buf_free(fg_comm *c, cf_buf *b);

/* --- suites ------------------------------------------------------------------------- */
void cf_run_collectives(conform *cf, fg_comm *c);      /* conform_ops.c */
void cf_run_p2p(conform *cf, fg_comm *c);              /* conform_p2p.c */
void cf_run_bytes(conform *cf, fg_comm *c);
/* Fault modes: each returns the process's exit status. */
int cf_fault_at(conform *cf, int victim, int stall);
int cf_mismatch(conform *cf, const char *what);

#endif
