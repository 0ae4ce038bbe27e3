"""Units of memory, and how messages show them."""

from __future__ import annotations

GIB = 1024**3
MIB = 1024**2


def gib(n_bytes: float) -> str:
    """Bytes as GiB for messages.

    >>> gib(3 * 1024**3 // 2)
    '1.5 GiB'
    """
    return f"{n_bytes / GIB:.1f} GiB"
