#!/bin/sh
# A worker with a child of its own: writes both pids, then sleeps. Rank $FAIL_RANK
# (if set) exits with $FAIL_CODE after $FAIL_AFTER seconds instead.
sleep 100 &
echo $! > "$FG_TEST_DIR/child.$RANK"
echo $$ > "$FG_TEST_DIR/worker.$RANK"
if [ "$RANK" = "${FAIL_RANK:-none}" ]; then
  sleep "$FAIL_AFTER"
  date +%s.%N > "$FG_TEST_DIR/failed_at"
  echo "rank $RANK giving up" >&2
  exit "$FAIL_CODE"
fi
sleep 100
