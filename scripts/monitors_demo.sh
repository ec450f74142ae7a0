#!/usr/bin/env bash
# Each model-operation monitor firing on its input, from max-speed replays of vtest clips
# (scripts/make_vtest_bag.py): the raw camera's /diagnostics status (level and message) over bag
# time, printed when it changes, and an incident bag's contents read with rosbags.
#   1. input health: 30 frames at 10 fps, frames 10..19 black (--black 10:20);
#   2. drift: a profile of 40 frames (replay --profile), then the same frames at dusk (--gain 0.2);
#   3. shadow: the same model at thresholds.confidence 0.6 beside the primary;
#   4. incident capture: 30 frames, frame 20 held up 1.5 s (LOOKOUT_FAULT_SLOW_FRAME, a test
#      hook) against a 1000 ms budget.
#
# Usage: scripts/monitors_demo.sh [WORKDIR]      (default: a new temporary folder, removed)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
scripts/setup.sh >/dev/null
# shellcheck source=/dev/null
source "${LOOKOUT_HOME:-$repo/.lookout}/env.sh"
cargo build --release --quiet
if [ $# -ge 1 ]; then work=$1; mkdir -p "$work"; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
lookout=target/release/lookout
model=$repo/models/yolov3-tiny/manifest.yaml
clip() { # clip NAME FRAMES [make_vtest_bag.py args...]
  local name=$1 frames=$2; shift 2
  rm -rf "${work:?}/$name"
  "$LOOKOUT_PYTHON" scripts/make_vtest_bag.py "$LOOKOUT_HOME/data/vtest.avi" "$work" \
    --frames "$frames" --storage mcap --name "$name" "$@" >/dev/null
}
params() { # params FILE EXTRA_YAML: the raw camera, 200 ms /diagnostics period
  cat >"$1" <<YAML
lookout:
  ros__parameters:
    model: $model
    engine: {execution_providers: [cpu]}
    diagnostics: {period_ms: 200.0}
$2
    cameras: [raw]
    camera:
      raw: {topic: /camera/image_raw, budget_ms: 1000.0}
YAML
}
replay() { # replay NAME BAG PARAMS [args...]
  local name=$1 bag=$2 p=$3; shift 3
  NO_COLOR=1 "$lookout" replay "$bag" --params-file "$p" --out "$work/$name.out" --force \
    --report "$work/$name.json" "$@" >/dev/null 2>"$work/$name.log"
}
levels() { # levels OUT: the raw camera's status over bag time, when it changes
  "$LOOKOUT_PYTHON" - "$1" <<'PY'
import re, sys
from pathlib import Path
from rosbags.highlevel import AnyReader
rows, first = [], None
with AnyReader([Path(sys.argv[1])]) as r:
    for c, t, raw in r.messages(connections=r.connections):
        m = r.deserialize(raw, c.msgtype)
        stamp = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
        if c.msgtype != "diagnostic_msgs/msg/DiagnosticArray":
            first = stamp if first is None else min(first, stamp)
            continue
        for s in m.status:
            if s.name == "lookout: camera raw":
                rows.append((stamp, int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level), s.message))
# Printed when the level or the kind of message changes (its figures aside), and the last one.
last = None
for i, (stamp, level, message) in enumerate(rows):
    kind = (level, re.sub(r"[0-9.]+", "#", message))
    if kind != last or i == len(rows) - 1:
        print(f"    {stamp - first:5.1f} s  level {level}: {message or 'OK'}")
        last = kind
PY
}

echo "== 1. input health: 30 frames, 10..19 taped over (make_vtest_bag.py --black 10:20)"
clip black 30 --black 10:20
params "$work/plain.yaml" ""
replay black "$work/black" "$work/plain.yaml"
levels "$work/black.out"

echo "== 2. drift: profile of the street (replay --profile), then the street at dusk (--gain 0.2)"
clip street 40
clip dusk 40 --gain 0.2
replay profile "$work/street" "$work/plain.yaml" --profile "$work/profile.json"
params "$work/watched.yaml" "    monitor: {profile: $work/profile.json, drift: {window_frames: 20, min_frames: 10}}"
replay dusk "$work/dusk" "$work/watched.yaml"
levels "$work/dusk.out"

echo "== 3. shadow: the same model at shadow.thresholds.confidence 0.6"
params "$work/shadow.yaml" "    shadow: {model: $model, thresholds: {confidence: 0.6}, min_frames: 20, window_frames: 40}"
replay shadow "$work/street" "$work/shadow.yaml"
levels "$work/shadow.out"
"$LOOKOUT_PYTHON" -c "import json,sys; print('    report per_camera.raw.shadow:', json.load(open(sys.argv[1]))['per_camera']['raw']['shadow'])" "$work/shadow.json"

echo "== 4. incident capture: frame 20 held up 1.5 s, budget 1000 ms, capture {before_s: 1, after_s: 0.5}"
clip short 30
params "$work/capture.yaml" "    capture: {dir: $work/incidents, before_s: 1.0, after_s: 0.5, max_rate_hz: 10.0, triggers: [deadline_miss]}"
rm -rf "$work/incidents"
LOOKOUT_FAULT_SLOW_FRAME=20:1500 replay capture "$work/short" "$work/capture.yaml"
grep -h "incident captured" "$work/capture.log" | sed -E 's/^[^ ]+ +//' | cut -c1-200
levels "$work/capture.out"
"$LOOKOUT_PYTHON" - "$work/incidents" <<'PY'
import sys
from pathlib import Path
from rosbags.highlevel import AnyReader
import yaml
for bag in sorted(Path(sys.argv[1]).iterdir()):
    meta = yaml.safe_load(open(bag / "metadata.yaml"))["rosbag2_bagfile_information"]
    size = sum(f.stat().st_size for f in bag.iterdir())
    print(f"    {bag.name}/  ({meta['storage_identifier']}, {size / 1e6:.1f} MB)")
    with AnyReader([bag]) as r:
        for c in r.connections:
            stamps = []
            for _, _, raw in r.messages(connections=[c]):
                m = r.deserialize(raw, c.msgtype)
                stamps.append(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9)
            print(f"    {c.topic:<22} {c.msgtype:<35} {len(stamps)} messages, stamps {min(stamps):.1f}..{max(stamps):.1f}")
    for k, v in sorted((meta.get("custom_data") or {}).items()):
        print(f"    custom_data {k} = {v[:16] + '…' if len(v) > 40 else v}")
PY
