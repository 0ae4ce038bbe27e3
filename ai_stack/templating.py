"""The Jinja environment every template ai-stack renders runs in: sandboxed (no attribute
escapes), strict (an unknown variable is an error) and bounded — a template may not build a
huge string or number, nor render more than :data:`MAX_RENDER_CHARS`.

Jinja's sandbox already bounds ``range`` (to 100,000 items); ``'a' * 10**9`` or ``10**10**10``
would still take gigabytes or hang, and a loop can still write without end. Everything the
bounds refuse is a :class:`jinja2.sandbox.SecurityError`, which the callers turn into a user
error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SecurityError

MAX_RENDER_CHARS = 1_000_000  # far beyond any prompt a model can take
MAX_POWER_BITS = 4096  # 10**1000 and so on: ample for arithmetic in a template


class BoundedEnvironment(SandboxedEnvironment):
    """A sandboxed environment whose ``*`` and ``**`` cannot build what no prompt needs."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_repetition(left, right)
            _check_repetition(right, left)
        elif operator == "**":
            _check_power(left, right)
        return super().call_binop(context, operator, left, right)


def _check_repetition(sequence: Any, times: Any) -> None:
    if isinstance(sequence, str | list | tuple) and isinstance(times, int):
        size = len(sequence) * times
        if size > MAX_RENDER_CHARS:
            raise SecurityError(
                f"'*' would make {size:,} items; a template may build at most {MAX_RENDER_CHARS:,}"
            )


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1 and exponent > 0:
        bits = exponent * math.log2(abs(base))
        if bits > MAX_POWER_BITS:
            raise SecurityError(f"'**' would make a {bits:,.0f}-bit number; the limit is 4,096")


def join(chunks: Iterable[str]) -> str:
    """A rendered template's text, stopped at :data:`MAX_RENDER_CHARS`; a ``range`` over the
    sandbox's bound is refused the same way."""
    parts: list[str] = []
    size = 0
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_RENDER_CHARS:
                raise SecurityError(
                    f"the template renders more than {MAX_RENDER_CHARS:,} characters"
                )
            parts.append(chunk)
    except OverflowError as exc:  # the sandbox's range bound, or a float out of range
        raise SecurityError(str(exc)) from None
    return "".join(parts)


__all__ = ["MAX_RENDER_CHARS", "BoundedEnvironment", "join"]
