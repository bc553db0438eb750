"""One entry point: ``fcn-road-seg <command> ...``. Heavy imports (torch, runtimes) happen per command."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .errors import FcnRoadSegError

__all__ = ["main", "build_parser"]

log = logging.getLogger("fcn_road_seg")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=None, help="model .onnx or TensorRT plan (default: shipped model)")
    p.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime"], help="inference runtime")
    p.add_argument("--threshold", type=float, default=None, help="road threshold (default: the model's contract)")


def _add_arch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", default="fcn8s", choices=["fcn32s", "fcn16s", "fcn8s"], help="FCN variant")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier of the VGG16 trunk (1.0 = full)")
    p.add_argument("--fc-width", type=int, default=4096, help="channels of fc6/fc7 (4096 = full)")
    p.add_argument("--batch-norm", action="store_true", help="VGG16-BN trunk (BatchNorm after each conv)")


def _arch_config(args: argparse.Namespace):
    from .model import FCNConfig

    return FCNConfig(variant=args.variant, width_mult=args.width, fc_width=args.fc_width, batch_norm=args.batch_norm)


def _cmd_infer(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np
    from tqdm import tqdm

    from .images import list_images, read_bgr
    from .pipeline import RoadSegmenter

    if not 0.0 <= args.alpha <= 1.0:
        raise FcnRoadSegError(f"--alpha must lie in [0, 1], got {args.alpha}")
    paths = list_images(args.inputs)
    args.out.mkdir(parents=True, exist_ok=True)
    segmenter = RoadSegmenter(args.model, backend=args.backend, threshold=args.threshold)
    stages: dict[str, list[float]] = {}
    failed: list[str] = []
    for path in tqdm(paths, desc="infer", unit="frame", disable=None):
        try:
            frame = read_bgr(path)
            result = segmenter.segment(frame, color_order="bgr", overlay_alpha=args.alpha)
        except FcnRoadSegError as err:
            log.error("%s", err)
            failed.append(str(path))
            continue
        cv2.imwrite(str(args.out / f"{path.stem}_mask.png"), result.mask)
        cv2.imwrite(str(args.out / f"{path.stem}_overlay.png"), result.overlay)
        for stage, ms in result.timings_ms.items():
            stages.setdefault(stage, []).append(ms)
    segmenter.close()
    done = len(paths) - len(failed)
    means = {k: float(np.mean(v)) for k, v in stages.items()}
    print(f"{done} frames segmented, {len(failed)} failed -> {args.out}")
    if means:
        print("mean ms per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in means.items()))
        print(f"backend {segmenter.backend.name} ({segmenter.backend.device}), model {segmenter.contract.variant} "
              f"{segmenter.contract.input_width}x{segmenter.contract.input_height}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import contract_for, export_checkpoint, export_onnx
    from .model import FCN

    if args.checkpoint is None:
        if args.input_size is None:
            raise FcnRoadSegError("--untrained export needs --input-size H W")
        net = FCN(_arch_config(args)).eval()
        out = export_onnx(net, contract_for(net.config, args.input_size), args.output, opset=args.opset)
    else:
        out = export_checkpoint(args.checkpoint, args.output, input_size=args.input_size, opset=args.opset)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def _cmd_model_info(args: argparse.Namespace) -> int:
    from .model import FCN, count_flops, count_parameters

    if args.model is not None:
        from .contract import read_onnx_contract
        from .model import FCNConfig

        contract = read_onnx_contract(args.model)
        print(contract.to_json())
        config = FCNConfig(variant=contract.variant, width_mult=contract.width_mult, fc_width=contract.fc_width)
        size = (contract.input_height, contract.input_width)
    else:
        config = _arch_config(args)
        size = tuple(args.size)
    net_size = tuple(-(-s // 32) * 32 for s in size)
    params = count_parameters(FCN(config))
    flops = count_flops(config, *net_size)
    print(f"{config.variant} width {config.width_mult:g} fc {config.fc_width}: {params / 1e6:.2f} M parameters, "
          f"{flops / 1e9:.1f} GFLOP per frame at {net_size[0]}x{net_size[1]} (input {size[0]}x{size[1]} "
          "rounded up to multiples of 32)")
    return 0


def _cmd_model_path(args: argparse.Namespace) -> int:
    from .resources import default_model_path

    print(default_model_path())
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import main as train_main

    result = train_main(args)
    if result is not None:
        print(f"wrote {result}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcn-road-seg", description="FCN road segmentation tools")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    p = command("infer", _cmd_infer, "segment image files: mask and overlay PNG per input")
    p.add_argument("inputs", nargs="+", type=Path, help="image files and/or folders of images")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in [0, 1]")
    _add_model_args(p)

    p = command("export", _cmd_export, "export a checkpoint to ONNX with the model contract")
    p.add_argument("checkpoint", type=Path, nargs="?", help="training checkpoint (.pt); omit with --untrained")
    p.add_argument("--untrained", action="store_true", help="export a freshly initialised network (benchmarks)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .onnx path")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="network input size")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17)")
    _add_arch_args(p)

    p = command("model-info", _cmd_model_info, "parameters and GFLOPs of an architecture or an exported model")
    p.add_argument("model", type=Path, nargs="?", help="exported .onnx (prints its contract); omit for --variant")
    p.add_argument("--size", type=int, nargs=2, default=[375, 1242], metavar=("H", "W"), help="input size")
    _add_arch_args(p)

    p = command("train", _cmd_train, "train a road FCN on KITTI road or a class-index dataset (CamVid)")
    from .train_args import add_train_args

    add_train_args(p)

    command("model-path", _cmd_model_path, "print the path of the shipped default model")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "export" and args.untrained == (args.checkpoint is not None):
        print("error: give a CHECKPOINT or --untrained (not both)", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except (FcnRoadSegError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
