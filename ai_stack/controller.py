"""Planner → Critic loop → Executor, as a generator of typed events.

The controller knows roles, prompts and the review loop; it reaches models only through
:class:`~ai_stack.roles.RoleRunner` (and so through the memory manager). It never prints, never
touches HTTP, llama.cpp or the database: front ends render its events, the history store records
them, and :class:`Tally` derives a run's totals from them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ai_stack.backends import ModelSpec
from ai_stack.backends.base import ChatOptions, LoadOptions
from ai_stack.config import Settings
from ai_stack.errors import UsageError
from ai_stack.memory import MemoryManager, load_options_for
from ai_stack.prompts import PromptLibrary
from ai_stack.roles import RoleCall, RoleRunner
from ai_stack.thermal.policy import ThermalGuard
from ai_stack.types import (
    Critique,
    CritiqueReady,
    Event,
    LoopStopped,
    ModelLoaded,
    ModelMemory,
    ModelUnloaded,
    Phase,
    PhaseFinished,
    PhaseMetrics,
    Plan,
    PlanReady,
    Role,
    RunFinished,
    RunMetrics,
    RunResult,
    RunStarted,
    StopReason,
    ThermalDecision,
    ThermalNote,
    ThermalPause,
    ThermalResumed,
    Verdict,
)

S = TypeVar("S")


def stop_reason_for(
    critique: Critique, *, round_: int, max_rounds: int, approve_score: int
) -> StopReason | None:
    """Why the review loop ends after this critique, or ``None`` to revise and review again.

    >>> c = Critique(round=1, issues=[], score=9, verdict="revise")
    >>> stop_reason_for(c, round_=1, max_rounds=3, approve_score=8)
    'score'
    >>> stop_reason_for(c, round_=1, max_rounds=3, approve_score=10) is None
    True
    >>> stop_reason_for(c, round_=3, max_rounds=3, approve_score=10)
    'max_rounds'
    """
    if critique.verdict == "approve":
        return "approved"
    if critique.score >= approve_score:
        return "score"
    if round_ >= max_rounds:
        return "max_rounds"
    return None


@dataclass
class ReviewOutcome(Generic[S]):
    """What a review loop produced: the final subject, every version of it, every critique."""

    subject: S
    versions: list[S]
    critiques: list[Critique] = field(default_factory=list)
    stop_reason: StopReason = "max_rounds"

    @property
    def rounds(self) -> int:
        return len(self.critiques)


def review_loop(
    subject: S,
    *,
    review: Callable[[S, int], Generator[Event, None, Critique]],
    revise: Callable[[S, Critique, int], Generator[Event, None, S]],
    max_rounds: int,
    approve_score: int,
) -> Generator[Event, None, ReviewOutcome[S]]:
    """Review → revise until approved, good enough, unchanged, or out of rounds.

    Generic over what is reviewed: today a plan, later possibly the executor's answer. The last
    critique is never followed by a revision that nobody would review.
    """
    outcome = ReviewOutcome(subject=subject, versions=[subject])
    for round_ in range(1, max_rounds + 1):
        critique = yield from review(outcome.subject, round_)
        outcome.critiques.append(critique)
        yield CritiqueReady(critique)
        reason = stop_reason_for(
            critique, round_=round_, max_rounds=max_rounds, approve_score=approve_score
        )
        if reason is not None:
            outcome.stop_reason = reason
            break
        revised = yield from revise(outcome.subject, critique, round_)
        if revised == outcome.subject:
            outcome.stop_reason = "unchanged"
            break
        outcome.subject = revised
        outcome.versions.append(revised)
    yield LoopStopped(outcome.stop_reason, outcome.rounds)
    return outcome


class Pipeline:
    """Runs tasks through the three roles. One instance serves many tasks (the REPL), so models
    stay resident between tasks where the policy allows."""

    def __init__(
        self,
        settings: Settings,
        manager: MemoryManager,
        prompts: PromptLibrary,
        specs: dict[Role, ModelSpec],
        load_options: dict[ModelSpec, LoadOptions] | None = None,
        guard: ThermalGuard | None = None,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.prompts = prompts
        self.specs = specs
        self.load_options = load_options or load_options_for(
            (spec, settings.role(role).num_ctx) for role, spec in specs.items()
        )
        self.guard = guard
        self.runner = RoleRunner(manager, max_reasks=settings.max_reasks, guard=guard)

    def run(
        self, task: str, context: str | None = None, *, resume: Progress | None = None
    ) -> Iterator[Event]:
        """Events of one task, ending with :class:`RunFinished` carrying the result.

        With ``resume``, the phases it holds are not run again: its plans and critiques are
        taken as the model's answers and its metrics head the new run's.
        """
        task = task.strip()
        if not task:
            raise UsageError("The task is empty.", hint='Give the task as text: ai-stack "..."')
        started = time.perf_counter()
        done = resume or Progress(run_id=uuid.uuid4().hex[:12])
        tally = Tally(phases=list(done.phases))
        models = {role: str(spec) for role, spec in self.specs.items()}
        yield RunStarted(done.run_id, task, context, models)

        def tracked(events: Generator[Event, None, S]) -> Generator[Event, None, S]:
            return tally.relay(events)

        base = {"task": task, "context": context}
        if done.plans:
            plan = done.plans[0]
        else:
            plan = yield from tracked(
                self.runner.structured(
                    self._call("planner", "plan"), self.prompts.render("planner", **base), Plan
                )
            )
        yield PlanReady(plan, 1)

        def review(plan: Plan, round_: int) -> Generator[Event, None, Critique]:
            if round_ <= len(done.critiques):
                return done.critiques[round_ - 1]
            messages = self.prompts.render(
                "critic", **base, plan=plan, round=round_, approve_score=self.settings.approve_score
            )
            verdict = yield from tracked(
                self.runner.structured(self._call("critic", "critique", round_), messages, Verdict)
            )
            return Critique(round=round_, **verdict.model_dump())

        def revise(plan: Plan, critique: Critique, round_: int) -> Generator[Event, None, Plan]:
            if round_ < len(done.plans):
                revised = done.plans[round_]
            else:
                messages = self.prompts.render("revise", **base, plan=plan, critique=critique)
                revised = yield from tracked(
                    self.runner.structured(self._call("planner", "revise", round_), messages, Plan)
                )
            yield PlanReady(revised, round_ + 1)
            return revised

        outcome = yield from review_loop(
            plan,
            review=review,
            revise=revise,
            max_rounds=self.settings.max_rounds,
            approve_score=self.settings.approve_score,
        )
        output = yield from tracked(
            self.runner.text(
                self._call("executor", "execute"),
                self.prompts.render("executor", **base, plan=outcome.subject),
            )
        )
        result = RunResult(
            id=done.run_id,
            task=task,
            context=context,
            models={role: str(spec) for role, spec in self.specs.items()},
            plan=outcome.subject,
            plans=outcome.versions,
            critiques=outcome.critiques,
            rounds=outcome.rounds,
            stop_reason=outcome.stop_reason,
            output=output,
            metrics=RunMetrics(
                phases=tally.phases,
                loads=tally.loads,
                unloads=tally.unloads,
                load_s=round(tally.load_s, 4),
                wall_s=round(time.perf_counter() - started, 4),
                policy=self.manager.policy,
                budget_bytes=self.manager.budget,
                memory=[
                    ModelMemory(
                        model=record.model,
                        estimate_bytes=record.estimate_bytes,
                        resident_bytes=record.resident_bytes,
                    )
                    for spec, record in self.manager.records.items()
                    if spec in self.specs.values()
                ],
                thermal=tally.thermal,
            ),
        )
        yield RunFinished(result)

    def _call(self, role: Role, phase: Phase, round_: int = 0) -> RoleCall:
        spec = self.specs[role]
        settings = self.settings.role(role)
        return RoleCall(
            role=role,
            phase=phase,
            spec=spec,
            load=self.load_options[spec],
            chat=ChatOptions(
                temperature=settings.temperature,
                max_tokens=settings.max_tokens,
                repeat_penalty=self.settings.repeat_penalty,
                seed=self.settings.seed,
            ),
            round=round_,
        )


@dataclass
class Progress:
    """What a run had finished before it stopped: enough to resume it without redoing phases."""

    run_id: str
    plans: list[Plan] = field(default_factory=list)
    critiques: list[Critique] = field(default_factory=list)
    phases: list[PhaseMetrics] = field(default_factory=list)


@dataclass
class Tally:
    """Totals derived from events — the only accounting there is. A run's pipeline tallies its
    own events (so runs interleaved by the batch scheduler stay apart); a batch tallies all."""

    phases: list[PhaseMetrics] = field(default_factory=list)
    loads: int = 0
    unloads: int = 0
    load_s: float = 0.0
    thermal: list[ThermalDecision] = field(default_factory=list)

    def observe(self, event: Event) -> None:
        if isinstance(event, PhaseFinished):
            self.phases.append(event.metrics)
        elif isinstance(event, ModelLoaded):
            self.loads += 1
            self.load_s += event.seconds
        elif isinstance(event, ModelUnloaded):
            self.unloads += 1
            if event.cause == "thermal":
                self.thermal.append(
                    ThermalDecision(kind="unload", level="critical", reason=event.model)
                )
        elif isinstance(event, ThermalNote):
            self.thermal.append(
                ThermalDecision(kind=event.kind, level=event.level, reason=event.reason)
            )
        elif isinstance(event, ThermalPause) and event.waited_s == 0:
            self.thermal.append(
                ThermalDecision(kind="pause", level=event.level, reason=event.reason)
            )
        elif isinstance(event, ThermalResumed) and self.thermal:
            self.thermal[-1] = self.thermal[-1].model_copy(
                update={"seconds": round(event.paused_s, 3)}
            )

    def relay(self, events: Generator[Event, None, S]) -> Generator[Event, None, S]:
        """Pass ``events`` on, observing each; returns what the generator returned."""
        while True:
            try:
                event = next(events)
            except StopIteration as stop:
                return stop.value
            self.observe(event)
            yield event
