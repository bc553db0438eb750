"""TensorRT's timing cache: layer timings kept between builds on one GPU and TensorRT version.

``config.create_timing_cache(bytes)``, ``config.set_timing_cache(cache, ignore_mismatch)`` and
``ITimingCache.serialize()`` exist in the 8.6, 10.x and 11.x bindings. The cache is attached with
``ignore_mismatch=False``: one made on another GPU or TensorRT version, or one that cannot be read, is replaced
by an empty one.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..errors import OutputError
from ..outputs import write_bytes

__all__ = ["attach_timing_cache", "save_timing_cache"]

log = logging.getLogger(__name__)


def attach_timing_cache(config, path: Path):
    """Attach the timing cache at ``path``, or a new one; return the ITimingCache or None.

    A new one when it is missing, unreadable, or was made on another GPU or TensorRT version (TensorRT checks the
    device properties it records; a mismatch is never ignored). The caller keeps the ITimingCache until the
    builder is gone.
    """
    try:
        blob = path.read_bytes() if path.is_file() else b""
    except OSError as err:
        log.warning("timing cache %s cannot be read (%s); starting a new one", path, err)
        blob = b""
    if blob:
        try:
            cache = config.create_timing_cache(blob)
        except Exception as err:  # noqa: BLE001 - TensorRT raises its own error types for a corrupt blob
            log.warning("timing cache %s is unreadable (%s); starting a new one", path, err)
        else:
            if cache is None:
                log.warning("timing cache %s is stale or corrupt; starting a new one", path)
            elif config.set_timing_cache(cache, ignore_mismatch=False):
                log.info("timing cache %s (reused)", path)
                return cache
            else:
                log.warning("timing cache %s was made on another GPU or TensorRT version; starting a new one",
                            path)
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        log.warning("timing cache %s could not be attached; building without it", path)
        return None
    log.info("timing cache %s (new)", path)
    return cache


def save_timing_cache(cache, path: Path) -> None:
    """Write the cache's timings to ``path`` (atomically); a failure is a warning: the next build re-times."""
    if cache is None:
        return
    try:
        write_bytes(path, bytes(cache.serialize()))
    except OutputError as err:
        log.warning("could not save the timing cache %s (%s); the next build re-times its layers (make %s "
                    "writable, or set FCN_ROAD_SEG_CACHE)", path, err, path.parent)
