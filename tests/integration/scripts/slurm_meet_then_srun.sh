#!/bin/bash
# A batch script: waits until MEET_COUNT jobs (this one included) have started, each
# leaving its id in MEET_DIR, so they run at the same time; then runs its arguments under
# srun. The job's status is srun's.
touch "$MEET_DIR/meet.$SLURM_JOB_ID"
for _ in $(seq 600); do
    [ "$(ls "$MEET_DIR" | grep -c '^meet\.')" -ge "$MEET_COUNT" ] && break
    sleep 0.1
done
echo "both jobs running: $(cd "$MEET_DIR" && ls meet.* | tr '\n' ' ')"
exec srun "$@"
