#!/bin/sh
# Records the restart count; rank 1 fails in attempts 0 and 1 (once every rank has
# recorded the attempt) and succeeds in attempt 2.
echo "$TORCHELASTIC_RESTART_COUNT" >> "$FG_TEST_DIR/attempts.$RANK"
if [ "$RANK" = 1 ] && [ "$TORCHELASTIC_RESTART_COUNT" -lt 2 ]; then
  r=0
  while [ $r -lt "$WORLD_SIZE" ]; do
    while [ "$(grep -c "^$TORCHELASTIC_RESTART_COUNT\$" "$FG_TEST_DIR/attempts.$r" 2>/dev/null)" != 1 ]; do
      sleep 0.01
    done
    r=$((r + 1))
  done
  exit 9
fi
[ "$TORCHELASTIC_RESTART_COUNT" -lt 2 ] && sleep 100
exit 0
