"""Bad input frames in the node, by cause.

For each cause: a count for /diagnostics, and a log line for its first occurrence (then at most one per cause every
``LOG_EVERY_S``: a flood of one cause does not hide another). Also whether /diagnostics should still be WARN:
until good frames have flowed for ``WARN_CLEARS_AFTER_S`` after the last bad one. Camera faults (blank, saturated,
frozen) are counted by ``camera_faults.py`` and the node.

Not thread-safe on its own: the node calls it under its statistics lock.
"""
from __future__ import annotations

from ..errors import FrameSizeError, InputImageError, UnsupportedEncodingError

__all__ = ["BadFrames", "CAUSES", "cause_of", "LOG_EVERY_S", "WARN_CLEARS_AFTER_S"]

CAUSES = ("decode_error", "unsupported_encoding", "wrong_size")  # bad input frames; also "pipeline_error"
LOG_EVERY_S = 5.0  # per cause, after its first occurrence
WARN_CLEARS_AFTER_S = 10.0  # good frames flowing this long after the last bad one set /diagnostics back to OK


def cause_of(err: InputImageError) -> str:
    """Return the cause a bad frame is counted under."""
    if isinstance(err, UnsupportedEncodingError):
        return "unsupported_encoding"
    if isinstance(err, FrameSizeError):
        return "wrong_size"
    return "decode_error"


class BadFrames:
    """Counts per cause, per-cause log throttling and the WARN that good frames clear."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys((*CAUSES, "pipeline_error"), 0)
        self._logged_at: dict[str, float] = {}
        self._last_bad: float | None = None
        self._good_since: float | None = None  # first good frame after the last bad one

    def bad(self, cause: str, now: float) -> bool:
        """Count one bad frame; True when it should be logged (the cause's first, or none logged for a while)."""
        self.counts[cause] += 1
        self._last_bad, self._good_since = now, None
        last = self._logged_at.get(cause)
        if last is None or now - last >= LOG_EVERY_S:
            self._logged_at[cause] = now
            return True
        return False

    def good(self, now: float) -> None:
        """Record that a frame went through."""
        if self._last_bad is not None and self._good_since is None:
            self._good_since = now

    def warning(self, now: float) -> str | None:
        """Why /diagnostics is WARN (the counts per cause), or None.

        None once good frames have flowed for ``WARN_CLEARS_AFTER_S`` since the last bad frame (or there never was
        one).
        """
        if self._last_bad is None:
            return None
        if self._good_since is not None and now - self._good_since >= WARN_CLEARS_AFTER_S:
            return None
        counts = ", ".join(f"{n} {cause.replace('_', ' ')}" for cause, n in self.counts.items() if n)
        return (f"{sum(self.counts.values())} bad frames ({counts}); OK again after {WARN_CLEARS_AFTER_S:g} s of "
                "good frames")
