"""Dense-CRF refinement (``--refine crf``), measured: quality with and without it, and its time per frame.

* **latency**: the CRF alone (``DenseCrfRefiner``) and the whole ``RoadSegmenter.segment`` with and without
  it, on the bundled 1242x375 KITTI frame;
* **quality** (skip with ``--latency-only``): KITTI road devkit MaxF/AP and IoU at the model's threshold on
  the team's KITTI road validation split (``splits/kitti_road_val.txt``) and on CamVid ``test.txt``,
  without the CRF, with the default ``CrfConfig`` and with the best of a small grid searched on the KITTI
  validation split only (by MaxF, then AP). The network's probability is computed once per frame; each
  CRF then refines that same map exactly as ``segment(..., refine=...)`` does, so a row equals
  ``fcn-road-seg evaluate ... --refine crf --crf-...`` with the same parameters.

    python -m bench.crf --model models/fcn8s_lite0_kitti_road.onnx --json out/crf.json --markdown out/crf.md
"""
from __future__ import annotations

import argparse
import itertools
import logging
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import cv2
from tqdm import tqdm

from bench.common import REPO_ROOT, emit, parse_bench_args, machine_info, measure_segment, summarize

__all__ = ["SEARCH_GRID", "search_configs", "measure_latency", "measure_quality", "main"]

log = logging.getLogger("bench.crf")

FRAME = REPO_ROOT / "samples" / "kitti_um_000000.jpg"  # 1242x375
KITTI_VAL_SPLIT = REPO_ROOT / "splits" / "kitti_road_val.txt"
# The search: the bilateral kernel (what aligns labels with colour edges) around the pydensecrf/DeepLab
# defaults; the Gaussian kernel and the iterations stay at their defaults.
SEARCH_GRID = {"bilateral_sxy": (30.0, 80.0), "bilateral_srgb": (5.0, 13.0, 25.0), "bilateral_compat": (3.0, 10.0)}


def search_configs():
    """Every CrfConfig of SEARCH_GRID (the default CrfConfig is one of them)."""
    from fcn_road_seg.refine import CrfConfig

    keys = list(SEARCH_GRID)
    return [replace(CrfConfig(), **dict(zip(keys, values))) for values in itertools.product(*SEARCH_GRID.values())]


def measure_latency(model: Path | None, iterations: int, warmup: int) -> dict:
    """Milliseconds per 1242x375 frame: the CRF alone, segment() without and with it."""
    from fcn_road_seg.pipeline import RoadSegmenter
    from fcn_road_seg.refine import CrfConfig

    frame = cv2.imread(str(FRAME), cv2.IMREAD_COLOR)
    out = {"frame": f"{FRAME.name} {frame.shape[1]}x{frame.shape[0]}", "crf_config": asdict(CrfConfig())}
    for label, refine in (("segment_without_crf", None), ("segment_with_crf", CrfConfig())):
        with RoadSegmenter(model, backend="onnxruntime", refine=refine) as seg:
            out[label] = measure_segment(seg, frame, iterations, warmup, None, label)
    out["crf_alone"] = out["segment_with_crf"]["refine"]
    return out


def _frames(source, segmenter, desc: str) -> list[tuple]:
    """(image, probability without CRF, road, valid) of every frame, the probability from segment()."""
    frames = []
    for f in tqdm(source, total=len(source), desc=desc, unit="frame", disable=None):
        if f.error:
            raise RuntimeError(f"{f.name}: {f.error}")
        frames.append((f.image, segmenter.segment(f.image, color_order="bgr").probability, f.road, f.valid))
    return frames


def _score(frames: list[tuple], config, threshold: float, desc: str) -> dict:
    from fcn_road_seg.evaluation.metrics import RoadMetrics
    from fcn_road_seg.refine import DenseCrfRefiner

    metrics = RoadMetrics(threshold)
    refiner = DenseCrfRefiner(config) if config is not None else None
    ms = []
    for image, probability, road, valid in tqdm(frames, desc=desc, unit="frame", leave=False, disable=None):
        if refiner is not None:
            t0 = time.perf_counter()
            probability = refiner(image, probability)
            ms.append((time.perf_counter() - t0) * 1e3)
        metrics.update(probability, road, valid)
    s = metrics.compute()
    log.info("%s: MaxF %.4f AP %.4f IoU %.4f%s", desc, s.MaxF, s.AP, s.IoU, f" ({config})" if config else "")
    return {"crf": asdict(config) if config is not None else None, "MaxF": s.MaxF, "AP": s.AP, "IoU": s.IoU,
            "PRE": s.PRE, "REC": s.REC, "threshold_maxf": s.threshold_maxf, "frames": s.frames,
            "crf_ms_per_frame": summarize(ms) if ms else None}


