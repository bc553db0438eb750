"""Shared fixtures: real sample data from ../shared/data and small exported models."""
from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest
from trt_fakes.fixtures import fakes  # noqa: F401 - the strict TensorRT/pycuda fakes, for every test file

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FCN_ROAD_SEG_SHARED_DATA", ROOT.parent / "shared" / "data"))

# Our own DDS domain and localhost-only discovery for every test that talks to ROS.
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 200 + 10))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


# CI (.ci/run) sets FCN_ROAD_SEG_REQUIRE_DATA=1: missing data or a missing shipped model fails the tests that
# need it, naming what is missing. Elsewhere (a user's fresh clone without ../shared) those tests skip, saying why.
REQUIRE_DATA = os.environ.get("FCN_ROAD_SEG_REQUIRE_DATA") == "1"
DATA_SETS = ("kitti_road", "kitti_road_train", "kitti_semantics", "camvid")  # the folders of ../shared/data we read


def missing(what: str) -> NoReturn:
    """Apply the one policy for absent test data or models: fail under FCN_ROAD_SEG_REQUIRE_DATA=1, else skip."""
    if REQUIRE_DATA:
        pytest.fail(f"{what} (FCN_ROAD_SEG_REQUIRE_DATA=1: this run must have it)", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    absent = [name for name in DATA_SETS if not (SHARED / name).is_dir()]
    if absent:
        missing(f"real sample data not found: {', '.join(absent)} absent from {SHARED} (CI has it beside the repo "
                "as ../shared/data; FCN_ROAD_SEG_SHARED_DATA names another folder)")
    return SHARED


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    """Return the shipped model (models/ in this tree, or an install's); FCN_ROAD_SEG_SHIPPED_MODEL overrides it."""
    from fcn_road_seg.errors import ModelError
    from fcn_road_seg.resources import default_model_path

    override = os.environ.get("FCN_ROAD_SEG_SHIPPED_MODEL")
    try:
        path = Path(override) if override else default_model_path()
    except ModelError as err:
        missing(f"no shipped model: {err}")
    if not path.is_file():
        missing(f"no shipped model: {path} not found")
    return path


@pytest.fixture(scope="session")
def kitti_images(shared_data) -> list[Path]:
    return sorted((shared_data / "kitti_road" / "training" / "image_2").glob("*.png"))


@pytest.fixture(scope="session")
def camvid_images(shared_data) -> list[Path]:
    names = (shared_data / "camvid" / "test.txt").read_text().split()[:3]
    return [shared_data / "camvid" / "images" / n for n in names]


def make_random_net(variant: str = "fcn8s", seed: int = 0):
    """Build a compact FCN whose score layers are random too, so its probabilities vary over the frame."""
    import torch

    from fcn_road_seg.training.model import FCN, FCNConfig

    torch.manual_seed(seed)
    net = FCN(FCNConfig(variant=variant, width_mult=0.125, fc_width=64))
    with torch.no_grad():
        for name in ("score_fr", "score_pool4", "score_pool3"):
            layer = getattr(net, name, None)
            if layer is not None:
                layer.weight.normal_(0, 0.05)
    return net.eval()


@pytest.fixture(scope="session")
def tiny_net():
    return make_random_net()


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_net) -> Path:
    """Compact random FCN-8s exported at 96x320 (KITTI-like aspect) with a full contract."""
    from fcn_road_seg.training.export import contract_for, export_onnx

    path = tmp_path_factory.mktemp("models") / "tiny.onnx"
    contract = contract_for(tiny_net.config, (96, 320), training_data="random weights (tests)",
                            metrics={"MaxF": 0.5})
    return export_onnx(tiny_net, contract, path)


@pytest.fixture(scope="module")
def segmenter(tiny_onnx):
    """Yield a RoadSegmenter: the random tiny model through the real pipeline and ONNX Runtime."""
    from fcn_road_seg.pipeline import RoadSegmenter

    with RoadSegmenter(tiny_onnx, backend="onnxruntime") as seg:
        yield seg


@pytest.fixture(scope="module")
def harness():
    """Provide a real rclpy context, executor and probe node for the node tests (ros_harness.py)."""
    from ros_harness import RosHarness

    h = RosHarness()
    yield h
    h.close()
