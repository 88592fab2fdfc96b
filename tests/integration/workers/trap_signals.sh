#!/bin/sh
# Records which signal reached it in $FG_TEST_DIR/got.<RANK>, then exits 0, after
# FG_TRAP_LINGER seconds (default 0): where Slurm signals the workers and fgrun at once, a
# worker that lingers leaves fgrun time to see its own signal while the worker still runs.
for sig in INT TERM HUP QUIT USR1; do
  trap "echo $sig > \"$FG_TEST_DIR/got.\$RANK\"; sleep ${FG_TRAP_LINGER:-0}; exit 0" $sig
done
echo $$ > "$FG_TEST_DIR/ready.$RANK"
while :; do sleep 0.05; done
