#!/usr/bin/env bash
# One-command set-up: a Python venv with ROS 2 (registry wheels of Kilted or Jazzy), torch 2.13.0
# CPU and everything else pinned, then the colcon build of this package.
#
# Idempotent: a second run only checks stamps and rebuilds what changed (seconds).
# Environment:
#   ROS_DISTRO    kilted (default) or jazzy. Each distribution has its own pins, venv and colcon
#                 build/install/log directories, so the two never clobber each other:
#                   kilted: requirements/ros.txt + requirements/constraints.txt,
#                           venv ~/.local/share/dpt_perception/venv, build/ install/ log/
#                   jazzy:  requirements/jazzy/ros.txt + requirements/jazzy/constraints.txt (the
#                           Jazzy pins, over requirements/constraints.txt for everything else),
#                           venv ~/.local/share/dpt_perception/venv-jazzy, build-jazzy/ install-jazzy/ log-jazzy/
#   DPT_VENV      where the venv lives (default above; it must be outside this source tree:
#                 CMake refuses include dirs inside the source dir)
#   DPT_PYTHON    interpreter to build the venv from (default python3, must be 3.11 for the wheels)
#   DPT_SKIP_BUILD=1  only make the venv
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=scripts/distro.sh
source "$ROOT/scripts/distro.sh" || exit 1
VENV="$DPT_DISTRO_VENV"
PY="${DPT_PYTHON:-python3}"
REQ="$ROOT/requirements"

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
  || die "$PY is Python $("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])'); the ROS 2 $DPT_DISTRO_NAME wheels need Python 3.11 (set DPT_PYTHON)."
"$PY" -c 'import ensurepip, venv' 2>/dev/null \
  || die "Python's venv module is missing. Install it with: sudo apt-get install -y python3-venv"
[ -f "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] \
  || die "Python headers missing (Python.h). Install them with: sudo apt-get install -y python3-dev"
case "$VENV/" in "$ROOT"/*) die "DPT_VENV=$VENV is inside the source tree; CMake rejects that. Choose a path outside $ROOT." ;; esac

# --- the venv ------------------------------------------------------------------------------
# The stamp records the requirement files the venv was made from; an interrupted install leaves
# no stamp, so the next run simply resumes (pip skips what is already installed).
STAMP="$VENV/.dpt_setup_stamp"
CONSTRAINTS="$REQ/constraints.txt"
if [ "$ROS_DISTRO" = kilted ]; then
  WANT="$(cat "$REQ"/*.txt | sha256sum | cut -d' ' -f1)"
else
  WANT="$(cat "$REQ"/*.txt "$REQ/$ROS_DISTRO"/*.txt | sha256sum | cut -d' ' -f1)"
fi
if [ -d "$VENV" ] && [ ! -x "$VENV/bin/python" ]; then
  die "$VENV exists but is not a usable venv (no bin/python). Delete it and run again: rm -rf '$VENV'"
fi
# One venv holds one distribution: never install one distribution's wheels over the other's.
for _held in kilted jazzy; do
  if [ "$_held" = jazzy ]; then _marker=ros_jazzy_rclpy; else _marker=ros_rclpy; fi
  if compgen -G "$VENV/lib/python3*/site-packages/$_marker-*.dist-info" >/dev/null; then HELD="$_held"; fi
done
if [ -n "${HELD:-}" ] && [ "$HELD" != "$ROS_DISTRO" ]; then
  die "$VENV holds ROS 2 $HELD, not $ROS_DISTRO. Each distribution needs its own venv: unset DPT_VENV (the default for $ROS_DISTRO is ~/.local/share/dpt_perception/venv$DPT_DISTRO_SUFFIX) or point it at another directory."
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating venv at $VENV"
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  say "installing pinned ROS 2 $DPT_DISTRO_NAME requirements into $VENV (first run: a minute or two)"
  if [ "$ROS_DISTRO" != kilted ]; then
    # requirements/<distro>/constraints.txt pins what differs from the Kilted lock (the ROS wheels);
    # every other pin comes from requirements/constraints.txt, so it is written down once.
    CONSTRAINTS="$VENV/.dpt_constraints.txt"
    awk 'function name(line) { sub(/[ \t]*[=<>!~;].*/, "", line); line = tolower(line); gsub(/[-_.]+/, "-", line); return line }
         FNR == NR { if ($0 !~ /^[ \t]*(#|$)/) own[name($0)] = 1; next }
         !(name($0) in own)' "$REQ/$ROS_DISTRO/constraints.txt" "$REQ/constraints.txt" > "$CONSTRAINTS"
    cat "$REQ/$ROS_DISTRO/constraints.txt" >> "$CONSTRAINTS"
  fi
  # -c pins every version, torch to the local 2.13.0 CPU build: pip never pulls CUDA wheels.
  "$VENV/bin/python" -m pip install -q --progress-bar off -c "$CONSTRAINTS" "setuptools>=77.0.3,<80" \
    -r "$DPT_DISTRO_ROS_REQ" -r "$REQ/runtime.txt" -r "$REQ/test.txt" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2) \
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
BUILD="$ROOT/build$DPT_DISTRO_SUFFIX" INSTALL="$ROOT/install$DPT_DISTRO_SUFFIX" LOG="$ROOT/log$DPT_DISTRO_SUFFIX"
mkdir -p "$LOG"
say "colcon build (dpt_perception, ROS 2 $DPT_DISTRO_NAME) into ${INSTALL#"$ROOT"/}/"
colcon --log-base "$LOG" build --symlink-install --base-paths "$ROOT" \
  --build-base "$BUILD" --install-base "$INSTALL" \
  --event-handlers console_cohesion- summary- status- >"$LOG/colcon_build.txt" 2>&1 \
  || { tail -40 "$LOG/colcon_build.txt" >&2; die "colcon build failed; full log: ${LOG#"$ROOT"/}/colcon_build.txt. A stale build can be cleared with: rm -rf '$BUILD' '$INSTALL'"; }
if [ "$ROS_DISTRO" = kilted ]; then
  say "ready: source scripts/env.sh to use the package"
else
  say "ready: export ROS_DISTRO=$ROS_DISTRO && source scripts/env.sh to use the package"
fi
