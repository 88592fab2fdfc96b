#!/bin/sh
# One line on stdout and one on stderr per rank.
echo "out from rank $RANK"
echo "err from rank $RANK" >&2
