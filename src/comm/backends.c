/* backends.c - the backends this build lacks are NULL, so fg_comm_init can say which
 * ones were not compiled in. Each built backend defines its own pointer; comm.c's
 * backends[] is the one list of them by name. */
#include "comm/comm_internal.h"
#include "common/util.h"

#ifndef FG_HAVE_GLOO
const fg_backend *const fg__backend_gloo = NULL;
#endif

#ifndef FG_HAVE_MPI
const fg_backend *const fg__backend_mpi = NULL;

int fg__mpi_ensure_init(fg_comm *world, char *err, size_t errlen) {
  (void)world;
  return fg__fail(err, errlen, FG_ENOTBUILT,
                 "started by mpirun without MASTER_ADDR/MASTER_PORT, and this build has no MPI "
                 "to share the store's address: set MASTER_ADDR and MASTER_PORT");
}
int fg__mpi_bcast_world(void *buf, size_t len, int root) {
  (void)buf, (void)len, (void)root;
  return FG_ENOTBUILT;
}
void fg__mpi_finalize(fg_comm *world) { (void)world; }
#endif

#ifndef FG_HAVE_NCCL
const fg_backend *const fg__backend_nccl = NULL;
#endif
