#!/bin/sh
# Leaves a mark: used to prove that no worker started.
touch "$FG_TEST_DIR/started.$RANK"
