#!/bin/sh
# Records which signal reached it in $FG_TEST_DIR/got.<RANK>, then exits 0.
for sig in INT TERM HUP QUIT USR1; do
  trap "echo $sig > \"$FG_TEST_DIR/got.\$RANK\"; exit 0" $sig
done
echo $$ > "$FG_TEST_DIR/ready.$RANK"
while :; do sleep 0.05; done
