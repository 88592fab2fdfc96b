#!/bin/sh
# Writes this worker's environment to $FG_TEST_DIR/env.<RANK>, NUL-separated.
env -0 > "$FG_TEST_DIR/env.$RANK"
