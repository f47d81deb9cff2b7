# Source me (bash): activates the venv and the colcon install of dpt_perception.
# Uses the package's Fast DDS profile (large shared-memory segment for image topics) unless
# FASTDDS_DEFAULT_PROFILES_FILE is already set.
_dpt_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_dpt_venv="${DPT_VENV:-$HOME/.local/share/dpt_perception/venv}"
# shellcheck disable=SC1091
source "$_dpt_venv/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# shellcheck disable=SC1091
[ -f "$_dpt_root/install/setup.bash" ] && source "$_dpt_root/install/setup.bash"
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_dpt_root/config/fastdds_images.xml}"
unset _dpt_root _dpt_venv
