"""The package builds with colcon (ament_python) and as a plain wheel, installing the same files."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_colcon_build_installs_executables_and_share_files(tmp_path):
    colcon = shutil.which("colcon") or str(Path(sys.executable).parent / "colcon")
    if not Path(colcon).exists():
        pytest.skip("colcon not installed (pip install colcon-common-extensions, the 'dev' extra)")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(ROOT, src / "fcn_road_seg", ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "install", "log", "out", "runs", "*.egg-info", "__pycache__", ".pytest_cache"))
    res = subprocess.run([colcon, "build", "--packages-select", "fcn_road_seg"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    install = tmp_path / "install" / "fcn_road_seg"
    assert (install / "lib" / "fcn_road_seg" / "fcn-road-seg").is_file()
    share = install / "share" / "fcn_road_seg"
    assert (share / "package.xml").is_file()
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "fcn_road_seg").is_file()
    assert sorted(p.name for p in (share / "samples").glob("*.jpg")) == sorted(
        p.name for p in (ROOT / "samples").glob("*.jpg"))


def test_wheel_carries_package_and_data_files(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("fcn_road_seg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fcn_road_seg/pipeline.py" in names
    assert any(n.endswith("data/share/fcn_road_seg/package.xml") for n in names)
    assert any(n.endswith("data/share/fcn_road_seg/samples/kitti_um_000000.jpg") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "fcn-road-seg = fcn_road_seg.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
