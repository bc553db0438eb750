"""Offline model work with PyTorch: the FCN model, training datasets, the training loop and its flags,
and checkpoint -> ONNX export.

May import the core (contract, errors, images) and ``evaluation.metrics``. Nothing in the core, ``ros``,
``backends`` or ``trt`` imports this subpackage, so a node or an inference run never loads PyTorch.
``args`` is torch-free, so the CLI can build its parser without PyTorch.
"""
