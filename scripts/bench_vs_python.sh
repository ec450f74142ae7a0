#!/usr/bin/env bash
# lookout replay vs the plain Python node (benches/compare/reference_replay.py) on the same bag and
# topic, back to back, same model, same ONNX Runtime version, default threads. Prints one table:
# stage, lookout p50/p99, Python p50/p99, ratio (lookout / Python, p50), plus the overhead (end to
# end minus inference), wall time, frames/s and peak RSS.
#
# Usage: scripts/bench_vs_python.sh BAG TOPIC [image|compressed]
#   (the type defaults to `compressed` for topics ending in /compressed, else `image`)
# Environment: BENCH_OUT (default $LOOKOUT_HOME/bench) keeps both reports; BENCH_ENGINE adds
# engine keys to lookout's parameters (e.g. "intra_op_spinning: true"); LOOKOUT_BIN overrides
# the binary (default: target/release/lookout, built here).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
bag=${1:?usage: bench_vs_python.sh BAG TOPIC [image|compressed]}
topic=${2:?usage: bench_vs_python.sh BAG TOPIC [image|compressed]}
type=${3:-$([[ $topic == */compressed ]] && echo compressed || echo image)}
# shellcheck source=/dev/null
source "${LOOKOUT_HOME:-$repo/.lookout}/env.sh"
bin=${LOOKOUT_BIN:-}
if [[ -z $bin ]]; then
  cargo build --release --quiet
  bin=$repo/target/release/lookout
fi
out=${BENCH_OUT:-$LOOKOUT_HOME/bench}
mkdir -p "$out"
cat > "$out/params.yaml" <<EOF
/**:
  ros__parameters:
    model: models/yolov3-tiny/manifest.yaml
    engine: {execution_providers: [cpu]${BENCH_ENGINE:+, $BENCH_ENGINE}}
    cameras: [cam]
    camera:
      cam: {topic: $topic, type: $type, max_width: 1920, max_height: 1200}
EOF
"$bin" replay "$bag" --params-file "$out/params.yaml" --out "$out/lookout_out" --force \
  --report "$out/lookout.json" > /dev/null 2> "$out/lookout.log"
"$LOOKOUT_PYTHON" benches/compare/reference_replay.py "$bag" \
  --model models/yolov3-tiny/yolov3-tiny.onnx --topic "$topic" --report "$out/python.json" > /dev/null
"$LOOKOUT_PYTHON" - "$out/lookout.json" "$out/python.json" <<'EOF'
import json, sys
l, p = (json.load(open(f)) for f in sys.argv[1:3])
print(f"{'stage (ms)':<22}{'lookout p50 / p99':>20}{'Python p50 / p99':>20}{'ratio p50':>11}")
for stage in ("preprocess", "inference", "postprocess", "e2e"):
    a, b = l["latency_ms"][stage], p["latency_ms"][stage]
    ratio = a["p50"] / b["p50"] if b["p50"] else float("nan")
    print(f"{stage:<22}{a['p50']:>9.2f} / {a['p99']:<8.2f}{b['p50']:>9.2f} / {b['p99']:<8.2f}{ratio:>9.2f}")
lo = l["latency_ms"]["e2e"]["p50"] - l["latency_ms"]["inference"]["p50"]
po = p["latency_ms"]["e2e"]["p50"] - p["latency_ms"]["inference"]["p50"]
print(f"{'overhead (e2e - inf)':<22}{lo:>9.2f}{'':<11}{po:>9.2f}{'':<11}{lo / po if po else float('nan'):>7.2f}")
print(f"{'wall s':<22}{l['wall_s']:>9.2f}{'':<11}{p['wall_s']:>9.2f}{'':<11}{l['wall_s'] / p['wall_s']:>7.2f}")
print(f"{'frames/s':<22}{l['frames_per_s']:>9.2f}{'':<11}{p['frames_per_s']:>9.2f}")
print(f"{'peak RSS MB':<22}{l['peak_rss_mb']:>9.1f}{'':<11}{p['peak_rss_mb']:>9.1f}{'':<11}{l['peak_rss_mb'] / p['peak_rss_mb']:>7.2f}")
print(f"frames: lookout {l['frames_processed']}, Python {p['frames_processed']}; "
      f"lookout inference-only rate {l['inference_only_frames_per_s']:.1f}/s, "
      f"throughput {100 * l['frames_per_s'] / l['inference_only_frames_per_s']:.0f} % of it")
EOF
