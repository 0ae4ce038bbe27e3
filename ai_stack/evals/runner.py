"""Running a suite across modes, side by side, and summing up.

Every (task, mode) pair is one run of the batch runner, so the runs are scheduled phase-major
(each model loads once per phase group), journaled in the history, and resumable — except that
direct, beside the answer review, is read off the review's first call (:func:`paired`). Each final
answer is checked the moment its run finishes and the verdict is written beside the run's files,
so nothing finished is lost if the eval is stopped.

A run's time is its own work — its model calls (loads included) and its checks — not the wall
clock between its first and last call, which in a phase-major schedule includes other runs'
calls.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ai_stack.batch import BatchEvent, BatchRunner, BatchSummary, TaskRun
from ai_stack.config import Settings
from ai_stack.evals.checker import check_answer
from ai_stack.evals.suite import Suite
from ai_stack.files import OutputDir
from ai_stack.modes import MODES as TABLE
from ai_stack.redaction import redact_all
from ai_stack.sandbox import Limits, Sandbox
from ai_stack.types import Mode, RunFinished, RunResult
from ai_stack.workflow import PlannedTask, Workflow

MODES: tuple[Mode, ...] = tuple(TABLE)
VERDICT_BYTES = 1 << 20  # a saved verdict is a few hundred bytes; more is not one of ours


class TaskOutcome(BaseModel):
    """One task in one mode: the checker's verdict and what the run cost."""

    task: str
    mode: Mode
    run_id: str | None = None
    status: str  # ok, failed (no answer), skipped, interrupted, pending
    passed: bool = False
    detail: str = ""
    seconds: float = 0.0
    output_tokens: int = 0
    prompt_tokens: int = 0
    loads: int = 0
    calls: int = 0


class ModeSummary(BaseModel):
    mode: Mode
    passed: int
    total: int
    rate: float
    ci_low: float
    ci_high: float
    seconds: float
    relative_time: float | None  # to direct's, when direct ran
    output_tokens: int
    prompt_tokens: int
    loads: int
    calls: int


class EvalReport(BaseModel):
    suite: str
    path: str
    models: dict[str, str]
    modes: list[Mode]
    status: str
    summaries: list[ModeSummary]
    outcomes: list[TaskOutcome]
    out_dir: str


