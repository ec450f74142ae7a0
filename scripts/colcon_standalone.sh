#!/usr/bin/env bash
# Does the installed package stand alone? Builds lookout with colcon (colcon-ros-cargo, release
# profile) into a fresh workspace, moves the source and build trees away, and from a neutral
# directory (holding a decoy config/ and models/ that must be ignored) runs, from the install
# prefix only:
#   1. `lookout detect IMAGE` with the default model;
#   2. `lookout run` as the launch file runs it (--ros-args --params-file <share>/config/...
#      -p model:=<share>/models/...), against an rclpy publisher and subscriber;
#   3. `lookout run` with no arguments (the installed default parameters file).
# The ROS 2 libraries come from the set-up's PyPI-wheel prefix, standing in for /opt/ros/jazzy;
# LOOKOUT_HOME and ORT_DYLIB_PATH are unset, so ONNX Runtime must come from the install.
# Not in CI: the release build takes about 10 minutes on 2 cores.
#
# Usage: scripts/colcon_standalone.sh [WORKDIR]     (default: a new temporary folder, removed)
#        LOOKOUT_COLCON_REUSE=1 scripts/colcon_standalone.sh WORKDIR   (run the checks again on
#        the install already in WORKDIR, without building)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
scripts/setup.sh >/dev/null
# shellcheck source=/dev/null
source "${LOOKOUT_HOME:-$repo/.lookout}/env.sh"
home=$LOOKOUT_HOME
say() { printf 'colcon_standalone: %s\n' "$*"; }

colcon_venv=$home/colcon-venv
if ! "$colcon_venv/bin/colcon" --help >/dev/null 2>&1; then
  say "installing colcon (scripts/requirements-colcon.txt) into $colcon_venv"
  "$LOOKOUT_PYTHON" -m venv "$colcon_venv"
  "$colcon_venv/bin/pip" install --quiet -r scripts/requirements-colcon.txt
fi

if [ $# -ge 1 ]; then ws=$1; mkdir -p "$ws"; keep=1; else ws=$(mktemp -d /tmp/lookout-colcon.XXXXXX); keep=0; fi
neutral=$(mktemp -d /tmp/lookout-neutral.XXXXXX)
cleanup() { rm -rf "$neutral"; if [ "$keep" = 0 ]; then rm -rf "$ws"; fi; }
trap cleanup EXIT

if [ "${LOOKOUT_COLCON_REUSE:-0}" = 1 ] && [ -d "$ws/install" ]; then
  say "reusing the install in $ws"
else
# The working tree as a new user would have it after `git clone` and scripts/setup.sh: tracked
# and untracked-but-not-ignored files, the converted model and the link to ONNX Runtime.
src=$ws/src/lookout
rm -rf "$ws/src" "$ws/src.away" "$ws/build" "$ws/build.away" "$ws/install" "$ws/log"
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$src"
cp models/yolov3-tiny/yolov3-tiny.onnx "$src/models/yolov3-tiny/"
mkdir -p "$src/.lookout/lib"
ln -s "$(readlink -f "$home/lib/libonnxruntime.so")" "$src/.lookout/lib/libonnxruntime.so"

say "colcon build --cargo-args --release in $ws"
start=$(date +%s)
(cd "$ws" && PATH="$colcon_venv/bin:$PATH" colcon build --base-paths src/lookout src/lookout/ros/lookout_msgs \
  --cargo-args --release >"$ws/build.log" 2>&1) \
  || { tail -40 "$ws/build.log"; say "FAILED: colcon build"; exit 1; }
say "built in $(( $(date +%s) - start )) s"
mv "$ws/src" "$ws/src.away"
mv "$ws/build" "$ws/build.away"
fi

# colcon's default isolated install: one prefix per package.
install=$ws/install/lookout
share=$install/share/lookout
lookout=$install/lib/lookout/lookout
say "installed in $install: $(cd "$install" && find lib/lookout share/lookout -path '*/rust' -prune -o -type f -print | sort | tr '\n' ' ')"

# A neutral directory that looks like an unpacked dataset: a config/lookout.yaml naming a library
# and a models/ package that must both be ignored.
mkdir -p "$neutral/config" "$neutral/models/yolov3-tiny"
printf '/**:\n  ros__parameters:\n    engine: {ort_library: %s/evil.so}\n    cameras: [decoy]\n' "$neutral" \
  >"$neutral/config/lookout.yaml"
echo "not a manifest" >"$neutral/models/yolov3-tiny/manifest.yaml"
cp "$home/data/images/bus.jpg" "$neutral/"
unset LOOKOUT_HOME ORT_DYLIB_PATH CARGO_MANIFEST_DIR
# shellcheck source=/dev/null
set +u; source "$ws/install/setup.bash"; set -u
export FASTRTPS_DEFAULT_PROFILES_FILE=$share/config/fastdds.xml
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-94}
cd "$neutral"

say "1. lookout detect bus.jpg (default model)"
RUST_LOG=lookout=debug "$lookout" detect bus.jpg --execution-providers cpu --json >detect.json 2>detect.log
python3 - detect.json <<'PY'
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[0])
n = len(d["detections"])
print(f"colcon_standalone:    {n} detections: {', '.join(x['class'] for x in d['detections'])}")
assert n > 0, "no detections"
PY
# Which ONNX Runtime was loaded: the installed copy beside the binary.
loaded=$(sed 's/\x1b\[[0-9;]*m//g' detect.log | grep -o 'ONNX Runtime loaded library=[^ ]*' | head -1)
say "   $loaded"
case "$loaded" in *"$install/lib/lookout/libonnxruntime.so"*) ;; *) say "FAILED: not the installed ONNX Runtime"; exit 1;; esac

run_against_peer() {
  local name=$1; shift
  "$lookout" run "$@" 2>"$neutral/$name.log" &
  local pid=$!
  for _ in $(seq 600); do grep -q "lookout running" "$neutral/$name.log" && break; sleep 0.1; done
  grep -q "lookout running" "$neutral/$name.log" || { kill -INT "$pid" || true; cat "$neutral/$name.log"; say "FAILED: $name did not start"; exit 1; }
  timeout 120 "$LOOKOUT_PYTHON" "$repo/tests/ros/peer.py" \
    --pub "/camera/image_raw,image,$neutral/bus.jpg,bgr8" --sub /front/detections \
    --rate 5 --count 10 --out "$neutral/$name.json" >/dev/null
  kill -INT "$pid"; wait "$pid"
  "$LOOKOUT_PYTHON" - "$neutral/$name.json" "$name" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
got = d["received"]
dets = sum(len(r.get("detections", [])) for r in got)
print(f"colcon_standalone:    {sys.argv[2]}: {len(got)}/10 frames came back, {dets} detections")
assert got and dets > 0, "no detections came back"
PY
  sed 's/\x1b\[[0-9;]*m//g' "$neutral/$name.log" | grep -o "model loaded.*" | head -1 | sed 's/^/colcon_standalone:    /'
}

say "2. lookout run as the launch file runs it"
run_against_peer launch --ros-args --params-file "$share/config/lookout.yaml" \
  -p "model:=$share/models/yolov3-tiny/manifest.yaml"
say "3. lookout run with no arguments (installed default parameters)"
run_against_peer default
say "OK: the install in $install ran detect and run with its source and build trees moved away"
