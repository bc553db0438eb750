#!/usr/bin/env bash
# Set up .venv if needed (what the node and CLI need; no PyTorch), then the main job: play the bundled sample
# frames as a camera through the ROS 2 node (real rclpy from PyPI, no ROS install, headless) with the shipped
# model; prints rate and latency and saves overlays to out/demo/. Every argument goes to `fcn-road-seg demo`:
#   scripts/demo.sh --frames 4 --rate 5 --out /tmp/demo --images DIR --model M.onnx
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup_env.sh"
venv="${FCN_ROAD_SEG_VENV:-$root/.venv}"
exec "$venv/bin/fcn-road-seg" demo --images "$root/samples" --out "$root/out/demo" "$@"
