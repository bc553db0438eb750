#!/usr/bin/env bash
# Create/refresh .venv (no system ROS required):
#   scripts/setup_env.sh          what the node, the CLI and the demo need: real ROS 2 Jazzy rclpy + messages
#                                 from PyPI, ONNX Runtime, OpenCV, rosbags, ... (the package and its 'ros'
#                                 extra; no PyTorch)
#   scripts/setup_env.sh --test   also PyTorch (TORCH_SPEC) and the 'train' and 'dev' extras: the test suite,
#                                 train, export, model-info
# Idempotent: skips all work when setup.py, package.xml and this script are unchanged since the last setup
# of that kind (a --test setup also covers the plain one).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FCN_ROAD_SEG_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"   # e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
case "${1:-}" in
  "") mode=run ;;
  --test) mode=test ;;
  *) echo "usage: scripts/setup_env.sh [--test]" >&2; exit 2 ;;
esac

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || { echo "error: Python >= 3.10 needed (found $("$python" --version 2>&1)); set PYTHON=python3.X" >&2; exit 1; }

hash="$(cat "$root/setup.py" "$root/package.xml" "$root/scripts/setup_env.sh" | sha256sum | cut -d' ' -f1)"
run_stamp="$venv/.fcn_road_seg_setup"
test_stamp="$venv/.fcn_road_seg_setup_test"
if [[ -x "$venv/bin/fcn-road-seg" ]]; then
  if [[ -f "$test_stamp" && "$(cat "$test_stamp")" == "$hash $torch_spec" ]] \
     || [[ $mode == run && -f "$run_stamp" && "$(cat "$run_stamp")" == "$hash" ]]; then
    exit 0
  fi
fi

what="the node, CLI and demo"
[[ $mode == test ]] && what="the tests (PyTorch included)"
echo "setting up $venv for $what (first run takes a few minutes) ..."
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
"${pip[@]}" --upgrade pip
if [[ $mode == test ]]; then
  # shellcheck disable=SC2086
  "${pip[@]}" $torch_spec
  "${pip[@]}" -e "$root[ros,train,dev]"
  echo "$hash $torch_spec" > "$test_stamp"
else
  "${pip[@]}" -e "$root[ros]"
fi
echo "$hash" > "$run_stamp"
echo "environment ready: $venv"
