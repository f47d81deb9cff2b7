#!/usr/bin/env bash
# One-command set-up: a Python venv with ROS 2 Kilted (registry wheels), torch 2.13.0 CPU and
# everything else pinned in requirements/constraints.txt, then the colcon build of this package.
#
# Idempotent: a second run only checks stamps and rebuilds what changed (seconds).
# Environment:
#   DPT_VENV      where the venv lives (default ~/.local/share/dpt_perception/venv; it must be
#                 outside this source tree: CMake refuses include dirs inside the source dir)
#   DPT_PYTHON    interpreter to build the venv from (default python3, must be 3.11 for the wheels)
#   DPT_SKIP_BUILD=1  only make the venv
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DPT_VENV:-$HOME/.local/share/dpt_perception/venv}"
PY="${DPT_PYTHON:-python3}"
REQ="$ROOT/requirements"
say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- system tools, reported by name with the command that installs them -----------------
need_tool() {  # tool, debian package
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found. Install it with: sudo apt-get update && sudo apt-get install -y $2"
}
need_tool "$PY" python3
need_tool cmake cmake
need_tool make make
need_tool gcc gcc
need_tool g++ g++
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "$PY is Python $("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])'); the ROS 2 Kilted wheels need Python 3.11 (set DPT_PYTHON)."
"$PY" -c 'import ensurepip, venv' 2>/dev/null \
  || die "Python's venv module is missing. Install it with: sudo apt-get install -y python3-venv"
[ -f "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] \
  || die "Python headers missing (Python.h). Install them with: sudo apt-get install -y python3-dev"
case "$VENV/" in "$ROOT"/*) die "DPT_VENV=$VENV is inside the source tree; CMake rejects that. Choose a path outside $ROOT." ;; esac

# --- the venv ------------------------------------------------------------------------------
# The stamp records the requirement files the venv was made from; an interrupted install leaves
# no stamp, so the next run simply resumes (pip skips what is already installed).
STAMP="$VENV/.dpt_setup_stamp"
WANT="$(cat "$REQ"/*.txt | sha256sum | cut -d' ' -f1)"
if [ -d "$VENV" ] && [ ! -x "$VENV/bin/python" ]; then
  die "$VENV exists but is not a usable venv (no bin/python). Delete it and run again: rm -rf '$VENV'"
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating venv at $VENV"
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  say "installing pinned requirements into $VENV (first run: about a minute)"
  # -c pins every version, torch to the local 2.13.0 CPU build: pip never pulls CUDA wheels.
  "$VENV/bin/python" -m pip install -q --progress-bar off -c "$REQ/constraints.txt" "setuptools>=77.0.3,<80" \
    -r "$REQ/ros.txt" -r "$REQ/runtime.txt" -r "$REQ/test.txt" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2) \
    || die "pip install failed (see above). If the venv is damaged, delete it and run again: rm -rf '$VENV'"
  "$VENV/bin/python" -c 'import torch, sys; sys.exit(0 if torch.version.cuda is None else 1)' \
    || die "a CUDA build of torch got into $VENV; delete it (rm -rf '$VENV') and run again."
  # The ROS wheels' exported CMake files name the wheel builder's Python/numpy include dirs.
  "$VENV/bin/python" "$ROOT/scripts/fix_ros_cmake_paths.py" "$VENV"
  echo "$WANT" > "$STAMP"
else
  say "venv up to date ($VENV)"
fi

[ "${DPT_SKIP_BUILD:-0}" = 1 ] && exit 0

# --- the colcon build ------------------------------------------------------------------------
# shellcheck disable=SC1091
source "$VENV/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV"
cd "$ROOT"
mkdir -p "$ROOT/log"
say "colcon build (dpt_perception)"
colcon --log-base "$ROOT/log" build --symlink-install --base-paths "$ROOT" \
  --build-base "$ROOT/build" --install-base "$ROOT/install" \
  --event-handlers console_cohesion- summary- status- >"$ROOT/log/colcon_build.txt" 2>&1 \
  || { tail -40 "$ROOT/log/colcon_build.txt" >&2; die "colcon build failed; full log: log/colcon_build.txt. A stale build can be cleared with: rm -rf '$ROOT/build' '$ROOT/install'"; }
say "ready: source scripts/env.sh to use the package"
