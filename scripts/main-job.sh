#!/usr/bin/env bash
# The main job: all four scenarios on 4 ranks over gloo, under fgrun.
set -euo pipefail
build=${1:-build}
exec "$build/bin/fgrun" --standalone --nproc_per_node=4 all --backend gloo