def measure_quality(model: Path | None, data: Path) -> dict:
    """Without CRF, default CRF, grid search on KITTI val, the chosen CRF on CamVid test."""
    from fcn_road_seg.evaluation.groundtruth import FolderSource
    from fcn_road_seg.pipeline import RoadSegmenter
    from fcn_road_seg.refine import CrfConfig

    sets = {"kitti_road_val": FolderSource(data / "kitti_road_train", "kitti", str(KITTI_VAL_SPLIT)),
            "camvid_test": FolderSource(data / "camvid", "class-index", "test.txt", 3, 11)}
    with RoadSegmenter(model, backend="onnxruntime") as seg:
        threshold = seg.threshold
        frames = {name: _frames(src, seg, f"network {name}") for name, src in sets.items()}
    val = frames["kitti_road_val"]
    search = [_score(val, c, threshold, f"search {i + 1}") for i, c in
              enumerate(tqdm(search_configs(), desc="search on kitti_road_val", unit="config", disable=None))]
    best = max(search, key=lambda r: (r["MaxF"], r["AP"]))
    chosen = CrfConfig(**best["crf"])
    rows = []
    for name in sets:
        rows.append({"data": name, "refine": "none", **_score(frames[name], None, threshold, name)})
        rows.append({"data": name, "refine": "crf (defaults)", **_score(frames[name], CrfConfig(), threshold, name)})
        if chosen != CrfConfig():
            rows.append({"data": name, "refine": "crf (best of search)",
                         **_score(frames[name], chosen, threshold, name)})
    return {"threshold": threshold, "search_on": "kitti_road_val", "search_grid": SEARCH_GRID,
            "search": search, "chosen": asdict(chosen), "rows": rows}


def quality_table(report: dict) -> list[list[str]]:
    """Header + one row per (data, refine): metrics in percent, CRF milliseconds per frame."""
    rows = [["data", "refine", "MaxF", "AP", "IoU", "PRE", "REC", "CRF ms/frame"]]
    for r in report.get("quality", {}).get("rows", []):
        crf_ms = r["crf_ms_per_frame"]
        rows.append([r["data"], r["refine"], *(f"{100 * r[k]:.2f}" for k in ("MaxF", "AP", "IoU", "PRE", "REC")),
                     f"{crf_ms['mean']:.0f}" if crf_ms else "-"])
    return rows


def search_table(report: dict) -> list[list[str]]:
    """Header + one row per searched CrfConfig (only the searched fields), best MaxF first."""
    search = sorted(report.get("quality", {}).get("search", []), key=lambda r: (-r["MaxF"], -r["AP"]))
    rows = [[*SEARCH_GRID, "MaxF", "AP", "IoU", "CRF ms/frame"]]
    for r in search:
        rows.append([*(f"{r['crf'][k]:g}" for k in SEARCH_GRID), *(f"{100 * r[k]:.2f}" for k in ("MaxF", "AP", "IoU")),
                     f"{r['crf_ms_per_frame']['mean']:.0f}"])
    return rows


def latency_table(report: dict) -> list[list[str]]:
    lat = report["latency"]
    return [["case (1242x375)", "p50 ms", "p95 ms", "mean ms"]] + [
        [name, *(f"{s[k]:.1f}" for k in ("p50", "p95", "mean"))]
        for name, s in (("segment without CRF", lat["segment_without_crf"]["total"]),
                        ("segment with CRF", lat["segment_with_crf"]["total"]), ("CRF alone", lat["crf_alone"]))]


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows[1:]]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="road model .onnx (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("FCN_ROAD_SEG_SHARED_DATA",
                                                                         REPO_ROOT.parent / "shared" / "data")),
                        help="folder holding kitti_road_train/ and camvid/ (default ../shared/data)")
    parser.add_argument("--iterations", type=int, default=10, help="timed frames per latency case")
    parser.add_argument("--warmup", type=int, default=1, help="untimed frames first")
    parser.add_argument("--latency-only", action="store_true", help="skip the quality measurement")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables (Markdown) here")
    args = parse_bench_args(parser, argv, {"iterations": 1, "warmup": 0})
    if args.model is None:
        from fcn_road_seg.resources import default_model_path

        args.model = default_model_path()
    report = {"benchmark": "crf", "model": str(args.model), "machine": machine_info(),
              "latency": measure_latency(args.model, args.iterations, args.warmup)}
    if not args.latency_only:
        report["quality"] = measure_quality(args.model, args.data)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    tables = [latency_table(report)]
    if "quality" in report:
        tables += [quality_table(report), search_table(report)]
    emit(report, tables[0], args.json)
    text = "\n".join(markdown(t) for t in tables)
    print("\n" + text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
