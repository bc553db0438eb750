"""The package builds with colcon (ament_python) and as a plain wheel, installing the same files."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns(".venv", ".git", "build", "install", "log", "out", "runs", "*.egg-info", "__pycache__",
                                ".pytest_cache")
# Each console script, started without the parameter it needs, reaches its own node's start-up check:
# proof that the installed script found its module (after the layout move) and ran it.
SCRIPT_CHECKS = {
    "fcn-road-seg": (["--help"], "usage: fcn-road-seg"),
    "road_seg_node": (["--ros-args", "-p", "model:=/nonexistent/model.onnx"], "model file not found"),
    "image_folder_publisher": (["--ros-args"], "parameter 'folder' is empty"),
    "bag_player": (["--ros-args"], "parameter 'bag' is empty"),
    "road_evaluator": (["--ros-args"], "parameter 'out' is empty"),
}


def assert_scripts_run_from(bindir: Path, site: Path) -> None:
    """Run every installed console script with ``site`` first on the path; it must import from there."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import fcn_road_seg.ros.node as m; print(m.__file__)"],
                           capture_output=True, text=True, env=env, check=True, cwd=site).stdout
    assert Path(where.strip()).is_relative_to(site)
    for script, (args, expected) in SCRIPT_CHECKS.items():
        res = subprocess.run([sys.executable, str(bindir / script), *args], capture_output=True, text=True,
                             env=env, cwd=site, timeout=60)
        assert expected in res.stdout + res.stderr, (script, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr, (script, res.stderr)


def test_colcon_build_installs_executables_and_share_files(tmp_path):
    colcon = shutil.which("colcon") or str(Path(sys.executable).parent / "colcon")
    if not Path(colcon).exists():
        pytest.skip("colcon not installed (pip install colcon-common-extensions, the 'dev' extra)")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(ROOT, src / "fcn_road_seg", ignore=IGNORE)
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
    (site,) = (install / "lib").glob("python3*/site-packages")
    assert_scripts_run_from(install / "lib" / "fcn_road_seg", site)  # where `ros2 run` looks


def test_wheel_carries_package_and_data_files_and_its_scripts_run(tmp_path):
    src = tmp_path / "src"  # a copy, so the build leaves no build/ folder in the repository
    shutil.copytree(ROOT, src, ignore=IGNORE)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(src)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("fcn_road_seg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fcn_road_seg/pipeline.py" in names
    assert any(n.endswith("data/share/fcn_road_seg/package.xml") for n in names)
    assert any(n.endswith("data/share/fcn_road_seg/samples/kitti_um_000000.jpg") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "fcn-road-seg = fcn_road_seg.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
    assert "fcn_road_seg/trt/data/trt_onnx_ops.json" in names
    target = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                          str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert_scripts_run_from(target / "bin", target)
