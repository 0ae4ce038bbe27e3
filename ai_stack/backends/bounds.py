"""What a server sends back: bounded, so no reply can hang a run or fill its memory; and
described in a few words when it is not the server's API.

httpx's read timeout bounds only the wait for the *next bytes*: a server that drips a byte a
second, or streams without end, never trips it (and a line that never ends is buffered whole by
the clients' line decoders). So every request a server backend makes is watched, through
httpx's event hooks (:meth:`ReplyGuard.hooks`), which see every request and response whatever
the transport or proxy; each read of a reply's body is counted against a :class:`Watch`:

- **time**: the whole request within ``request_timeout_s`` (a load, a warm-up, a listing);
- **bytes**: one reply within ``reply_max_bytes``;
- for a chat reply, **progress**: the backend marks each piece of the answer (:meth:`Watch.piece`);
  a reply that brings no new piece for ``stall_timeout_s`` — silent (the read timeout is set to
  the stall timeout), or dripping bytes that complete nothing — has stalled; one with more pieces
  than ``max_tokens`` does not stop (a piece is at least one token on every server).

Paths given as ``exempt`` are not watched: a download's progress runs as long as the download.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from ai_stack.errors import ReplyLimitError
from ai_stack.units import MIB

WATCH = "ai_stack.watch"  # the request extension carrying its watch to the response hook


@dataclass(frozen=True, slots=True)
class ReplyLimits:
    """One server's bounds, and the words the errors use for it."""

    backend: str
    where: str  # "Ollama at http://...": the subject of the error messages
    settings: str  # where the hints point: "ollama", "endpoints.NAME"
    request_timeout_s: float = 600.0
    stall_timeout_s: float = 120.0
    max_bytes: int = 16 * MIB


