#!/usr/bin/env bash
# One pass over everything lookout does on an NVIDIA GPU, short enough for a brief stay on a
# GPU machine: `detect` and `replay` per execution provider on the vtest bag at 1280x720, the
# fall-back and `require_first_provider` behaviour, CPU/GPU agreement, and a summary.
#
#   scripts/gpu_check.sh ORT_GPU_DIR RESULTS_DIR
#
# Needs, in the repository root:
#   target/release/lookout         built with --no-default-features (no ROS libraries needed)
#   models/yolov3-tiny/yolov3-tiny.onnx, .lookout/data/images/*.jpg, .lookout/data/vtest.avi
#   (optional) models/yolov3-tiny-batch/yolov3-tiny-batch.onnx: a two-camera replay, batched
#   ORT_GPU_DIR                    the onnxruntime-gpu 1.31 libraries: libonnxruntime.so.1.31.1,
#                                  libonnxruntime_providers_{shared,cuda,tensorrt}.so
#   CUDA 13 runtime, cuBLAS, cuRAND, cuFFT and cuDNN 9 libraries somewhere on the machine (the
#   NVIDIA pip packages beside PyTorch are found by a search of /opt, /usr and /usr/local)
#   python3 with numpy, pillow, opencv and rosbags, to write the 1280x720 bag if it is missing;
#   with an onnxruntime(-gpu) importable too, the Python reference (benches/compare/reference_replay.py)
#   runs on the same bag per provider, side by side
# Writes RESULTS_DIR/summary.txt, RESULTS_DIR/log.txt and RESULTS_DIR/reports.tar.gz (every
# replay report, detect output and the detections bags' metadata).
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 1
ort_dir=$(cd "${1:?usage: gpu_check.sh ORT_GPU_DIR RESULTS_DIR}" && pwd)
results=${2:?usage: gpu_check.sh ORT_GPU_DIR RESULTS_DIR}
mkdir -p "$results"
results=$(cd "$results" && pwd)
work=${GPU_CHECK_WORK:-/tmp/lookout-gpu-check}
rm -rf "$work" && mkdir -p "$work/reports"
exec > >(tee "$results/log.txt") 2>&1
bin=$repo/target/release/lookout
bag=${GPU_CHECK_BAG:-$work/bags/vtest_hd}
say() { printf '\n== %s\n' "$*"; }

say "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
nproc; uname -r

say "CUDA libraries"
libdirs=$(find /opt /usr/local /usr/lib -maxdepth 10 \( -name 'libcublasLt.so.13*' -o \
  -name 'libcudart.so.13*' -o -name 'libcurand.so.10*' -o -name 'libcudnn.so.9*' -o \
  -name 'libcufft.so.12*' -o -name 'libnvrtc.so.13*' -o -name 'libnvJitLink.so.13*' -o \
  -name 'libnvinfer.so.10*' \) -printf '%h\n' 2>/dev/null | sort -u)
echo "$libdirs"
export LD_LIBRARY_PATH=$ort_dir:$(echo "$libdirs" | paste -sd:):${LD_LIBRARY_PATH:-}
export ORT_DYLIB_PATH=$ort_dir/libonnxruntime.so.1.31.1
ldd "$ort_dir/libonnxruntime_providers_cuda.so" | grep -E 'not found|cublas|cudart|curand' || true
ldd "$ort_dir/libonnxruntime_providers_tensorrt.so" | grep -E 'not found|nvinfer' || true

if [[ ! -e $bag/metadata.yaml ]]; then
  say "writing the 1280x720 vtest bag (150 frames, raw bgr8 + JPEG)"
  python3 scripts/make_vtest_bag.py .lookout/data/vtest.avi "$(dirname "$bag")" --frames 150 \
    --size 1280x720 --storage mcap --name "$(basename "$bag")" || exit 1
fi

images=(.lookout/data/images/bus.jpg .lookout/data/images/dog.jpg .lookout/data/images/person.jpg)
say "detect per provider"
for eps in cpu cuda tensorrt,cuda,cpu; do
  echo "-- --execution-providers $eps"
  "$bin" detect --json --execution-providers "$eps" "${images[@]}" \
    > "$work/reports/detect_${eps//,/_}.jsonl"
  echo "exit $?"; cut -c1-400 "$work/reports/detect_${eps//,/_}.jsonl"
done
echo "-- tensorrt with --require-first-provider (expected: exit 1 and the reason)"
"$bin" detect --require-first-provider --execution-providers tensorrt,cuda,cpu "${images[0]}"
echo "exit $?"

