"""The lint checks `ros2 pkg create` adds to a Python package (ament_flake8, ament_pep257).

They run with flake8 and pydocstyle as configured in setup.cfg, over every Python file of the repository.
"""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["fcn_road_seg", "launch", "bench", "test", "setup.py"]


@pytest.mark.parametrize("tool", ["flake8", "pydocstyle"])
def test_code_passes(tool):
    pytest.importorskip(tool, reason=f"{tool} is not installed (the 'dev' extra)")
    res = subprocess.run([sys.executable, "-m", tool, *PATHS], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{tool}:\n{res.stdout}{res.stderr}"
