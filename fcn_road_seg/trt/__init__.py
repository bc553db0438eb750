"""The TensorRT side that needs no running pipeline.

ONNX -> plan builds and the engine cache (``engine``), plan sidecars and compatibility checks (``plan``), pycuda
memory and streams (``cuda_io``), the FP16 copy of a model (``fp16``), and the ``check-trt`` rules (``check``,
with the parser's table in ``data/``).

``engine``, ``plan``, ``cuda_io`` and ``fp16`` import only the core leaves (contract, errors, images, preprocess):
``backends.tensorrt`` builds on them. ``check`` is a tool on top: it also runs the pipeline to compare
FP16 with FP32. Never imports ``ros`` or ``training``.
"""
