"""The backend protocol and the small value types every backend speaks.

A backend is deliberately narrow: health, list, describe, load, unload, resident, chat. The memory
manager decides *when* to load and unload; the controller only ever calls ``chat``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from ai_stack.errors import TransientBackendError

T = TypeVar("T")

Message = dict[str, str]
"""A chat message: ``{"role": "system" | "user" | "assistant", "content": ...}``."""


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """Load-time options. For a given model they must stay identical between requests: Ollama
    silently reloads a model whose load-time options change."""

    num_ctx: int = 4096
    num_thread: int | None = None
    num_batch: int | None = None
    num_gpu: int | None = None
    use_mmap: bool | None = None


@dataclass(frozen=True, slots=True)
class ChatOptions:
    """Sampling options for one call."""

    temperature: float = 0.2
    max_tokens: int = 512
    repeat_penalty: float = 1.1
    seed: int | None = None


@dataclass(slots=True)
class ModelInfo:
    """What a backend knows about an installed model; enough to estimate its footprint."""

    name: str
    backend: str
    size_bytes: int
    path: str | None = None
    family: str | None = None
    parameters: str | None = None
    quantization: str | None = None
    context_length: int | None = None
    block_count: int | None = None
    embedding_length: int | None = None
    head_count: int | None = None
    head_count_kv: int | None = None
    key_length: int | None = None
    value_length: int | None = None

    def row(self) -> dict[str, Any]:
        """What a listing shows of the model (``models list --json``, the MCP ``list_models``)."""
        return {
            "name": self.name,
            "backend": self.backend,
            "size_bytes": self.size_bytes,
            "family": self.family,
            "parameters": self.parameters,
            "quantization": self.quantization,
            "context_length": self.context_length,
            "path": self.path,
        }

    def apply_gguf_metadata(self, meta: dict[str, Any]) -> None:
        """Fill the architecture facts from GGUF keys (a file's header, or Ollama's
        ``model_info``, which uses the same names). Per-layer head counts count at their
        largest, which bounds the memory. A value that is not a count (a server's reply of the
        wrong shape) is left unknown, as a missing one is.

        >>> info = ModelInfo("m", "ollama", 0)
        >>> info.apply_gguf_metadata({"general.architecture": "llama", "llama.block_count": 32,
        ...     "llama.attention.head_count_kv": [0, 8], "llama.context_length": "many"})
        >>> info.block_count, info.head_count_kv, info.context_length
        (32, 8, None)
        """
        arch = meta.get("general.architecture")
        if not isinstance(arch, str) or not arch:
            return

        def count(key: str) -> int | None:
            value = meta.get(f"{arch}.{key}")
            if isinstance(value, list):  # per layer
                value = max((v for v in value if _is_count(v)), default=None)
            return value if _is_count(value) else None

        self.context_length = count("context_length")
        self.block_count = count("block_count")
        self.embedding_length = count("embedding_length")
        self.head_count = count("attention.head_count")
        self.head_count_kv = count("attention.head_count_kv")
        self.key_length = count("attention.key_length")
        self.value_length = count("attention.value_length")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True, slots=True)
class ResidentModel:
    """A model held in memory by a backend, with the memory it takes as the backend reports it."""

    name: str
    backend: str
    size_bytes: int
    num_ctx: int | None = None
    expires_at: datetime | None = None  # when the server will unload it if left idle
    vram_bytes: int | None = None  # of size_bytes, how much is on the GPU (Ollama's size_vram)


@dataclass(frozen=True, slots=True)
class BackendHealth:
    """Whether a backend can be used here, and if not, why."""

    backend: str
    available: bool
    detail: str
    version: str | None = None
    hint: str | None = None  # when unavailable: how to make it usable


@dataclass(slots=True)
class ChatResult:
    """The whole answer of one chat call plus what it cost."""

    text: str
    prompt_tokens: int = 0
    output_tokens: int = 0
    ttft_s: float = 0.0
    decode_s: float = 0.0
    load_s: float = 0.0
    wall_s: float = 0.0
    finish_reason: str = "stop"

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.decode_s if self.decode_s > 0 else 0.0


class ChatStream:
    """Text deltas as they are generated; ``result`` is available once iteration has finished.

    Wraps a generator that yields ``str`` pieces and *returns* the :class:`ChatResult`, so a
    backend writes one straight-line generator and callers get a plain iterator.
    """

    def __init__(self, generator: Generator[str, None, ChatResult]) -> None:
        self._generator = generator
        self._result: ChatResult | None = None

    def __iter__(self) -> Iterator[str]:
        self._result = yield from self._generator

    @property
    def result(self) -> ChatResult:
        if self._result is None:
            raise RuntimeError("ChatStream.result read before the stream was consumed")
        return self._result

    def collect(self, on_piece: Callable[[str], None] | None = None) -> ChatResult:
        """Consume the stream (optionally observing each piece) and return the result."""
        for piece in self:
            if on_piece is not None:
                on_piece(piece)
        return self.result


def on_this_machine(url: str) -> bool:
    """Whether a server's URL names this machine (a loopback host): where prompts stay here,
    and a model shares this machine's memory.

    >>> [on_this_machine(u) for u in ("http://127.0.0.1:1234/v1", "http://[::1]:8080", "http://localhost")]
    [True, True, True]
    >>> [on_this_machine(u) for u in ("https://api.example.com/v1", "http://192.0.2.1:8080/v1")]
    [False, False]
    """
    host = (urlsplit(url).hostname or "").strip("[]").lower()
    return host in ("localhost", "::1", "0.0.0.0") or host.startswith("127.")


def exponential_backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt``: 0.5, 1, 2, 4, then 8 at most.

    >>> [exponential_backoff(n) for n in (1, 2, 3, 6)]
    [0.5, 1.0, 2.0, 8.0]
    """
    return float(min(0.5 * 2 ** (attempt - 1), 8.0))


