#!/usr/bin/env bash
# The main job on a fresh machine: set-up (which builds the vtest bag from OpenCV's pedestrian
# video), release build, then `lookout replay` of that bag with the default model on the CPU.
# Writes the detections bag and report to $LOOKOUT_HOME/runs/vtest_lookout and prints the
# report summary.
#
# Usage: scripts/demo.sh [extra `lookout replay` args, e.g. --json, --rate 1, --copy-all]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
scripts/setup.sh --bags
# shellcheck source=/dev/null
source "${LOOKOUT_HOME:-$repo/.lookout}/env.sh"
cargo build --release --quiet
mkdir -p "$LOOKOUT_HOME/runs"
exec target/release/lookout replay "$LOOKOUT_HOME/data/bags/vtest" \
  --out "$LOOKOUT_HOME/runs/vtest_lookout" --force --execution-providers cpu "$@"
