"""The package builds with colcon (ament_python) and as a plain wheel, installing the same files."""
import json
import os
import re
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
    # the README's system-ROS commands start our executables the way colcon installs them
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## With a system ROS 2", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert not re.search(r"^fcn-road-seg ", block, re.M), "fcn-road-seg is not on PATH after colcon build"
    for executable in re.findall(r"ros2 run fcn_road_seg ([\w-]+)", block):
        assert (install / "lib" / "fcn_road_seg" / executable).is_file(), executable
    # model-path finds the install through AMENT_PREFIX_PATH, also without ament_index_python
    env = {**os.environ, "PYTHONPATH": str(site), "AMENT_PREFIX_PATH": str(install)}
    res = _model_path_without_ament_index(env, tmp_path)
    assert res.returncode == 0 and Path(res.stdout.strip()).is_relative_to(share), res.stdout + res.stderr


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
    assert any(n.endswith("data/share/fcn_road_seg/samples/README.md") for n in names)  # attribution
    assert any(n.endswith("data/share/fcn_road_seg/models/README.md") for n in names)  # the weights' licence
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "fcn-road-seg = fcn_road_seg.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
    assert "fcn_road_seg/trt/data/trt_onnx_ops.json" in names
    target = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                          str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert_scripts_run_from(target / "bin", target)


