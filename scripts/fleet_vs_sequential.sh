#!/usr/bin/env bash
# Wall time of a fleet replay on local Ray against a plain sequential loop of `lookout replay`
# over the same bags, one run after the other on this machine (the README's fleet figures).
#
# Usage: scripts/fleet_vs_sequential.sh BAG_LIST PARAMS_FILE OUT_ROOT [lookout-fleet args...]
#   BAG_LIST: one bag per line. Writes OUT_ROOT/sequential/<n>/ and OUT_ROOT/fleet/.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
list=$1 params=$2 root=$3
shift 3
# shellcheck source=/dev/null
source "${LOOKOUT_HOME:-$repo/.lookout}/env.sh"
lookout=$repo/target/release/lookout
rm -rf "$root/sequential" "$root/fleet"
mkdir -p "$root/sequential"
mapfile -t bags < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$list")
start=$(date +%s%N)
i=0
for bag in "${bags[@]}"; do
  i=$((i + 1))
  "$lookout" replay "$bag" --params-file "$params" --out "$root/sequential/$i" --no-diagnostics >/dev/null 2>&1 ||
    echo "sequential: $bag failed (exit $?)"
done
seq_ms=$((($(date +%s%N) - start) / 1000000))
start=$(date +%s%N)
"$LOOKOUT_FLEET" replay --bag-list "$list" --params-file "$params" --out "$root/fleet" \
  --lookout "$lookout" "$@" || echo "fleet: exit $?"
fleet_ms=$((($(date +%s%N) - start) / 1000000))
frames=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['totals']['frames_processed'])" "$root/fleet/fleet_report.json")
python3 -c 'import sys; b, f, s, l = map(int, sys.argv[1:]); print(f"bags {b}, frames {f}: sequential lookout replay {s / 1e3:.1f} s, lookout-fleet (local Ray) {l / 1e3:.1f} s, ratio {l / s:.2f}")' \
  "${#bags[@]}" "$frames" "$seq_ms" "$fleet_ms"
