"""The package layout's rules, read from the source.

No import cycle, and each subpackage imports only what its ``__init__`` docstring allows.
"""
import subprocess
import sys
from pathlib import Path

import pytest

from import_graph import cycles, import_graph, reachable

ROOT = Path(__file__).resolve().parents[1]
PKG = "fcn_road_seg"
GRAPH, OUTSIDE = import_graph(ROOT / PKG, PKG)

ROS_PACKAGES = {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "std_srvs", "nav_msgs", "geometry_msgs",
                "builtin_interfaces", "rcl_interfaces", "cv_bridge", "tf2_ros", "launch", "launch_ros"}
# The core every consumer shares: top-level modules other than the CLI.
CORE = {f"{PKG}.{m}" for m in ("contract", "errors", "images", "image_messages", "outputs", "preprocess", "progress",
                               "refine", "resources", "pipeline", "wording")} | {PKG}
CORE_LEAVES = CORE - {f"{PKG}.pipeline"}


def in_sub(name: str, sub: str) -> bool:
    return name == f"{PKG}.{sub}" or name.startswith(f"{PKG}.{sub}.")


def subpackage_modules(sub: str) -> list[str]:
    return sorted(m for m in GRAPH if in_sub(m, sub))


def test_the_graph_sees_every_module_and_the_known_edges():
    # A reader that missed imports would pass every rule below vacuously.
    assert len(GRAPH) >= 35
    assert f"{PKG}.pipeline" in GRAPH[f"{PKG}.ros.road_core"]
    assert f"{PKG}.trt.engine" in GRAPH[f"{PKG}.backends.tensorrt"]  # an import inside a function counts too
    assert f"{PKG}.training" in GRAPH[f"{PKG}.cli"]  # a submodule import runs its package's __init__
    assert "rclpy" in OUTSIDE[f"{PKG}.ros.node"]


def test_no_module_imports_itself_back():
    found = cycles(GRAPH)
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_a_reintroduced_cycle_is_caught(tmp_path):
    pkg = tmp_path / "demo_pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "pipeline.py").write_text("from .sub import engine\n")
    (pkg / "sub" / "engine.py").write_text("def build():\n    from ..pipeline import preprocess\n")
    found = cycles(import_graph(pkg, "demo_pkg")[0])
    assert ["demo_pkg.pipeline", "demo_pkg.sub.engine", "demo_pkg.pipeline"] in found


def test_only_ros_imports_rclpy_or_ros_messages():
    offenders = {m: sorted(OUTSIDE[m] & ROS_PACKAGES) for m in GRAPH
                 if not in_sub(m, "ros") and OUTSIDE[m] & ROS_PACKAGES}
    assert not offenders


def test_node_pipeline_and_backends_never_reach_training_or_torch():
    for start in [f"{PKG}.ros.node", f"{PKG}.pipeline", *subpackage_modules("backends")]:
        closure = reachable(GRAPH, start) | {start}
        assert not [m for m in closure if in_sub(m, "training")], start
        assert not [m for m in closure if "torch" in OUTSIDE[m]], start


def test_node_import_loads_neither_torch_nor_training():
    code = ("import sys, fcn_road_seg.ros.node; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('fcn_road_seg.training')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("sub", ["backends", "trt", "evaluation", "training", "doctor"])
def test_subpackages_never_import_ros(sub):
    for module in subpackage_modules(sub):
        assert not [m for m in GRAPH[module] if in_sub(m, "ros")], module


def test_core_imports_only_core_and_backends():
    for module in CORE:
        allowed = CORE | set(subpackage_modules("backends")) if module == f"{PKG}.pipeline" else CORE_LEAVES
        assert GRAPH[module] <= allowed, (module, sorted(GRAPH[module] - allowed))


def test_doctor_never_reaches_training_evaluation_or_torch():
    assert subpackage_modules("doctor")  # an empty list would pass vacuously
    for module in subpackage_modules("doctor"):
        closure = reachable(GRAPH, module) | {module}
        assert not [m for m in closure if in_sub(m, "training") or in_sub(m, "evaluation")], module
        assert not [m for m in closure if "torch" in OUTSIDE[m]], module


def test_evaluation_never_imports_training():
    for module in subpackage_modules("evaluation"):
        assert not [m for m in GRAPH[module] if in_sub(m, "training")], module


def test_trt_build_side_and_backends_import_only_core_leaves_and_trt():
    allowed = CORE_LEAVES | set(subpackage_modules("trt")) | set(subpackage_modules("backends"))
    build_side = [m for m in subpackage_modules("trt") if m != f"{PKG}.trt.check"]
    for module in build_side + subpackage_modules("backends"):
        assert GRAPH[module] <= allowed, (module, sorted(GRAPH[module] - allowed))
    for module in build_side:
        assert not [m for m in GRAPH[module] if in_sub(m, "backends")], module


def test_every_subpackage_says_what_lives_there_and_what_it_may_import():
    for init in sorted((ROOT / PKG).rglob("__init__.py")):
        doc = (init.read_text().split('"""') + ["", ""])[1]
        assert len(doc.split()) >= 15, f"{init} needs a docstring saying what lives there"
        if init.parent != ROOT / PKG:
            assert "import" in doc, f"{init}: say what the subpackage may import"
