#!/usr/bin/env bash
# Set up .venv if needed, then the main job: play the bundled sample frames as a camera through the ROS 2
# node (real rclpy from PyPI, no ROS install, headless) with the shipped model; prints rate and latency
# and saves overlays. Usage: scripts/demo.sh [OUT_DIR] [extra `fcn-road-seg demo` flags, e.g. --frames 20]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup_env.sh"
venv="${FCN_ROAD_SEG_VENV:-$root/.venv}"
out="${1:-$root/out/demo}"
exec "$venv/bin/fcn-road-seg" demo --images "$root/samples" --out "$out" "${@:2}"
