/* slurm.h - fgrun started by srun: what the step says must fit fgrun's own options. */
#ifndef FG_LAUNCHER_SLURM_H
#define FG_LAUNCHER_SLURM_H

#include <stddef.h>

#include "launcher/options.h"

/* Outside a srun step, or in one whose task count --nnodes admits: 0. Else -1 and err says
 * which variable and option disagree (srun started more fgrun agents than --nnodes takes:
 * each would start its own workers, as one world or several, never the job asked for). */
int fg_launch_check_slurm(const fg_launch_opts *o, char *err, size_t errlen);

#endif
