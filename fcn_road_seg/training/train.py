"""Train a road FCN (``fcn-road-seg train``), in the style of torchvision's segmentation reference.

Flat functions: :func:`build_datasets`, :func:`train_one_epoch`, :func:`evaluate`, :func:`main`. Single
process on CPU or one GPU; DDP when launched with ``torchrun`` (``WORLD_SIZE`` > 1). Checkpoints are plain
dicts saved with ``torch.save`` (``last.pt`` every epoch, ``best.pt`` at the best validation MaxF) and read
back with ``weights_only=True``. At the end the best checkpoint is exported to ONNX with its validation
metrics in the model contract.
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from .datasets import AugmentConfig, MixedTrainDataset, RoadEvalDataset, RoadTrainDataset
from .samples import (
    IGNORE,
    ROAD,
    LabelSpec,
    Sample,
    check_sizes,
    count_unexpected_colours,
    detect_layout,
    folder_samples,
    kitti_road_samples,
    save_split,
    split_kitti,
)
from ..errors import DatasetError, ModelError
from ..evaluation.metrics import RoadMetrics, RoadScores
from ..outputs import replacing, write_text
from ..progress import Progress
from .export import load_checkpoint
from .model import FCN, FCNConfig, normalization_for
from .pretrained import load_imagenet
from .args import add_train_args, data_arg
from ..wording import plural

__all__ = ["build_datasets", "build_lr_lambda", "train_one_epoch", "evaluate", "main"]

log = logging.getLogger(__name__)
METRIC_KEYS = ("MaxF", "AP", "IoU", "PRE", "REC", "FPR", "FNR", "threshold_maxf")


def _source(data: Path, split: str | None, args: argparse.Namespace, role: str) -> tuple[list[Sample], LabelSpec, str]:
    """Return the samples of one --data/--val-data folder: the split list's frames, or the layout's default ones.

    The defaults: KITTI road: the --val-fraction split; class-index: --train-split/--val-split; KITTI semantics:
    all.
    """
    layout = detect_layout(data, args.layout)
    ignore = None if args.ignore_id < 0 else args.ignore_id
    if layout == "kitti" and split is None:
        train, val = split_kitti(kitti_road_samples(data), args.val_fraction, args.split_seed)
        samples = train if role == "train" else val
        count_unexpected_colours(samples)
        spec, desc = LabelSpec("kitti"), (f"KITTI road {data.resolve().name} {role} part of --val-fraction "
                                          f"{args.val_fraction} ({len(samples)} frames)")
    else:
        if layout == "index" and split is None:
            split = args.train_split if role == "train" else args.val_split
        samples, spec, desc = folder_samples(data, split, layout, args.road_id, ignore)
    check_sizes(samples, "training" if role == "train" else "validation")
    return samples, spec, desc


def build_datasets(args: argparse.Namespace) -> tuple[MixedTrainDataset, RoadEvalDataset, str]:
    """Training sets (each --data with its own reader, mixed) and the validation set.

    Every input check runs here, before training; a validation frame that is also a training frame is warned
    about.
    """
    size = tuple(args.input_size)
    norm = normalization_for(args.encoder)
    augment = AugmentConfig(size, tuple(args.crop or size), tuple(args.scale), tuple(args.aspect),
                            args.hflip, args.jitter)
    train_sets, descs = [], []
    for i, value in enumerate(args.data):
        samples, spec, desc = _source(*data_arg(value, "--data"), args, "train")
        train_sets.append(RoadTrainDataset(samples, spec, augment, seed=args.seed + 1000 * i, normalization=norm))
        descs.append(desc)
    val_path, val_split = data_arg(args.val_data or args.data[0][:1], "--val-data")
    val, val_spec, val_desc = _source(val_path, val_split, args, "val")
    train_images = {s.image.resolve() for d in train_sets for s in d.samples}
    overlap = [s.name for s in val if s.image.resolve() in train_images]
    if overlap:
        log.warning("%d of %d validation frames are also training frames (e.g. %s): validation scores will be "
                    "optimistic; give --data and --val-data disjoint split lists", len(overlap), len(val), overlap[0])
    desc = " + ".join(descs) + f"; validation {val_desc}"
    return MixedTrainDataset(train_sets), RoadEvalDataset(val, val_spec, size, normalization=norm), desc


def build_lr_lambda(total_steps: int, warmup_steps: int, schedule: str):
    """Multiplier of the peak LR at each step: linear warm-up, then poly (power 0.9) or cosine to 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return (1 - t) ** 0.9 if schedule == "poly" else 0.5 * (1 + math.cos(math.pi * t))
    return factor


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def road_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel-wise cross-entropy averaged over valid pixels (IGNORE excluded; 0 for an all-ignore batch)."""
    loss = F.cross_entropy(logits.float(), target, ignore_index=IGNORE, reduction="sum")
    return loss / (target != IGNORE).sum().clamp(min=1)


def train_one_epoch(model, loader, optimizer, scheduler, scaler, device, epoch: int, args) -> float:
    """One pass over ``loader``; returns the mean loss (per valid pixel) of its steps."""
    model.train()
    use_amp = scaler is not None
    total, steps = 0.0, 0
    limit = args.max_steps or len(loader)
    bar = tqdm(loader, total=min(limit, len(loader)), desc=f"epoch {epoch + 1}/{args.epochs}", unit="step",
               disable=None if _is_main() else True, leave=False)
    for images, targets in bar:
        if steps >= limit:
            break
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=use_amp):
            loss = road_loss(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        if use_amp:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        total += loss.item()
        steps += 1
        bar.set_postfix(loss=f"{total / steps:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
    return total / max(1, steps)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: RoadEvalDataset, device: torch.device, workers: int = 0) -> RoadScores:
    """KITTI-devkit road scores of whole frames, probability resized back to each label's full size."""
    model.eval()
    metrics = RoadMetrics()
    loader = DataLoader(dataset, batch_size=1, num_workers=workers)
    for image, target in tqdm(loader, desc="validate", unit="frame", leave=False, disable=None):
        logits = model(image.to(device)).float()
        prob = torch.softmax(logits, dim=1)[:, ROAD : ROAD + 1]
        prob = F.interpolate(prob, size=target.shape[-2:], mode="bilinear", align_corners=False)
        t = target[0].numpy()
        metrics.update(prob[0, 0].cpu().numpy(), t == ROAD, t != IGNORE)
    return metrics.compute()


