"""Progress of a command's long loop: a tqdm bar (on terminals) that also remembers how far the loop got.

An interrupted command can then say "interrupted after 3 of 10 frames". A core leaf: imports only ``wording``.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from .wording import plural

__all__ = ["Progress", "track", "interrupted_message", "reset"]

T = TypeVar("T")
_latest: Progress | None = None


class Progress:
    """Counts finished items of ``total``; ``show`` draws a tqdm bar (when stderr is a terminal)."""

    def __init__(self, total: int | None, desc: str, unit: str = "frame", show: bool = True) -> None:
        global _latest
        from tqdm import tqdm

        self.total, self.unit, self.done = total, unit, 0
        self._bar = tqdm(total=total, desc=desc, unit=unit, disable=None if show else True)
        _latest = self

    def update(self, n: int = 1) -> None:
        self.done += n
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def summary(self) -> str:
        if self.total is None:
            return plural(self.done, self.unit)
        return f"{self.done} of {plural(self.total, self.unit)}"


def track(iterable: Iterable[T], total: int | None, desc: str, unit: str = "frame") -> Iterator[T]:
    """Yield ``iterable``'s items, counted as finished when the loop asks for the next one."""
    with Progress(total, desc, unit) as progress:
        for item in iterable:
            yield item
            progress.update()


def interrupted_message() -> str:
    """``interrupted after N of M frames`` for the latest loop of this command (``interrupted`` before any)."""
    return f"interrupted after {_latest.summary()}" if _latest is not None else "interrupted"


def reset() -> None:
    """Forget the previous command's loops (the CLI calls this as each command starts)."""
    global _latest
    _latest = None
