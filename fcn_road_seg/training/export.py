"""Checkpoint -> ONNX with the model contract in ``metadata_props``.

The exported graph takes uint8 NHWC RGB at the network's fixed size and returns road probability (N, H, W)
in [0, 1]: cast, normalisation, layout change and the softmax all run inside the graph, so a runtime only
copies bytes in and out.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..contract import DEFAULT_OPSET, IR_VERSION, ModelContract, check_model_file
from ..errors import ModelError
from ..outputs import check_writable, replacing
from .calibrate import Calibration
from .model import FCN, FCNConfig

__all__ = ["DeployableFCN", "load_checkpoint", "export_onnx", "export_checkpoint", "contract_for", "DEFAULT_OPSET"]

log = logging.getLogger(__name__)
_EXPORTER_MIN_OPSET = 18  # the lowest opset torch.onnx's dynamo exporter has implementations for


class DeployableFCN(nn.Module):
    """Wrap an FCN: uint8 NHWC RGB in, road probability (N, H, W) out."""

    def __init__(self, net: FCN, mean: list[float], std: list[float], calibration: Calibration | None = None) -> None:
        super().__init__()
        self.net = net
        self.calibration = calibration
        std_t = torch.tensor(std, dtype=torch.float32)
        # (x / 255 - mean) / std  ==  x * scale + shift, folded into two constants.
        self.register_buffer("scale", (1.0 / (255.0 * std_t)).view(1, 1, 1, 3))
        self.register_buffer("shift", (-torch.tensor(mean, dtype=torch.float32) / std_t).view(1, 1, 1, 3))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # Cast first: TensorRT's ONNX parser accepts uint8 only as a network input feeding a Cast (no
        # Transpose of uint8). Normalise after the layout change: per-channel broadcast over NCHW planes
        # runs ~2x faster in ONNX Runtime than over NHWC's innermost axis of 3 (same arithmetic).
        x = image.to(torch.float32).permute(0, 3, 1, 2) * self.scale.view(1, 3, 1, 1) + self.shift.view(1, 3, 1, 1)
        logits = self.net(x)
        # Two-class softmax, road channel: softmax(l)[1] == sigmoid(l1 - l0); calibrated: ((l1 - l0) - b) / T.
        z = logits[:, 1] - logits[:, 0]
        if self.calibration is not None:
            cal = self.calibration
            z = z * (1.0 / cal.temperature) - cal.bias / cal.temperature
        return torch.sigmoid(z)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint safely (``weights_only=True``) and check its keys."""
    path = check_model_file(path, "checkpoint", "export takes the .pt file a training run wrote (e.g. RUN/best.pt; "
                            "`fcn-road-seg train` makes one); `fcn-road-seg model-info MODEL` shows an exported model")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {err}); give the "
                         ".pt file a training run wrote (e.g. RUN/best.pt)") from err
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ModelError(f"{path} is not an fcn_road_seg checkpoint (needs 'model' and 'config' keys)")
    return ckpt


def contract_for(
    config: FCNConfig,
    input_size: tuple[int, int],
    *,
    normalization: dict[str, list[float]] | None = None,
    training_data: str = "untrained",
    metrics: dict[str, float] | None = None,
    default_threshold: float = 0.5,
    calibration: Calibration | None = None,
) -> ModelContract:
    """Return the contract an exported model of this architecture and size carries.

    ``metrics`` are labelled as measured at this size. With a calibration, the metrics' ``threshold_maxf`` is
    moved to where the calibrated probability puts it.
    """
    metrics = dict(metrics or {})
    if calibration is not None and "threshold_maxf" in metrics:
        metrics["threshold_maxf"] = calibration.apply(metrics["threshold_maxf"])
    return ModelContract(
        input_height=int(input_size[0]),
        input_width=int(input_size[1]),
        variant=config.variant,
        encoder=config.encoder,
        width_mult=config.width_mult,
        fc_width=config.fc_width,
        training_data=training_data,
        metrics=metrics,
        metrics_input_size=[int(input_size[0]), int(input_size[1])] if metrics else [],
        default_threshold=default_threshold,
        calibration=calibration.as_dict() if calibration is not None else {},
        package_version=__version__,
        normalization=normalization or config.normalization,
    )


