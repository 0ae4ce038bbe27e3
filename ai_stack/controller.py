"""Planner → Critic loop → Executor, as a generator of typed events.

The controller knows roles, prompts and the review loop; it reaches models only through
:class:`~ai_stack.roles.RoleRunner` (and so through the memory manager). It never prints, never
touches HTTP or llama.cpp: the CLI renders its events and, later, the history store records them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ai_stack.backends import EMBEDDED_DEFAULT, ModelSpec, choose_backend, create_backend
from ai_stack.backends.base import ChatOptions, LoadOptions, ModelInfo
from ai_stack.config import Settings
from ai_stack.errors import UsageError
from ai_stack.memory import GIB, MemoryManager, estimate_footprint
from ai_stack.prompts import PromptLibrary
from ai_stack.roles import RoleCall, RoleRunner
from ai_stack.thermal import make_guard
from ai_stack.thermal.policy import ThermalGuard
from ai_stack.types import (
    ROLES,
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


def resolve_roles(
    settings: Settings, backend: str, defaults: dict[Role, str] | None = None
) -> dict[Role, ModelSpec]:
    """Each role's model spec with its backend filled in (explicit prefixes win)."""
    specs: dict[Role, ModelSpec] = {}
    for role in ROLES:
        text = settings.role(role).model or (defaults or {}).get(role) or EMBEDDED_DEFAULT
        specs[role] = ModelSpec.parse(text).with_backend(backend)
    return specs


def default_models(settings: Settings, backend: str, manager: MemoryManager) -> dict[Role, str]:
    """Models for roles the user left unset: SmolLM2 when embedded; on Ollama the original
    ai-stack's roles where installed, else picked from what is installed and fits the budget."""
    if backend == "embedded" or all(settings.role(role).model for role in ROLES):
        return {role: EMBEDDED_DEFAULT for role in ROLES}
    from ai_stack.backends.ollama import default_roles

    num_ctx = settings.executor.num_ctx

    def fits(info: ModelInfo) -> bool:
        described = manager.describe(ModelSpec(backend, info.name))
        return estimate_footprint(described, num_ctx).total <= manager.budget

    installed = manager.backend(backend).list_models()
    return default_roles(installed, fits)  # type: ignore[return-value]


def build_manager(settings: Settings) -> tuple[MemoryManager, ThermalGuard | None]:
    """The memory manager the settings describe (backends from the registry), and the thermal
    guard when enabled, wired to check local loads under memory pressure."""
    budget = settings.memory.budget_gb
    manager = MemoryManager(
        lambda name: create_backend(name, settings),
        policy=settings.memory.policy,
        budget_bytes=int(budget * GIB) if budget else None,
        kv_cache_type=settings.memory.kv_cache_type,
    )
    guard = make_guard(settings.thermal) if settings.thermal.enabled else None
    if guard is not None:
        manager.memory_check = guard.memory_check
    return manager, guard


def config_snapshot(
    settings: Settings, specs: dict[Role, ModelSpec], manager: MemoryManager, backend_note: str
) -> dict[str, Any]:
    """What the history keeps of a run's configuration."""
    return {
        "backend": backend_note,
        "roles": {
            role: {**settings.role(role).model_dump(mode="json"), "model": str(spec)}
            for role, spec in specs.items()
        },
        "max_rounds": settings.max_rounds,
        "approve_score": settings.approve_score,
        "memory": {
            "policy": manager.policy,
            "budget_bytes": manager.budget,
            "kv_cache_type": manager.kv_cache_type,
        },
    }


def load_options_for(
    settings: Settings, specs: dict[Role, ModelSpec]
) -> dict[ModelSpec, LoadOptions]:
    """One set of load-time options per model, so a model shared by roles is never reloaded:
    the context is the largest any of its roles asks for."""
    contexts: dict[ModelSpec, int] = {}
    for role, spec in specs.items():
        contexts[spec] = max(contexts.get(spec, 0), settings.role(role).num_ctx)
    return {spec: LoadOptions(num_ctx=num_ctx) for spec, num_ctx in contexts.items()}


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
        self.load_options = load_options or load_options_for(settings, specs)
        self.guard = guard
        self.runner = RoleRunner(manager, max_reasks=settings.max_reasks, guard=guard)
        self.backend_note = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> Pipeline:
        """The usual wiring: backends from the registry, one memory manager, the prompt library.

        Contacts Ollama (``backend = "auto"`` or ``"ollama"``) to choose the backend; loads nothing.
        """
        manager, guard = build_manager(settings)
        try:
            backend, note = choose_backend(
                settings.backend, manager.backend, autostart=settings.ollama.autostart
            )
            specs = resolve_roles(settings, backend, default_models(settings, backend, manager))
            library = PromptLibrary(settings.prompts_dir)
            pipeline = cls(settings, manager, library, specs, guard=guard)
        except BaseException:
            manager.close()
            raise
        pipeline.backend_note = note
        return pipeline

    def check_models(self) -> None:
        """Fail before any work if a role's model is missing or cannot fit the memory budget."""
        for spec in dict.fromkeys(self.specs.values()):
            self.manager.check_fits(spec, self.load_options[spec])

    def close(self) -> None:
        """Unload every model and release the backends."""
        self.manager.close()

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
        tally = _Tally(phases=list(done.phases))
        models = {role: str(spec) for role, spec in self.specs.items()}
        yield RunStarted(done.run_id, task, context, models)

        def tracked(events: Generator[Event, None, S]) -> Generator[Event, None, S]:
            return _recording(events, tally)

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
class _Tally:
    """One run's share of the work: its calls, and the loads and unloads those calls caused
    (counted from its own events, so runs interleaved by the batch scheduler stay apart)."""

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
            if event.reason.startswith("thermal"):
                self.thermal.append(
                    ThermalDecision(kind="unload", level="critical", reason=event.model)
                )
        elif isinstance(event, ThermalNote):
            self.thermal.append(
                ThermalDecision(kind="note", level=event.level, reason=event.reason)
            )
        elif isinstance(event, ThermalPause) and event.waited_s == 0:
            self.thermal.append(
                ThermalDecision(kind="pause", level=event.level, reason=event.reason)
            )
        elif isinstance(event, ThermalResumed) and self.thermal:
            self.thermal[-1] = self.thermal[-1].model_copy(
                update={"seconds": round(event.paused_s, 3)}
            )


def _recording(events: Generator[Event, None, S], tally: _Tally) -> Generator[Event, None, S]:
    """Relay ``events``, tallying finished phases, loads and unloads."""
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        tally.observe(event)
        yield event
