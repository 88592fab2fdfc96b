#!/bin/sh
# Rank 0 fails at once; every other rank ignores SIGTERM, so only SIGKILL stops it.
trap '' TERM
echo $$ > "$FG_TEST_DIR/worker.$RANK"
if [ "$RANK" = 0 ]; then
  # wait until the others have set their trap
  while [ "$(ls "$FG_TEST_DIR" | grep -c '^worker\.')" -lt "$WORLD_SIZE" ]; do sleep 0.02; done
  date +%s.%N > "$FG_TEST_DIR/failed_at"
  exit 1
fi
while :; do sleep 0.05; done