def _ranks_in_step(net: nn.Module, loss: float) -> float:
    """Under DDP: check that every rank holds rank 0's weights and return the epoch loss averaged over the ranks.

    The weights must match exactly (RuntimeError if not). BatchNorm statistics (buffers) are rank 0's, broadcast
    first: DDP broadcasts them before each forward, so after the last step each rank still holds its own batch's
    update.
    """
    dist = torch.distributed
    for buffer in net.buffers():
        dist.broadcast(buffer, 0)
    flat = torch.cat([t.detach().double().flatten() for t in net.state_dict().values()])  # on the DDP device
    ref = flat.clone()
    dist.broadcast(ref, 0)
    stats = torch.tensor([float((flat - ref).abs().max()), loss], dtype=torch.float64, device=flat.device)
    both = [torch.zeros_like(stats) for _ in range(dist.get_world_size())]
    dist.all_gather(both, stats)
    diff = max(float(t[0]) for t in both)
    if diff != 0.0:
        raise RuntimeError(f"DDP ranks diverged: weights differ from rank 0's by up to {diff:g}")
    mean_loss = sum(float(t[1]) for t in both) / len(both)
    log.info("rank %d of %d in step with rank 0 (%d weights and buffers identical); loss %.4f, mean over ranks %.4f",
             dist.get_rank(), dist.get_world_size(), flat.numel(), loss, mean_loss)
    return mean_loss


def _is_main() -> bool:
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


