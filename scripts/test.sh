#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set-up, format check, clippy (warnings are errors),
# unit + integration tests (the real model on real images, allocation test, CLI errors,
# conversion determinism; later the live ROS 2 tests against rclpy).
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
echo "test: cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "test: cargo test"
cargo test --all-targets "$@"
# Doc tests are not covered by --all-targets.
cargo test --doc --quiet