def wilson(passed: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a pass rate (sound for small suites and 0 or 100 %).

    >>> [round(x, 3) for x in wilson(10, 12)]
    [0.552, 0.953]
    """
    if total == 0:
        return 0.0, 0.0
    p = passed / total
    centre = p + z * z / (2 * total)
    spread = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    scale = 1 + z * z / total
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def mode_settings(settings: Settings, mode: Mode) -> Settings:
    if mode == "raw":
        return settings.model_copy(update={"raw": True, "direct": False})
    if mode == "direct":
        return settings.model_copy(update={"direct": True, "raw": False})
    return settings.model_copy(update={"direct": False, "raw": False, "review": mode})


def paired(modes: list[Mode]) -> Mode | None:
    """The mode direct is read off, if any. Direct's one call is the same call as the first
    answer of the answer review and of the team (the Executor, the task, no plan): with one of
    them, direct is read off its first answer instead of being sampled again (the team's when
    both run). The comparison then measures what the review adds, without the noise of a
    second sample (llama.cpp's numerics depend on its cache's state).

    >>> paired(["direct", "answer", "team"]), paired(["direct", "answer"]), paired(["raw"])
    ('team', 'answer', None)
    """
    if "direct" not in modes:
        return None
    reviewing = [m for m in modes if TABLE[m].answers_first and TABLE[m].reviews_answer]
    return max(reviewing, key=list(TABLE).index, default=None)  # the later in the table


def eval_workflow(
    suite: Suite, modes: list[Mode], settings: Settings, out_dir: Path, fingerprint: str
) -> Workflow:
    """The suite as a batch: one task per (task, mode), ids ``<task>.<mode>`` — except direct,
    when it is :func:`paired` with the answer review."""
    run_modes = [m for m in modes if not (m == "direct" and paired(modes))]
    tasks = [
        PlannedTask(
            f"{task.id}.{mode}", task.task, task.context, mode_settings(settings, mode), [], None
        )
        for task in suite.tasks
        for mode in run_modes
    ]
    digest = hashlib.sha256(f"{suite.digest}|{','.join(modes)}|{fingerprint}".encode()).hexdigest()
    return Workflow(suite.path, f"eval {suite.name}", tasks, out_dir, digest)


@dataclass
class EvalRun:
    """Checks each answer as its run finishes; builds the report."""

    suite: Suite
    modes: list[Mode]
    runner: BatchRunner
    sandbox: Sandbox
    limits: Limits = field(default_factory=lambda: Limits(seconds=30))
    on_event: Callable[[str, BatchEvent], None] = lambda task, event: None
    on_verdict: Callable[[str, bool, str], None] = lambda run, passed, detail: None
    verdicts: dict[str, Any] = field(default_factory=dict)
    checks: OutputDir = field(init=False)  # checks/ in the output directory: one verdict a run

    def __post_init__(self) -> None:
        self.runner.on_event = self._observe

    def _observe(self, run_id: str, event: BatchEvent) -> None:
        if isinstance(event, RunFinished):
            self._check_run(run_id, event.result)
        self.on_event(run_id, event)

    def _check_run(self, run_id: str, result: RunResult) -> None:
        task_id, mode = run_id.rsplit(".", 1)
        self._check(run_id, result.output)
        if mode == paired(self.modes):
            self._check(f"{task_id}.direct", result.answers[0].text)

    def _check(self, run_id: str, answer: str) -> None:
        saved = f"{run_id}.json"
        kept = self.checks.read(saved, VERDICT_BYTES) if self.checks.exists(saved) else None
        if kept is not None:  # checked before a resume
            self.verdicts[run_id] = json.loads(kept)
            return
        task_id = run_id.rsplit(".", 1)[0]
        checker = next(t.check for t in self.suite.tasks if t.id == task_id)
        verdict = check_answer(self.sandbox, checker, answer, self.limits)
        self.verdicts[run_id] = verdict.model_dump(mode="json")
        self.checks.write(saved, json.dumps(redact_all(self.verdicts[run_id])))
        self.on_verdict(run_id, bool(verdict.passed), verdict.detail)

    def run(self) -> EvalReport:
        # a link at either name is refused before any load
        self.runner.output.refuse_links(["report.json"])
        self.checks = self.runner.output.subdir("checks")
        summary = self.runner.run()
        for task in self.runner.runs:  # runs finished before a resume
            if task.status == "ok" and task.result:
                self._check_run(task.planned.id, RunResult.model_validate(task.result))
        return self.report(summary)

    def _outcome(self, task: TaskRun, mode: Mode) -> TaskOutcome:
        task_id = task.planned.id.rsplit(".", 1)[0]
        outcome = TaskOutcome(
            task=task_id, mode=mode, run_id=task.run_id, status=task.status, detail=task.error or ""
        )
        if task.result is None:
            return outcome
        result = RunResult.model_validate(task.result)
        verdict = self.verdicts.get(f"{task_id}.{mode}", {})
        phases = result.metrics.phases
        answers = result.answers
        if mode == "direct" and task.planned.settings.mode != "direct":  # read off the review
            phases = [p for p in phases if p.phase == "execute"][:1]
            answers = []
        checking = sum(a.evidence.seconds for a in answers if a.evidence)
        return outcome.model_copy(
            update={
                "passed": bool(verdict.get("passed")),
                "detail": verdict.get("detail", ""),
                "seconds": round(sum(p.wall_s for p in phases) + checking, 3),
                "output_tokens": sum(p.output_tokens for p in phases),
                "prompt_tokens": sum(p.prompt_tokens for p in phases),
                "loads": sum(1 for p in phases if p.load_s > 0),
                "calls": len(phases),
            }
        )

    def report(self, summary: BatchSummary) -> EvalReport:
        outcomes = []
        for task in self.runner.runs:
            mode = task.planned.settings.mode
            if mode == paired(self.modes):
                outcomes.append(self._outcome(task, "direct"))
            outcomes.append(self._outcome(task, mode))
        summaries = [
            _summarise(mode, [o for o in outcomes if o.mode == mode]) for mode in self.modes
        ]
        direct = next((s for s in summaries if s.mode == "direct"), None)
        for item in summaries:
            if direct is not None and direct.seconds > 0:
                item.relative_time = round(item.seconds / direct.seconds, 2)
        roles = next(iter(self.runner.specs.values()))
        report = EvalReport(
            suite=self.suite.name,
            path=str(self.suite.path),
            models={role: str(spec) for role, spec in roles.items()},
            modes=self.modes,
            status=summary.status,
            summaries=summaries,
            outcomes=outcomes,
            out_dir=str(self.runner.out_dir),
        )
        saved = redact_all(report.model_dump(mode="json"))
        self.runner.output.write("report.json", json.dumps(saved, indent=2))
        return report


def _summarise(mode: Mode, outcomes: list[TaskOutcome]) -> ModeSummary:
    passed = sum(o.passed for o in outcomes)
    low, high = wilson(passed, len(outcomes))
    return ModeSummary(
        mode=mode,
        passed=passed,
        total=len(outcomes),
        rate=round(passed / len(outcomes), 4) if outcomes else 0.0,
        ci_low=round(low, 4),
        ci_high=round(high, 4),
        seconds=round(sum(o.seconds for o in outcomes), 3),
        relative_time=None,
        output_tokens=sum(o.output_tokens for o in outcomes),
        prompt_tokens=sum(o.prompt_tokens for o in outcomes),
        loads=sum(o.loads for o in outcomes),
        calls=sum(o.calls for o in outcomes),
    )


__all__ = [
    "MODES",
    "EvalReport",
    "EvalRun",
    "ModeSummary",
    "TaskOutcome",
    "eval_workflow",
    "mode_settings",
    "wilson",
]
