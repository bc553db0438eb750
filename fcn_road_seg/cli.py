"""One entry point: ``fcn-road-seg <command> ...``. Heavy imports (torch, runtimes) happen per command."""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from . import __version__, progress
from .contract import DEFAULT_OPSET
from .errors import FcnRoadSegError, MissingExtraError, OutputError
from .outputs import check_writable
from .training.args import add_arch_args, add_train_args, data_arg
from .wording import plural

__all__ = ["main", "build_parser"]

log = logging.getLogger("fcn_road_seg")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
# Libraries whose INFO/WARNING chatter (exporter passes, opset notes) is shown only with --verbose.
CHATTY_LIBRARIES = ("torch", "onnxscript", "onnx_ir")


class _HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default (``--epochs N ... (default: 100)``) unless the text says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or default is None or default is argparse.SUPPRESS
                or isinstance(default, bool) or "default" in text):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _check_threshold(threshold: float | None) -> None:
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise FcnRoadSegError(f"--threshold must lie in (0, 1), got {threshold}; e.g. 0.5, or the value "
                              "`fcn-road-seg evaluate` prints for the MaxF point")


def _check_out_folder(out: Path, flag: str = "--out") -> None:
    check_writable(out, flag)  # a file there or above: bad argument; a folder refusing files: OutputError


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as err:
        raise MissingExtraError("this command needs PyTorch: pip install 'fcn_road_seg[train]'") from err


