"""The model contract: what a model file expects and returns, stored inside the file.

An ONNX model carries it in ``metadata_props`` (one key per field, prefixed ``fcn_road_seg.``, values
JSON-encoded); a TensorRT plan carries it in a JSON sidecar. The pipeline reads it; nothing about the
model is hard-coded elsewhere.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ContractError, ModelError

__all__ = ["ModelContract", "CONTRACT_VERSION", "DEFAULT_OPSET", "IR_VERSION", "METADATA_PREFIX", "PRECISIONS",
           "file_sha256", "read_onnx_contract", "check_model_file"]

CONTRACT_VERSION = 2  # 2: the uint8 input feeds only a Cast (TensorRT-parsable)
DEFAULT_OPSET = 17  # the newest ONNX opset both TensorRT 8.6 (JetPack 6.0) and 10.x parse
IR_VERSION = 8  # ONNX IR of onnx 1.13.1, the ONNX TensorRT 8.6's parser bundles (docs/tensorrt.md)
METADATA_PREFIX = "fcn_road_seg."
PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class ModelContract:
    """Everything a runtime needs to know about a road model's input and output."""

    input_height: int
    input_width: int
    input_name: str = "image"
    output_name: str = "road_probability"
    channel_order: str = "RGB"
    input_dtype: str = "uint8"
    input_layout: str = "NHWC"
    normalization: dict[str, list[float]] = field(
        default_factory=lambda: {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": [255.0]}
    )
    output: str = "road_probability"
    output_layout: str = "NHW"
    default_threshold: float = 0.5
    variant: str = "fcn8s"
    encoder: str = "vgg16"
    width_mult: float = 1.0
    fc_width: int = 4096
    training_data: str = "untrained"
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_split: str = "validation"  # what ``metrics`` were measured on: the training run's validation split
    metrics_input_size: list[int] = field(default_factory=list)  # [H, W] network input ``metrics`` were measured at
    calibration: dict[str, float | str] = field(default_factory=dict)  # temperature/bias inside the graph
    precision: str = "fp32"  # "int8": a QDQ copy written by `fcn-road-seg quantize` (details in ``quantization``)
    quantization: dict[str, Any] = field(default_factory=dict)
    package_version: str = "0.1.0"
    contract_version: int = CONTRACT_VERSION

    def __post_init__(self) -> None:
        if self.input_height <= 0 or self.input_width <= 0:
            raise ContractError(f"contract input size must be positive, got {self.input_height}x{self.input_width}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ContractError(f"contract channel_order must be RGB or BGR, got {self.channel_order!r}")
        if not 0.0 < self.default_threshold < 1.0:
            raise ContractError(f"contract default_threshold must lie in (0, 1), got {self.default_threshold}")
        if self.precision not in PRECISIONS:
            raise ContractError(f"contract precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.contract_version > CONTRACT_VERSION:
            raise ContractError(
                f"model contract version {self.contract_version} is newer than this fcn_road_seg understands "
                f"({CONTRACT_VERSION}); upgrade fcn_road_seg"
            )

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Network input shape (N, H, W, C)."""
        return (1, self.input_height, self.input_width, 3)

    def check_graph(self, source: Path, input_names: list[str], output_names: list[str], input_shape: list) -> None:
        """Raise ModelError when a runtime's view of the graph disagrees with this contract (names, input shape).

        ``output_names``: the names the runtime will read the probability from.
        """
        if input_names != [self.input_name] or self.output_name not in output_names:
            raise ModelError(f"{source}: graph inputs/outputs {input_names}/{output_names} do not match its contract "
                             f"({self.input_name} -> {self.output_name}); re-export the model")
        if tuple(input_shape) != self.input_shape:
            raise ModelError(f"{source}: graph input shape {list(input_shape)} differs from the contract's "
                             f"{self.input_shape}; re-export the model")

    def to_metadata(self) -> dict[str, str]:
        """Flatten into ONNX ``metadata_props`` key/value strings."""
        return {METADATA_PREFIX + k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_metadata(cls, props: dict[str, str], source: str = "model") -> ModelContract:
        """Rebuild from ONNX ``metadata_props``; raise ContractError naming the fix if absent."""
        ours = {k[len(METADATA_PREFIX):]: v for k, v in props.items() if k.startswith(METADATA_PREFIX)}
        if not ours:
            raise ContractError(
                f"{source} has no fcn_road_seg contract in its metadata; export it with "
                "`fcn-road-seg export CHECKPOINT -o MODEL.onnx` (or train with `fcn-road-seg train`)"
            )
        known = {f.name for f in fields(cls)}
        try:
            values = {k: json.loads(v) for k, v in ours.items() if k in known}
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise ContractError(f"{source} has a malformed contract ({err}); re-export the model") from err

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "sidecar") -> ModelContract:
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as err:
            raise ContractError(f"{source} has a malformed contract ({err}); rebuild it") from err


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (an INT8 copy's contract names its float source by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_EXPECTED = {"onnx": "an ONNX model", "plan": "a TensorRT plan", "checkpoint": "a training checkpoint (.pt)"}


def _file_kind(path: Path) -> str | None:
    """Tell what a file's first bytes show it to be (empty, text, PyTorch checkpoint, ONNX), or None (unknown)."""
    with path.open("rb") as f:
        head = f.read(512)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch.save: zip archive, or legacy pickle
        return "checkpoint"
    if head[:1] == b"\x08":  # protobuf field 1 (ir_version), what onnx.save writes first
        return "onnx"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "text" if all(c.isprintable() or c in "\t\r\n" for c in text) else None


def check_model_file(path: str | Path, expected: str, fix: str) -> Path:
    """Return ``path`` as a Path when it is an existing file that may be ``expected`` (onnx, plan or checkpoint).

    Else raise a ModelError saying what the path is (missing, a folder, empty, text, another kind of model file),
    what was expected, and ``fix``. The parsers never see such a file.
    """
    path = Path(path).expanduser()
    want = _EXPECTED[expected]
    if not path.exists():
        raise ModelError(f"{'checkpoint' if expected == 'checkpoint' else 'model file'} not found: {path}; {fix}")
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in (".onnx", ".plan", ".engine", ".pt"))[:3]
        held = f" (it holds {', '.join(inside)})" if inside else ""
        raise ModelError(f"{path} is a folder{held}, not {want}; {fix}")
    kind = _file_kind(path)
    if kind == "empty":
        raise ModelError(f"{path} is empty (0 bytes), not {want}: an interrupted export or copy? {fix}")
    if kind == "text":
        with path.open("rb") as f:
            first = next(iter(f.read(512).decode("utf-8", "replace").strip().splitlines()), "")[:60]
        lfs = "; a Git LFS pointer: run `git lfs pull`" if first.startswith("version https://git-lfs") else ""
        shown = f" (it starts {first!r}{lfs})" if first else " of blank lines"
        raise ModelError(f"{path} is a text file{shown}, not {want}; {fix}")
    if kind == "checkpoint" and expected != "checkpoint":
        raise ModelError(f"{path} is a PyTorch checkpoint, not {want}; export it first: "
                         f"`fcn-road-seg export {path} -o model.onnx`")
    if expected == "checkpoint" and (kind == "onnx" or path.suffix.lower() in (".onnx", ".plan", ".engine")):
        raise ModelError(f"{path} is an exported model, not a training checkpoint; {fix}")
    return path


def read_onnx_contract(path: str | Path) -> ModelContract:
    """Read the contract of an ONNX file without loading its weights."""
    import onnx

    path = check_model_file(path, "onnx", "give an exported .onnx file (`fcn-road-seg model-path` prints the "
                            "shipped one)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError and friends
        raise ModelError(
            f"{path} is not a readable ONNX model ({type(err).__name__}); export one with `fcn-road-seg export`"
        ) from err
    props = {p.key: p.value for p in model.metadata_props}
    return ModelContract.from_metadata(props, source=str(path))
