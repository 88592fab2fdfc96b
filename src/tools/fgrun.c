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
#include "launcher/nproc.h"
#include "launcher/options.h"
#include "launcher/program.h"

static int check_ranks_filter(const fg_launch_opts *o, char *err, size_t errlen) {
  for (int i = 0; i < o->nranks_filter; i++)
    if (o->ranks_filter[i] >= o->nproc) {
      snprintf(err, errlen, "--local_ranks_filter: local rank %d does not exist "
               "(--nproc_per_node is %d)", o->ranks_filter[i], o->nproc);
      return -1;
    }
  return 0;
}

int main(int argc, char **argv) {
  fg_log_set_program("fgrun");
  /* A reader of our stdout going away must not kill the job; writes then fail with EPIPE. */
  signal(SIGPIPE, SIG_IGN);
  fg_raise_nofile(); /* the agent's store holds a connection or two per worker */

  fg_launch_opts opts;
  char err[1024];
  char self_dir[PATH_MAX], helper[PATH_MAX];
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
    printf("fgrun %s (torchrun 1.13 compatible)\n", FG_VERSION);
    status = 0;
    goto out;
  }
  fg_log_set_level((enum fg_log_level)fg_log_level_parse(opts.log_level));
  if (fg_resolve_nproc(&opts, err, sizeof err) != 0) goto usage_error;
  if (check_ranks_filter(&opts, err, sizeof err) != 0) goto usage_error;
  if (fg_self_dir(self_dir, sizeof self_dir) != 0) snprintf(self_dir, sizeof self_dir, ".");
  if (fg_find_helper(self_dir, "fgrun-exec", helper, sizeof helper) != 0) {
    snprintf(err, sizeof err, "%.900s is missing (it belongs next to fgrun, or in "
             "../libexec/fgrun/)", helper);
    goto usage_error;
  }
  if (fg_program_resolve(&opts, self_dir, &prog, err, sizeof err) != 0) goto usage_error;

  fg_agent_config cfg = {.opts = &opts, .program = &prog, .exec_helper = helper};
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
