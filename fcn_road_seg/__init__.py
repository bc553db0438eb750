"""fcn_road_seg: binary road segmentation (an FCN-8s) for ROS 2, with ONNX Runtime and TensorRT.

The top level is the core every consumer shares: ``contract`` (what a model expects), ``preprocess`` and
``pipeline`` (the one path of a frame), ``images``, ``image_messages`` (sensor_msgs images <-> numpy and CDR
bytes, no rclpy), ``errors``, ``resources``, ``wording``, ``outputs`` (every
file written whole or not at all, and checked) and ``progress`` (how far a loop got); ``cli`` is the command line.
The core imports nothing from the subpackages except ``backends`` (pipeline only). Subpackages by role:
``backends`` (runtimes), ``trt`` (TensorRT build side), ``ros`` (every rclpy module), ``training``
(PyTorch), ``evaluation`` (KITTI metrics, reports, bags), ``doctor`` (the install check). Arrows point down
only: no import cycles.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fcn_road_seg")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"

__all__ = ["__version__"]
