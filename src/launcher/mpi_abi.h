/* mpi_abi.h - which MPI, if any, PROGRAM is linked with.
 *
 * fgrun reads the ELF executable's DT_NEEDED entries, and those of the libraries they name
 * (found as the dynamic loader finds them: RPATH, LD_LIBRARY_PATH, RUNPATH, ld.so.conf's
 * directories), before anything starts. An MPICH-family library anywhere in the tree
 * (MPICH, Intel MPI, MVAPICH: PMI-1/PMI-2, not PMIx) means that under fgrun each rank would
 * be rank 0 of a world of 1, silently wrong: fgrun refuses the program. Scripts and
 * wrappers (sh, env, numactl) are not seen through. */
#ifndef FG_LAUNCHER_MPI_ABI_H
#define FG_LAUNCHER_MPI_ABI_H

#include <stddef.h>

enum fg_mpi_link {
  FG_MPI_NONE,    /* an ELF program whose whole dependency tree has no MPI */
  FG_MPI_PMIX,    /* Open MPI or libpmix, or not known */
  FG_MPI_FOREIGN, /* an MPI without PMIx: lib and family say which */
};

/* lib gets the library's name (FG_MPI_FOREIGN, FG_MPI_PMIX when one was seen) or what
 * could not be read (FG_MPI_PMIX otherwise); family the MPI's name for FG_MPI_FOREIGN. */
enum fg_mpi_link fg_mpi_link_of(const char *path, char *lib, size_t liblen,
                                const char **family);

#endif
