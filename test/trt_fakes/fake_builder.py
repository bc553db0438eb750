"""Hooks of the fake ``tensorrt``'s build side.

Builder, IBuilderConfig, OnnxParser, INetworkDefinition, ITimingCache, IOptimizationProfile, IHostMemory (see
``tensorrt_fake`` for what they model).
"""
from __future__ import annotations

import json
import struct
import sys
import weakref

import numpy as np

from .strict import new_bound, require_initialised
from .tensorrt_fake import CACHE_MAGIC, ONNX_TO_TRT, PARSER_TARGET, PLAN_MAGIC, Fake


def builder_hooks(fake: Fake) -> dict:
    """Class name -> hook class for the build side of one fake release."""
    T, gpu, release, version, major = fake.T, fake.gpu, fake.release, fake.version, fake.major
    enum, log, dims, is_a = fake.enum, fake.log, fake.dims, fake.is_a
    _fail, _host_memory = fake.fail, fake.host_memory

    class DimsHooks:
        def __len__(self):
            return len(self._f_shape)

        def __getitem__(self, index):
            return self._f_shape[index]

        def __eq__(self, other):
            return tuple(self) == tuple(other)

        def __repr__(self):
            return f"({', '.join(map(str, self._f_shape))})"

        __str__ = __repr__

    class TensorHooks:
        pass

    class BuilderHooks:
        def init(self, logger):
            if not is_a(logger, "ILogger"):
                raise TypeError(f"Builder.__init__(): incompatible constructor arguments; logger {logger!r}")
            require_initialised(logger, "Builder.__init__")
            self._f_logger = logger
            self._f_timing_caches = []

        def get_num_DLA_cores(self):
            return gpu.dla_cores

        def get_platform_has_fast_fp16(self):
            return gpu.fast_fp16

        def get_platform_has_fast_int8(self):
            return gpu.fast_int8

        def create_network(self, flags=0):
            return new_bound(T["INetworkDefinition"], builder=self, flags=int(flags), parsed=None, parser=None)

        def create_builder_config(self):
            config = new_bound(T["IBuilderConfig"], flags={enum("BuilderFlag", "TF32")}, profiles=[], pools={},
                               calibration_profile=None, timing_cache=None)
            config._f_values.update(DLA_core=-1, default_device_type=enum("DeviceType", "GPU"))
            for name in ("int8_calibrator", "progress_monitor"):
                if name in type(config)._fake_props:
                    config._f_values[name] = None
            return config

        def create_optimization_profile(self):
            return new_bound(T["IOptimizationProfile"], shapes={})

        def build_serialized_network(self, network, config, kernel_text=None):
            return _build(self, network, config)

    class ConfigHooks:
        def set_flag(self, flag):
            _check_enum(flag, "BuilderFlag", "IBuilderConfig.set_flag")
            self._f_flags.add(flag)

        def clear_flag(self, flag):
            _check_enum(flag, "BuilderFlag", "IBuilderConfig.clear_flag")
            self._f_flags.discard(flag)

        def get_flag(self, flag):
            return flag in self._f_flags

        def set_memory_pool_limit(self, pool, pool_size):
            _check_enum(pool, "MemoryPoolType", "IBuilderConfig.set_memory_pool_limit")
            self._f_pools[pool.name] = int(pool_size)

        def add_optimization_profile(self, profile):
            self._f_profiles.append(dict(profile._f_shapes))
            return len(self._f_profiles) - 1

        def set_calibration_profile(self, profile):
            self._f_calibration_profile = dict(profile._f_shapes)
            return True

        def set_DLA_core(self, value):
            self._f_values["DLA_core"] = int(value)

        def set_default_device_type(self, value):
            _check_enum(value, "DeviceType", "IBuilderConfig.default_device_type")
            self._f_values["default_device_type"] = value

        def set_int8_calibrator(self, value):
            if value is not None:
                if not is_a(value, "IInt8Calibrator"):
                    raise TypeError("(): incompatible function arguments: int8_calibrator must be an IInt8Calibrator")
                require_initialised(value, "IBuilderConfig.int8_calibrator")
            self._f_values["int8_calibrator"] = value

        def set_progress_monitor(self, value):
            if value is not None:
                if not is_a(value, "IProgressMonitor"):
                    raise TypeError("(): incompatible function arguments: progress_monitor must be an IProgressMonitor")
                require_initialised(value, "IBuilderConfig.progress_monitor")
            self._f_values["progress_monitor"] = value

        def create_timing_cache(self, serialized_timing_cache):
            blob = bytes(serialized_timing_cache)
            header = {"tensorrt": version, "device": gpu.name, "cc": list(gpu.compute_capability), "entries": {}}
            if blob:
                if not blob.startswith(CACHE_MAGIC):
                    return None  # TensorRT logs the error and returns no cache
                header = json.loads(blob[len(CACHE_MAGIC):])
                if header["tensorrt"] != version:
                    return None
            return _timing_cache(header)

        def set_timing_cache(self, cache, ignore_mismatch):
            if not is_a(cache, "ITimingCache"):
                raise TypeError("IBuilderConfig.set_timing_cache(): incompatible function arguments")
            header = cache._f_header
            if (header["device"], tuple(header["cc"])) != (gpu.name, gpu.compute_capability) and not ignore_mismatch:
                return False  # "A failure will be reported if the CUDA device property ... is different"
            self._f_timing_cache = cache  # py::keep_alive<1, 2>: the config keeps the cache alive
            return True

        def get_timing_cache(self):
            return self._f_timing_cache

    def _check_enum(value, name: str, where: str) -> None:
        if value not in T[name].__members__.values():
            raise TypeError(f"{where}(): incompatible function arguments: expected tensorrt.{name}, got {value!r}")

    def _timing_cache(header: dict):
        cache = new_bound(T["ITimingCache"], header=header)
        users: list = []
        cache._f_users = users

        def released(users=users):
            alive = [b for b in (ref() for ref in users) if b is not None]
            if alive and release in ("10.16", "11.1"):
                gpu.violations.append("ITimingCache released while a Builder that used it is alive (NvInfer.h "
                                      f"{release}: 'The lifetime of the ITimingCache must exceed the lifetime of "
                                      "all builders that use it')")
        weakref.finalize(cache, released)
        return cache

    class TimingCacheHooks:
        def serialize(self):
            return _host_memory(CACHE_MAGIC + json.dumps(self._f_header).encode())

        def combine(self, input_cache, ignore_mismatch):
            self._f_header["entries"].update(input_cache._f_header["entries"])
            return True

        def reset(self):
            self._f_header["entries"].clear()
            return True

    class HostMemoryHooks:
        def get_nbytes(self):
            return len(self._f_data)

        def __bytes__(self):
            return self._f_data

    class ProfileHooks:
        def set_shape(self, input, min, opt, max):
            self._f_shapes[input] = (tuple(min), tuple(opt), tuple(max))

    class ParserHooks:
        def init(self, network, logger):
            if not is_a(network, "INetworkDefinition") or not is_a(logger, "ILogger"):
                raise TypeError("OnnxParser.__init__(): incompatible constructor arguments")
            self._f_network, self._f_logger, self._f_errors = network, logger, []
            network._f_parser = weakref.ref(self)

        def parse_from_file(self, model):
            if not isinstance(model, str):
                raise TypeError("OnnxParser.parse_from_file(): incompatible function arguments (model: str)")
            return _parse(self, model)

        def get_num_errors(self):
            return len(self._f_errors)

        def get_error(self, index):
            if not 0 <= index < len(self._f_errors):
                return None
            return new_bound(T["ParserError"], desc=self._f_errors[index])

    class ParserErrorHooks:
        def desc(self):
            return self._f_desc

        def __str__(self):
            return f"In node -1 with name:  and operator:  (parseGraph): INVALID_NODE: {self._f_desc}"

        def code(self):
            return enum("ErrorCode", "INVALID_NODE")

    def _parse(parser, path: str) -> bool:
        import onnx

        from fcn_road_seg.trt.check import check_operators

        network = parser._f_network
        if major < 10 and not network._f_flags & (1 << int(enum("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH"))):
            parser._f_errors.append("This version of the ONNX parser only supports TensorRT INetworkDefinitions with "
                                    "an explicit batch dimension. Please ensure the network was created using the "
                                    "EXPLICIT_BATCH NetworkDefinitionCreationFlag.")
            return False
        try:
            model = onnx.load(path)
            problems = check_operators(path, [PARSER_TARGET[release]]).failures[PARSER_TARGET[release]]
        except Exception as err:  # noqa: BLE001 - the parser reports anything it cannot read as an error
            parser._f_errors.append(f"Failed to parse ONNX model from file {path}: {err}")
            return False
        if problems:
            parser._f_errors.extend(problems)
            for p in problems:
                log(parser._f_logger, "ERROR", f"ModelImporter.cpp: {p}")
            return False

        def tensors(values):
            return [(v.name, tuple(d.dim_value for d in v.type.tensor_type.shape.dim),
                     ONNX_TO_TRT[v.type.tensor_type.elem_type]) for v in values]
        network._f_parsed = {"inputs": tensors(model.graph.input), "outputs": tensors(model.graph.output),
                             "onnx": model.SerializeToString(),
                             "float16": any(i.data_type == 10 for i in model.graph.initializer)}
        return True

    class NetworkHooks:
        def get_num_inputs(self):
            return len(self._f_parsed["inputs"]) if self._f_parsed else 0

        def get_num_outputs(self):
            return len(self._f_parsed["outputs"]) if self._f_parsed else 0

        def get_input(self, index):
            return _tensor(self._f_parsed["inputs"][index])

        def get_output(self, index):
            return _tensor(self._f_parsed["outputs"][index])

    def _tensor(spec):
        name, shape, dtype = spec
        tensor = new_bound(T["ITensor"])
        tensor._f_values.update(name=name, shape=dims(shape), dtype=enum("DataType", dtype))
        return tensor

    def _build(builder, network, config):
        parsed = network._f_parsed
        if gpu.build_error:
            return _fail(builder, gpu.build_error)
        if network._f_builder is not builder or parsed is None:
            return _fail(builder, "Network has no layers or comes from another builder")
        parser = network._f_parser() if network._f_parser is not None else None
        if parser is None:
            gpu.violations.append("the OnnxParser was released before the build (it owns the network's weights)")
        (in_name, in_shape, _), = parsed["inputs"]
        if not config._f_profiles or config._f_profiles[0].get(in_name, (None,))[0] != in_shape:
            return _fail(builder, f"IBuilderConfig has no optimization profile setting {in_name} to {in_shape}")
        flags = sorted(f.name for f in config._f_flags)
        dla = config._f_values["default_device_type"] == enum("DeviceType", "DLA")
        if major >= 11:
            precision = "fp16" if parsed["float16"] else "fp32"
        else:
            precision = "int8" if "INT8" in flags else "fp16" if "FP16" in flags else "fp32"
        if dla:
            core = config._f_values["DLA_core"]
            if not 0 <= core < gpu.dla_cores:
                return _fail(builder, f"DLA core {core} is not available: this device has {gpu.dla_cores}")
            if precision == "fp32":
                return _fail(builder, "DLA supports FP16 and INT8 only")
        calibration = None
        if precision == "int8":
            calibration = _calibrate(builder, config, in_name, in_shape)
            if calibration is None:
                return _fail(builder, "Calibration failure occurred with no scaling factors detected. This could be "
                                      "due to no int8 calibrator or insufficient custom scales for network layers.")
        monitor = config._f_values.get("progress_monitor")
        if monitor is not None and not _progress(monitor):
            return _fail(builder, "Build was cancelled by the progress monitor")
        cache = config._f_timing_cache
        timing = None
        if cache is not None:
            entries = cache._f_header["entries"]
            timing = "hit" if entries.get(in_name) == precision else "miss"
            entries[in_name] = precision
            cache._f_users.append(weakref.ref(builder))
        header = {"tensorrt": version, "device": gpu.name, "cc": list(gpu.compute_capability), "flags": flags,
                  "precision": precision, "profile": {k: list(map(list, v)) for k, v in config._f_profiles[0].items()},
                  "dla_core": config._f_values["DLA_core"] if dla else None, "pools": dict(config._f_pools),
                  "calibration": calibration, "timing_cache": timing,
                  "inputs": [[n, list(s), d] for n, s, d in parsed["inputs"]],
                  "outputs": [[n, list(s), d] for n, s, d in parsed["outputs"]]}
        gpu.builds.append(header)
        blob = json.dumps(header).encode()
        return _host_memory(PLAN_MAGIC + struct.pack("<I", len(blob)) + blob + parsed["onnx"])

    def _progress(monitor) -> bool:
        phases = [("Building engine", None, 3), ("Tactic selection", "Building engine", 2)]
        for name, parent, steps in phases:
            monitor.phase_start(name, parent, steps)
            gpu.progress.append(("start", name, parent, steps))
        for name, _, steps in reversed(phases):
            for step in range(steps):
                keep_going = monitor.step_complete(name, step)
                gpu.progress.append(("step", name, step))
                if not keep_going:
                    return False
            monitor.phase_finish(name)
            gpu.progress.append(("finish", name))
        return True

    def _calibrate(builder, config, in_name: str, in_shape: tuple):
        calibrator = config._f_values.get("int8_calibrator")
        if calibrator is None or config._f_calibration_profile is None:
            return None
        cache = _callback(calibrator, "read_calibration_cache")
        gpu.calibration.append("read_calibration_cache")
        if cache:
            return {"source": "cache", "cache": bytes(cache).decode(errors="replace")}
        batch_size = calibrator.get_batch_size()
        gpu.calibration.append("get_batch_size")
        nbytes = int(np.prod(in_shape)) * batch_size
        frames, sums = 0, 0
        while True:
            pointers = _callback(calibrator, "get_batch", [in_name])  # an exception means "no more batches"
            gpu.calibration.append("get_batch")
            if not pointers:
                break
            sums += int(np.frombuffer(bytes(gpu.buffer(pointers[0], nbytes)[:nbytes]), np.uint8).sum())
            frames += 1
        if not frames:
            return None
        table = f"TRT-{version.replace('.', '')}-EntropyCalibration2\n{in_name}: {sums / frames / nbytes:.6f}\n"
        _callback(calibrator, "write_calibration_cache", memoryview(table.encode()))
        gpu.calibration.append("write_calibration_cache")
        return {"source": "frames", "frames": frames}

    def _callback(calibrator, name: str, *args):
        """pyInt8.cpp's trampoline: an exception is printed to stderr and the call returns nothing."""
        try:
            return getattr(calibrator, name)(*args)
        except Exception as err:  # noqa: BLE001 - as the binding does
            print(f"[ERROR] Exception caught in {name}(): {err}", file=sys.stderr)
            return None

    return {"Dims": DimsHooks, "ITensor": TensorHooks, "Builder": BuilderHooks, "IBuilderConfig": ConfigHooks,
            "ITimingCache": TimingCacheHooks, "IHostMemory": HostMemoryHooks, "IOptimizationProfile": ProfileHooks,
            "OnnxParser": ParserHooks, "ParserError": ParserErrorHooks, "INetworkDefinition": NetworkHooks}
