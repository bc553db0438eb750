"""One entry point, ``fcn-road-seg <command> ...``: the argument parser and ``main``.

The commands themselves live in ``commands``. Heavy imports (torch, runtimes) happen per command.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from . import __version__, commands, progress
from .contract import DEFAULT_OPSET
from .errors import FcnRoadSegError, OutputError
from .training.args import add_arch_args, add_train_args

__all__ = ["main", "build_parser"]

log = logging.getLogger("fcn_road_seg")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


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


def _frame_limit(text: str) -> int:
    """argparse type of --limit: a whole number of frames, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of frames, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value} (leave --limit out for every frame)")
    return value


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

    p = command("infer", commands.infer, "segment image files: mask and overlay PNG per input")
    p.add_argument("inputs", nargs="+", type=Path, help="image files and/or folders of images")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in [0, 1]")
    _add_model_args(p)
    _add_refine_args(p)

    p = command("export", commands.export, "export a checkpoint to ONNX with the model contract")
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

    p = command("model-info", commands.model_info, "parameters and GFLOPs of an architecture or an exported model")
    p.add_argument("model", type=Path, nargs="?", help="exported .onnx (prints its contract); omit for --variant")
    p.add_argument("--size", type=int, nargs=2, default=[375, 1242], metavar=("H", "W"), help="input size")
    add_arch_args(p)

    p = command("evaluate", commands.evaluate,
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

    bag = command("bag", commands.bag, "convert datasets to rosbag2 bags (for ros2 bag play and evaluate)")
    bag_sub = bag.add_subparsers(dest="bag_command", required=True, metavar="SUBCOMMAND")
    for name, help_ in (("from-kitti", "KITTI data_road/training folder -> bag (image, GT, camera_info from calib/)"),
                        ("from-folder", "class-index folder (images/ + labels/, CamVid layout) -> bag")):
        p = bag_sub.add_parser(name, help=help_, description=help_, formatter_class=_HelpFormatter)
        p.set_defaults(handler=commands.bag)
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

    p = command("train", commands.train, "train a road FCN on KITTI road or a class-index dataset (CamVid)")
    add_train_args(p)

    command("model-path", commands.model_path, "print the path of the shipped default model")

    p = command("build-engine", commands.build_engine,
                "build a TensorRT engine (plan + JSON sidecar) from an ONNX model")
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

    p = command("quantize", commands.quantize, "write a static INT8 (QDQ) copy of an ONNX model for the CPU runtimes, "
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

    p = command("check-trt", commands.check_trt, "check an ONNX model for TensorRT: operators, static shapes, FP16 "
                "mask fidelity and FP16 activation range (needs no GPU)")
    p.add_argument("model", type=Path, help="exported .onnx model")
    p.add_argument("--images", type=Path, nargs="+",
                   help="frames or folders to compare on (default: bundled samples)")
    p.add_argument("--target", action="append", help="TensorRT release(s) to check against (default: all listed)")

    p = command("doctor", commands.doctor, "check this install: environment report, the model on ONNX Runtime, and the "
                "TensorRT FP16 engine against it where TensorRT and a GPU are present")
    p.add_argument("--model", type=Path, default=None, help=".onnx model to check (default: shipped model)")
    p.add_argument("--images", type=Path, nargs="+", help="frames or folders to run (default: bundled samples)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the report as JSON (keep it)")
    p.add_argument("--repeat", type=int, default=3, metavar="N", help="timed passes over the frames for p50/p95")
    p.add_argument("--require-tensorrt", action="store_true",
                   help="fail (exit 1) when TensorRT cannot run here, instead of checking ONNX Runtime only")

    p = command("demo", commands.demo, "play image files as a camera through the ROS 2 node (real rclpy, headless)")
    p.add_argument("--images", type=Path, default=None, help="folder of PNG/JPG (default: the bundled samples)")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the overlays")
    p.add_argument("--rate", type=float, default=2.0, help="frames per second the folder is published at")
    p.add_argument("--frames", type=int, default=10, help="stop after this many segmented frames")
    p.add_argument("--seconds", type=float, default=120.0, help="stop after this long at the latest")
    _add_model_args(p, cpu_precision=False)
    return parser


@contextlib.contextmanager
def _logging(verbose: bool):
    """Make the package's logger print to stderr for one command (INFO, DEBUG with --verbose).

    This does not touch the root logger; with --verbose the root logger shows every library's messages too.
    """
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
