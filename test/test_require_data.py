"""The policy for absent test data and shipped model (conftest.missing).

A skip with the reason on a user's clone, a failure naming what is missing under FCN_ROAD_SEG_REQUIRE_DATA=1 (CI). Runs
pytest on two small tests with the data folder and the shipped model pointed at paths that do not exist.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["test/test_corrupt_images.py::test_damaged_png_is_refused",  # needs ../shared/data
         "test/test_require_data.py::test_the_shipped_model_opens_and_matches_its_contract"]  # the shipped model


def test_the_shipped_model_opens_and_matches_its_contract(shipped_model):
    from fcn_road_seg.backends import open_backend

    backend = open_backend(shipped_model, "onnxruntime")  # refuses a graph that disagrees with its contract
    try:
        contract = backend.contract
        assert contract.metrics_split == "validation" and 0.9 < contract.metrics["MaxF"] <= 1.0
        assert backend.infer(np.zeros(contract.input_shape, np.uint8)).shape == contract.input_shape[:3]
    finally:
        backend.close()


def _pytest(tmp_path, require: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FCN_ROAD_SEG_REQUIRE_DATA"}
    env.update(FCN_ROAD_SEG_SHARED_DATA=str(tmp_path / "no_data"), FCN_ROAD_SEG_SHIPPED_MODEL=str(tmp_path / "no.onnx"))
    if require:
        env["FCN_ROAD_SEG_REQUIRE_DATA"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", *TESTS], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_missing_data_and_model_skip_with_reasons_or_fail_when_required(tmp_path):
    data = (f"real sample data not found: kitti_road, kitti_road_train, kitti_semantics, camvid absent from "
            f"{tmp_path / 'no_data'}")
    model = f"no shipped model: {tmp_path / 'no.onnx'} not found"
    relaxed = _pytest(tmp_path, require=False)
    assert relaxed.returncode == 0 and "2 skipped" in relaxed.stdout, relaxed.stdout + relaxed.stderr
    assert data in relaxed.stdout and model in relaxed.stdout
    strict = _pytest(tmp_path, require=True)
    assert strict.returncode == 1 and "2 errors" in strict.stdout and "skipped" not in strict.stdout, strict.stdout
    assert f"{data} " in strict.stdout and f"{model} (FCN_ROAD_SEG_REQUIRE_DATA=1" in strict.stdout
