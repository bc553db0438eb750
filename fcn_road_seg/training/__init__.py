"""Offline model work with PyTorch.

The FCN model and its encoders (``model``, ImageNet weights in ``pretrained``), training samples (``samples``,
torch-free) and datasets, the training loop and its flags, calibration, checkpoint -> ONNX export, and the INT8
copy of an export (``quantize``, torch-free: ONNX Runtime's quantizer).

May import the core (contract, errors, images, outputs, progress, wording), ``evaluation.metrics`` and
``evaluation.groundtruth`` (one KITTI pair listing for training and evaluation). Nothing in the core, ``ros``,
``backends`` or ``trt`` imports this subpackage, so a node or an inference run never loads PyTorch.
``args`` is torch-free, so the CLI can build its parser without PyTorch.
"""