def _checkpoint(model, optimizer, scheduler, scaler, epoch, args, desc, metrics, best, split) -> dict[str, Any]:
    net = model.module if hasattr(model, "module") else model
    return {
        "model": net.state_dict(),
        "config": asdict(net.config),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch,
        "input_size": list(args.input_size),
        "normalization": net.config.normalization,
        "training_data": desc,
        "metrics": metrics,
        "best_maxf": best,
        "split": split,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "handler"},
    }


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    """Add ``row`` to the CSV log (header first in a new file), rewriting it whole: never a half-written line."""
    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=["epoch", "lr", "train_loss", *METRIC_KEYS, "seconds"])
    if not path.exists():
        w.writeheader()
    w.writerow(row)
    write_text(path, (path.read_text() if path.exists() else "") + text.getvalue())


def _closing_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'epoch':>5} {'loss':>8} {'MaxF':>7} {'AP':>7} {'IoU':>7} {'sec':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "MaxF" in r:
            lines.append(f"{r['epoch']:>5} {r['train_loss']:>8.4f} {r['MaxF']:>7.4f} {r['AP']:>7.4f} "
                         f"{r['IoU']:>7.4f} {r['seconds']:>7.1f}")
    return "\n".join(lines)


def _init_from(model: FCN, path: Path, train_set: MixedTrainDataset) -> None:
    """Load a trained checkpoint's weights into ``model`` (fine-tuning); the architectures must match.

    An exported ``.onnx`` works too: its folded BatchNorms get statistics from 32 training crops (onnx_weights).
    """
    if path.suffix.lower() == ".onnx":
        from .onnx_weights import fit_batchnorm, model_from_onnx, onnx_checkpoint

        net, contract = model_from_onnx(path)
        frames = torch.stack([train_set[i][0] for i in range(min(32, len(train_set)))])
        fit_batchnorm(net, frames.split(4))
        ckpt = onnx_checkpoint(net, contract, path)
    else:
        ckpt = load_checkpoint(path)
    theirs = FCNConfig.from_dict(ckpt["config"])
    mine = model.config
    if (theirs.encoder, theirs.variant, theirs.width_mult, theirs.fc_width) != (
            mine.encoder, mine.variant, mine.width_mult, mine.fc_width):
        raise ModelError(f"--init {path} holds a {theirs.name} (--encoder {theirs.encoder} --variant "
                         f"{theirs.variant} --width {theirs.width_mult} --fc-width {theirs.fc_width}), not the "
                         f"{mine.name} these flags build; pass its flags")
    model.load_state_dict(ckpt["model"])
    log.info("initialised every weight from %s (%s, epoch %d of its run)", path, theirs.name, ckpt.get("epoch", -1) + 1)


def main(args: argparse.Namespace) -> Path | None:
    """Train; returns the exported ONNX path (or the best checkpoint with --no-export)."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if distributed and torch.cuda.is_available() \
        else _device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    train_set, val_set, desc = build_datasets(args)
    split = {"train": [s.name for s in train_set.samples], "val": [s.name for s in val_set.samples]}
    out: Path = args.out
    if _is_main():
        out.mkdir(parents=True, exist_ok=True)
        save_split(out / "split.json", {"train": train_set.samples, "val": val_set.samples})
    log.info("data: %s", desc)

    config = FCNConfig(variant=args.variant, encoder=args.encoder, width_mult=args.width, fc_width=args.fc_width,
                       dropout=args.dropout)
    model = FCN(config)
    if args.pretrained and not args.resume:
        loaded = load_imagenet(model, args.pretrained)
        log.info("initialised %d tensors of the %s encoder from ImageNet (%s)", len(loaded), config.encoder,
                 args.pretrained)
    if args.init:
        _init_from(model, args.init, train_set)
    if args.freeze_early:
        log.info("froze %d tensors of the encoder before stride 8", model.freeze_early())
    model.to(device)
    if config.is_lite:
        model.to(memory_format=torch.channels_last)  # depthwise convolutions run ~1.7x faster on a CPU
    if distributed:
        if config.batch_norm and device.type == "cuda":  # SyncBatchNorm runs on GPUs only; on CPUs DDP
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # broadcasts rank 0's BN statistics
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = DistributedSampler(train_set, seed=args.seed) if distributed else None
    loader_gen = torch.Generator()
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=args.workers, pin_memory=device.type == "cuda", drop_last=True,
                        generator=loader_gen, persistent_workers=False)
    if len(loader) == 0:
        raise DatasetError(f"{len(train_set)} training images are fewer than --batch-size {args.batch_size}; "
                           "lower the batch size or add data")
    steps_per_epoch = min(len(loader), args.max_steps or len(loader))
    params = _param_groups(model, args.weight_decay)
    if args.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=args.lr)
    else:
        optimizer = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, build_lr_lambda(
        args.epochs * steps_per_epoch, int(args.warmup_epochs * steps_per_epoch), args.schedule))
    scaler = torch.amp.GradScaler("cuda") if args.amp and device.type == "cuda" else None

    start, best, best_metrics, rows = 0, -1.0, {}, []
    if args.resume:
        ckpt = torch.load(args.resume, map_location="cpu", weights_only=True)
        (model.module if distributed else model).load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start, best, best_metrics = ckpt["epoch"] + 1, ckpt.get("best_maxf", -1.0), ckpt.get("metrics", {})
        log.info("resumed from %s at epoch %d (best val MaxF %.4f)", args.resume, start, best)

    writer = None
    if _is_main():
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"))
    csv_path = out / "log.csv"
    t_start = time.perf_counter()
    epochs = Progress(args.epochs - start, "train", "epoch", show=False)  # "interrupted after 2 of 10 epochs"
    for epoch in range(start, args.epochs):
        t0 = time.perf_counter()
        # Order, augmentation and dropout depend on (seed, epoch) only: resuming reproduces the same run.
        torch.manual_seed(args.seed + epoch)
        loader_gen.manual_seed(args.seed + epoch)
        train_set.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        loss = train_one_epoch(model, loader, optimizer, scheduler, scaler, device, epoch, args)
        if distributed:
            loss = _ranks_in_step(model.module, loss)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], "train_loss": loss}
        last = epoch + 1 == args.epochs
        if _is_main() and ((epoch + 1) % args.val_every == 0 or last):
            scores = evaluate(model.module if distributed else model, val_set, device, args.workers)
            row.update({k: getattr(scores, k) for k in METRIC_KEYS})
        row["seconds"] = time.perf_counter() - t0
        if _is_main():
            rows.append(row)
            is_best = "MaxF" in row and row["MaxF"] > best
            if is_best:
                best = row["MaxF"]
                best_metrics = {k: float(row[k]) for k in METRIC_KEYS}
            ckpt = _checkpoint(model, optimizer, scheduler, scaler, epoch, args, desc, best_metrics, best, split)
            for name in ["last.pt"] + ["best.pt"] * is_best + [f"epoch{epoch + 1}.pt"] * bool(
                    args.save_every and (epoch + 1) % args.save_every == 0):
                with replacing(out / name) as tmp:
                    torch.save(ckpt, tmp)
            _append_csv(csv_path, row)
            for key, value in row.items():
                if key != "epoch":
                    writer.add_scalar(key if key in ("lr", "train_loss", "seconds") else f"val/{key}", value, epoch + 1)
            log.info("epoch %d/%d loss %.4f%s (%.0f s)", epoch + 1, args.epochs, loss,
                     f" val MaxF {row['MaxF']:.4f} AP {row['AP']:.4f} IoU {row['IoU']:.4f}" if "MaxF" in row else "",
                     row["seconds"])
        epochs.update()
        if distributed:
            torch.distributed.barrier()

    result = None
    if _is_main():
        writer.close()
        log.info("trained %s in %.1f min; best val MaxF %.4f\n%s", plural(args.epochs - start, "epoch"),
                 (time.perf_counter() - t_start) / 60, best, _closing_table(rows))
        result = out / "best.pt"
        if not args.no_export and result.is_file():
            from .export import export_checkpoint

            result = export_checkpoint(result, args.export or out / "model.onnx")
            log.info("exported the best checkpoint to %s", result)
    if distributed:
        torch.distributed.destroy_process_group()
    return result


if __name__ == "__main__":
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_train_args(parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(0 if main(parser.parse_args()) else 1)
