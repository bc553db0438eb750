#!/usr/bin/env bash
# Create/refresh .venv with everything the package, its tests and the demo need (no system ROS required):
# real ROS 2 Jazzy rclpy + messages from PyPI, PyTorch, ONNX Runtime, OpenCV, rosbags, ...
# Idempotent: skips all work when setup.py, package.xml and this script are unchanged since the last run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FCN_ROAD_SEG_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"   # e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || { echo "error: Python >= 3.10 needed (found $("$python" --version 2>&1)); set PYTHON=python3.X" >&2; exit 1; }

stamp="$venv/.fcn_road_seg_setup"
want="$(cat "$root/setup.py" "$root/package.xml" "$root/scripts/setup_env.sh" | sha256sum | cut -d' ' -f1) $torch_spec"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/fcn-road-seg" ]]; then
  exit 0
fi

echo "setting up $venv (first run takes a few minutes) ..."
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
"${pip[@]}" --upgrade pip
# shellcheck disable=SC2086
"${pip[@]}" $torch_spec
"${pip[@]}" -e "$root[ros,train,dev]"
echo "$want" > "$stamp"
echo "environment ready: $venv"
