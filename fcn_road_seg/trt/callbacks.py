"""TensorRT's Python callbacks: an ILogger and an IProgressMonitor.

The ILogger forwards to Python logging (one per process); the IProgressMonitor draws tqdm bars per build phase
(TensorRT >= 10; 8.6 has no IProgressMonitor).

Imported on use, with the ``tensorrt`` module passed in, so nothing here imports TensorRT itself.
"""
from __future__ import annotations

import logging

__all__ = ["trt_logger", "progress_monitor"]


def _log_bridge(trt):
    """Make a TensorRT ILogger that forwards to Python logging (``fcn_road_seg.tensorrt``)."""
    trt_log = logging.getLogger("fcn_road_seg.tensorrt")
    levels = {
        trt.ILogger.Severity.INTERNAL_ERROR: logging.CRITICAL,
        trt.ILogger.Severity.ERROR: logging.ERROR,
        trt.ILogger.Severity.WARNING: logging.WARNING,
        trt.ILogger.Severity.INFO: logging.INFO,
        trt.ILogger.Severity.VERBOSE: logging.DEBUG,
    }

    class LogBridge(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg) -> None:
            trt_log.log(levels.get(severity, logging.INFO), "%s", msg)

    return LogBridge()


_LOGGER = None


def trt_logger(trt):
    """One logger per process, shared by builder and runtime (TensorRT expects a single logger)."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = _log_bridge(trt)
    return _LOGGER


def progress_monitor(trt):
    """tqdm bars per build phase (TensorRT >= 10), or None where IProgressMonitor does not exist."""
    if not hasattr(trt, "IProgressMonitor"):
        return None
    import threading

    from tqdm import tqdm

    class Progress(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._bars: dict[str, tqdm] = {}
            self._lock = threading.Lock()  # TensorRT calls in from several threads

        def phase_start(self, phase_name, parent_phase, num_steps) -> None:
            with self._lock:
                depth = 0 if parent_phase is None else 1
                self._bars[phase_name] = tqdm(total=num_steps, desc=phase_name, leave=depth == 0, position=depth,
                                              disable=None)

        def step_complete(self, phase_name, step) -> bool:
            with self._lock:
                bar = self._bars.get(phase_name)
                if bar is not None:
                    bar.update(step + 1 - bar.n)
            return True  # False would cancel the build

        def phase_finish(self, phase_name) -> None:
            with self._lock:
                bar = self._bars.pop(phase_name, None)
                if bar is not None:
                    bar.close()

    return Progress()
