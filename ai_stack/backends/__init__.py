"""Model specs (``[backend:]name``) and the registry that turns a backend name into a backend."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from ai_stack.backends.base import (
    Backend,
    BackendHealth,
    ChatOptions,
    ChatResult,
    ChatStream,
    LoadOptions,
    Message,
    ModelInfo,
    ModelStore,
    PullProgress,
    ResidentModel,
)
from ai_stack.config import BUILT_IN_BACKENDS, Settings, user_dir
from ai_stack.errors import BackendUnavailableError, ModelSpecError

BACKENDS = BUILT_IN_BACKENDS
EMBEDDED_DEFAULT = "smollm2"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model named for one backend: ``embedded:smollm2``, ``ollama:qwen2.5:14b``.

    >>> ModelSpec.parse("ollama:qwen2.5:14b")
    ModelSpec(backend='ollama', name='qwen2.5:14b')
    >>> ModelSpec.parse("qwen2.5:14b")  # no known backend prefix: the backend is chosen later
    ModelSpec(backend=None, name='qwen2.5:14b')
    >>> str(ModelSpec.parse("embedded:/models/x.gguf"))
    'embedded:/models/x.gguf'
    >>> ModelSpec.parse("lmstudio:qwen2.5-7b-instruct", known=("lmstudio",))  # an endpoint
    ModelSpec(backend='lmstudio', name='qwen2.5-7b-instruct')
    """

    backend: str | None
    name: str

    @classmethod
    def parse(cls, text: str, known: Collection[str] = BACKENDS) -> ModelSpec:
        """``known``: the prefixes that name a backend (the settings' ``backend_names``, with
        the endpoints configured)."""
        text = text.strip()
        if not text:
            raise ModelSpecError(
                "Empty model spec", hint="Use [backend:]name, e.g. embedded:smollm2"
            )
        prefix, sep, rest = text.partition(":")
        if sep and prefix in known:
            if not rest.strip():
                raise ModelSpecError(f"Model spec {text!r} names a backend but no model")
            return cls(prefix, rest.strip())
        return cls(None, text)

    @property
    def backend_name(self) -> str:
        """The backend of a resolved spec: every spec past the session's wiring has one.

        >>> ModelSpec("ollama", "m").backend_name
        'ollama'
        """
        if self.backend is None:
            raise ValueError(f"model spec {self} has no backend; resolve it first")
        return self.backend

    def with_backend(self, backend: str) -> ModelSpec:
        return self if self.backend else ModelSpec(backend, self.name)

    def __str__(self) -> str:
        return f"{self.backend}:{self.name}" if self.backend else self.name


def create_backend(name: str, settings: Settings) -> Backend:
    """Construct a backend by name. Construction is cheap; nothing is loaded or contacted."""
    if name == "embedded":
        from ai_stack.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(models_dir=settings.resolved_models_dir())
    if name == "ollama":
        from ai_stack.backends.ollama import OllamaBackend

        return OllamaBackend(
            settings.ollama.host,
            keep_alive=settings.ollama.keep_alive,
            request_timeout_s=settings.ollama.request_timeout_s,
            stall_timeout_s=settings.ollama.stall_timeout_s,
            reply_max_bytes=settings.ollama.reply_max_bytes,
            log_dir=user_dir() / "logs",
        )
    endpoint = settings.endpoint(name)
    if endpoint is not None:
        from ai_stack.backends.openai_server import OpenAIBackend

        return OpenAIBackend(
            name,
            endpoint.base_url,
            endpoint.api_key(),
            kind=None if endpoint.kind == "auto" else endpoint.kind,
            request_timeout_s=endpoint.request_timeout_s,
            stall_timeout_s=endpoint.stall_timeout_s,
            reply_max_bytes=endpoint.reply_max_bytes,
        )
    if name == "openai":
        raise BackendUnavailableError(
            "openai",
            "openai: names a model on an OpenAI-compatible server, and none is set.",
            hint="Set OPENAI_BASE_URL (e.g. http://127.0.0.1:1234/v1 for LM Studio), or name "
            "the server in the config: [endpoints.NAME] base_url = ...",
        )
    known = ", ".join(settings.backend_names)
    raise ModelSpecError(f"Unknown backend {name!r}", hint=f"Known backends: {known}")


def require_available(backend: Backend) -> Backend:
    """``backend`` if it can be used now, else one error saying how to make it usable."""
    health = backend.health()
    if health.available:
        return backend
    if backend.name == "ollama":
        from ai_stack.backends.ollama import START_HINT

        raise BackendUnavailableError(
            "ollama", f"Ollama is not reachable: {health.detail}.", hint=health.hint or START_HINT
        )
    raise BackendUnavailableError(
        backend.name,
        f"The {backend.name} backend is unavailable: {health.detail}",
        hint=health.hint,
    )


def choose_backend(
    requested: str,
    get_backend: Callable[[str], Backend],
    *,
    autostart: bool = False,
    servers: Sequence[str] = (),
) -> tuple[str, str]:
    """The backend for specs without a prefix, and a sentence saying why.

    ``auto`` prefers a reachable Ollama server (started first when ``autostart`` is set and an
    ``ollama`` binary is on PATH), then the first of ``servers`` (OpenAI-compatible endpoints)
    that answers, else the embedded backend. An explicit backend that cannot be reached is an
    error now rather than at the first model call.
    """
    if requested == "embedded":
        return "embedded", "embedded (as configured)"
    if requested not in ("auto", "ollama"):
        if requested not in (*servers, "openai"):
            raise ModelSpecError(
                f"Unknown backend {requested!r}",
                hint=f"Use auto or one of: {', '.join((*BACKENDS, *servers))}",
            )
        server = require_available(get_backend(requested))
        return requested, server.health().detail
    ollama = get_backend("ollama")
    health = ollama.health()
    started = False
    if not health.available and autostart and hasattr(ollama, "start_server"):
        health = ollama.start_server()
        started = health.available
    if health.available:
        note = " (started `ollama serve`; it stops when ai-stack exits)" if started else ""
        return "ollama", f"{health.detail}{note}"
    if requested == "ollama":
        require_available(ollama)
    for name in servers:
        found = get_backend(name).health()
        if found.available:
            return name, f"{found.detail} ({health.detail})"
    return "embedded", f"embedded ({health.detail})"


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendHealth",
    "ChatOptions",
    "ChatResult",
    "ChatStream",
    "LoadOptions",
    "Message",
    "ModelInfo",
    "ModelSpec",
    "ModelStore",
    "PullProgress",
    "ResidentModel",
    "choose_backend",
    "create_backend",
    "require_available",
]
