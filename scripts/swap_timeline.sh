#!/usr/bin/env bash
# A hot model swap's timeline on `lookout run` (release build) under a live stream: an rclpy
# peer publishes bus.jpg as CompressedImage at RATE Hz (120 frames), replaces the parameters
# file with the batch package's and sends SIGHUP after frame 30, then with a corrupt package's
# after frame 75. Prints the node's swap log lines and, per window (before the first SIGHUP,
# from it to the swap, after the swap, after the refusal), the frames back, their latency
# (publish -> receive) and the frames over the camera's budget.
#
# Usage: scripts/swap_timeline.sh [BUDGET_MS] [RATE]        (default 200 15)
#        LOOKOUT_BIN=path/to/lookout runs another build (an older commit, side by side)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
budget=${1:-200}; rate=${2:-15}
scripts/setup.sh >/dev/null
# shellcheck source=/dev/null
source "${LOOKOUT_HOME:-$repo/.lookout}/env.sh"
cargo build --release --quiet
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-94}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/corrupt"
cp models/yolov3-tiny/manifest.yaml "$work/corrupt/"
onnx=models/yolov3-tiny/yolov3-tiny.onnx
head -c $(($(stat -c %s "$onnx") / 2)) "$onnx" >"$work/corrupt/yolov3-tiny.onnx"
params_for() { # params_for MODEL FILE
  cat >"$2" <<YAML
/**:
  ros__parameters:
    model: $1
    engine: {execution_providers: [cpu]}
    monitor: {input_health: {frozen_frames: 100000}}
    diagnostics: {period_ms: 250.0}
    cameras: [front]
    camera:
      front: {topic: /cam/compressed, type: compressed, budget_ms: $budget, ring_capacity: 64, qos: {reliability: reliable}, queue_policy: fifo}
YAML
}
params_for "$repo/models/yolov3-tiny/manifest.yaml" "$work/params.yaml"
params_for "$repo/models/yolov3-tiny-batch/manifest.yaml" "$work/second.yaml"
params_for "$work/corrupt/manifest.yaml" "$work/third.yaml"
grep '^cpu ' /proc/stat >"$work/stat0"
NO_COLOR=1 "${LOOKOUT_BIN:-target/release/lookout}" run --params-file "$work/params.yaml" 2>"$work/lookout.log" &
pid=$!
for _ in $(seq 600); do grep -q "lookout running" "$work/lookout.log" && break; sleep 0.1; done
"$LOOKOUT_PYTHON" tests/ros/peer.py --pub "/cam/compressed,compressed,$LOOKOUT_HOME/data/images/bus.jpg" \
  --sub /front/detections --rate "$rate" --count 120 --diagnostics --linger 10 \
  --exec "30:cp $work/second.yaml $work/params.yaml && date +%s.%N >$work/hup1 && kill -HUP $pid" \
  --exec "75:cp $work/third.yaml $work/params.yaml && date +%s.%N >$work/hup2 && kill -HUP $pid" \
  --out "$work/peer.json"
kill -INT "$pid"; wait "$pid"
grep '^cpu ' /proc/stat >"$work/stat1"
grep -E "^[0-9].*(SIGHUP|model swapped|model refused)" "$work/lookout.log" | sed -E 's/ (old_)?sha256=([0-9a-f]{8})[0-9a-f]+/ \1sha256=\2…/g' | cut -c1-300 || true
"$LOOKOUT_PYTHON" - "$work" "$budget" <<'PY'
import datetime, json, re, sys
import numpy as np
work, budget = sys.argv[1], float(sys.argv[2])
d = json.load(open(f"{work}/peer.json"))
hup1 = float(open(f"{work}/hup1").read()) * 1e9
hup2 = float(open(f"{work}/hup2").read()) * 1e9
swap = None
for line in open(f"{work}/lookout.log"):
    if "model swapped" in line and not line.startswith("["):
        t = line.split()[0].rstrip("Z")
        swap = datetime.datetime.fromisoformat(t[:26]).replace(tzinfo=datetime.timezone.utc).timestamp() * 1e9
        load_ms = float(re.search(r"load_ms=([0-9.]+)", line).group(1))
recv = {r["stamp_ns"]: r["latency_ms"] for r in d["received"]}
pub = [p["stamp_ns"] for p in d["published"]["/cam/compressed"]]
print(f"{len(recv)}/{len(pub)} frames came back; budget {budget:.0f} ms; swap load_ms {load_ms:.0f}; "
      f"SIGHUP to swap {(swap - hup1) / 1e6:.0f} ms")
windows = [("before the SIGHUP", 0, hup1), ("SIGHUP to swap", hup1, swap),
           ("after the swap", swap, hup2), ("after the refusal", hup2, float("inf"))]
print(f"{'window':<20} {'frames':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'over budget':>11}")
for name, lo, hi in windows:
    lat = np.array([recv[s] for s in pub if lo <= s < hi and s in recv])
    if len(lat) == 0:
        print(f"{name:<20} {0:>6}")
        continue
    print(f"{name:<20} {len(lat):>6} {np.percentile(lat, 50):>7.1f} {np.percentile(lat, 99):>7.1f} "
          f"{lat.max():>7.1f} {int((lat > budget).sum()):>11}")
shas = [s["values"].get("model_sha256", "")[:8] for m in d["diagnostics"] for s in m["status"]
        if s["name"] == "lookout: inference engine"]
# CPU time the hypervisor took from this VM during the run (steal), as a share of all CPU time.
t0 = [int(x) for x in open(f"{work}/stat0").read().split()[1:]]
t1 = [int(x) for x in open(f"{work}/stat1").read().split()[1:]]
d = [b - a for a, b in zip(t0, t1)]
print(f"steal during the run: {100 * d[7] / max(1, sum(d[:8])):.1f} % of CPU time")
print("model_sha256 on /diagnostics:", " -> ".join(x for i, x in enumerate(shas) if i == 0 or shas[i - 1] != x))
PY
grep "lookout: summary" "$work/lookout.log" | cut -c1-400 || true
