"""One role call: generation schemas, validation and bounded re-asks, and a stream cut mid-answer
retried so that a half answer is never used."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from ai_stack.backends import ModelSpec
from ai_stack.backends.base import ChatOptions, ChatResult, ChatStream, LoadOptions, Message
from ai_stack.errors import InvalidOutputError, TransientBackendError
from ai_stack.memory import MemoryManager
from ai_stack.roles import RoleCall, RoleRunner, generation_schema
from ai_stack.types import CallRetried, Event, Plan, Reasked, Verdict
from tests.conftest import plan
from tests.scripted import ScriptedBackend


def call(role: str = "planner") -> RoleCall:
    return RoleCall(role, "plan", ModelSpec("embedded", "a"), LoadOptions(), ChatOptions())  # type: ignore[arg-type]


def run(events: Generator[Event, None, Any]) -> tuple[list[Event], Any]:
    seen = []
    while True:
        try:
            seen.append(next(events))
        except StopIteration as stop:
            return seen, stop.value


def runner(backend: ScriptedBackend, **options: Any) -> RoleRunner:
    return RoleRunner(MemoryManager(lambda name: backend, budget_bytes=10**9), **options)


def test_generation_schemas_inline_refs_require_everything_and_enumerate_small_ranges() -> None:
    schema = generation_schema(Plan)
    assert "$defs" not in schema and "$ref" not in str(schema)
    step = schema["properties"]["steps"]["items"]
    assert step["required"] == ["title", "detail"]
    assert step["properties"]["title"]["maxLength"] == 80
    verdict = generation_schema(Verdict)
    assert verdict["required"] == ["issues", "score", "verdict"]
    assert verdict["properties"]["score"]["enum"] == list(range(11))


def test_invalid_replies_are_reasked_then_fail_with_what_was_wrong(
    scripted: ScriptedBackend,
) -> None:
    scripted.enqueue("not json", '{"goal": "g"}', '{"goal": "g", "steps": "no"}')
    with pytest.raises(InvalidOutputError) as failure:
        run(runner(scripted, max_reasks=2).structured(call(), [], Plan))
    assert (failure.value.attempts, failure.value.kind) == (3, "schema")
    assert failure.value.last_raw == '{"goal": "g", "steps": "no"}'
    scripted.enqueue("still not json")
    with pytest.raises(InvalidOutputError) as failure:
        run(runner(scripted, max_reasks=0).structured(call(), [], Plan))
    assert (failure.value.attempts, failure.value.kind) == (1, "json")


def test_a_reask_shows_the_model_its_reply_and_the_error(scripted: ScriptedBackend) -> None:
    scripted.enqueue("nope", plan("a"))
    events, result = run(
        runner(scripted).structured(call(), [{"role": "user", "content": "x"}], Plan)
    )
    assert [step.title for step in result.steps] == ["a"]
    assert [(e.attempt, "not valid JSON" in e.error) for e in events if isinstance(e, Reasked)] == [
        (2, True)
    ]
    second = scripted.chats[1].messages
    assert second[1] == {"role": "assistant", "content": "nope"}
    assert "Reply again with JSON only" in second[2]["content"]


class CutOnce(ScriptedBackend):
    """The first answer breaks off after some text, as a dropped connection does."""

    cuts: int = 1

    def chat(
        self,
        model: str,
        messages: list[Message],
        *,
        options: ChatOptions,
        schema: dict[str, Any] | None = None,
    ) -> ChatStream:
        stream = super().chat(model, messages, options=options, schema=schema)
        if self.cuts:
            self.cuts -= 1
            return ChatStream(self._cut())
        return stream

    def _cut(self) -> Generator[str, None, ChatResult]:
        yield "half an ans"
        raise TransientBackendError("embedded", "connection reset", partial=True)


def test_a_stream_cut_mid_answer_is_retried_and_the_half_answer_discarded() -> None:
    backend = CutOnce()
    backend.enqueue("ignored", "the whole answer")
    events, text = run(runner(backend).text(call("executor"), []))
    assert text == "the whole answer"
    (retried,) = [e for e in events if isinstance(e, CallRetried)]
    assert retried.reason == "connection reset"


def test_an_empty_free_text_reply_is_reasked(scripted: ScriptedBackend) -> None:
    scripted.enqueue("   ", "words")
    events, text = run(runner(scripted).text(call("executor"), []))
    assert text == "words"
    assert [e.attempt for e in events if isinstance(e, Reasked)] == [2]


def test_a_prompt_longer_than_the_planned_context_loads_a_larger_one(
    scripted: ScriptedBackend,
) -> None:
    """A run plans each model's context; a call that turns out longer gets a larger context (up
    to ``max_ctx``) rather than a prompt the server would silently cut from the front."""
    scripted.enqueue("fine", "fine")
    planned = RoleCall(
        "executor",
        "fix",
        ModelSpec("embedded", "a"),
        LoadOptions(num_ctx=2048),
        ChatOptions(max_tokens=512),
        max_ctx=8192,
    )
    roles = runner(scripted)
    short: list[Message] = [{"role": "user", "content": "short"}]
    events, _ = run(roles.text(planned, short))
    assert scripted.loaded["a"].num_ctx == 2048
    long: list[Message] = [{"role": "user", "content": "word " * 3000}]  # ~5,000 by estimate
    events, _ = run(roles.text(planned, long))
    assert scripted.loaded["a"].num_ctx == 6144
    (awaiting,) = [e for e in events if type(e).__name__ == "AwaitingModel"]
    assert awaiting.num_ctx == 6144  # type: ignore[attr-defined]
    capped = RoleCall(
        "executor",
        "fix",
        ModelSpec("embedded", "b"),
        LoadOptions(num_ctx=2048),
        ChatOptions(max_tokens=512),
        max_ctx=4096,
    )
    scripted.enqueue("fine")
    run(roles.text(capped, long))
    assert scripted.loaded["b"].num_ctx == 4096, "never past the role's num_ctx"
