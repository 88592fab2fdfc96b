/* fgrun - a torchrun-compatible launcher: fgrun [options] PROGRAM|SCENARIO [args...]
 *
 * Everything that can be wrong with the command line is found here, before the store
 * listens or any worker starts, and ends with one "fgrun: error: ..." line and status 2. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/util.h"
#include "fg/fg.h"
#include "launcher/agent.h"
#include "launcher/mpi_abi.h"
#include "launcher/nproc.h"
#include "launcher/options.h"
#include "launcher/program.h"
#include "launcher/slurm.h"

static int check_ranks_filter(const fg_launch_opts *o, char *err, size_t errlen) {
  for (int i = 0; i < o->nranks_filter; i++)
    if (o->ranks_filter[i] >= o->nproc) {
      snprintf(err, errlen, "--local_ranks_filter: local rank %d does not exist "
               "(--nproc_per_node is %d)", o->ranks_filter[i], o->nproc);
      return -1;
    }
  return 0;
}

#if defined(__SANITIZE_ADDRESS__)
/* Under AddressSanitizer (make asan): libpmix keeps part of what PMIx_server_init allocates
 * past PMIx_server_finalize. LeakSanitizer asks the program for its default suppressions,
 * by a dynamic lookup: visible despite -fvisibility=hidden. */
#define FG_SAN_HOOK __attribute__((visibility("default")))
FG_SAN_HOOK const char *__lsan_default_suppressions(void);
FG_SAN_HOOK const char *__lsan_default_suppressions(void) { return "leak:libpmix.so\n"; }
FG_SAN_HOOK const char *__lsan_default_options(void);
FG_SAN_HOOK const char *__lsan_default_options(void) { return "print_suppressions=0"; }
#endif

/* An MPICH-family program would start as one single-rank world per rank. (One that links
 * no MPI still gets the server: it may be a shell or another wrapper of an MPI program.) */
static int check_mpi(const fg_launch_opts *o, const fg_program *prog, char *err,
                     size_t errlen) {
  char lib[256];
  const char *family = "";
  if (o->pmix == FG_PMIX_OFF || prog->uses_python) return 0;
  if ((long)o->nproc * o->nnodes_max > 1 &&
      fg_mpi_link_of(prog->path, lib, sizeof lib, &family) == FG_MPI_FOREIGN) {
    snprintf(err, errlen, "%.300s is linked with %s (%s), whose ranks do not use PMIx: under "
             "fgrun each would be rank 0 of a world of 1. Start it with that MPI's own "
             "launcher (mpiexec.mpich), or pass --pmix off to run it anyway", prog->path, lib,
             family);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  fg__log_set_program("fgrun");
  /* A reader of our stdout going away must not kill the job; writes then fail with EPIPE. */
  signal(SIGPIPE, SIG_IGN);
  fg__raise_nofile(); /* the store holds a connection or two per worker; workers inherit it */

  fg_launch_opts opts;
  char err[1024];
  char self_dir[PATH_MAX];
  fg_program prog = {0};
  int status = 2;
  if (fg_opts_parse(&opts, argc, argv, err, sizeof err) != 0) goto usage_error;
  /* Workers, and this process's own store clients, present it (libfg reads the variable). */
  if (opts.store_token) setenv("FG_STORE_TOKEN", opts.store_token, 1);
  if (opts.show_help) {
    fg_opts_usage(1);
    status = 0;
    goto out;
  }
  if (opts.show_version) {
    printf("fgrun %s (torchrun 2.6 and 1.13 compatible)\n", FG_VERSION);
    status = 0;
    goto out;
  }
  fg__log_set_level((enum fg_log_level)fg__log_level_parse(opts.log_level));
  if (fg_resolve_nproc(&opts, err, sizeof err) != 0) goto usage_error;
  if (check_ranks_filter(&opts, err, sizeof err) != 0) goto usage_error;
  if (fg_launch_check_slurm(&opts, err, sizeof err) != 0) goto usage_error;
  if (fg_self_dir(self_dir, sizeof self_dir) != 0) snprintf(self_dir, sizeof self_dir, ".");
  if (fg_program_resolve(&opts, self_dir, &prog, err, sizeof err) != 0) goto usage_error;
  if (check_mpi(&opts, &prog, err, sizeof err) != 0) goto usage_error;

  /* Hang reports' helpers: without them the reports lack stacks, with a word why. */
  char stacker[PATH_MAX], pyhook[PATH_MAX];
  int have_stacker = fg_find_helper(self_dir, "fgrun-stack", stacker, sizeof stacker) == 0;
  int have_pyhook = fg_find_helper_dir(self_dir, "fgrun-pyhook", pyhook, sizeof pyhook) == 0;
  if (opts.hang_timeout > 0 && !have_stacker)
    fg_warn("%s is missing: hang reports will show no stacks", stacker);
  if (opts.hang_timeout > 0 && !have_pyhook)
    fg_warn("%s is missing: hang reports will show no Python tracebacks", pyhook);

  fg_agent_config cfg = {.opts = &opts, .program = &prog,
                         .stack_helper = have_stacker ? stacker : NULL,
                         .pyhook_dir = have_pyhook ? pyhook : NULL};
  status = fg_agent_run(&cfg);
  goto out;

usage_error:
  fg_error("error: %s", err);
  status = 2;
out:
  fg_program_free(&prog);
  fg_opts_free(&opts);
  return status;
}
