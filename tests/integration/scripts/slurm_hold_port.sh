#!/bin/bash
# A batch script: holds, on the first node, the port libfg derives for this job (15000 +
# SLURM_JOB_ID % 10000) with a listener that never answers, then runs its arguments under
# srun. The job's status is srun's.
port=$((15000 + SLURM_JOB_ID % 10000))
ready=$(mktemp -u)
python3 -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
open(sys.argv[2], "w").close()
time.sleep(300)' "$port" "$ready" &
holder=$!
while [ ! -e "$ready" ]; do sleep 0.02; done
rm -f "$ready"
echo "holding port $port on $(hostname)"
srun "$@"
rc=$?
kill "$holder"
exit $rc
