/* slurm.c - fgrun as a srun task. torchrun's model is one agent per node, each starting that
 * node's workers; `srun -N2 --ntasks-per-node=4 fgrun ...` (or a forgotten --nnodes) starts
 * more agents than the rendezvous takes, which either hang as spares or, with the static
 * rendezvous, each run a world of their own. Refused before anything listens or starts. */
#include "launcher/slurm.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/slurm.h"
#include "common/util.h"

static int env_count(const char *name, int *out) {
  const char *v = getenv(name);
  return v && fg__parse_int(v, 1, 1 << 24, out) == 0 ? 0 : -1;
}

int fg_launch_check_slurm(const fg_launch_opts *o, char *err, size_t errlen) {
  int tasks, nodes = 0;
  const char *var = "SLURM_STEP_NUM_TASKS";
  if (!fg__slurm_in_step()) return 0;
  if (env_count(var, &tasks) != 0 && env_count(var = "SLURM_NTASKS", &tasks) != 0) return 0;
  if (tasks <= o->nnodes_max) return 0;
  char where[64] = "";
  if (env_count("SLURM_STEP_NUM_NODES", &nodes) == 0)
    snprintf(where, sizeof where, " on %d node%s", nodes, nodes == 1 ? "" : "s");
  char nnodes[48];
  if (o->nnodes_min == o->nnodes_max)
    snprintf(nnodes, sizeof nnodes, "--nnodes %d", o->nnodes_max);
  else
    snprintf(nnodes, sizeof nnodes, "--nnodes %d:%d", o->nnodes_min, o->nnodes_max);
  snprintf(err, errlen,
           "srun started %d fgrun agents%s (%s=%d) but %s takes at most %d: fgrun starts a "
           "node's workers itself (--nproc_per_node), so run one per node (srun "
           "--ntasks-per-node=1) with --nnodes set to the number of nodes",
           tasks, where, var, tasks, nnodes, o->nnodes_max);
  return -1;
}
