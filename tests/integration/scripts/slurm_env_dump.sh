#!/bin/sh
# A rank under fgrun, srun or mpirun: writes its environment, plus HOSTNAME_SEEN (the node
# it runs on), to $FG_TEST_DIR/env.<rank>, NUL-separated.
rank=${RANK:-${OMPI_COMM_WORLD_RANK:-$SLURM_PROCID}}
HOSTNAME_SEEN=$(hostname) env -0 > "$FG_TEST_DIR/env.$rank"
