"""fcn_road_seg: binary road segmentation (FCN-8s on VGG16) for ROS 2."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fcn_road_seg")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"

__all__ = ["__version__"]
