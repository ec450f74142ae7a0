#!/usr/bin/env bash
# Soak test of the live node: `lookout run` (release build) for MINUTES against an rclpy peer
# publishing bus.jpg as WIDTHxHEIGHT bgr8 sensor_msgs/Image at RATE Hz and subscribing to the
# detections. Samples the node's resident memory, open file descriptors and threads every 5 s,
# and prints start and end figures side by side: those (start = 30 s in, after warm-up), and
# the publish->receive latency percentiles of the first and the last 10 % of frames. A leak
# shows as an end figure above the start one. Not part of the test suite.
#
# Usage: scripts/soak.sh MINUTES [WIDTHxHEIGHT] [RATE]       (default 1280x720 10)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
minutes=${1:?usage: scripts/soak.sh MINUTES [WIDTHxHEIGHT] [RATE]}
size=${2:-1280x720}; rate=${3:-10}
scripts/setup.sh >/dev/null
# shellcheck source=/dev/null
source "${LOOKOUT_HOME:-$repo/.lookout}/env.sh"
cargo build --release --quiet
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-95}
work=$(mktemp -d /tmp/lookout-soak.XXXXXX)
sampler=""
cleanup() { [ -n "$sampler" ] && kill "$sampler" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
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
grep -q "lookout running" "$work/lookout.log" || { cat "$work/lookout.log"; exit 1; }
# Every 5 s: seconds since start, RSS (kB), open file descriptors, threads.
(
  t0=$(date +%s)
  while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    threads=$(awk '/^Threads/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
    echo "$(( $(date +%s) - t0 )) $rss $fds $threads" >>"$work/samples.txt"
    sleep 5
  done
) &
sampler=$!
echo "soak: $minutes min, $size bgr8 at $rate Hz (node pid $pid)"
"$LOOKOUT_PYTHON" tests/ros/peer.py --pub "/camera/image_raw,image,$LOOKOUT_HOME/data/images/bus.jpg@$size,bgr8" \
  --sub /front/detections --rate "$rate" --duration "$((minutes * 60))" --out "$work/peer.json" >/dev/null
kill -INT "$pid"; status=0; wait "$pid" || status=$?
kill "$sampler" 2>/dev/null || true; sampler=""
"$LOOKOUT_PYTHON" - "$work/peer.json" "$work/samples.txt" <<'PY'
import json, sys
import numpy as np
peer = json.load(open(sys.argv[1]))
rows = [tuple(map(int, l.split())) for l in open(sys.argv[2]) if l.strip()]
start = next((r for r in rows if r[0] >= 30), rows[0])
end = rows[-1]
got = sorted(peer["received"], key=lambda r: r["stamp_ns"])
pub = sum(len(v) for v in peer["published"].values())
k = max(1, len(got) // 10)
first = np.array([r["latency_ms"] for r in got[:k]])
last = np.array([r["latency_ms"] for r in got[-k:]])
print(f"frames: {pub} published, {len(got)} came back")
print(f"{'':28s}{'start':>12s}{'end':>12s}")
print(f"{'at second':28s}{start[0]:>12d}{end[0]:>12d}")
print(f"{'RSS (MB)':28s}{start[1] / 1024:>12.1f}{end[1] / 1024:>12.1f}")
print(f"{'open file descriptors':28s}{start[2]:>12d}{end[2]:>12d}")
print(f"{'threads':28s}{start[3]:>12d}{end[3]:>12d}")
for q in (50, 90, 99):
    print(f"{f'latency p{q} (ms, {k} frames)':28s}{np.percentile(first, q):>12.1f}{np.percentile(last, q):>12.1f}")
print(f"{'latency max (ms)':28s}{first.max():>12.1f}{last.max():>12.1f}")
PY
grep "lookout: summary" "$work/lookout.log" | sed 's/ preprocess_ms_mean.*//'
exit "$status"
