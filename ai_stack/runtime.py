"""What every front end (the one-shot, the REPL, the MCP server) does with a run: drive its
events to a result while recording each as it arrives, open the recorder, read the files given
as context through the file-access policy, give the passages of knowledge indexes as numbered
sources, find the conversation to continue. Plain functions, no click and no console: the
front ends import them, never one another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from ai_stack.access import FilePolicy
from ai_stack.config import Settings
from ai_stack.controller import Pipeline
from ai_stack.conversation import Conversation, Summary
from ai_stack.errors import HistoryError, UsageError
from ai_stack.history import HistoryRecorder, HistoryStore
from ai_stack.knowledge.citations import PASSAGES, SOURCE_LABEL_TOKENS, as_sources
from ai_stack.knowledge.retrieval import Passage, retrieve
from ai_stack.session import Session
from ai_stack.types import Attachment, Event, RunFinished, RunResult


class EventSink(Protocol):
    """What renders a run's events (the CLI's Display)."""

    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


def execute(
    pipeline: Pipeline,
    task: str,
    display: EventSink,
    recorder: HistoryRecorder | None = None,
    *,
    conversation: Conversation | None = None,
    files: Sequence[Attachment] = (),
) -> RunResult:
    """Run one task to its result, rendering every event and recording it as it arrives; as
    the next turn of ``conversation`` (kept up to date) when given."""

    def handle(event: Event) -> None:
        if conversation is not None:
            conversation.observe(event)
        display.handle(event)

    try:
        return drive(pipeline.run(task, conversation=conversation, files=files), recorder, handle)
    finally:
        display.close()


def drive(
    events: Iterable[Event],
    recorder: HistoryRecorder | None,
    on_event: Callable[[Event], None] = lambda event: None,
) -> RunResult:
    """A run's events to its result: each recorded as it arrives, then handed to ``on_event``;
    a run that stops early is recorded as failed or interrupted."""
    result: RunResult | None = None
    try:
        for event in events:
            if recorder is not None:
                recorder(event)
            on_event(event)
            if isinstance(event, RunFinished):
                result = event.result
    except BaseException as exc:
        if recorder is not None:
            recorder.abandon(exc)
        raise
    assert result is not None, "the pipeline ended without a result"
    return result


def open_recorder(
    session: Session, pipeline: Pipeline, source: str, warn: Callable[[HistoryError], None]
) -> HistoryRecorder | None:
    """A recorder for this pipeline's runs; None when history is off or cannot be opened (then
    ``warn`` says so once: the history is a record, never a gate)."""
    settings = session.settings
    if not settings.history.enabled:
        return None
    try:
        store = HistoryStore.open(settings.resolved_history_path())
        store.reap_orphans()
    except HistoryError as error:
        warn(error)
        return None
    config = session.config_snapshot(settings, pipeline.specs)
    return HistoryRecorder(store, source=source, config=config, on_fault=warn)


def attach(policy: FilePolicy, paths: Sequence[Path]) -> list[Attachment]:
    """The files named on the command line (or with /file), read through the file-access
    policy: secret locations refused unless named with --allow-sensitive, binary refused,
    sizes bounded."""
    return [Attachment(path=str(path), text=policy.read(path)) for path in paths]


def find_passages(names: Sequence[str], task: str) -> list[Passage]:
    """The passages of the knowledge indexes ``names`` that match ``task`` best (before any
    model loads: an unknown or damaged index stops here)."""
    return retrieve(names, task, PASSAGES) if names else []


def cite_passages(
    pipeline: Pipeline, passages: Sequence[Passage], task: str, files: Sequence[Attachment] = ()
) -> list[Attachment]:
    """``passages`` as numbered sources, as many as fit what the roles' contexts leave after
    the task and the other ``files``."""
    if not passages:
        return []
    spec = pipeline.specs["executor"]

    def count(text: str) -> int:
        return pipeline.manager.count_tokens(spec, text)

    room = pipeline.spare_tokens(task, None)
    room -= sum(count(f.text) + SOURCE_LABEL_TOKENS for f in files)
    return as_sources(passages, room, count)


def find_conversation(settings: Settings, latest: bool, ref: str | None) -> Conversation:
    """The conversation to continue from the history: the most recent (``latest``, ``-c``) or
    the one whose id starts with ``ref``; a new one when neither is asked for."""
    if not latest and ref is None:
        return Conversation.new()
    flag = "--continue" if latest else "--conversation"
    if not settings.history.enabled:
        raise UsageError(
            f"{flag} needs the history, which is off.",
            hint="Turn it on (history.enabled = true) and run without --no-history.",
        )
    with HistoryStore.open(settings.resolved_history_path()) as store:
        found = store.latest_conversation() if latest else store.resolve_conversation(ref or "")
        if found is None:
            raise UsageError(
                "There is no conversation to continue yet."
                if latest
                else f"No conversation with id {ref!r}.",
                hint="`ai-stack history list` shows runs; a run's conversation is in "
                "`ai-stack history show ID`.",
            )
        conversation = Conversation(found, store.conversation_turns(found))
        summary = store.conversation_summary(found)
        if summary is not None:
            conversation.summary = Summary(*summary)
        return conversation


__all__ = [
    "EventSink",
    "attach",
    "cite_passages",
    "drive",
    "execute",
    "find_conversation",
    "find_passages",
    "open_recorder",
]
