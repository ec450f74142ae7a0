#!/usr/bin/env bash
# Turn a Python venv holding the ROS 2 Jazzy PyPI wheels into a usable ROS 2 prefix.
#
# Usage: scripts/ros_prefix.sh VENV LOOKOUT_HOME
#
#   VENV          a Python 3.11 venv in which
#                   pip install -r scripts/requirements-ros.txt -c scripts/constraints.txt
#                 has already been run
#   LOOKOUT_HOME  lookout's state directory (build trees, stamps, lib/, ros_env.sh)
#
# Steps (each guarded by a stamp, so a repeated run does nothing):
#   a) point the wheels' cmake export files at this machine's Python and numpy headers
#   b) LOOKOUT_HOME/lib/librmw_implementation.so -> VENV/lib/librmw_fastrtps_cpp.so
#   c) build + install ros/vision_msgs into VENV, unless a sourced ROS 2 already has it, and
#      ros/lookout_msgs (lookout's own services)
#   d) write LOOKOUT_HOME/ros_env.sh, to be sourced before building or running lookout
#
# See docs / shared notes on "ROS 2 Jazzy from PyPI" for the quirks referred to below.
set -euo pipefail

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

if [[ $# -ne 2 ]]; then
  printf 'usage: %s VENV LOOKOUT_HOME\n' "$0" >&2
  exit 2
fi

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ -d "$1" ]] || die "venv '$1' does not exist"
venv=$(cd "$1" && pwd)
case "$2" in
  *[:\"\$\`\\]*) die "VENV and LOOKOUT_HOME must not contain : \" \$ \` or \\" ;;
esac
mkdir -p "$2"
home=$(cd "$2" && pwd)
# These paths end up in colon-separated lists and in double quotes in ros_env.sh.
case "$venv$home" in
  *[:\"\$\`\\]*) die "VENV and LOOKOUT_HOME must not contain : \" \$ \` or \\" ;;
esac
py="$venv/bin/python"
stamps="$home/stamps"
mkdir -p "$stamps" "$home/lib"

[[ -x "$py" ]] || die "$py not found: is $venv a Python venv?"
[[ -f "$venv/lib/librcl.so" ]] ||
  die "$venv/lib/librcl.so missing: run pip install -r scripts/requirements-ros.txt -c scripts/constraints.txt in the venv first"

# One interpreter start gives every Python-derived path we need.
# Lines: include dir, numpy include dir, libdir, purelib (relative to the venv), X.Y
mapfile -t pyinfo < <("$py" - "$venv" <<'PYEOF'
import os, sys, sysconfig
import numpy
venv = sys.argv[1]
print(sysconfig.get_paths()["include"])
print(numpy.get_include())
print(sysconfig.get_config_var("LIBDIR") or "")
print(os.path.relpath(sysconfig.get_paths(vars={"base": venv, "platbase": venv})["purelib"], venv))
print("%d.%d" % sys.version_info[:2])
PYEOF
)
[[ ${#pyinfo[@]} -eq 5 ]] || die "could not query $py for its include/numpy/lib paths"
py_include=${pyinfo[0]}
np_include=${pyinfo[1]}
py_libdir=${pyinfo[2]}
py_purelib_rel=${pyinfo[3]}
py_ver=${pyinfo[4]}
site_packages="$venv/$py_purelib_rel"

# Names and mtimes of the dist-info dirs change whenever pip installs, reinstalls or
# removes a distribution, which may put the original wheel files back in place.
dist_fingerprint=$(cd "$site_packages" && { stat -c '%n %Y' ./*.dist-info 2>/dev/null || true; } |
                   sha256sum | cut -c1-16)

# --------------------------------------------------------------------------------------
# a) Quirk 5: the wheels' cmake exports name the wheel builder's Python headers
#    (/opt/python/cp311-cp311/include/python3.11) and numpy headers
#    (/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include).
#    Rewrite them to this machine's directories.
# --------------------------------------------------------------------------------------
[[ -f "$py_include/Python.h" ]] ||
  die "no Python.h in $py_include (install the Python development headers, e.g. python3-dev)"
[[ -f "$np_include/numpy/arrayobject.h" ]] || die "no numpy headers in $np_include"

sed_escape() { printf '%s' "$1" | sed -e 's/[\\&#]/\\&/g'; }

paths_key="v1 $py_include $np_include $dist_fingerprint"
if [[ -f "$stamps/cmake-paths" && "$(cat "$stamps/cmake-paths")" == "$paths_key" ]]; then
  say "cmake export paths already point at $py_include (stamp)"
else
  cmake_dirs=("$venv/share")
  [[ -d "$venv/lib/cmake" ]] && cmake_dirs+=("$venv/lib/cmake")
  # Only cmake files; the ament_index parent_prefix_path markers also name /opt/python,
  # but nothing in a build reads them.
  mapfile -t files < <(grep -rlI --include='*.cmake' -e '/opt/python/' "${cmake_dirs[@]}" || true)
  if [[ ${#files[@]} -gt 0 ]]; then
    # numpy first: its builder path also starts with /opt/python/<tag>/.
    np_re='/opt/python/[^/";]+/lib/python3\.[0-9]+t?/site-packages/numpy/(_core/|core/)?include'
    py_re='/opt/python/[^/";]+/include/python3\.[0-9]+t?'
    sed -i -E \
      -e "s#${np_re}#$(sed_escape "$np_include")#g" \
      -e "s#${py_re}#$(sed_escape "$py_include")#g" \
      "${files[@]}"
    say "rewrote builder Python/numpy include paths in ${#files[@]} cmake files"
    left=$(grep -rlI --include='*.cmake' -e '/opt/python/' "${cmake_dirs[@]}" || true)
    [[ -z "$left" ]] || say "warning: still naming /opt/python after rewrite: $(echo "$left" | tr '\n' ' ')"
  else
    say "no cmake file names the builder's Python: nothing to rewrite"
  fi
  printf '%s\n' "$paths_key" > "$stamps/cmake-paths"
fi

# --------------------------------------------------------------------------------------
# b) Quirk 2: no librmw_implementation.so in the wheels; r2r links -lrmw_implementation.
#    librmw_fastrtps_cpp.so exports the whole rmw API, so a symlink under that name works.
# --------------------------------------------------------------------------------------
rmw_target="$venv/lib/librmw_fastrtps_cpp.so"
rmw_link="$home/lib/librmw_implementation.so"
[[ -f "$rmw_target" ]] || die "$rmw_target missing (ros-jazzy-rclpy[fastrtps] not installed?)"
if [[ -L "$rmw_link" && "$(readlink "$rmw_link")" == "$rmw_target" ]]; then
  say "$rmw_link already in place"
else
  ln -sfn "$rmw_target" "$rmw_link"
  say "linked $rmw_link -> $rmw_target"
fi

# --------------------------------------------------------------------------------------
# c) Interface packages of ros/, built into the venv prefix with cmake:
#    - vision_msgs: not on PyPI; skipped when another prefix on AMENT_PREFIX_PATH (a sourced
#      ROS 2) already provides it;
#    - lookout_msgs: lookout's own services; always.
# --------------------------------------------------------------------------------------
external_vm=""
IFS=':' read -r -a ament_entries <<< "${AMENT_PREFIX_PATH:-}"
for p in "${ament_entries[@]}"; do
  [[ -n "$p" && -d "$p" ]] || continue
  [[ "$(cd "$p" && pwd)" == "$venv" ]] && continue
  if [[ -e "$p/share/ament_index/resource_index/packages/vision_msgs" ]]; then
    external_vm=$p
    break
  fi
done

build_interfaces() { # build_interfaces NAME: ros/NAME into the venv prefix, unless up to date
  local name=$1 src="$repo_root/ros/$1" build="$home/build/$1"
  local marker="$venv/share/ament_index/resource_index/packages/$name"
  local hash key t0
  hash=$(cd "$src" && find . -type f ! -name '*.md' -print0 | LC_ALL=C sort -z |
         xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
  key="v1 $hash $venv $py_include"
  if [[ -f "$stamps/$name" && "$(cat "$stamps/$name")" == "$key" && -e "$marker" ]]; then
    say "$name up to date in $venv (stamp)"
    return 0
  fi
  command -v cmake >/dev/null || die "cmake not found (apt-get install cmake)"
  say "building $name from $src (build dir $build) ..."
  # A cache made for another prefix or source tree cannot be reused.
  if [[ -f "$build/CMakeCache.txt" ]] &&
     ! grep -qxF "CMAKE_INSTALL_PREFIX:PATH=$venv" "$build/CMakeCache.txt"; then
    rm -rf "$build"
  fi
  mkdir -p "$home/build"
  t0=$SECONDS
  (
    # The build sees the venv as a ROS prefix, after any sourced one.
    export AMENT_PREFIX_PATH="${AMENT_PREFIX_PATH:+$AMENT_PREFIX_PATH:}$venv"
    export CMAKE_PREFIX_PATH="${CMAKE_PREFIX_PATH:+$CMAKE_PREFIX_PATH:}$venv"
    export PATH="$venv/bin:$PATH"
    cmake -S "$src" -B "$build" \
      -DCMAKE_BUILD_TYPE=Release \
      -DBUILD_TESTING=OFF \
      -DCMAKE_INSTALL_PREFIX="$venv" \
      -DPython3_EXECUTABLE="$py" \
      -DPYTHON_INSTALL_DIR="$py_purelib_rel" \
      > "$build.configure.log" 2>&1 ||
      { tail -n 40 "$build.configure.log" >&2; exit 1; }
    cmake --build "$build" --parallel 2 > "$build.build.log" 2>&1 ||
      { tail -n 40 "$build.build.log" >&2; exit 1; }
    cmake --install "$build" > "$build.install.log" 2>&1 ||
      { tail -n 40 "$build.install.log" >&2; exit 1; }
  ) || die "$name build failed (logs: $build.{configure,build,install}.log)"
  printf '%s\n' "$key" > "$stamps/$name"
  say "$name built and installed into $venv in $((SECONDS - t0)) s"
}

if [[ -n "$external_vm" ]]; then
  say "vision_msgs found in sourced prefix $external_vm: using it, not building ros/vision_msgs"
else
  build_interfaces vision_msgs
fi
build_interfaces lookout_msgs

# --------------------------------------------------------------------------------------
# d) LOOKOUT_HOME/ros_env.sh
# --------------------------------------------------------------------------------------
# Vendored shared libraries of the wheels (quirk 3).
libs_dirs=()
for d in "$site_packages"/*.libs; do
  [[ -d "$d" ]] && libs_dirs+=("$d")
done

# Where the locally built interface packages' Python code landed, if not in the venv's
# site-packages (the venv's interpreter finds site-packages on its own).
built_pythonpath=()
built=(lookout_msgs)
[[ -z "$external_vm" ]] && built+=(vision_msgs)
for name in "${built[@]}"; do
  if [[ -d "$site_packages/$name" ]]; then continue; fi
  init=$(find "$venv" -path "*/$name/srv/__init__.py" -not -path "$site_packages/*" 2>/dev/null | head -n 1)
  if [[ -z "$init" ]]; then
    init=$(find "$venv" -path "*/$name/msg/__init__.py" -not -path "$site_packages/*" 2>/dev/null | head -n 1)
  fi
  if [[ -n "$init" ]]; then built_pythonpath+=("$(dirname "$(dirname "$(dirname "$init")")")"); fi
done

# The runtime loader should find the same libpython the Rust binary is linked against
# (quirk 4); system library dirs are searched anyway, so only add a non-standard one.
py_libdir_runtime=""
case "$py_libdir" in
  ''|/lib|/lib64|/usr/lib|/usr/lib64|/lib/*-linux-gnu|/usr/lib/*-linux-gnu) ;;
  *) py_libdir_runtime=$py_libdir ;;
esac

link_dirs="$venv/lib:$home/lib"
for d in "${libs_dirs[@]}"; do link_dirs+=":$d"; done
[[ -n "$py_libdir" ]] && link_dirs+=":$py_libdir"

env_file="$home/ros_env.sh"
env_tmp="$env_file.tmp.$$"
{
  cat <<EOF
# Generated by scripts/ros_prefix.sh -- do not edit; rerun the script instead.
# Source it (". $env_file") to use the ROS 2 Jazzy prefix in $venv.
# Sourcing twice is harmless: directories already listed are not added again.

# Append directory \$2 to the colon-separated variable \$1 unless it is already listed.
_lookout_append() {
  eval "_lookout_cur=\\\${\$1:-}"
  case ":\$_lookout_cur:" in
    *":\$2:"*) ;;
    *) eval "export \$1=\"\\\${_lookout_cur:+\\\$_lookout_cur:}\\\$2\"" ;;
  esac
  unset _lookout_cur
}

# r2r's build script requires ROS_DISTRO; keep a value set by a sourced ROS 2.
export ROS_DISTRO="\${ROS_DISTRO:-jazzy}"

# The venv is a ROS prefix (ament index, cmake configs). It goes after any sourced
# ROS 2, whose packages therefore take precedence.
_lookout_append AMENT_PREFIX_PATH "$venv"
_lookout_append CMAKE_PREFIX_PATH "$venv"

# Runtime libraries: the ROS libraries of the wheels, then lookout's own lib dir with the
# librmw_implementation.so symlink (quirk 2), then the wheels' vendored libraries (quirk 3).
_lookout_append LD_LIBRARY_PATH "$venv/lib"
_lookout_append LD_LIBRARY_PATH "$home/lib"
EOF
  for d in "${libs_dirs[@]}"; do
    printf '_lookout_append LD_LIBRARY_PATH "%s"\n' "$d"
  done
  if [[ -n "$py_libdir_runtime" ]]; then
    printf '%s\n' "# libpython $py_ver of the venv's interpreter, which the Rust binary links (quirk 4)."
    printf '_lookout_append LD_LIBRARY_PATH "%s"\n' "$py_libdir_runtime"
  fi
  for d in "${built_pythonpath[@]}"; do
    printf '%s\n' "# A locally built interface package's Python code lies outside the venv's site-packages."
    printf '_lookout_append PYTHONPATH "%s"\n' "$d"
  done
  cat <<EOF

# The wheels ship only Fast DDS; keep a choice made by the user or a sourced ROS 2.
export RMW_IMPLEMENTATION="\${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"

# Library search dirs (-L) for lookout's r2r build: ROS libraries, the
# librmw_implementation symlink, the vendored .libs dirs and the libpython dir.
export LOOKOUT_ROS_LINK_DIRS="$link_dirs"
# librcl from the wheels needs libpython symbols (quirk 4): lookout's build.rs links this
# library with --no-as-needed when set.
export LOOKOUT_ROS_LINK_PYTHON="python${py_ver}"

unset -f _lookout_append
EOF
} > "$env_tmp"

if [[ -f "$env_file" ]] && cmp -s "$env_tmp" "$env_file"; then
  rm -f "$env_tmp"
  say "$env_file unchanged"
else
  mv -f "$env_tmp" "$env_file"
  say "wrote $env_file"
fi
say "done: source $env_file"