class Watch:
    """One request's account: when it began, the bytes received, when its answer last grew.

    >>> now = [0.0]
    >>> limits = ReplyLimits("x", "X", "x", request_timeout_s=10, stall_timeout_s=2, max_bytes=9)
    >>> watch = Watch(limits, lambda: now[0], max_pieces=2)
    >>> watch.received(4); now[0] = 1.5; watch.piece(); now[0] = 3.0; watch.received(4)
    >>> now[0] = 3.6; watch.received(1)
    Traceback (most recent call last):
    ai_stack.errors.ReplyLimitError: X sent no more of the answer for 2 s.
    >>> watch.begin(); watch.piece(); watch.piece(); watch.piece()
    Traceback (most recent call last):
    ai_stack.errors.ReplyLimitError: X went on past max_tokens (2); the reply was cut off.
    """

    def __init__(
        self,
        limits: ReplyLimits,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_pieces: int | None = None,
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.max_pieces = max_pieces  # None: not a chat reply, so no progress to watch
        self.begin()

    def begin(self, deadline_s: float | None = None) -> None:
        """Start the account again (a request is sent: a retry is a new reply); a request
        that gives itself less time than the server's (a probe) has that long in all."""
        self.started = self.last_piece = self.clock()
        self.bytes = self.pieces = 0
        limit = self.limits.request_timeout_s
        self.deadline_s = min(deadline_s or limit, limit)

    @property
    def read_timeout_s(self) -> float:
        """The longest wait for the next bytes."""
        stall = self.limits.stall_timeout_s
        return self.deadline_s if self.max_pieces is None else min(stall, self.deadline_s)

    def received(self, size: int) -> None:
        """``size`` more bytes of the reply arrived; raises when a bound is passed."""
        limits, now = self.limits, self.clock()
        self.bytes += size
        if self.bytes > limits.max_bytes:
            raise self._error(
                f"sent more than {limits.max_bytes / MIB:g} MiB in one reply; it was cut off.",
                f"raise {limits.settings}.reply_max_bytes if a reply this large is expected",
            )
        if self.max_pieces is not None and now - self.last_piece > limits.stall_timeout_s:
            raise self.stalled()
        if now - self.started > self.deadline_s:
            raise self._error(
                f"did not finish its reply in {self.deadline_s:g} s.",
                f"raise {limits.settings}.request_timeout_s if it is just slow",
            )

    def piece(self) -> None:
        """A piece of the answer arrived (progress)."""
        self.pieces += 1
        if self.max_pieces is not None and self.pieces > self.max_pieces:
            raise self._error(
                f"went on past max_tokens ({self.max_pieces}); the reply was cut off.",
                "the server does not stop at max_tokens: check its settings and version",
            )
        self.last_piece = self.clock()

    def stalled(self) -> ReplyLimitError:
        """The error of a reply that stopped growing (also a read timeout during a chat)."""
        return self._error(
            f"sent no more of the answer for {self.limits.stall_timeout_s:g} s.",
            f"raise {self.limits.settings}.stall_timeout_s if the model is just slow (a long "
            "prompt on a slow machine), or restart the server",
        )

    def _error(self, what: str, fix: str) -> ReplyLimitError:
        hint = fix[0].upper() + fix[1:] + "."
        return ReplyLimitError(self.limits.backend, f"{self.limits.where} {what}", hint=hint)


class _Watched(httpx.SyncByteStream):
    """A response body counted against its watch as it is read."""

    def __init__(self, inner: Any, watch: Watch) -> None:
        self.inner = inner
        self.watch = watch

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.watch.received(len(chunk))
            yield chunk

    def close(self) -> None:
        self.inner.close()


class ReplyGuard:
    """A backend's bounds, and the chat reply in flight (a backend makes one request at a
    time: the memory manager's calls are serialized)."""

    def __init__(
        self,
        limits: ReplyLimits,
        *,
        exempt: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.exempt = exempt
        self.clock = clock
        self._reply: Watch | None = None

    def stalled(self) -> ReplyLimitError | None:
        """The error of the chat reply in flight, when a read timed out during it."""
        return None if self._reply is None else self._reply.stalled()

    @contextmanager
    def reply(self, max_tokens: int) -> Iterator[Watch]:
        """The watch of a chat reply: its request, and any retry of it, is held to progress."""
        self._reply = Watch(self.limits, self.clock, max_pieces=max_tokens)
        try:
            yield self._reply
        finally:
            self._reply = None

    def hooks(self) -> dict[str, list[Callable[[Any], None]]]:
        """The httpx ``event_hooks`` that watch every request of a client."""
        return {"request": [self._on_request], "response": [self._on_response]}

    def _on_request(self, request: httpx.Request) -> None:
        if self.exempt and request.url.path.endswith(self.exempt):
            return
        watch = self._reply or Watch(self.limits, self.clock)
        timeout = dict(request.extensions.get("timeout") or {})
        watch.begin(timeout.get("read"))
        timeout["read"] = watch.read_timeout_s
        request.extensions = {**request.extensions, "timeout": timeout, WATCH: watch}

    def _on_response(self, response: httpx.Response) -> None:
        watch = response.request.extensions.get(WATCH)
        if isinstance(watch, Watch):
            response.stream = _Watched(response.stream, watch)


def what_was_wrong(exc: Exception) -> str:
    """What a reply a client could not take was, in a few words (never the reply itself).

    >>> import json
    >>> what_was_wrong(json.JSONDecodeError("Expecting value", "<html>", 0))
    'not JSON'
    """
    if isinstance(exc, ValidationError):
        return f"unexpected shape: {exc.error_count()} field(s) wrong"
    if isinstance(exc, ValueError):
        return "not JSON"
    return "unexpected shape"


def brief(text: str, limit: int = 200) -> str:
    """An error body as one short line (a proxy's error page is not a message).

    >>> brief("<html>\\n<body>502 Bad Gateway</body>\\n</html>")
    'an HTML page'
    >>> brief("model 'x' not found")
    "model 'x' not found"
    """
    text = " ".join(text.split())
    if text[:15].lower().startswith(("<!doctype", "<html")):
        return "an HTML page"
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["ReplyGuard", "ReplyLimits", "Watch", "brief", "what_was_wrong"]
