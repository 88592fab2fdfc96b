/* store_and_allreduce.c - libfg in one page: the store client, then an allreduce.
 *
 * Build it against an installed libfg and run it on two ranks under fgrun:
 *
 *   cc store_and_allreduce.c $(pkg-config --cflags --libs fg) -o store_and_allreduce
 *   fgrun --standalone --nproc_per_node=2 ./store_and_allreduce
 *
 * (With libfg in a prefix the loader does not search, add -Wl,-rpath,<prefix>/lib or set
 * LD_LIBRARY_PATH; `pkg-config --static --libs fg` lists what a static link needs.)
 *
 * Each rank leaves a greeting in the store fgrun hosts (MASTER_ADDR:MASTER_PORT), meets the
 * others at a store barrier and reads its neighbour's greeting. Then every rank joins the
 * world communicator (backend $FG_BACKEND, else gloo), sums a small vector with an
 * allreduce and checks the result. Exit status: 0 when the sum is right. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fg/comm.h>
#include <fg/store.h>

enum { COUNT = 4 };

static int store_part(int rank, int size) {
  const char *addr = getenv("MASTER_ADDR"), *port = getenv("MASTER_PORT");
  if (!addr || !port) {
    fprintf(stderr, "MASTER_ADDR and MASTER_PORT are not set: run me under fgrun\n");
    return 2;
  }
  fg_store *conn = NULL, *store = NULL;
  int rc = fg_store_connect(&conn, addr, atoi(port), NULL);
  if (rc != 0) {
    fprintf(stderr, "rank %d: %s\n", rank, fg_store_errmsg(NULL));
    return 1;
  }
  /* A scope keeps this program's keys apart from everything else in the store. */
  if ((rc = fg_store_scope(conn, "example", &store)) != 0) {
    fprintf(stderr, "rank %d: %s\n", rank, fg_strerror(rc));
    fg_store_close(conn);
    return 1;
  }
  char key[32], value[64];
  snprintf(key, sizeof key, "greeting/%d", rank);
  snprintf(value, sizeof value, "hello from rank %d", rank);
  void *got = NULL;
  size_t len = 0;
  if ((rc = fg_store_set(store, key, value, strlen(value))) == 0 &&
      (rc = fg_store_barrier(store, "greetings", rank, size, -1)) == 0) {
    snprintf(key, sizeof key, "greeting/%d", (rank + 1) % size);
    rc = fg_store_get(store, key, &got, &len);
  }
  if (rc == 0)
    printf("rank %d: the store says '%s'\n", rank, (char *)got);
  else
    fprintf(stderr, "rank %d: store: %s\n", rank, fg_store_errmsg(store));
  free(got);
  fg_store_close(store);
  fg_store_close(conn);
  return rc == 0 ? 0 : 1;
}

static int allreduce_part(void) {
  fg_comm *world = NULL;
  char err[256];
  int rc = fg_comm_init(&world, NULL, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "cannot join the world: %s\n", err);
    return 1;
  }
  int rank = fg_comm_rank(world), size = fg_comm_size(world);
  double host[COUNT];
  for (int i = 0; i < COUNT; i++) host[i] = rank + 1 + i;
  /* fg_comm_malloc and the copies keep this backend-neutral: nccl needs device memory. */
  void *buf = NULL;
  if ((rc = fg_comm_malloc(world, sizeof host, &buf)) == 0 &&
      (rc = fg_comm_upload(world, buf, host, sizeof host)) == 0 &&
      (rc = fg_allreduce(world, buf, buf, COUNT, FG_FLOAT64, FG_REDOP_SUM)) == 0)
    rc = fg_comm_download(world, host, buf, sizeof host);
  int ok = rc == 0;
  if (rc != 0) {
    fprintf(stderr, "rank %d: %s\n", rank, fg_comm_errmsg(world));
  } else {
    printf("rank %d of %d (%s): allreduce sum =", rank, size, fg_comm_backend(world));
    for (int i = 0; i < COUNT; i++) {
      double want = size * (size + 1) / 2.0 + (double)size * i;
      ok &= host[i] == want;
      printf(" %g", host[i]);
    }
    printf(ok ? " (right)\n" : " (WRONG)\n");
  }
  fg_comm_free(world, buf);
  fg_comm_destroy(world);
  return ok ? 0 : 1;
}

int main(void) {
  const char *rank = getenv("RANK"), *size = getenv("WORLD_SIZE");
  printf("libfg %s, backends in this build: %s\n", fg_version(), fg_comm_backends());
  int rc = store_part(rank ? atoi(rank) : 0, size ? atoi(size) : 1);
  return rc != 0 ? rc : allreduce_part();
}
