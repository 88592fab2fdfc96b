#!/bin/sh
# A srun task: writes "RANK HOST LOCALID TASKS_ON_NODE" to $1/layout.$SLURM_PROCID.
echo "$SLURM_PROCID $(hostname) $SLURM_LOCALID $SLURM_STEP_TASKS_PER_NODE" > "$1/layout.$SLURM_PROCID"
