"""Records one pipeline's events into the store as they arrive."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ai_stack.errors import HistoryError, InvalidOutputError
from ai_stack.history.store import HistoryStore
from ai_stack.types import (
    AnswerReady,
    CritiqueReady,
    Event,
    EvidenceReady,
    PhaseFinished,
    PlanReady,
    RunFinished,
    RunStarted,
    Summarised,
    ToolCalled,
    ToolResult,
)


class HistoryRecorder:
    """Writes each event of a run to the store the moment it arrives, so a run killed at any
    point is kept up to its last finished phase.

    The history is a record, never a gate: when the store fails (read-only, damaged, full),
    recording stops, ``on_fault`` hears about it once, and the run goes on.
    """

    def __init__(
        self,
        store: HistoryStore,
        *,
        source: str,
        config: dict[str, Any],
        batch: tuple[str, str] | None = None,
        on_fault: Callable[[HistoryError], None] = lambda error: None,
    ) -> None:
        self.store = store
        self.source = source
        self.config = config
        self.batch = batch
        self.on_fault = on_fault
        self.run_id: str | None = None
        self.fault: HistoryError | None = None
        self.called: ToolCalled | None = None  # the tool call whose result is to come

    def __call__(self, event: Event) -> None:
        if self.fault is not None:
            return
        try:
            self._record(event)
        except HistoryError as error:
            self._failed(error)

    def _failed(self, error: HistoryError) -> None:
        self.fault, self.run_id = error, None
        self.on_fault(error)

    def _record(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.run_id = event.run_id
            config = {**self.config, "models": event.models}
            conversation = (
                (event.conversation_id, event.turn)
                if event.conversation_id is not None and event.turn is not None
                else None
            )
            files = [attachment.model_dump(mode="json") for attachment in event.files]
            self.store.start_run(
                event.run_id,
                event.task,
                event.context,
                config,
                self.source,
                batch=self.batch,
                mode=event.mode,
                conversation=conversation,
                files=files,
                replaces=event.replaces,
            )
        elif self.run_id is None:
            return
        elif isinstance(event, PlanReady):
            self.store.add_plan(self.run_id, event.version, event.plan.model_dump(mode="json"))
        elif isinstance(event, AnswerReady):
            answer = event.answer
            self.store.add_answer(self.run_id, answer.version, answer.text, answer.phase)
        elif isinstance(event, EvidenceReady):
            self.store.add_evidence(
                self.run_id, event.version, event.evidence.model_dump(mode="json")
            )
        elif isinstance(event, CritiqueReady):
            self.store.add_critique(self.run_id, event.critique.model_dump(mode="json"))
        elif isinstance(event, ToolCalled):
            self.called = event
        elif isinstance(event, ToolResult):
            arguments = self.called.arguments if self.called is not None else ""
            self.store.add_tool_call(
                self.run_id, {**dataclasses.asdict(event), "arguments": arguments}
            )
            self.called = None
        elif isinstance(event, Summarised):
            self.store.add_summary(self.run_id, dataclasses.asdict(event))
        elif isinstance(event, PhaseFinished):
            metrics = event.metrics.model_dump(mode="json")
            self.store.add_phase(self.run_id, metrics, thermal=metrics.get("thermal"))
        elif isinstance(event, RunFinished):
            self.store.finish_run(self.run_id, event.result.model_dump(mode="json"))
            self.run_id = None

    def finish_without_answer(self) -> None:
        """A run that ends by design without an answer (a plan asked for by itself)."""
        if self.run_id is None:
            return
        try:
            self.store.end_run(self.run_id, "ok")
        except HistoryError as fault:
            self._failed(fault)
        self.run_id = None

    def abandon(self, error: BaseException) -> None:
        """The run stopped early: record why (Ctrl-C → interrupted, anything else → failed,
        with the model's last reply when that reply was the problem)."""
        if self.run_id is None:
            return
        try:
            if isinstance(error, KeyboardInterrupt):
                self.store.end_run(self.run_id, "interrupted", "stopped by the user (Ctrl-C)")
            else:
                raw = error.last_raw if isinstance(error, InvalidOutputError) else None
                self.store.end_run(self.run_id, "failed", str(error) or type(error).__name__, raw)
        except HistoryError as fault:
            self._failed(fault)
        self.run_id = None
