#!/usr/bin/env bash
# Inference shares of two overloaded cameras, in `lookout replay --rate 1` and in the live node
# (`lookout run` fed by tests/ros/bag_player.py, rclpy), on the same bag. Builds the bags with
# scripts/make_two_camera_bag.py from vtest_hd (front 1280x720 and left 640x272 at 15 Hz each,
# left stamped 20 ms later; and a copy whose left camera stamps 0), then prints frames processed
# per camera for each bag and front:left weights.
#
# Usage: scripts/camera_shares.sh [WEIGHT_FRONT WEIGHT_LEFT]   (default 1 1)
# Environment: LOOKOUT_BIN overrides the binary (default: target/release/lookout, built here);
# SHARES_LIVE=0 skips the live runs.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
wf=${1:-1}; wl=${2:-1}
# shellcheck source=/dev/null
source "${LOOKOUT_HOME:-$repo/.lookout}/env.sh"
bin=${LOOKOUT_BIN:-}
if [[ -z $bin ]]; then
  cargo build --release --quiet
  bin=$repo/target/release/lookout
fi
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-94}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$LOOKOUT_HOME/data/bags/vtest_hd
[[ -d $src ]] || { echo "run scripts/setup.sh --bags first" >&2; exit 2; }
"$LOOKOUT_PYTHON" scripts/make_two_camera_bag.py "$src" "$work/offset" > /dev/null
"$LOOKOUT_PYTHON" scripts/make_two_camera_bag.py "$src" "$work/zero" --left-stamp zero > /dev/null
weights=""
if [[ $wf != 1 || $wl != 1 ]]; then weights="weight: $wf, "; fi
cat > "$work/params.yaml" <<YAML
/**:
  ros__parameters:
    engine: {execution_providers: [cpu]}
    cameras: [front, left]
    camera:
      front: {${weights}topic: /front/image_raw, max_width: 1280, max_height: 720}
      left: {${weights:+weight: $wl, }topic: /left/image_raw, max_width: 1280, max_height: 720}
YAML
echo "weights front:left $wf:$wl; frames processed of 150 per camera"
for bag in offset zero; do
  "$bin" replay "$work/$bag" --params-file "$work/params.yaml" --rate 1 --out "$work/out" --force \
    --no-diagnostics 2>/dev/null | awk -v b="$bag" '/^camera/ {c[$2]=$5} END {printf "replay --rate 1, left stamps %-6s front %s  left %s\n", b, c["front:"], c["left:"]}'
  [[ ${SHARES_LIVE:-1} == 0 ]] && continue
  "$bin" run --params-file "$work/params.yaml" 2>"$work/lookout.log" &
  pid=$!
  for _ in $(seq 600); do grep -q "lookout running" "$work/lookout.log" && break; sleep 0.1; done
  "$LOOKOUT_PYTHON" tests/ros/bag_player.py "$work/$bag" --sub /front/detections --sub /left/detections \
    --linger 2 --out "$work/live.json" > /dev/null
  kill -INT "$pid"; wait "$pid" || true
  "$LOOKOUT_PYTHON" - "$work/live.json" "$bag" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
n = {t: sum(1 for r in d["received"] if r["topic"] == t) for t in ("/front/detections", "/left/detections")}
print(f"live (rclpy player),  left stamps {sys.argv[2]:<6} front {n['/front/detections']}  left {n['/left/detections']}")
PY
done
