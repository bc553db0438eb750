"""The TensorRT side that needs no running pipeline: ONNX -> plan builds and the engine cache (``engine``),
plan sidecars and compatibility checks (``plan``), pycuda memory and streams (``cuda_io``), and the
``check-trt`` rules (``check``, with the operator table in ``data/``).

``engine``, ``plan`` and ``cuda_io`` import only the core leaves (contract, errors, images, preprocess):
``backends.tensorrt`` builds on them. ``check`` is a tool on top: it also runs the pipeline to compare
FP16 with FP32. Never imports ``ros`` or ``training``.
"""