def test_package_xml_declares_every_ros_package_the_code_uses():
    """Every ROS package imported by the code or started by a launch file is a rosdep key in package.xml.

    Among them std_srvs for the evaluator's Trigger service, rviz2 for use_rviz; nothing else is declared but those and
    the system Python keys.
    """
    import ast
    import re

    declared = set(re.findall(r"<(?:exec_|build_|test_)?depend>([\w-]+)</", (ROOT / "package.xml").read_text()))
    ros_packages = {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "std_srvs", "rcl_interfaces", "nav_msgs",
                    "geometry_msgs", "builtin_interfaces", "cv_bridge", "tf2_ros", "launch", "launch_ros",
                    "ament_index_python", "rviz2"}
    used = set()
    for path in [*(ROOT / "fcn_road_seg").rglob("*.py"), *(ROOT / "launch").glob("*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                used |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                used.add(node.module.split(".")[0])
        used |= set(re.findall(r'package="(\w+)"', path.read_text()))
    used = {{"tf2_ros": "tf2_ros_py"}.get(name, name) for name in used & ros_packages}  # import name -> rosdep key
    assert {"std_srvs", "rviz2", "rclpy"} <= used
    assert used <= declared, f"undeclared in package.xml: {sorted(used - declared)}"
    # the rest are the rosdep keys of system Python packages (rosdep/python.yaml) and the test runner
    assert declared - used <= set(ROSDEP_KEYS.values()) | {"python3-yaml", "python3-pytest"}, declared - used


# install_requires -> its rosdep key (rosdistro's python.yaml); None: pip only, and the README says so
ROSDEP_KEYS = {"numpy": "python3-numpy", "opencv-python-headless": "python3-opencv", "onnx": None,
               "onnxruntime": "python3-onnxruntime-pip", "tqdm": "python3-tqdm", "rosbags": "python3-rosbags-pip",
               "rosbags-image": None, "matplotlib": "python3-matplotlib", "openvino": None}


def test_every_python_dependency_has_its_rosdep_key_or_is_named_pip_only():
    """`rosdep install` must leave a node that starts.

    Each install_requires entry is a rosdep key in package.xml, or the README's system-ROS section names it as pip-only
    (and its pip line installs it).
    """
    import ast

    tree = ast.parse((ROOT / "setup.py").read_text())
    (requires,) = [kw.value for n in ast.walk(tree) if isinstance(n, ast.Call)
                   for kw in n.keywords if kw.arg == "install_requires"]
    names = {re.split(r"[<>=\[ ]", ast.literal_eval(e))[0] for e in requires.elts}
    assert names == set(ROSDEP_KEYS), names ^ set(ROSDEP_KEYS)
    declared = set(re.findall(r"<exec_depend>([\w-]+)</", (ROOT / "package.xml").read_text()))
    readme = (ROOT / "README.md").read_text()
    pip_line = re.search(r"^pip install (.*?)\s+#", readme.split("## With a system ROS 2", 1)[1], re.M).group(1)
    for name, key in ROSDEP_KEYS.items():
        if key is None:
            assert name in pip_line.split() and f"`{name}`" in readme, name
        else:
            assert key in declared and name not in pip_line.split(), (name, key)


def test_licences_cover_code_weights_and_samples():
    """REP 149: a <license> per part, each naming a file that exists; the samples' attribution is installed."""
    import xml.etree.ElementTree as ET

    licences = [(e.text, e.get("file")) for e in ET.parse(ROOT / "package.xml").getroot().iter("license")]
    assert ("Apache-2.0", "LICENSE") in licences and "Apache License" in (ROOT / "LICENSE").read_text()
    for _, path in licences:
        assert (ROOT / path).is_file(), path
    for part in ("models/README.md", "samples/README.md"):
        assert {text for text, path in licences if path == part} == {"CC-BY-NC-SA-3.0", "CC-BY-NC-4.0"}, part


def _model_path_without_ament_index(env: dict, cwd: Path) -> subprocess.CompletedProcess:
    # ament_index_python made unimportable, as in a plain venv next to a colcon install
    code = ("import sys; sys.modules['ament_index_python'] = None; from fcn_road_seg.cli import main; "
            "sys.exit(main(['model-path']))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=60)


def test_model_path_scans_ament_prefix_path_without_ament_index_python(tmp_path):
    from fcn_road_seg.resources import DEFAULT_MODEL_NAME

    prefix = tmp_path / "install" / "fcn_road_seg"
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "fcn_road_seg").write_text("")
    (prefix / "share" / "fcn_road_seg" / "models").mkdir(parents=True)
    model = prefix / "share" / "fcn_road_seg" / "models" / DEFAULT_MODEL_NAME
    shutil.copy(ROOT / "models" / DEFAULT_MODEL_NAME, model)
    other = tmp_path / "install" / "other_pkg"  # a prefix without our index marker is skipped
    (other / "share" / "fcn_road_seg" / "models").mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AMENT_PREFIX_PATH": f"{other}{os.pathsep}{prefix}"}
    res = _model_path_without_ament_index(env, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(model)


def test_readme_venv_layout_builds_and_runs_with_the_venv_interpreter(tmp_path):
    """The README's system-ROS recipe on a PEP 668 system: the installed executables run with the venv's interpreter.

    The recipe: a venv with --system-site-packages, ROS on PYTHONPATH (here this environment's site-packages, holding
    rclpy and colcon, stand in for /opt/ros/...), `python -m colcon build`. The executables also see rclpy.
    """
    import sysconfig

    colcon_ok = subprocess.run([sys.executable, "-c", "import colcon_core"], capture_output=True).returncode == 0
    if not colcon_ok:
        pytest.skip("colcon not installed (pip install colcon-common-extensions, the 'dev' extra)")
    ros_site = sysconfig.get_paths()["purelib"]
    venv = tmp_path / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--system-site-packages",
                    "--without-pip", str(venv)], check=True, timeout=120)
    (venv / "COLCON_IGNORE").touch()
    python = venv / "bin" / "python"
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(ROOT, src / "fcn_road_seg", ignore=IGNORE)
    env = {**os.environ, "PYTHONPATH": ros_site}
    res = subprocess.run([str(python), "-m", "colcon", "build", "--packages-select", "fcn_road_seg"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (tmp_path / "build" / "venv").exists()  # COLCON_IGNORE kept colcon out of the venv
    install = tmp_path / "install" / "fcn_road_seg"
    bindir = install / "lib" / "fcn_road_seg"
    assert (bindir / "fcn-road-seg").read_text().splitlines()[0] == f"#!{python}"
    (site,) = (install / "lib").glob("python3*/site-packages")
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ros_site}", "AMENT_PREFIX_PATH": str(install)}
    res = subprocess.run([str(bindir / "fcn-road-seg"), "model-path"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=60)
    assert res.returncode == 0 and Path(res.stdout.strip()).is_relative_to(install / "share"), res.stderr
    res = subprocess.run([str(bindir / "road_seg_node"), "--ros-args", "-p", "model:=/nonexistent/model.onnx"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert "model file not found" in res.stdout + res.stderr and "Traceback" not in res.stderr
    # the doctor finds the installed model and samples (not the source tree's) and passes on them
    res = subprocess.run([str(bindir / "fcn-road-seg"), "doctor", "--repeat", "1", "--json", "doctor.json"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((tmp_path / "doctor.json").read_text())
    share = install / "share" / "fcn_road_seg"
    assert Path(report["model"]["path"]).is_relative_to(share)
    assert sorted(report["frame_files"]) == sorted(str(p) for p in (share / "samples").glob("*.jpg"))
