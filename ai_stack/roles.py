"""One role call: render the prompt, get the model ready, stream the reply, validate, re-ask.

A structured reply that fails validation is fed back to the model with the validation error and
asked again, a bounded number of times. Every attempt is its own model call with its own
metrics, because every attempt costs time.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ai_stack.backends import ModelSpec
from ai_stack.backends.base import ChatOptions, LoadOptions, Message
from ai_stack.context import round_context
from ai_stack.errors import InvalidOutputError, InvalidOutputKind, TransientBackendError
from ai_stack.memory import MemoryManager
from ai_stack.thermal.policy import ThermalGuard
from ai_stack.types import (
    AwaitingModel,
    CallRetried,
    Event,
    Phase,
    PhaseFinished,
    PhaseMetrics,
    PhaseStarted,
    Reasked,
    Role,
)
from ai_stack.types import Token as TokenEvent

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")
_ENUM_LIMIT = 32  # bounded integer ranges up to this size become enums in generation schemas
MESSAGE_TOKENS = 4  # the chat template's tokens around each message


def generation_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema sent to a backend to constrain generation.

    Differs from pydantic's schema where grammars fall short: ``$ref``s are inlined, titles and
    descriptions are dropped, every property is required (so the model writes them all, in
    order), and small bounded integers become enums, because llama.cpp's grammar ignores
    ``minimum``/``maximum`` but does enforce ``enum``.

    >>> from ai_stack.types import Verdict
    >>> generation_schema(Verdict)["properties"]["score"]["enum"]
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    """
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def rewrite(node: Any) -> Any:
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return rewrite(copy.deepcopy(definitions[node["$ref"].rsplit("/", 1)[-1]]))
        node = {
            key: _map_values(value, rewrite) if key == "properties" else rewrite(value)
            for key, value in node.items()
            if key not in ("title", "description")
        }
        if node.get("type") == "object" and "properties" in node:
            node["required"] = list(node["properties"])  # fixed order, nothing skipped
        low, high = node.get("minimum"), node.get("maximum")
        bounded = node.get("type") == "integer" and low is not None and high is not None
        if bounded and high - low < _ENUM_LIMIT:
            del node["minimum"], node["maximum"]
            node["enum"] = list(range(int(low), int(high) + 1))
        return node

    result: dict[str, Any] = rewrite(schema)
    return result


def _map_values(mapping: dict[str, Any], function: Any) -> dict[str, Any]:
    return {key: function(value) for key, value in mapping.items()}


@dataclass(frozen=True, slots=True)
class RoleCall:
    """Everything that identifies one role call apart from its messages."""

    role: Role
    phase: Phase
    spec: ModelSpec
    load: LoadOptions
    chat: ChatOptions
    round: int = 0
    max_ctx: int | None = None  # a prompt longer than load.num_ctx holds may load up to this


@dataclass(frozen=True, slots=True)
class Served:
    """One model call as made: the role call, the load options chosen for its prompt, its
    messages, the reply schema (None: free text) and which attempt it is."""

    call: RoleCall
    load: LoadOptions
    messages: list[Message]
    schema: dict[str, Any] | None
    attempt: int


@dataclass(frozen=True, slots=True)
class ServedReply:
    text: str
    finish_reason: str


class _Invalid(Exception):
    def __init__(self, reason: str, raw: str, kind: InvalidOutputKind) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw
        self.kind = kind


def _describe_validation(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:4]:
        where = ".".join(str(p) for p in item["loc"]) or "reply"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


