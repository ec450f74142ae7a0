#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for SECONDS each (default 30) from its committed seed
# corpus (fuzz/corpus/<target>/, see fuzz/make_seeds.py); new inputs libFuzzer finds go to
# $LOOKOUT_HOME/fuzz/corpus/<target>/ (not the repository), crashes to fuzz/artifacts/<target>/.
# Needs the nightly toolchain; installs cargo-fuzz when missing. Exit status 1 if any target
# crashed: its input is printed and kept, to become a regression test.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
seconds=${1:-30}
shift || true
home=${LOOKOUT_HOME:-$repo/.lookout}
# The fuzz targets use the library without ROS: the ROS link flags of .lookout/env.sh would only
# change the build's fingerprint (a full rebuild, about 11 minutes on 2 cores).
unset RUSTFLAGS RUSTDOCFLAGS
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi
# The sanitizer (ASan) build of the library, optimised.
(cd fuzz && cargo +nightly fuzz build -O)
status=0
for t in "${targets[@]}"; do
  work="$home/fuzz/corpus/$t"
  mkdir -p "$work"
  rm -rf "fuzz/artifacts/$t"
  echo "fuzz: $t for ${seconds}s"
  log="$home/fuzz/$t.log"
  rc=0
  (cd fuzz && cargo +nightly fuzz run -O "$t" "$work" "corpus/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 -print_final_stats=1) \
      >"$log" 2>&1 || rc=$?
  grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY|Test unit written)" "$log" || true
  if [ "$rc" != 0 ]; then
    echo "fuzz: $t FAILED (exit status $rc; log $log; inputs: $(ls fuzz/artifacts/"$t"/ 2>/dev/null | tr '\n' ' '))"
    tail -40 "$log"
    status=1
  fi
done
exit "$status"
