#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set-up, format check, clippy (warnings are errors),
# unit + integration tests (the real model on real images, allocation test, CLI errors,
# conversion determinism, the live ROS 2 tests against rclpy), then short fuzz runs.
#
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
scripts/setup.sh
# shellcheck source=/dev/null
source "${LOOKOUT_HOME:-$repo/.lookout}/env.sh"

echo "test: cargo fmt --check"
cargo fmt --all -- --check
echo "test: pyflakes (the Python of fleet/, scripts/, benches/compare/, fuzz/, tests/ros/)"
"$LOOKOUT_PYTHON" -m pyflakes fleet/lookout_fleet scripts/*.py benches/compare/*.py fuzz/*.py tests/ros/*.py
echo "test: cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "test: cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --all-targets "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary.
passed=$(grep -oE '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -oE '[0-9]+ failed;' "$log" | awk '{s += $1} END {print s + 0}')
echo "tests: $passed passed, $failed failed"
# Short fuzz runs of every parser of untrusted input (LOOKOUT_FUZZ_SECONDS each, default 20;
# 0 skips them). The first run builds the targets with the sanitizer (about 11 minutes on 2 cores).
fuzz_status=0
if [ "${LOOKOUT_FUZZ_SECONDS:-20}" != 0 ]; then
  echo "test: scripts/fuzz.sh ${LOOKOUT_FUZZ_SECONDS:-20}"
  scripts/fuzz.sh "${LOOKOUT_FUZZ_SECONDS:-20}" || fuzz_status=$?
fi
if [ "$status" = 0 ]; then
  status=$fuzz_status
fi
exit "$status"