def with_retries(
    call: Callable[[], T],
    errors: Callable[[], AbstractContextManager[None]],
    *,
    attempts: int,
    backoff: Callable[[int], float],
    sleep: Callable[[float], None],
) -> T:
    """Run ``call`` with a backend's failures mapped by ``errors``, retrying the transient ones
    (:class:`TransientBackendError`) with ``backoff`` up to ``attempts`` times."""
    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=lambda state: backoff(state.attempt_number),
        sleep=sleep,
        retry=retry_if_exception_type(TransientBackendError),
        reraise=True,
    )
    for attempt in retrying:
        with attempt, errors():
            return call()
    raise AssertionError("unreachable")


@runtime_checkable
class Backend(Protocol):
    """What the memory manager and controller need from a model runtime."""

    name: str

    def health(self) -> BackendHealth:
        """Whether this backend can be used now (never raises)."""
        ...

    def list_models(self) -> list[ModelInfo]:
        """Installed models."""
        ...

    def describe(self, model: str) -> ModelInfo:
        """Details of one installed model; raises ModelNotFoundError."""
        ...

    def load(self, model: str, options: LoadOptions) -> None:
        """Make ``model`` resident with ``options``; returns once it is ready to answer."""
        ...

    def unload(self, model: str) -> None:
        """Release ``model``; returns only once its memory is released (or known to be)."""
        ...

    def resident(self) -> list[ResidentModel]:
        """Models this backend holds in memory now."""
        ...

    def chat(
        self,
        model: str,
        messages: list[Message],
        *,
        options: ChatOptions,
        schema: dict[str, Any] | None = None,
    ) -> ChatStream:
        """Generate a reply; with ``schema``, the reply is JSON constrained to that schema."""
        ...

    def close(self) -> None:
        """Release everything (unloads whatever this backend loaded)."""
        ...


@dataclass(frozen=True, slots=True)
class PullProgress:
    """One progress line of a download: a status, and for file transfers the bytes done."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


@runtime_checkable
class ModelStore(Protocol):
    """What a backend that manages its own model files adds: download and delete."""

    def pull(self, model: str) -> Iterator[PullProgress]:
        """Download ``model``, yielding progress; an interrupted download resumes."""
        ...

    def remove(self, model: str) -> None:
        """Delete ``model`` (unloading it first); raises ModelNotFoundError."""
        ...


@runtime_checkable
class TokenCounter(Protocol):
    """What a backend that has the model's tokenizer at hand adds: exact prompt sizes before a
    load, so a model's context can be sized to the work (others are estimated)."""

    def count_tokens(self, model: str, text: str) -> int:
        """Tokens ``text`` takes for ``model``; raises ModelNotFoundError."""
        ...
