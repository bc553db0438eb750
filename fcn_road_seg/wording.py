"""How counts read in messages, summaries and reports ("1 frame", "2 frames"); a core leaf, no imports."""
from __future__ import annotations

__all__ = ["plural"]


def plural(n: int, word: str) -> str:
    """``n`` and ``word``, with an ``s`` unless ``n`` is 1."""
    return f"{n} {word}{'' if n == 1 else 's'}"
