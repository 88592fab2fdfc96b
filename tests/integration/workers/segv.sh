#!/bin/sh
# Rank 1 dies by SIGSEGV; the others wait to be stopped.
if [ "$RANK" = 1 ]; then kill -SEGV $$; fi
sleep 100
