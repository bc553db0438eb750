"""The commands behind ``fcn-road-seg <command>`` (parsed by ``cli``).

Each takes the parsed arguments and returns the exit status. Heavy imports (torch, runtimes) happen inside each
command.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import progress
from .errors import FcnRoadSegError, MissingExtraError, OutputError
from .outputs import check_writable
from .training.args import data_arg
from .wording import plural

__all__ = ["infer", "export", "model_info", "model_path", "build_engine", "quantize", "check_trt", "doctor", "evaluate",
           "bag", "demo", "train"]

log = logging.getLogger("fcn_road_seg")
# Libraries whose INFO/WARNING chatter (exporter passes, opset notes) is shown only with --verbose.
CHATTY_LIBRARIES = ("torch", "onnxscript", "onnx_ir")


def _check_threshold(threshold: float | None) -> None:
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise FcnRoadSegError(f"--threshold must lie in (0, 1), got {threshold}; e.g. 0.5, or the value "
                              "`fcn-road-seg evaluate` prints for the MaxF point")


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as err:
        raise MissingExtraError("this command needs PyTorch: pip install 'fcn_road_seg[train]'") from err


def _output_stems(paths: list[Path]) -> dict[Path, str]:
    """Output name stem per input; refuses inputs that would write the same mask file."""
    by_stem: dict[str, list[Path]] = {}
    for path in paths:
        by_stem.setdefault(path.stem, []).append(path)
    clashes = [group for group in by_stem.values() if len(group) > 1]
    if clashes:
        shown = "; ".join(" and ".join(map(str, group)) + f" -> {group[0].stem}_mask.png" for group in clashes[:3])
        raise FcnRoadSegError(f"inputs with the same name would overwrite each other's masks under --out: {shown}; "
                              "run them with separate --out folders or rename them")
    return {path: path.stem for path in paths}


def _refine_config(args: argparse.Namespace):
    """Return the CrfConfig of --refine crf and its --crf-* flags, or None."""
    from .refine import CrfConfig

    given = {k[4:]: v for k, v in vars(args).items() if k.startswith("crf_") and v is not None}
    if args.refine != "crf":
        if given:
            raise FcnRoadSegError("--crf-* flags apply only with --refine crf")
        return None
    return CrfConfig(**given)


def _arch_config(args: argparse.Namespace):
    from .training.model import FCNConfig

    return FCNConfig(variant=args.variant, encoder=args.encoder, width_mult=args.width, fc_width=args.fc_width)


def _open_segmenter(args: argparse.Namespace):
    """Open the RoadSegmenter of --model/--backend/--threshold/--refine/--tta.

    A fallback to ONNX Runtime: one INFO line.
    """
    from .backends import CPU_RUNTIMES
    from .pipeline import RoadSegmenter

    segmenter = RoadSegmenter(args.model, backend=args.backend, threshold=args.threshold, refine=_refine_config(args),
                              tta=args.tta, cpu_precision=args.cpu_precision)
    reason = segmenter.backend.fallback
    if reason:
        name = segmenter.backend.name
        log.info("%s: using %s (--backend %s skips the TensorRT try)", reason, CPU_RUNTIMES[name], name)
    return segmenter


def infer(args: argparse.Namespace) -> int:
    import numpy as np

    from .images import list_images, read_bgr
    from .outputs import write_image

    if not 0.0 <= args.alpha <= 1.0:
        raise FcnRoadSegError(f"--alpha must lie in [0, 1], got {args.alpha}")
    _check_threshold(args.threshold)
    check_writable(args.out)
    paths = list({p.resolve(): p for p in list_images(args.inputs)}.values())  # a file given twice: once
    stems = _output_stems(paths)
    segmenter = _open_segmenter(args)
    stages: dict[str, list[float]] = {}
    failed: list[str] = []
    unwritten: list[str] = []
    for path in progress.track(paths, len(paths), "infer"):
        try:
            frame = read_bgr(path)
            result = segmenter.segment(frame, color_order="bgr", overlay_alpha=args.alpha)
        except FcnRoadSegError as err:
            log.error("%s", err if str(path) in str(err) else f"{path}: {err}")
            failed.append(str(path))
            continue
        for kind, image in (("mask", result.mask), ("overlay", result.overlay)):
            target = args.out / f"{stems[path]}_{kind}.png"
            try:
                write_image(target, image)  # creates --out at the first output: no empty folder if all fail
            except OutputError as err:
                log.error("%s", err)
                unwritten.append(str(target))
        for stage, ms in result.timings_ms.items():
            stages.setdefault(stage, []).append(ms)
    segmenter.close()
    done = len(paths) - len(failed)
    means = {k: float(np.mean(v)) for k, v in stages.items()}
    print(f"{plural(done, 'frame')} segmented, {len(failed)} failed -> {args.out}")
    if means:
        print("mean ms per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in means.items()))
        print(f"backend {segmenter.backend.name} ({segmenter.backend.device}), model {segmenter.contract.variant} "
              f"at {segmenter.contract.input_width}x{segmenter.contract.input_height} (W x H)")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    if unwritten:
        print(f"could not write {plural(len(unwritten), 'file')}: {', '.join(unwritten)}", file=sys.stderr)
    return 1 if failed or unwritten else 0


def _quiet_libraries(verbose: bool) -> None:
    """Without --verbose, other libraries log errors only (call after importing them: torch resets its levels)."""
    if not verbose:
        for name in CHATTY_LIBRARIES:
            logging.getLogger(name).setLevel(logging.ERROR)


def export(args: argparse.Namespace) -> int:
    _require_torch()
    from .training.export import contract_for, export_checkpoint, export_onnx
    from .training.model import FCN

    _quiet_libraries(args.verbose)

    if args.checkpoint is None:
        if args.input_size is None:
            raise FcnRoadSegError("--untrained export needs --input-size H W")
        net = FCN(_arch_config(args)).eval()
        out = export_onnx(net, contract_for(net.config, args.input_size), args.output, opset=args.opset)
    else:
        calibrate_on = data_arg(args.calibrate, "--calibrate") if args.calibrate else None
        if calibrate_on is not None and not calibrate_on[0].is_dir():  # said before the checkpoint loads
            raise FcnRoadSegError(f"--calibrate {calibrate_on[0]} is not a folder; give a validation set (KITTI "
                                  "road or class-index folder) and optionally its split list")
        out = export_checkpoint(args.checkpoint, args.output, input_size=args.input_size, opset=args.opset,
                                calibrate_on=calibrate_on)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def model_info(args: argparse.Namespace) -> int:
    _require_torch()
    from .training.model import FCN, count_flops, count_parameters

    if args.model is not None:
        from .contract import read_onnx_contract
        from .training.model import FCNConfig

        contract = read_onnx_contract(args.model)
        print(contract.to_json())
        config = FCNConfig(variant=contract.variant, encoder=contract.encoder, width_mult=contract.width_mult,
                           fc_width=contract.fc_width)
        size = (contract.input_height, contract.input_width)
    else:
        config = _arch_config(args)
        size = tuple(args.size)
    net_size = tuple(-(-s // 32) * 32 for s in size)
    params = count_parameters(FCN(config))
    flops = count_flops(config, *net_size)
    print(f"{config.name}: {params / 1e6:.2f} M parameters, "
          f"{flops / 1e9:.1f} GFLOP per frame at {net_size[1]}x{net_size[0]} (W x H; input {size[1]}x{size[0]} "
          "rounded up to multiples of 32)")
    return 0


def model_path(args: argparse.Namespace) -> int:
    from .resources import default_model_path

    print(default_model_path())
    return 0


def build_engine(args: argparse.Namespace) -> int:
    from .contract import read_onnx_contract
    from .trt.engine import BuildOptions, build_engine, calibration_images

    if (args.calib is not None or args.calib_cache is not None) and not args.int8:
        raise FcnRoadSegError("--calib/--calib-cache only apply to --int8 builds; add --int8 or drop them")
    read_onnx_contract(args.model)  # the model file and its contract, before TensorRT loads
    if args.int8 and args.calib is not None:
        calibration_images(args.calib)  # the calibration frames too
    precision = "fp32" if args.fp32 else "int8" if args.int8 else "fp16"
    options = BuildOptions(precision=precision, workspace_mib=args.workspace, dla_core=args.dla,
                           calib_dir=args.calib, calib_cache=args.calib_cache, timing_cache=args.timing_cache)
    out = build_engine(args.model, args.output, options)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {out.name}.json")
    return 0


def quantize(args: argparse.Namespace) -> int:
    from .training.quantize import QuantizeConfig, quantize_model

    calib_dir, *split = args.calib
    if len(split) > 1:
        raise FcnRoadSegError("--calib takes a folder and at most one split list, e.g. --calib "
                              "../shared/data/kitti_road_train splits/kitti_road_train.txt")
    config = QuantizeConfig(Path(calib_dir), Path(split[0]) if split else None, args.max_frames, args.symmetric)
    out = quantize_model(args.model, args.output, config)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, INT8 QDQ); check it with `fcn-road-seg evaluate ... "
          f"--model {out}`")
    return 0


def check_trt(args: argparse.Namespace) -> int:
    from .images import list_images
    from .resources import samples_dir
    from .trt.check import run_checks

    images = list_images(args.images or [samples_dir()])
    ok, lines = run_checks(args.model, images, args.target)
    print("\n".join(lines))
    print("all checks passed" if ok else "some checks FAILED (see above)")
    return 0 if ok else 1


def doctor(args: argparse.Namespace) -> int:
    from .doctor.report import DoctorOptions, main as doctor_main

    return doctor_main(DoctorOptions(model=args.model, images=tuple(args.images or ()), json_path=args.json,
                                     repeat=args.repeat, require_tensorrt=args.require_tensorrt))


def _print_categories(per_category: dict[str, dict]) -> None:
    """One line per category (KITTI um/umm/uu) that has scores."""
    for name, s in per_category.items():
        if "MaxF" in s:
            print(f"  {name}: MaxF {100 * s['MaxF']:.2f} %  AP {100 * s['AP']:.2f} %  ({plural(s['frames'], 'frame')})")


def evaluate(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import EvalConfig, open_source, run_evaluation
    from .evaluation.metrics import mask_threshold

    _check_threshold(args.threshold)
    check_writable(args.out)
    if args.write_bag is not None and args.write_bag.exists():
        raise FcnRoadSegError(f"--write-bag {args.write_bag} exists already (rosbag2 writes only new bags); give a "
                              "path that does not exist yet, or delete the old bag")
    if args.write_bag is not None:
        check_writable(args.write_bag.parent, "--write-bag's folder")
    config = EvalConfig(
        source=args.source, out=args.out, layout=args.layout, split=args.split, road_id=args.road_id,
        ignore_id=None if args.ignore_id < 0 else args.ignore_id, image_topic=args.image_topic,
        gt_topic=args.gt_topic, gt_dir=args.gt_dir, gt_format=args.gt_format, limit=args.limit,
        write_bag=args.write_bag, write_bag_storage=args.storage, bev=args.bev,
        camera_info_topic=args.camera_info_topic)
    source = open_source(config)  # layout, topics and their types are checked before the model loads
    with _open_segmenter(args) as segmenter:
        report = run_evaluation(config, segmenter, source)
    m, f = report["metrics"], report["frames"]
    print(f"{plural(f['evaluated'], 'frame')} ({f['skipped']} skipped, {f['unmatched_images']} images / "
          f"{f['unmatched_gt']} GT unmatched): MaxF {100 * m['MaxF']:.2f} %  AP {100 * m['AP']:.2f} %  IoU at "
          f"threshold {m['threshold']:g} {100 * m['IoU']:.2f} % -> {args.out}")
    print(f"  MaxF point: probability >= {mask_threshold(m['threshold_maxf']):.4f} (pass it as --threshold or the "
          "node's threshold parameter)")
    _print_categories(report["per_category"])
    if "bev" in report:
        b = report["bev"]
        if "MaxF" not in b["metrics"]:
            print(f"BEV: no metrics ({b['metrics'].get('error')})")
            return 1
        print(f"BEV ({plural(b['frames']['evaluated'], 'frame')}, {b['frames']['skipped']} without calibration): "
              f"MaxF {100 * b['metrics']['MaxF']:.2f} %  AP {100 * b['metrics']['AP']:.2f} %")
        _print_categories(b["per_category"])
    return 1 if f["skipped"] or report.get("bev", {}).get("frames", {}).get("skipped") else 0


def bag(args: argparse.Namespace) -> int:
    from .evaluation.bag import BagWriteConfig, write_dataset_bag
    from .evaluation.groundtruth import FolderSource

    layout = "kitti" if args.bag_command == "from-kitti" else "class-index"
    check_writable(args.output.parent, "-o's folder")
    config = BagWriteConfig(image_topic=args.image_topic, gt_topic=args.gt_topic,
                            camera_info_topic=args.camera_info_topic, frame_id=args.frame_id, rate_hz=args.rate,
                            storage=args.storage, limit=args.limit)  # topics and rate checked before the folder
    source = FolderSource(args.dir, layout, args.split, args.road_id, None if args.ignore_id < 0 else args.ignore_id)
    n = write_dataset_bag(source, args.output, config)
    print(f"wrote {plural(n, 'frame')} to {args.output} ({args.storage}): {args.image_topic}, {args.gt_topic}")
    return 0


def demo(args: argparse.Namespace) -> int:
    from .ros.demo import DemoConfig, run_demo

    config = DemoConfig(out=args.out, images=args.images, model=args.model, backend=args.backend,
                        threshold=args.threshold or 0.0, rate_hz=args.rate, frames=args.frames, seconds=args.seconds)
    _check_threshold(args.threshold)
    check_writable(args.out)
    report = run_demo(config)
    print(report.summary())
    print(f"overlays -> {args.out}")
    if report.interrupted:
        print(progress.interrupted_message(), file=sys.stderr)
        return 130
    return 0 if report.segmented else 1


def train(args: argparse.Namespace) -> int:
    if args.init is not None and (args.resume is not None or args.pretrained):
        raise FcnRoadSegError("--init already gives every weight: drop --resume (which continues a run) and "
                              "--pretrained (ImageNet) when fine-tuning a trained checkpoint")
    for flag, path, example in (("--resume", args.resume, "RUN/last.pt"), ("--init", args.init, "RUN/best.pt")):
        if path is not None and not path.is_file():
            raise FcnRoadSegError(f"{flag} {path} not found; give a checkpoint an earlier run wrote, e.g. {example}")
    check_writable(args.out)
    _require_torch()
    from .training.train import main as train_main

    _quiet_libraries(args.verbose)
    result = train_main(args)
    if result is not None:
        print(f"wrote {result}")
    return 0