class RoleRunner:
    """Makes role calls through the memory manager; the controller's only way to a model."""

    def __init__(
        self,
        manager: MemoryManager,
        *,
        max_reasks: int = 2,
        stream_retries: int = 2,
        guard: ThermalGuard | None = None,
    ) -> None:
        self.manager = manager
        self.max_attempts = max_reasks + 1
        self.stream_retries = stream_retries
        self.guard = guard

    def structured(
        self, call: RoleCall, messages: list[Message], model: type[T]
    ) -> Generator[Event, None, T]:
        """A reply constrained to ``model``'s schema and validated by it."""
        schema = generation_schema(model)

        def check(text: str, finish_reason: str) -> T:
            cut = " (the reply was cut off at max_tokens)" if finish_reason == "length" else ""
            try:
                # strict=False accepts raw newlines inside strings, which llama.cpp's JSON
                # grammar lets through; everything else about the JSON must be right.
                data = json.loads(text, strict=False)
            except json.JSONDecodeError as exc:
                raise _Invalid(
                    f"not valid JSON: {exc.msg} at character {exc.pos}{cut}", text, "json"
                ) from None
            try:
                return model.model_validate(data)
            except ValidationError as exc:
                raise _Invalid(_describe_validation(exc) + cut, text, "schema") from None

        return (yield from self._attempts(call, messages, schema, check))

    def constrained(
        self,
        call: RoleCall,
        messages: list[Message],
        schema: dict[str, Any],
        parse: Callable[[str], R],
    ) -> Generator[Event, None, R]:
        """A reply constrained to a JSON ``schema`` built at run time (the tool loop's step),
        read by ``parse``; a ``ValueError`` from it is re-asked like invalid structured output."""

        def check(text: str, finish_reason: str) -> R:
            cut = " (the reply was cut off at max_tokens)" if finish_reason == "length" else ""
            try:
                return parse(text)
            except ValueError as exc:
                raise _Invalid(f"{exc}{cut}", text, "schema") from None

        return (yield from self._attempts(call, messages, schema, check))

    def text(self, call: RoleCall, messages: list[Message]) -> Generator[Event, None, str]:
        """A free-text reply; an empty one is re-asked."""

        def check(text: str, finish_reason: str) -> str:
            if not text.strip():
                raise _Invalid("the reply was empty", text, "empty")
            return text.strip()

        return (yield from self._attempts(call, messages, None, check))

    def _attempts(
        self,
        call: RoleCall,
        messages: list[Message],
        schema: dict[str, Any] | None,
        check: Any,
    ) -> Generator[Event, None, Any]:
        messages, attempt = list(messages), 1
        while True:
            text, finish_reason = yield from self._call(call, messages, schema, attempt)
            try:
                return check(text, finish_reason)
            except _Invalid as invalid:
                if attempt >= self.max_attempts:
                    raise InvalidOutputError(
                        call.role, attempt, invalid.reason, invalid.raw, invalid.kind
                    ) from None
                reason = invalid.reason
            attempt += 1
            yield Reasked(call.role, attempt, reason)
            messages += _reask(text, reason, structured=schema is not None)

    def _call(
        self,
        call: RoleCall,
        messages: list[Message],
        schema: dict[str, Any] | None,
        attempt: int,
    ) -> Generator[Event, None, tuple[str, str]]:
        load = self._load_for(call, messages)
        yield AwaitingModel(call.role, call.phase, call.round, str(call.spec), load.num_ctx)
        reply = yield from self.serve(Served(call, load, messages, schema, attempt))
        return reply.text, reply.finish_reason

    def serve(self, request: Served) -> Generator[Event, None, ServedReply]:
        """Make one model call where its model lives: the thermal guard, the memory manager's
        residency, the stream, the metrics. Here it is this process; a cluster's runner
        overrides this to make the call on a node (:mod:`ai_stack.cluster`)."""
        call, load, messages = request.call, request.load, request.messages
        level = "unknown"
        if self.guard is not None:
            level = yield from self.guard.before_call(self.manager)
        started = time.perf_counter()
        yield PhaseStarted(call.role, call.phase, str(call.spec), call.round, request.attempt)
        lease = yield from self.manager.acquire(call.spec, load)
        try:
            for retry in range(self.stream_retries + 1):
                stream = lease.backend.chat(
                    call.spec.name, messages, options=call.chat, schema=request.schema
                )
                try:
                    for piece in stream:
                        yield TokenEvent(call.role, piece)
                        if self.guard is not None:
                            yield from self.guard.during_call()
                    break
                except TransientBackendError as exc:
                    # Backends retry what fails before any text arrives; a cut *during* the
                    # answer is retried here, where the text already shown can be declared void.
                    if not exc.partial or retry == self.stream_retries:
                        raise
                    yield CallRetried(call.role, exc.message)
        finally:
            self.manager.finished(call.spec)  # another process may take the room now
        result = stream.result
        self.manager.learn_tokens(
            call.spec, "\n".join(m["content"] for m in messages), result.prompt_tokens
        )
        metrics = PhaseMetrics(
            role=call.role,
            phase=call.phase,
            model=str(call.spec),
            round=call.round,
            attempt=request.attempt,
            load_s=round(lease.load_s + result.load_s, 4),
            ttft_s=round(result.ttft_s, 4),
            prompt_tokens=result.prompt_tokens,
            output_tokens=result.output_tokens,
            tokens_per_s=round(result.tokens_per_s, 2),
            wall_s=round(time.perf_counter() - started, 4),
            thermal=level,
        )
        yield PhaseFinished(metrics)
        if self.guard is not None:
            yield from self.guard.after_call(metrics)
        return ServedReply(result.text, result.finish_reason)

    def _load_for(self, call: RoleCall, messages: list[Message]) -> LoadOptions:
        """The call's load options, with a larger context (up to ``max_ctx``) if its prompt and
        reply turn out longer than the run planned for: better a reload than a prompt the server
        silently cuts from the front."""
        if call.max_ctx is None or call.max_ctx <= call.load.num_ctx:
            return call.load
        prompt = sum(
            self.manager.count_tokens(call.spec, message["content"]) + MESSAGE_TOKENS
            for message in messages
        )
        needed = prompt + call.chat.max_tokens
        if needed <= call.load.num_ctx:
            return call.load
        return replace(call.load, num_ctx=round_context(needed, call.max_ctx))


def _reask(previous: str, reason: str, *, structured: bool) -> list[Message]:
    shape = "Reply again with JSON only, in the shape described." if structured else "Reply again."
    return [
        {"role": "assistant", "content": previous},
        {"role": "user", "content": f"Your reply was not valid: {reason}. {shape}"},
    ]


__all__ = ["RoleCall", "RoleRunner", "Served", "ServedReply", "generation_schema"]
