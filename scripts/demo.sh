#!/usr/bin/env bash
# The main job on a fresh machine: set-up, release build, then the default model (CPU) on the
# test images. (Bag replay replaces this when `lookout replay` lands.)
#
# Usage: scripts/demo.sh [extra `lookout detect` args, e.g. --json]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
scripts/setup.sh
# shellcheck source=/dev/null
source "${LOOKOUT_HOME:-$repo/.lookout}/env.sh"
cargo build --release --quiet
images=$LOOKOUT_HOME/data/images
exec target/release/lookout detect --execution-providers cpu "$@" "$images/bus.jpg" "$images/dog.jpg" "$images/person.jpg"