def export_onnx(
    net: FCN,
    contract: ModelContract,
    out_path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    calibration: Calibration | None = None,
) -> Path:
    """Export ``net`` with ``contract`` to a self-contained ONNX file and check it."""
    import onnx

    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    h, w = contract.input_height, contract.input_width
    if h % 32 or w % 32:
        raise ValueError(f"network input size must be a multiple of 32 on both sides, got {h}x{w}")
    norm = contract.normalization
    wrapper = DeployableFCN(net, norm["mean"], norm["std"], calibration).eval()
    dummy = torch.zeros(contract.input_shape, dtype=torch.uint8)
    out_path = Path(out_path)
    check_writable(out_path.parent, "the output's folder")  # before the export's minutes of work
    # The exporter warns about every torchvision op it cannot register; FCN uses none of them.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    logging.getLogger("onnx_ir.passes.common.initializer_deduplication").setLevel(logging.WARNING)
    log.info("exporting %s at %dx%d (opset %d) to %s", contract.variant, h, w, opset, out_path)
    with torch.no_grad():
        program = torch.onnx.export(
            wrapper,
            (dummy,),
            dynamo=True,
            opset_version=max(opset, _EXPORTER_MIN_OPSET),
            input_names=[contract.input_name],
            output_names=[contract.output_name],
            external_data=False,
            verbose=False,
        )
    proto = _at_opset(program.model_proto, opset)
    del proto.metadata_props[:]
    for key, value in contract.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    # The exporter writes IR 10, whose only additions it uses are metadata on values and nodes; IR 8 is
    # what TensorRT 8.6's parser knows (its bundled onnx 1.13.1), and opset 17 needs no more.
    for value in list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info):
        del value.metadata_props[:]
    for node in proto.graph.node:
        del node.metadata_props[:]
    if opset <= DEFAULT_OPSET:
        proto.ir_version = IR_VERSION
    proto.producer_name = "fcn_road_seg"
    proto.producer_version = __version__
    onnx.checker.check_model(proto, full_check=True)
    with replacing(out_path) as tmp:
        onnx.save(proto, str(tmp))
    return out_path


def _at_opset(proto, opset: int):
    """Return the exported graph at ``opset``.

    The exporter implements opset 18 and up; converting down before its optimiser runs fails for graphs with a
    Pad (EfficientNet-Lite's TensorFlow-"SAME" padding: ONNX has no Pad adapter 18 -> 17), so the export runs at
    18 and the optimised graph, each Pad folded into its Conv, converts here.
    """
    from onnx import version_converter

    current = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if current == opset:
        return proto
    try:
        return version_converter.convert_version(proto, opset)
    except RuntimeError as err:
        ops = sorted({n.op_type for n in proto.graph.node})
        raise ModelError(f"the exported graph (opset {current}; ops {', '.join(ops)}) does not convert to opset "
                         f"{opset} ({err}); export with --opset {current}") from err


def export_checkpoint(
    checkpoint: str | Path,
    out_path: str | Path,
    *,
    input_size: tuple[int, int] | None = None,
    opset: int = DEFAULT_OPSET,
    calibrate_on: tuple[Path, str | None] | None = None,
) -> Path:
    """Export a training checkpoint; size, normalisation and metrics come from the checkpoint.

    With ``calibrate_on`` (a dataset folder and optional split list), a temperature and bias fitted there at the
    export size are baked into the graph (see :mod:`.calibrate`).
    """
    ckpt = load_checkpoint(checkpoint)
    config = FCNConfig.from_dict(ckpt["config"])
    net = FCN(config)
    net.load_state_dict(ckpt["model"])
    size = input_size or tuple(ckpt.get("input_size", ()))
    if len(size) != 2:
        raise ModelError(f"{checkpoint} does not record its input size; pass --input-size H W")
    norm = ckpt.get("normalization") or config.normalization
    metrics = ckpt.get("metrics") or {}
    trained = [int(v) for v in ckpt.get("input_size", ())]
    if metrics and [int(v) for v in size] != trained:  # another size scores differently: measure, do not copy
        measured = "x".join(map(str, trained)) if trained else "an unrecorded size"
        log.info("the checkpoint's validation metrics (measured at %s) are not copied into this %dx%d export; "
                 "`fcn-road-seg evaluate` measures the exported model", measured, *size)
        metrics = {}
    calibration = None
    if calibrate_on is not None:
        from .calibrate import calibrate
        from .datasets import RoadEvalDataset
        from .samples import folder_samples

        samples, spec, desc = folder_samples(Path(calibrate_on[0]), calibrate_on[1])
        calibration = calibrate(net, RoadEvalDataset(samples, spec, tuple(size), norm),
                                f"{desc} at {size[0]}x{size[1]}")
    contract = contract_for(
        config,
        size,
        normalization=norm,
        training_data=ckpt.get("training_data", "unknown"),
        metrics=metrics,
        calibration=calibration,
    )
    return export_onnx(net.eval(), contract, out_path, opset=opset, calibration=calibration)
