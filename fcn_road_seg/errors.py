"""One package error and its subclasses; every message says what to do next."""

__all__ = [
    "FcnRoadSegError",
    "ModelError",
    "ContractError",
    "InputImageError",
    "UnsupportedEncodingError",
    "FrameSizeError",
    "BackendUnavailableError",
    "DatasetError",
    "EngineMismatchError",
    "TensorRTError",
    "BagError",
    "MissingDependencyError",
    "MissingExtraError",
    "OutputError",
]


class FcnRoadSegError(Exception):
    """Base class of every error this package raises on purpose."""


class ModelError(FcnRoadSegError):
    """The model file is missing, unreadable or of the wrong kind."""


class ContractError(ModelError):
    """The model carries no contract, or one this version cannot use."""


class InputImageError(FcnRoadSegError):
    """A frame or image file cannot be segmented as given (corrupt or undecodable, unless a subclass says why)."""


class UnsupportedEncodingError(InputImageError):
    """A frame in an encoding the model cannot use (16-bit, depth, float, ...)."""


class FrameSizeError(InputImageError):
    """A frame whose size does not fit: data/step not matching width x height, or too small for the model."""


class BackendUnavailableError(FcnRoadSegError):
    """The requested inference runtime is not installed or cannot run here."""


class DatasetError(FcnRoadSegError):
    """A dataset folder is missing, empty or inconsistent."""


class EngineMismatchError(ModelError):
    """A TensorRT plan was built for another TensorRT version or GPU than the one running it."""


class TensorRTError(FcnRoadSegError):
    """TensorRT or CUDA failed: parsing, building, deserialising an engine, or GPU memory."""


class BagError(DatasetError):
    """A rosbag2 bag is missing, unreadable, of an unknown storage or lacks a needed topic."""


class MissingDependencyError(FcnRoadSegError):
    """A required package is missing (e.g. a pip-only dependency after ``rosdep install``); names the install."""


class MissingExtraError(FcnRoadSegError):
    """An optional feature needs a package from an extra (``pip install 'fcn_road_seg[EXTRA]'``) that is missing."""


class OutputError(FcnRoadSegError):
    """An output file or folder cannot be written (read-only, full disk, file-size limit, a folder in the way)."""