def _frame_limit(text: str) -> int:
    """argparse type of --limit: a whole number of frames, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of frames, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value} (leave --limit out for every frame)")
    return value


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


def _add_model_args(p: argparse.ArgumentParser, cpu_precision: bool = True) -> None:
    p.add_argument("--model", type=Path, default=None, help="model .onnx or TensorRT plan (default: shipped model)")
    from .backends import BACKENDS, CPU_PRECISIONS

    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="inference runtime (auto: TensorRT, else OpenVINO, else ONNX Runtime)")
    if cpu_precision:  # not for the demo: the node runs the default CPU choice
        p.add_argument("--cpu-precision", default="auto", choices=CPU_PRECISIONS,
                       help="OpenVINO/ONNX Runtime: int8 = the model's INT8 copy (`quantize`), bf16 = OpenVINO's "
                            "bfloat16 hint; auto = int8 where a copy exists and --backend is auto, else f32")
    p.add_argument("--threshold", type=float, default=None, help="road threshold (default: the model's contract)")


def _add_refine_args(p: argparse.ArgumentParser) -> None:
    from .refine import CRF_INSTALL_HINT, CrfConfig

    d = CrfConfig()
    p.add_argument("--tta", default="none", choices=["none", "flip"],
                   help="test-time augmentation: flip averages each frame's road probability with its mirror's "
                        "(2x inference time; an offline/GPU option)")
    p.add_argument("--refine", default="none", choices=["none", "crf"],
                   help=f"refine the probability with a dense CRF (slow, offline; needs {CRF_INSTALL_HINT})")
    for flag, name, kind, what in (
            ("--crf-iterations", "iterations", int, "mean-field iterations"),
            ("--crf-gaussian-sxy", "gaussian_sxy", float, "Gaussian kernel std, pixels"),
            ("--crf-gaussian-compat", "gaussian_compat", float, "Gaussian kernel weight"),
            ("--crf-bilateral-sxy", "bilateral_sxy", float, "bilateral kernel position std, pixels"),
            ("--crf-bilateral-srgb", "bilateral_srgb", float, "bilateral kernel colour std, 0-255"),
            ("--crf-bilateral-compat", "bilateral_compat", float, "bilateral kernel weight")):
        p.add_argument(flag, dest=f"crf_{name}", type=kind, default=None, metavar="N" if kind is int else "X",
                       help=f"--refine crf: {what} (default {getattr(d, name):g})")


def _refine_config(args: argparse.Namespace):
    """The CrfConfig of --refine crf and its --crf-* flags, or None."""
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
    """The RoadSegmenter of --model/--backend/--threshold/--refine/--tta; a fallback to ONNX Runtime: one INFO line."""
    from .backends import CPU_RUNTIMES, fallback_reason
    from .pipeline import RoadSegmenter

    segmenter = RoadSegmenter(args.model, backend=args.backend, threshold=args.threshold, refine=_refine_config(args),
                              tta=args.tta, cpu_precision=args.cpu_precision)
    reason = fallback_reason(segmenter.backend)
    if reason:
        name = segmenter.backend.name
        log.info("%s: using %s (--backend %s skips the TensorRT try)", reason, CPU_RUNTIMES[name], name)
    return segmenter


def _cmd_infer(args: argparse.Namespace) -> int:
    import numpy as np

    from .images import list_images, read_bgr
    from .outputs import write_image

    if not 0.0 <= args.alpha <= 1.0:
        raise FcnRoadSegError(f"--alpha must lie in [0, 1], got {args.alpha}")
    _check_threshold(args.threshold)
    _check_out_folder(args.out)
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


def _cmd_export(args: argparse.Namespace) -> int:
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


def _cmd_model_info(args: argparse.Namespace) -> int:
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


def _cmd_model_path(args: argparse.Namespace) -> int:
    from .resources import default_model_path

    print(default_model_path())
    return 0


def _cmd_build_engine(args: argparse.Namespace) -> int:
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


def _cmd_quantize(args: argparse.Namespace) -> int:
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


def _cmd_check_trt(args: argparse.Namespace) -> int:
    from .images import list_images
    from .resources import samples_dir
    from .trt.check import run_checks

    images = list_images(args.images or [samples_dir()])
    ok, lines = run_checks(args.model, images, args.target)
    print("\n".join(lines))
    print("all checks passed" if ok else "some checks FAILED (see above)")
    return 0 if ok else 1


def _cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor.report import DoctorOptions, main as doctor_main

    return doctor_main(DoctorOptions(model=args.model, images=tuple(args.images or ()), json_path=args.json,
                                     repeat=args.repeat, require_tensorrt=args.require_tensorrt))


def _print_categories(per_category: dict[str, dict]) -> None:
    """One line per category (KITTI um/umm/uu) that has scores."""
    for name, s in per_category.items():
        if "MaxF" in s:
            print(f"  {name}: MaxF {100 * s['MaxF']:.2f} %  AP {100 * s['AP']:.2f} %  ({plural(s['frames'], 'frame')})")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import EvalConfig, open_source, run_evaluation
    from .evaluation.metrics import mask_threshold

    _check_threshold(args.threshold)
    _check_out_folder(args.out)
    if args.write_bag is not None and args.write_bag.exists():
        raise FcnRoadSegError(f"--write-bag {args.write_bag} exists already (rosbag2 writes only new bags); give a "
                              "path that does not exist yet, or delete the old bag")
    if args.write_bag is not None:
        _check_out_folder(args.write_bag.parent, "--write-bag's folder")
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


def _cmd_bag(args: argparse.Namespace) -> int:
    from .evaluation.bag import BagWriteConfig, write_dataset_bag
    from .evaluation.groundtruth import FolderSource

    layout = "kitti" if args.bag_command == "from-kitti" else "class-index"
    _check_out_folder(args.output.parent, "-o's folder")
    config = BagWriteConfig(image_topic=args.image_topic, gt_topic=args.gt_topic,
                            camera_info_topic=args.camera_info_topic, frame_id=args.frame_id, rate_hz=args.rate,
                            storage=args.storage, limit=args.limit)  # topics and rate checked before the folder
    source = FolderSource(args.dir, layout, args.split, args.road_id, None if args.ignore_id < 0 else args.ignore_id)
    n = write_dataset_bag(source, args.output, config)
    print(f"wrote {plural(n, 'frame')} to {args.output} ({args.storage}): {args.image_topic}, {args.gt_topic}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .ros.demo import DemoConfig, run_demo

    config = DemoConfig(out=args.out, images=args.images, model=args.model, backend=args.backend,
                        threshold=args.threshold or 0.0, rate_hz=args.rate, frames=args.frames, seconds=args.seconds)
    _check_threshold(args.threshold)
    _check_out_folder(args.out)
    report = run_demo(config)
    print(report.summary())
    print(f"overlays -> {args.out}")
    if report.interrupted:
        print(progress.interrupted_message(), file=sys.stderr)
        return 130
    return 0 if report.segmented else 1


def _cmd_train(args: argparse.Namespace) -> int:
    if args.init is not None and (args.resume is not None or args.pretrained):
        raise FcnRoadSegError("--init already gives every weight: drop --resume (which continues a run) and "
                              "--pretrained (ImageNet) when fine-tuning a trained checkpoint")
    for flag, path, example in (("--resume", args.resume, "RUN/last.pt"), ("--init", args.init, "RUN/best.pt")):
        if path is not None and not path.is_file():
            raise FcnRoadSegError(f"{flag} {path} not found; give a checkpoint an earlier run wrote, e.g. {example}")
    _check_out_folder(args.out)
    _require_torch()
    from .training.train import main as train_main

    _quiet_libraries(args.verbose)
    result = train_main(args)
    if result is not None:
        print(f"wrote {result}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcn-road-seg", description="FCN road segmentation tools",
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and other libraries' info and warnings (hidden otherwise)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, formatter_class=_HelpFormatter)
        p.set_defaults(handler=handler)
        return p

    p = command("infer", _cmd_infer, "segment image files: mask and overlay PNG per input")
    p.add_argument("inputs", nargs="+", type=Path, help="image files and/or folders of images")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in [0, 1]")
    _add_model_args(p)
    _add_refine_args(p)

    p = command("export", _cmd_export, "export a checkpoint to ONNX with the model contract")
    p.add_argument("checkpoint", type=Path, nargs="?", help="training checkpoint (.pt); omit with --untrained")
    p.add_argument("--untrained", action="store_true", help="export a freshly initialised network (benchmarks)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .onnx path")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="network input size")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help="ONNX opset (>= 17; 17 is what TensorRT 8.6 parses)")
    p.add_argument("--calibrate", nargs="+", metavar=("DATA", "SPLIT"),
                   help="fit a temperature and bias on this validation set (and split list) and bake them into "
                        "the graph, so the default threshold 0.5 sits near the best one")
    add_arch_args(p)

    p = command("model-info", _cmd_model_info, "parameters and GFLOPs of an architecture or an exported model")
    p.add_argument("model", type=Path, nargs="?", help="exported .onnx (prints its contract); omit for --variant")
    p.add_argument("--size", type=int, nargs=2, default=[375, 1242], metavar=("H", "W"), help="input size")
    add_arch_args(p)

    p = command("evaluate", _cmd_evaluate,
                "KITTI road metrics + latency report over a KITTI folder, a class-index folder or a rosbag2 bag")
    p.add_argument("source", type=Path, help="KITTI data_road/training folder, class-index folder, or bag")
    p.add_argument("--out", type=Path, required=True, help="report folder (report.json/.md, pr_curve.png, montage.png)")
    p.add_argument("--layout", default="auto", choices=["auto", "kitti", "class-index", "bag"], help="source kind")
    p.add_argument("--split", help="only the frames of a split list (one frame name per line, e.g. um_000000; a "
                   "path or suffix is ignored): a file path, or a name inside SOURCE, e.g. test.txt or "
                   "splits/kitti_road_val.txt; bags: the frame names `fcn-road-seg bag` records")
    p.add_argument("--road-id", type=int, default=3, help="class-index: road class (CamVid: 3)")
    p.add_argument("--ignore-id", type=int, default=11, help="class-index: not-evaluated class (-1: none)")
    p.add_argument("--image-topic", help="bag: image topic (sensor_msgs/Image or CompressedImage)")
    p.add_argument("--gt-topic", help="bag: GT topic (mono8 255 road/0 not/other ignore, or KITTI rgb8)")
    p.add_argument("--gt-dir", type=Path, help="bag: folder of GT files matched by frame name or order")
    p.add_argument("--gt-format", default="auto", choices=["auto", "kitti", "class-index", "mono8"],
                   help="--gt-dir files")
    p.add_argument("--limit", type=_frame_limit, help="evaluate at most this many frames (>= 1)")
    p.add_argument("--write-bag", type=Path, help="also write a bag: input images + mask/overlay/probability topics")
    p.add_argument("--storage", default="sqlite3", choices=["sqlite3", "mcap"], help="--write-bag storage")
    p.add_argument("--bev", action="store_true",
                   help="also the KITTI benchmark's bird's-eye-view metrics (needs calib/ "
                   "per frame, or a bag from `bag from-kitti` with camera_info and /tf)")
    p.add_argument("--camera-info-topic",
                   help="bag with --bev: camera_info topic (default: <image_topic>/../camera_info)")
    _add_model_args(p)
    _add_refine_args(p)

    bag = command("bag", _cmd_bag, "convert datasets to rosbag2 bags (for ros2 bag play and evaluate)")
    bag_sub = bag.add_subparsers(dest="bag_command", required=True, metavar="SUBCOMMAND")
    for name, help_ in (("from-kitti", "KITTI data_road/training folder -> bag (image, GT, camera_info from calib/)"),
                        ("from-folder", "class-index folder (images/ + labels/, CamVid layout) -> bag")):
        p = bag_sub.add_parser(name, help=help_, description=help_, formatter_class=_HelpFormatter)
        p.set_defaults(handler=_cmd_bag)
        p.add_argument("dir", type=Path, help="dataset folder")
        p.add_argument("-o", "--output", type=Path, required=True, help="new bag folder")
        p.add_argument("--storage", default="sqlite3", choices=["sqlite3", "mcap"], help="bag storage plugin")
        p.add_argument("--rate", type=float, default=10.0, help="frame rate of the synthetic stamps (Hz)")
        p.add_argument("--image-topic", default="/camera/image_raw", help="image topic (bgr8)")
        p.add_argument("--gt-topic", default="/camera/road_gt", help="GT topic (mono8: 255 road, 0 not, 128 ignore)")
        p.add_argument("--camera-info-topic", default="/camera/camera_info", help="camera_info topic (KITTI calib)")
        p.add_argument("--frame-id", default="camera", help="header frame_id")
        p.add_argument("--limit", type=_frame_limit, help="at most this many frames (>= 1)")
        p.add_argument("--split", help="only the frames of a split list (one frame name per line): a file path or "
                       "a name inside DIR, e.g. test.txt or splits/kitti_road_val.txt")
        if name == "from-kitti":
            p.set_defaults(road_id=3, ignore_id=11)  # KITTI GT is colour-coded, not class indices
        else:
            p.add_argument("--road-id", type=int, default=3, help="road class (CamVid: 3)")
            p.add_argument("--ignore-id", type=int, default=11, help="not-evaluated class (-1: none)")

    p = command("train", _cmd_train, "train a road FCN on KITTI road or a class-index dataset (CamVid)")
    add_train_args(p)

    command("model-path", _cmd_model_path, "print the path of the shipped default model")

    p = command("build-engine", _cmd_build_engine, "build a TensorRT engine (plan + JSON sidecar) from an ONNX model")
    p.add_argument("model", type=Path, help="exported .onnx model")
    p.add_argument("-o", "--output", type=Path, required=True, help="output plan path (e.g. road_fp16.plan)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp32", action="store_true", help="build in FP32 (default: FP16)")
    precision.add_argument("--int8", action="store_true", help="build in INT8 (with FP16 fallback); needs --calib")
    p.add_argument("--calib", type=Path, help="folder of frames like the camera's for INT8 calibration")
    p.add_argument("--calib-cache", type=Path, help="INT8 calibration cache (default: OUTPUT.calib)")
    p.add_argument("--workspace", type=int, default=1024, metavar="MiB",
                   help="TensorRT workspace memory limit in MiB (1024 fits 8 GB Jetsons)")
    p.add_argument("--dla", type=int, metavar="N", help="run on DLA core N with GPU fallback (Jetson AGX/NX Orin)")
    p.add_argument("--timing-cache", type=Path, help="timing cache file (default: per GPU and TensorRT version "
                   "under ~/.cache/fcn_road_seg/timing)")

    p = command("quantize", _cmd_quantize, "write a static INT8 (QDQ) copy of an ONNX model for the CPU runtimes, "
                "calibrated on real frames")
    p.add_argument("model", type=Path, help="exported float .onnx model")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .onnx (name it MODEL_int8.onnx beside "
                   "the model for backend auto to find it)")
    p.add_argument("--calib", nargs="+", required=True, metavar=("DIR", "SPLIT"),
                   help="calibration frames: a folder (KITTI road layout or plain images) and optionally a split list "
                        "of the frames to use (frames the model is not evaluated on)")
    p.add_argument("--max-frames", type=int, default=200, help="at most this many calibration frames")
    p.add_argument("--symmetric", action="store_true", help="int8 activations with zero point 0, TensorRT's "
                   "explicit-quantization form (default: uint8 activations, ~2x faster in ONNX Runtime on x86)")

    p = command("check-trt", _cmd_check_trt, "check an ONNX model for TensorRT: operators, static shapes, FP16 "
                "mask fidelity and FP16 activation range (needs no GPU)")
    p.add_argument("model", type=Path, help="exported .onnx model")
    p.add_argument("--images", type=Path, nargs="+",
                   help="frames or folders to compare on (default: bundled samples)")
    p.add_argument("--target", action="append", help="TensorRT release(s) to check against (default: all listed)")

    p = command("doctor", _cmd_doctor, "check this install: environment report, the model on ONNX Runtime, and the "
                "TensorRT FP16 engine against it where TensorRT and a GPU are present")
    p.add_argument("--model", type=Path, default=None, help=".onnx model to check (default: shipped model)")
    p.add_argument("--images", type=Path, nargs="+", help="frames or folders to run (default: bundled samples)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the report as JSON (keep it)")
    p.add_argument("--repeat", type=int, default=3, metavar="N", help="timed passes over the frames for p50/p95")
    p.add_argument("--require-tensorrt", action="store_true",
                   help="fail (exit 1) when TensorRT cannot run here, instead of checking ONNX Runtime only")

    p = command("demo", _cmd_demo, "play image files as a camera through the ROS 2 node (real rclpy, headless)")
    p.add_argument("--images", type=Path, default=None, help="folder of PNG/JPG (default: the bundled samples)")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the overlays")
    p.add_argument("--rate", type=float, default=2.0, help="frames per second the folder is published at")
    p.add_argument("--frames", type=int, default=10, help="stop after this many segmented frames")
    p.add_argument("--seconds", type=float, default=120.0, help="stop after this long at the latest")
    _add_model_args(p, cpu_precision=False)
    return parser


@contextlib.contextmanager
def _logging(verbose: bool):
    """For one command: the package's logger prints to stderr (INFO, DEBUG with --verbose) without touching
    the root logger; with --verbose the root logger shows every library's messages too."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    with warnings.catch_warnings():
        if verbose:
            logging.basicConfig(level=logging.DEBUG, format=LOG_FORMAT)
        else:  # deprecation notes of other libraries are for their developers
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
        try:
            yield
        finally:
            log.removeHandler(handler)
            log.setLevel(level)
            log.propagate = propagate


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "export" and args.untrained == (args.checkpoint is not None):
        print("error: give a CHECKPOINT or --untrained (not both)", file=sys.stderr)
        return 2
    progress.reset()
    with _logging(args.verbose):
        try:
            return args.handler(args)
        except KeyboardInterrupt:  # Ctrl-C: one line, no traceback, the shell's status for SIGINT
            print(progress.interrupted_message(), file=sys.stderr)
            return 130
        except OutputError as err:  # the work ran, an output could not be written
            print(f"error: {err}", file=sys.stderr)
            return 1
        except (FcnRoadSegError, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
