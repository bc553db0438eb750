"""Per-frame cost of the bird's-eye view: the node's ``~/bev_grid`` and the evaluator's KITTI devkit BEV.

On a real KITTI frame (the bundled ``samples/kitti_um_000000.jpg``, its road probability from the shipped
model) and its real calibration (``../shared/data/kitti_road/training/calib/um_000000.txt``; a nominal
KITTI camera 1.65 m above the road when absent):

* ``grid``: what the node does per frame for the OccupancyGrid (lookup table already built): bilinear
  ``cv2.remap`` of the probability + threshold + unknown cells (``bev.occupancy``), and ``to_msg``: filling
  a ``nav_msgs/OccupancyGrid`` (when nav_msgs is importable);
* ``lut_build``: building the lookup table, done only when CameraInfo, the pose or the grid changes;
* ``kitti_bev``: the evaluator's per-frame devkit BEV (GT labels nearest, probability bilinear, image).

    python -m bench.bev --json out/bev.json           # default grid: 0.1 m, 20 m wide, 40 m ahead
"""
from __future__ import annotations

import argparse
import array
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from bench.common import REPO_ROOT, emit, parse_bench_args, machine_info, summarize

__all__ = ["measure", "main"]

log = logging.getLogger("bench.bev")
FRAME = REPO_ROOT / "samples" / "kitti_um_000000.jpg"
CALIB = REPO_ROOT.parent / "shared" / "data" / "kitti_road" / "training" / "calib" / "um_000000.txt"


def _timed(fn, iterations: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def _camera(calib_path: Path):
    from fcn_road_seg.evaluation.bev import (CameraPose, kitti_camera_pose, kitti_road_projection, read_kitti_calib,
                                             road_projection_from_pose)

    if calib_path.is_file():
        calib = read_kitti_calib(calib_path)
        return calib["P2"], kitti_camera_pose(calib), kitti_road_projection(calib), str(calib_path)
    p = np.array([[721.5377, 0, 609.5593, 0], [0, 721.5377, 172.854, 0], [0, 0, 1, 0]])
    pose = CameraPose(height=1.65).matrix()
    return p, pose, road_projection_from_pose(p, pose), "nominal KITTI camera, 1.65 m high (calib not found)"


def measure(resolution: float, width: float, ahead: float, iterations: int, warmup: int,
            calib_path: Path = CALIB, model: Path | None = None) -> dict:
    """Return the timings (ms) of the node's grid, its lookup-table build and the evaluator's KITTI BEV."""
    from fcn_road_seg.evaluation.bev import (GroundGrid, ground_lut, kitti_bev_lut, occupancy, warp_image,
                                             warp_labels, warp_probability)
    from fcn_road_seg.pipeline import RoadSegmenter

    frame = cv2.imread(str(FRAME))
    with RoadSegmenter(model) as seg:
        probability = seg.segment(frame, color_order="bgr").probability
        threshold = seg.threshold
    projection, pose, road_projection, camera = _camera(calib_path)
    grid = GroundGrid(resolution, width, ahead)
    size = probability.shape[:2]
    lut = ground_lut(projection, pose, size, grid)
    cells = occupancy(lut, probability, threshold)
    results = {"grid": {"occupancy": summarize(_timed(lambda: occupancy(lut, probability, threshold),
                                                      iterations, warmup))}}
    try:
        from nav_msgs.msg import OccupancyGrid
    except ImportError:
        results["grid"]["to_msg"] = {"n": 0, "skipped": "nav_msgs not importable"}
    else:
        def to_msg():
            msg = OccupancyGrid()
            msg.info.height, msg.info.width = cells.shape
            msg.data = array.array("b", occupancy(lut, probability, threshold).tobytes())

        results["grid"]["occupancy_and_to_msg"] = summarize(_timed(to_msg, iterations, warmup))
    results["lut_build"] = summarize(_timed(lambda: ground_lut(projection, pose, size, grid),
                                            max(3, iterations // 50), 1))
    road, valid = np.zeros(size, bool), np.ones(size, bool)
    kitti_lut = kitti_bev_lut(road_projection, size)

    def kitti_bev():
        warp_labels(kitti_lut, road, valid)
        warp_probability(kitti_lut, probability)
        warp_image(kitti_lut, frame)

    results["kitti_bev"] = {"lut_build": summarize(_timed(lambda: kitti_bev_lut(road_projection, size), 3, 1)),
                            "warp": summarize(_timed(kitti_bev, max(3, iterations // 5), warmup))}
    return {
        "benchmark": "bev",
        "machine": machine_info(),
        "settings": {"iterations": iterations, "warmup": warmup, "opencv_threads": cv2.getNumThreads(),
                     "frame": str(FRAME.relative_to(REPO_ROOT)), "image": f"{size[1]}x{size[0]}",
                     "camera": camera, "grid": {"resolution_m": resolution, "width_m": width, "ahead_m": ahead,
                                                "cells": f"{cells.shape[1]}x{cells.shape[0]}"},
                     "seen_cells_fraction": round(float(lut.valid.mean()), 3)},
        "results_ms": results,
    }


def table(report: dict) -> list[list[str]]:
    r = report["results_ms"]
    rows = [["what", "p50 ms", "p95 ms", "n"]]
    for name, s in [*((f"grid {k}", v) for k, v in r["grid"].items()), ("grid lut_build", r["lut_build"]),
                    ("kitti_bev lut_build", r["kitti_bev"]["lut_build"]), ("kitti_bev warp", r["kitti_bev"]["warp"])]:
        rows.append([name, f"{s['p50']:.2f}" if s.get("n") else "-", f"{s['p95']:.2f}" if s.get("n") else "-",
                     str(s.get("n", 0))])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=float, default=0.1, help="grid cell size (m)")
    parser.add_argument("--width", type=float, default=20.0, help="grid extent across (m)")
    parser.add_argument("--ahead", type=float, default=40.0, help="grid extent forward (m)")
    parser.add_argument("--iterations", type=int, default=500, help="timed frames")
    parser.add_argument("--warmup", type=int, default=20, help="untimed frames first")
    parser.add_argument("--calib", type=Path, default=CALIB, help="KITTI calib file of the frame")
    parser.add_argument("--model", type=Path, default=None, help="road model (default: the shipped one)")
    args = parse_bench_args(parser, argv, {"iterations": 1, "warmup": 0})
    report = measure(args.resolution, args.width, args.ahead, args.iterations, args.warmup, args.calib, args.model)
    emit(report, table(report), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
