"""A scripted backend for controller logic: replies are queued per model (or made by a
``responder`` from the messages) and every call recorded.

It implements the same protocol as the real backends, so the controller, roles and memory
manager under test run their real code; only the model's words are scripted.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from ai_stack.backends.base import (
    BackendHealth,
    ChatOptions,
    ChatResult,
    ChatStream,
    LoadOptions,
    Message,
    ModelInfo,
    ResidentModel,
)
from ai_stack.errors import BackendError, ModelNotFoundError


@dataclass
class ChatCall:
    model: str
    messages: list[Message]
    options: ChatOptions
    schema: dict[str, Any] | None


@dataclass
class ScriptedBackend:
    """Replies are strings, returned in order per model (or from the ``"*"`` queue)."""

    name: str = "embedded"
    models: set[str] = field(default_factory=lambda: {"smollm2", "a", "b", "c"})
    replies: dict[str, deque[str]] = field(default_factory=lambda: defaultdict(deque))
    chats: list[ChatCall] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)  # ("load" | "unload", model)
    loaded: dict[str, LoadOptions] = field(default_factory=dict)
    responder: Callable[[list[Message], dict[str, Any] | None], str] | None = None

    def enqueue(self, *replies: str, model: str = "*") -> ScriptedBackend:
        self.replies[model].extend(replies)
        return self

    def health(self) -> BackendHealth:
        return BackendHealth(self.name, True, "scripted")

    def list_models(self) -> list[ModelInfo]:
        return [self.describe(m) for m in sorted(self.models)]

    def describe(self, model: str) -> ModelInfo:
        if model not in self.models:
            raise ModelNotFoundError(model, f"No model {model!r}")
        return ModelInfo(name=model, backend=self.name, size_bytes=1000)

    def load(self, model: str, options: LoadOptions) -> None:
        self.describe(model)
        self.log.append(("load", model))
        self.loaded[model] = options

    def unload(self, model: str) -> None:
        self.log.append(("unload", model))
        self.loaded.pop(model, None)

    def resident(self) -> list[ResidentModel]:
        return [ResidentModel(m, self.name, 1000, o.num_ctx) for m, o in self.loaded.items()]

    def chat(
        self,
        model: str,
        messages: list[Message],
        *,
        options: ChatOptions,
        schema: dict[str, Any] | None = None,
    ) -> ChatStream:
        if model not in self.loaded:
            raise BackendError(self.name, f"{model} is not loaded")
        self.chats.append(ChatCall(model, list(messages), options, schema))
        if self.responder is not None:
            return ChatStream(self._stream(self.responder(messages, schema), messages))
        queue = self.replies[model] if self.replies[model] else self.replies["*"]
        if not queue:
            raise AssertionError(f"no scripted reply left for {model}")
        return ChatStream(self._stream(queue.popleft(), messages))

    def _stream(self, text: str, messages: list[Message]) -> Generator[str, None, ChatResult]:
        words = text.split(" ")
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word
        prompt = sum(len(m["content"]) for m in messages) // 4 + 1  # about as a tokenizer would
        return ChatResult(
            text=text, prompt_tokens=prompt, output_tokens=len(words), ttft_s=0.001, decode_s=0.01
        )

    def close(self) -> None:
        self.loaded.clear()
