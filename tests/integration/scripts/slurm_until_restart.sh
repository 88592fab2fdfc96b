#!/bin/sh
# A worker that waits to be lost: in attempt 0 it writes its pid and sleeps; in a later
# attempt it exits 0 at once. Every start appends "RANK HOST RESTART WORLD_SIZE" to
# $FG_TEST_DIR/attempts.
echo "$RANK $(hostname) $TORCHELASTIC_RESTART_COUNT $WORLD_SIZE" >> "$FG_TEST_DIR/attempts"
[ "$TORCHELASTIC_RESTART_COUNT" -ge 1 ] && exit 0
echo $$ > "$FG_TEST_DIR/worker.$RANK"
exec sleep 100
