"""Model specs (``[backend:]name``) and the registry that turns a backend name into a backend."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ai_stack.backends.base import (
    Backend,
    BackendHealth,
    ChatOptions,
    ChatResult,
    ChatStream,
    LoadOptions,
    Message,
    ModelInfo,
    ResidentModel,
)
from ai_stack.errors import BackendUnavailableError, ModelSpecError

BACKENDS = ("ollama", "embedded")
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
    """

    backend: str | None
    name: str

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        text = text.strip()
        if not text:
            raise ModelSpecError(
                "Empty model spec", hint="Use [backend:]name, e.g. embedded:smollm2"
            )
        prefix, sep, rest = text.partition(":")
        if sep and prefix in BACKENDS:
            if not rest.strip():
                raise ModelSpecError(f"Model spec {text!r} names a backend but no model")
            return cls(prefix, rest.strip())
        return cls(None, text)

    def with_backend(self, backend: str) -> ModelSpec:
        return self if self.backend else ModelSpec(backend, self.name)

    def __str__(self) -> str:
        return f"{self.backend}:{self.name}" if self.backend else self.name


def create_backend(name: str, *, models_dir: Path) -> Backend:
    """Construct a backend by name. Construction is cheap; nothing is loaded or contacted."""
    if name == "embedded":
        from ai_stack.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(models_dir=models_dir)
    if name == "ollama":
        raise BackendUnavailableError(
            "ollama",
            "The Ollama backend is not part of this version yet.",
            hint="Use --backend embedded (the default when no Ollama server is reachable).",
        )
    raise ModelSpecError(f"Unknown backend {name!r}", hint=f"Known backends: {', '.join(BACKENDS)}")


def resolve_backend(requested: str) -> str:
    """Turn ``auto`` into a concrete backend name: a reachable Ollama first, else embedded."""
    if requested in BACKENDS:
        return requested
    if requested != "auto":
        raise ModelSpecError(
            f"Unknown backend {requested!r}", hint=f"Use auto or one of: {', '.join(BACKENDS)}"
        )
    return "embedded"


def default_model(backend: str) -> str:
    """The model a role uses when none is configured."""
    return EMBEDDED_DEFAULT if backend == "embedded" else "qwen2.5:7b"


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
    "ResidentModel",
    "create_backend",
    "default_model",
    "resolve_backend",
]
