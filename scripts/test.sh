#!/usr/bin/env bash
# Set up .venv for the tests if needed (PyTorch included), then run the whole test suite (real rclpy, ONNX
# Runtime, ../shared/data samples). Arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup_env.sh" --test
venv="${FCN_ROAD_SEG_VENV:-$root/.venv}"
cd "$root"
# The real ROS 2 command line for the launch tests (test/ros2_cli.py): build it beside the checkout's
# ../shared/ros2-cli (seconds when up to date, ~3 min the first time), install this checkout into it.
ros2cli="$root/../shared/ros2-cli/build.sh"
if [ -f "$ros2cli" ]; then
  log="${TMPDIR:-/tmp}/fcn_road_seg_ros2_cli_build.$$.log"
  bash "$ros2cli" >"$log" 2>&1 || { tail -20 "$log"; echo "test.sh: $ros2cli failed (log: $log)" >&2; exit 1; }
  "$venv/bin/python" "$root/test/ros2_cli.py" install
fi
# A DDS domain of our own per run, discovery on this machine only.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 200) + 10 ))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
exec "$venv/bin/python" -m pytest "$@"
