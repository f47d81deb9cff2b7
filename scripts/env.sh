# Source me (bash): activates the venv and the colcon install of dpt_perception for ROS_DISTRO
# (kilted, the default, or jazzy; see scripts/distro.sh), as made by scripts/setup.sh.
# Uses the package's Fast DDS profile (large shared-memory segment for image topics) unless
# FASTDDS_DEFAULT_PROFILES_FILE is already set. Sourcing it again for the other distribution
# first drops the previous one's venv and install tree from the search paths.
_dpt_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_dpt_rc=1
# shellcheck source=scripts/distro.sh
if ! source "$_dpt_root/scripts/distro.sh"; then
  :
elif [ ! -f "$DPT_DISTRO_VENV/bin/activate" ]; then
  printf '[dpt] ERROR: no venv at %s; make it with: ROS_DISTRO=%s bash scripts/setup.sh (or make setup ROS_DISTRO=...)\n' "$DPT_DISTRO_VENV" "$ROS_DISTRO" >&2
else
  if [ -n "${DPT_ENV_VENV:-}" ] && [ "$DPT_ENV_VENV" != "$DPT_DISTRO_VENV" ]; then
    for _dpt_var in PATH PYTHONPATH AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH LD_LIBRARY_PATH; do
      _dpt_kept=""
      IFS=: read -r -a _dpt_parts <<< "${!_dpt_var:-}"
      for _dpt_part in "${_dpt_parts[@]}"; do
        case "$_dpt_part" in "$DPT_ENV_VENV"|"$DPT_ENV_VENV"/*|"$_dpt_root"/install*) ;;
          *) _dpt_kept="${_dpt_kept:+$_dpt_kept:}$_dpt_part" ;; esac
      done
      if [ -n "$_dpt_kept" ]; then export "$_dpt_var=$_dpt_kept"; else unset "$_dpt_var"; fi
    done
    unset _ROS_WHEELS_BOOTSTRAP_COMPLETE _dpt_var _dpt_kept _dpt_parts _dpt_part
  fi
  # shellcheck disable=SC1091
  source "$DPT_DISTRO_VENV/bin/activate"
  export DPT_ENV_VENV="$VIRTUAL_ENV"
  export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  # shellcheck disable=SC1091
  [ -f "$_dpt_root/install$DPT_DISTRO_SUFFIX/setup.bash" ] && source "$_dpt_root/install$DPT_DISTRO_SUFFIX/setup.bash"
  export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_dpt_root/config/fastdds_images.xml}"
  _dpt_rc=0
fi
unset _dpt_root DPT_DISTRO_NAME DPT_DISTRO_SUFFIX DPT_DISTRO_ROS_REQ DPT_DISTRO_VENV
eval "unset _dpt_rc; return $_dpt_rc"