params() { # params TOPIC TYPE PROVIDERS [EXTRA ENGINE YAML]
  cat <<EOF
/**:
  ros__parameters:
    model: models/yolov3-tiny/manifest.yaml
    engine: {execution_providers: [$3]$4}
    cameras: [cam]
    camera:
      cam: {topic: $1, type: $2, max_width: 1280, max_height: 720, budget_ms: 100.0}
EOF
}

say "replay per provider (max speed, every frame)"
runs=()
for kind in raw jpeg; do
  if [[ $kind == raw ]]; then topic=/camera/image_raw; type=image
  else topic=/camera/image_raw/compressed; type=compressed; fi
  for ep in cpu cuda cuda_pre1 cuda_pageable cuda_heuristic cuda_nowarmup fallback; do
    case $ep in
      cpu | cuda) list=$ep; extra="" ;;
      cuda_pre1) list=cuda; extra=", preprocess_threads: 1" ;;
      cuda_pageable) list=cuda; extra=", pinned_memory: false" ;;
      cuda_heuristic) list=cuda; extra=", cuda: {cudnn_conv_algo_search: heuristic}" ;;
      cuda_nowarmup) list=cuda; extra=", warmup_runs: 0" ;;
      fallback) list="tensorrt, cuda, cpu"; extra="" ;;
    esac
    [[ $kind == jpeg && $ep != cpu && $ep != cuda ]] && continue
    name=${ep}_${kind}
    params "$topic" "$type" "$list" "$extra" > "$work/$name.yaml"
    echo "-- $name"
    "$bin" replay "$bag" --params-file "$work/$name.yaml" --out "$work/out_$name" --force \
      --report "$work/reports/replay_$name.json"
    echo "exit $?"
    runs+=("$name")
  done
done

say "two cameras (raw + JPEG of the same bag) on CUDA: one frame per run, then batched"
if [[ -f models/yolov3-tiny-batch/yolov3-tiny-batch.onnx ]]; then
  for model in yolov3-tiny yolov3-tiny-batch; do
    name=cuda_2cam${model#yolov3-tiny}; name=${name/-/_}
    cat > "$work/$name.yaml" <<EOF
/**:
  ros__parameters:
    model: models/$model/manifest.yaml
    engine: {execution_providers: [cuda]}
    cameras: [raw, jpeg]
    camera:
      raw: {topic: /camera/image_raw, max_width: 1280, max_height: 720, budget_ms: 100.0}
      jpeg: {topic: /camera/image_raw/compressed, type: compressed, max_width: 1280, max_height: 720, budget_ms: 100.0}
EOF
    echo "-- $name"
    "$bin" replay "$bag" --params-file "$work/$name.yaml" --out "$work/out_$name" --force \
      --report "$work/reports/replay_$name.json"
    echo "exit $?"
    grep -E '"(max_batch|inference_runs|frames_processed)"' "$work/reports/replay_$name.json"
    runs+=("$name")
  done
  "$bin" diff "$work/out_cuda_2cam" "$work/out_cuda_2cam_batch"; echo "exit $?"
else
  echo "models/yolov3-tiny-batch/yolov3-tiny-batch.onnx not carried: batched run skipped"
fi

say "Python reference (rosbags + OpenCV + NumPy + onnxruntime) on the same bag"
if python3 -c 'import onnxruntime, cv2, rosbags' 2>/dev/null; then
  python3 -c 'import onnxruntime as o; print(o.__version__, o.get_available_providers())'
  for kind in raw jpeg; do
    topic=/camera/image_raw; [[ $kind == jpeg ]] && topic=/camera/image_raw/compressed
    for ep in cpu cuda; do
      echo "-- python_${ep}_$kind"
      python3 benches/compare/reference_replay.py "$bag" --model models/yolov3-tiny/yolov3-tiny.onnx \
        --topic "$topic" --providers "$ep" --report "$work/reports/replay_python_${ep}_$kind.json" \
        | grep -E '"(execution_provider|frames_per_s|peak_rss_mb)"'
      runs+=("python_${ep}_$kind")
    done
  done
else
  echo "no Python onnxruntime/cv2/rosbags: reference skipped"
fi

say "CPU vs CUDA detections (lookout diff, default tolerances)"
"$bin" diff "$work/out_cpu_raw" "$work/out_cuda_raw"; echo "exit $?"
"$bin" diff "$work/out_cpu_raw" "$work/out_cuda_raw" --json > "$work/reports/diff_cpu_cuda.json"

say "summary"
python3 - "$work/reports" "${runs[@]}" <<'EOF' | tee "$results/summary.txt"
import json, sys
from pathlib import Path
reports = Path(sys.argv[1])
print("run                  provider  io_memory    frames  infer p50/p99 ms  pre p50/p99 ms   e2e p50/p99 ms   first frame e2e/infer ms  wall fps")
for name in sys.argv[2:]:
    p = reports / f"replay_{name}.json"
    if not p.exists():
        print(f"{name:<20} (no report)")
        continue
    r = json.loads(p.read_text())
    l = r["latency_ms"]
    f = r["first_frame_ms"]
    provider = r["execution_provider"].replace("ExecutionProvider", "").lower()
    print(f"{name:<20} {provider:<9} {r.get('io_memory', '-'):<12} {r['frames_processed']:>6}"
          f"  {l['inference']['p50']:>6.2f} / {l['inference']['p99']:<6.2f}"
          f"  {l['preprocess']['p50']:>5.2f} / {l['preprocess']['p99']:<6.2f}"
          f"  {l['e2e']['p50']:>6.2f} / {l['e2e']['p99']:<6.2f}"
          f"  {f['e2e']:>8.2f} / {f['inference']:<8.2f}"
          f"          {r['frames_per_s']:>7.1f}")
    print(f"{'':<20} peak RSS {r.get('peak_rss_mb', '-')} MB")
    if r.get("fallback_reason"):
        print(f"{'':<20} fallback_reason: {r['fallback_reason'][:300]}")
EOF
tar -C "$work" -czf "$results/reports.tar.gz" reports $(cd "$work" && ls -d out_*/metadata.yaml 2>/dev/null)
echo "results in $results"
