/* slurm.h - what Slurm tells the processes srun starts, read in one place for libfg (ranks
 * srun started) and fgrun (agents srun started): the step's node list in Slurm's hostlist
 * syntax, its tasks per node in Slurm's compressed list syntax, and the job id. */
#ifndef FG_COMMON_SLURM_H
#define FG_COMMON_SLURM_H

#include <stddef.h>

/* The store port srun ranks derive from the job id when MASTER_PORT is not set:
 * FG_SLURM_PORT_BASE + SLURM_JOB_ID % FG_SLURM_PORT_SPAN, 15000-24999 (as PyTorch Lightning
 * derives it), below Linux's ephemeral ports; two jobs collide only when their ids agree in
 * the last four digits. */
#define FG_SLURM_PORT_BASE 15000
#define FG_SLURM_PORT_SPAN 10000

/* 1 in a job step srun started (SLURM_STEP_ID is set), 0 elsewhere: a batch script or
 * salloc's shell sees the job's SLURM_NTASKS and SLURM_PROCID=0 but is one process. */
int fg__slurm_in_step(void);

/* The first host of a hostlist ("gpu[03-05,9],cpu1" -> "gpu03", "r[1-2]n[4-5]" -> "r1n4").
 * Returns 0, or -EINVAL for a malformed list or -ENAMETOOLONG when host is too small. */
int fg__slurm_first_host(const char *hostlist, char *host, size_t len);

/* The count for node `node` (0-based) of a compressed list ("2(x3),1": nodes 0-2 run 2, node
 * 3 runs 1). Returns 0, -EINVAL for a malformed list, -ERANGE when node is beyond it. */
int fg__slurm_count_on_node(const char *list, int node, int *count);

/* The port for job id text ("4242" -> 19242). Returns 0 or -EINVAL. */
int fg__slurm_job_port(const char *job_id, int *port);

#endif
