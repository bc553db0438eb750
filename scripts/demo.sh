#!/usr/bin/env bash
# Set up .venv if needed, then run the main job on the bundled sample frames with the shipped model.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup_env.sh"
venv="${FCN_ROAD_SEG_VENV:-$root/.venv}"
out="${1:-$root/out/demo}"
exec "$venv/bin/fcn-road-seg" infer "$root/samples" --out "$out"
