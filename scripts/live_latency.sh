#!/usr/bin/env bash
# Live end-to-end latency of `lookout run` (release build) with real ROS 2 peers: an rclpy node
# publishes bus.jpg scaled to WIDTHxHEIGHT as sensor_msgs/Image bgr8 at RATE Hz for DURATION s,
# stamped just before publishing; an rclpy subscriber takes the Detection2DArray and records
# receive time - header stamp. Prints latency percentiles and lookout's per-stage means.
#
# Usage: scripts/live_latency.sh [WIDTHxHEIGHT] [RATE] [DURATION]     (default 1920x1080 10 30)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
size=${1:-1920x1080}; rate=${2:-10}; duration=${3:-30}
scripts/setup.sh >/dev/null
# shellcheck source=/dev/null
source "${LOOKOUT_HOME:-$repo/.lookout}/env.sh"
cargo build --release --quiet
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-93}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
w=${size%x*}; h=${size#*x}
cat >"$work/params.yaml" <<YAML
/**:
  ros__parameters:
    engine: {execution_providers: [cpu]}
    cameras: [front]
    camera:
      front: {topic: /camera/image_raw, max_width: $w, max_height: $h}
YAML
target/release/lookout run --params-file "$work/params.yaml" 2>"$work/lookout.log" &
pid=$!
for _ in $(seq 600); do grep -q "lookout running" "$work/lookout.log" && break; sleep 0.1; done
"$LOOKOUT_PYTHON" tests/ros/peer.py --pub "/camera/image_raw,image,$LOOKOUT_HOME/data/images/bus.jpg@$size,bgr8" \
  --sub /front/detections --rate "$rate" --duration "$duration" --out "$work/peer.json"
kill -INT "$pid"; wait "$pid"
"$LOOKOUT_PYTHON" - "$work/peer.json" "$size" "$rate" <<'PY'
import json, sys
import numpy as np
d = json.load(open(sys.argv[1]))
lat = np.array([r["latency_ms"] for r in d["received"]])
pub = sum(len(v) for v in d["published"].values())
print(f"live latency, {sys.argv[2]} bgr8 at {sys.argv[3]} Hz: {len(lat)}/{pub} frames came back")
print("publish->receive ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f  mean %.1f" % (
    np.percentile(lat, 50), np.percentile(lat, 90), np.percentile(lat, 99), lat.max(), lat.mean()))
PY
grep "lookout: summary" "$work/lookout.log"
