"""Evaluation report: ``report.json`` (machine-readable), ``report.md`` (for people) and PNG figures.

The figures are ``pr_curve.png`` and ``montage.png`` (best and worst frames, TP green / FP red / FN blue); with
``--bev`` also the KITTI bird's-eye-view metrics (``report.json["bev"]``, a BEV table in ``report.md``) and
``montage_bev.png``.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import platform
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ..outputs import write_figure, write_image, write_json, write_text
from .metrics import mask_threshold
from .streaming import LABEL_HEIGHT, Evaluation, label_banner
from ..wording import plural

__all__ = ["write_report", "machine_info", "REPORT_FILES"]

log = logging.getLogger(__name__)
REPORT_FILES = ("report.json", "report.md", "pr_curve.png", "montage.png")
_METRIC_KEYS = ("MaxF", "AP", "PRE", "REC", "FPR", "FNR", "IoU")


def machine_info() -> dict[str, object]:
    """Where the numbers were measured, and with which library versions."""
    versions = {}
    for dist in ("fcn_road_seg", "numpy", "opencv-python-headless", "opencv-python", "onnxruntime", "rosbags",
                 "tensorrt"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    if "fcn_road_seg" not in versions:
        from .. import __version__

        versions["fcn_road_seg"] = __version__
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
    }


def _scores(metrics) -> dict[str, float]:
    try:
        return metrics.compute().as_dict()
    except ValueError as err:  # no road pixel in the ground truth
        return {"error": str(err), "frames": metrics.frames}


def _pr_curve(ev: Evaluation, path: Path) -> dict[str, list[float]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tp, fp, _, _ = (c.astype(np.float64) for c in ev.overall.counts())
    recall = tp / max(ev.overall.pos_hist.sum(), 1)
    precision = tp / np.maximum(tp + fp, 1e-10)
    keep = (tp + fp) > 0
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=100)
    ax.plot(recall[keep], precision[keep], lw=2, label="all")
    scores = ev.overall.compute()
    ax.plot([scores.REC], [scores.PRE], "o", label=f"MaxF {scores.MaxF:.3f} @ {scores.threshold_maxf:.2f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"road PR curve ({ev.frames} frames, AP {scores.AP:.3f})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    try:
        write_figure(path, fig)
    finally:
        plt.close(fig)
    return {"recall": recall[keep].round(6).tolist(), "precision": precision[keep].round(6).tolist()}


def _montage(ev: Evaluation, path: Path) -> bool:
    rows = [[t for _, _, t in ev.best()], [t for _, _, t in ev.worst()]]
    if not rows[0]:
        return False
    height = max(t.shape[0] for row in rows for t in row)
    width = max(len(r) for r in rows) * rows[0][0].shape[1]
    canvas = np.full((2 * (height + LABEL_HEIGHT), width, 3), 255, np.uint8)
    for r, (title, row) in enumerate(zip(("best (highest IoU)", "worst (lowest IoU)"), rows)):
        y = r * (height + LABEL_HEIGHT)
        canvas[y:y + LABEL_HEIGHT] = label_banner(title, width)
        for c, tile in enumerate(row):
            canvas[y + LABEL_HEIGHT:y + LABEL_HEIGHT + tile.shape[0], c * tile.shape[1]:(c + 1) * tile.shape[1]] = tile
    write_image(path, canvas)
    return True


def _metric_table(overall: dict, per_category: dict) -> list[str]:
    lines = ["| set | frames | " + " | ".join(_METRIC_KEYS) + " |", "|---" * (len(_METRIC_KEYS) + 2) + "|"]
    for name, s in [("all", overall), *per_category.items()]:
        if "error" in s:
            lines.append(f"| {name} | {s['frames']} | " + " | ".join("n/a" for _ in _METRIC_KEYS) + " |")
        else:
            lines.append(f"| {name} | {s['frames']} | " + " | ".join(f"{100 * s[k]:.2f}" for k in _METRIC_KEYS) + " |")
    return lines


def _bev_markdown(bev: dict) -> list[str]:
    g = bev["grid"]
    lines = ["", "## Bird's-eye view (KITTI road benchmark metric)", "",
             f"{bev['frames']['evaluated']} frames in BEV ({bev['frames']['skipped']} without calibration): "
             f"{g['definition']}, {g['resolution_m']} m cells, x {g['x_range_m']} m, z {g['z_range_m']} m "
             f"({g['rows_cols'][0]}x{g['rows_cols'][1]}); cells the camera does not see are not evaluated.", ""]
    if "error" in bev["metrics"]:
        return lines + [f"No BEV metrics: {bev['metrics']['error']}", ""]
    lines += _metric_table(bev["metrics"], bev["per_category"])
    if bev["frames"]["skipped_examples"]:
        lines += ["", "Frames without BEV:", *[f"- {e}" for e in bev["frames"]["skipped_examples"]]]
    return lines + ["", "![BEV best and worst frames](montage_bev.png)", ""]


def _markdown(report: dict) -> str:
    m = report["metrics"]
    lines = [f"# Road segmentation evaluation — {report['source']['kind']} `{report['source']['path']}`", "",
             f"{plural(report['frames']['evaluated'], 'frame')} evaluated, {report['frames']['skipped']} skipped, "
             f"{report['frames']['unmatched_images']} images and {report['frames']['unmatched_gt']} GT without a "
             f"match. Threshold {m['threshold']:.3f} (IoU); MaxF threshold {m['threshold_maxf']:.3f} in the devkit's "
             f"i/255 steps, i.e. a mask of probability >= {mask_threshold(m['threshold_maxf']):.4f} (use that value "
             "as `--threshold` or the node's `threshold`).", "",
             *_metric_table(m, report["per_category"])]
    lines += ["", "Metrics in percent (KITTI road devkit semantics; PRE/REC/FPR/FNR at the MaxF threshold)."]
    if report["latency_ms"]:
        lines += ["", "| stage | p50 ms | p95 ms | p99 ms | mean ms |", "|---|---|---|---|---|"]
        for stage, s in report["latency_ms"].items():
            lines.append(f"| {stage} | {s['p50']:.2f} | {s['p95']:.2f} | {s['p99']:.2f} | {s['mean']:.2f} |")
    if report.get("throughput_fps"):
        lines += ["", f"Throughput {report['throughput_fps']:.2f} frames/s end to end (decode + segment + metrics)."]
    b, mach = report["backend"], report["machine"]
    why = f" ({b['selection']})" if b.get("selection") else ""
    lines += ["", f"Backend {b.get('name')} on {b.get('device')}{why}; machine {mach['platform']}, "
              f"{mach['cpu_count']} CPUs ({mach['processor']}).", ""]
    if report["frames"]["skipped_examples"]:
        lines += ["Skipped frames:", *[f"- {e}" for e in report["frames"]["skipped_examples"]], ""]
    lines += ["![PR curve](pr_curve.png)", "", "![best and worst frames](montage.png)", ""]
    if report.get("bev"):
        lines += _bev_markdown(report["bev"])
    return "\n".join(lines)


def _per_category(ev: Evaluation) -> dict:
    if len(ev.categories) > 1 or "all" not in ev.categories:
        return {c: _scores(m) for c, m in sorted(ev.categories.items())}
    return {}


def _bev_section(ev: Evaluation, grid: dict, out: Path) -> dict:
    """report.json["bev"]: the BEV metrics beside the perspective ones, and montage_bev.png."""
    section = {"grid": grid,
               "frames": {"evaluated": ev.frames, "skipped": ev.skipped, "skipped_examples": ev.skipped_examples},
               "metrics": _scores(ev.overall) if ev.frames else {"error": "no frame had a calibration", "frames": 0},
               "per_category": _per_category(ev) if ev.frames else {},
               "best": [{"name": n, "IoU": v} for n, v, _ in ev.best()],
               "worst": [{"name": n, "IoU": v} for n, v, _ in ev.worst()]}
    section["montage"] = "montage_bev.png" if _montage(ev, out / "montage_bev.png") else None
    return section


def write_report(ev: Evaluation, out_dir: str | Path, *, source: dict, contract=None, backend: dict | None = None,
                 machine: str | None = None, bev: tuple[Evaluation, dict] | None = None) -> dict:
    """Write the report files into ``out_dir``; returns the JSON content. Refuses an empty evaluation.

    ``bev``: (the bird's-eye-view Evaluation, its grid description) for ``evaluate --bev``.
    """
    if ev.frames == 0:
        raise DatasetError(
            f"no frame was evaluated ({ev.skipped} skipped, {ev.unmatched_images} images and {ev.unmatched_gt} GT "
            "unmatched); check the topics/folders and that images and GT share stamps or names"
        )
    try:
        overall = ev.overall.compute().as_dict()
    except ValueError as err:
        raise DatasetError(f"{err}; the ground truth of these {ev.frames} frames marks no road") from err
    out = Path(out_dir)
    info = machine_info()
    if machine:
        info["description"] = machine
    latency = {stage: h.summary() for stage, h in ev.latency.items()}
    report = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "model": asdict(contract) if contract is not None else None,
        "backend": backend or {},
        "machine": info,
        "frames": {"evaluated": ev.frames, "skipped": ev.skipped, "skipped_examples": ev.skipped_examples,
                   "unmatched_images": ev.unmatched_images, "unmatched_gt": ev.unmatched_gt},
        "metrics_unit": "fraction in [0, 1] (report.md and the CLI show percent)",
        "metrics": overall,
        "per_category": _per_category(ev),
        "latency_ms": latency,
        "latency_note": "percentiles are upper edges of 1.2 %-wide log bins",
        "throughput_fps": ev.frames / ev.wall_s if ev.wall_s > 0 else None,
        "best": [{"name": n, "IoU": v} for n, v, _ in ev.best()],
        "worst": [{"name": n, "IoU": v} for n, v, _ in ev.worst()],
    }
    report["pr_curve"] = _pr_curve(ev, out / "pr_curve.png")
    montage = ["montage.png"] if _montage(ev, out / "montage.png") else []
    report["files"] = ["report.json", "report.md", "pr_curve.png"] + montage
    if bev is not None:
        report["bev"] = _bev_section(*bev, out)
        report["files"] += [report["bev"]["montage"]] if report["bev"]["montage"] else []
    write_text(out / "report.md", _markdown(report))
    write_json(out / "report.json", report)  # last: a report.json means every file it lists was written
    log.info("report written to %s (MaxF %.2f %%, AP %.2f %% over %s)", out, 100 * overall["MaxF"],
             100 * overall["AP"], plural(ev.frames, "frame"))
    return report
