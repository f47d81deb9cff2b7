# Sourced (bash) by setup.sh and env.sh: the one table of the ROS 2 distributions this set-up
# installs from the Python package registry, chosen by ROS_DISTRO (default kilted).
# Sets and exports ROS_DISTRO; sets DPT_DISTRO_NAME, DPT_DISTRO_ROS_REQ (the ROS requirements
# file), DPT_DISTRO_SUFFIX (of the venv and of the colcon build/install/log directories) and
# DPT_DISTRO_VENV (DPT_VENV if set). Returns 1, saying why, for any other ROS_DISTRO.
_dpt_req="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/requirements"
case "${ROS_DISTRO:-kilted}" in
  kilted) DPT_DISTRO_NAME=Kilted DPT_DISTRO_SUFFIX="" DPT_DISTRO_ROS_REQ="$_dpt_req/ros.txt" ;;
  jazzy) DPT_DISTRO_NAME=Jazzy DPT_DISTRO_SUFFIX=-jazzy DPT_DISTRO_ROS_REQ="$_dpt_req/jazzy/ros.txt" ;;
  *)
    printf '[dpt] ERROR: ROS_DISTRO=%s: this set-up installs ROS 2 from the Python package registry for ROS_DISTRO=kilted (the default) or ROS_DISTRO=jazzy. If ROS_DISTRO came from a sourced /opt/ros/*/setup.bash, build in that ROS workspace instead (docs/node.md, "Use in an existing ROS 2 workspace") or use a fresh shell.\n' "$ROS_DISTRO" >&2
    unset _dpt_req
    return 1 ;;
esac
unset _dpt_req
export ROS_DISTRO="${ROS_DISTRO:-kilted}"
DPT_DISTRO_VENV="${DPT_VENV:-$HOME/.local/share/dpt_perception/venv$DPT_DISTRO_SUFFIX}"
