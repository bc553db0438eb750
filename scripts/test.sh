#!/usr/bin/env bash
# Set up .venv for the tests if needed (PyTorch included), then run the whole test suite (real rclpy, ONNX
# Runtime, ../shared/data samples). Arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup_env.sh" --test
venv="${FCN_ROAD_SEG_VENV:-$root/.venv}"
cd "$root"
# A DDS domain of our own per run, discovery on this machine only.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 200) + 10 ))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
exec "$venv/bin/python" -m pytest "$@"
