"""Batch runs of workflow files, scheduled phase-major so each model loads once per phase group.

Every task runs through the same :class:`~ai_stack.controller.Pipeline` as a one-shot run. A
task's event stream pauses at :class:`~ai_stack.types.AwaitingModel` before each model call; the
scheduler parks it there and decides which model to serve next:

1. a model that is already resident, if any parked task waits for it (never reload it later);
2. otherwise the earliest phase any parked task waits for — all plans, then round-1 critiques,
   then revisions, ..., then executions — and within it the first task's model.

Then it resumes every task waiting for that model, one after the other, each for as long as its
calls keep needing that model (so a task's follow-up calls find its prompt in the model's cache,
and each model still loads once per phase group). The same rule drives :func:`predict`, so
``--dry-run`` shows the schedule the run will follow.

The run history is the journal: plans, critiques and phase metrics are written as they arrive,
so ``--resume`` continues each unfinished task from its last finished phase.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ai_stack.backends import ModelSpec
from ai_stack.backends.base import LoadOptions
from ai_stack.config import Settings
from ai_stack.context import choose_contexts, estimate_tokens
from ai_stack.controller import Pipeline, Resume, Tally, smallest_loads
from ai_stack.errors import AiStackError, HistoryError, UsageError
from ai_stack.evidence import EvidenceCollector
from ai_stack.files import OutputDir
from ai_stack.history import HistoryRecorder, HistoryStore
from ai_stack.knowledge.citations import PASSAGES, as_sources
from ai_stack.knowledge.retrieval import retrieve
from ai_stack.memory import MemoryManager, evictions
from ai_stack.modes import MODES, phase_rank
from ai_stack.prompts import PromptLibrary
from ai_stack.redaction import redact, redact_all
from ai_stack.roles import RoleRunner
from ai_stack.thermal.policy import ThermalGuard
from ai_stack.tools.base import Toolbox
from ai_stack.types import (
    Attachment,
    AwaitingModel,
    CallHandedOff,
    Event,
    Phase,
    PhaseMetrics,
    Role,
    RunFinished,
    RunResult,
    RunStarted,
)
from ai_stack.workflow import PlannedTask, Workflow, render


@dataclass(frozen=True, slots=True)
class Waiting:
    """A parked task: which model it needs for which phase."""

    task: str
    order: int
    rank: int
    model: str


def choose_model(parked: list[Waiting], resident: set[str]) -> str:
    """The model to serve next (see the module docstring)."""
    on_resident = [w for w in parked if w.model in resident]
    pool = on_resident or parked
    return min(pool, key=lambda w: (w.rank, w.order)).model


# -- prediction --------------------------------------------------------------------------------


@dataclass
class Prediction:
    """The schedule a batch will follow if every review uses all its rounds."""

    groups: list[tuple[str, str, list[str]]]  # (phase label, model, task ids)
    loads: int
    naive_loads: int
    exact: bool  # False when reviews may end early, making loads an upper bound
    node_loads: dict[str, int] = field(default_factory=dict)  # on a cluster: loads per node
    homes: dict[str, str] = field(default_factory=dict)  # on a cluster: each model's node


def task_steps(specs: dict[Role, ModelSpec], settings: Settings) -> list[tuple[Phase, int, str]]:
    """Every model call of a task whose reviews use all their rounds (an upper bound: approval
    ends a review early, and failed checks skip the Critic's answer-review calls), as the mode
    table says (:mod:`ai_stack.modes`)."""
    steps = MODES[settings.mode].steps(settings)
    return [(phase, round_, str(specs[role])) for phase, round_, role in steps]


def predict(
    workflow: Workflow,
    specs: dict[str, dict[Role, ModelSpec]],
    *,
    policy: str,
    budget: int,
    sizes: dict[str, int],
    homes: dict[str, str] | None = None,
    nodes: dict[str, tuple[str, int]] | None = None,
) -> Prediction:
    """Simulate the scheduler under the memory manager's own residency rule (:func:`evictions`),
    with ``sizes`` the estimated footprint of each model. On a cluster, ``homes`` names each
    model's node and ``nodes`` each node's policy and budget: each node keeps its own resident
    set."""
    steps = {t.id: task_steps(specs[t.id], t.settings) for t in workflow.tasks}
    order = {t.id: i for i, t in enumerate(workflow.tasks)}
    done: set[str] = set()
    here = _Residency(policy, budget, sizes)
    residencies = {n: _Residency(p, b, sizes) for n, (p, b) in (nodes or {}).items()}

    def residency(model: str) -> _Residency:
        return residencies[homes[model]] if homes is not None else here

    groups: list[tuple[str, str, list[str]]] = []
    while len(done) < len(steps):
        ready = [
            t for t in workflow.tasks if t.id not in done and all(d in done for d in t.depends_on)
        ]
        parked = [
            Waiting(t.id, order[t.id], phase_rank(*steps[t.id][0][:2]), steps[t.id][0][2])
            for t in ready
        ]
        resident = {m for r in (here, *residencies.values()) for m in r.resident}
        model = choose_model(parked, resident)
        residency(model).use(model)
        for waiting in sorted(parked, key=lambda w: w.order):
            while (
                waiting.model == model
                and steps[waiting.task]
                and steps[waiting.task][0][2] == model
            ):
                phase, round_, _ = steps[waiting.task].pop(0)
                label = _label(phase, round_)
                if groups and groups[-1][:2] == (label, model):
                    groups[-1][2].append(waiting.task)
                else:
                    groups.append((label, model, [waiting.task]))
            if not steps[waiting.task]:
                done.add(waiting.task)
    naive = _Residency(policy, budget, sizes)
    for planned in workflow.tasks:
        for _, _, model in task_steps(specs[planned.id], planned.settings):
            naive.use(model)
    exact = all(MODES[t.settings.mode].exact(t.settings) for t in workflow.tasks)
    loads = here.loads + sum(r.loads for r in residencies.values())
    node_loads = {n: r.loads for n, r in residencies.items()}
    return Prediction(groups, loads, naive.loads, exact, node_loads, dict(homes or {}))


def _label(phase: Phase, round_: int) -> str:
    return f"{phase} round {round_}" if round_ else phase


@dataclass
class _Residency:
    """A simulated resident set (least recently used first), counting loads."""

    policy: str
    budget: int
    sizes: dict[str, int]
    resident: list[str] = field(default_factory=list)
    loads: int = 0

    def use(self, model: str) -> None:
        if model in self.resident:
            self.resident.remove(model)
        else:
            self.loads += 1
            current = [(m, self.sizes[m]) for m in self.resident]
            for victim in evictions(self.policy, current, self.sizes[model], self.budget):
                self.resident.remove(victim)
        self.resident.append(model)


# -- running -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskFailed:
    """Not a pipeline event: the batch's note that a task failed (the others go on)."""

    error: str


BatchEvent = Event | TaskFailed


@dataclass
class TaskRun:
    planned: PlannedTask
    order: int
    status: str = "pending"  # pending, running, ok, failed, skipped, interrupted
    error: str | None = None
    run_id: str | None = None
    result: dict[str, Any] | None = None
    resume: Resume | None = None
    resumed_phases: int = 0
    events: Iterator[Event] | None = None
    recorder: HistoryRecorder | None = None
    waiting: AwaitingModel | None = None
    handoff: CallHandedOff | None = None  # a call being made elsewhere (a cluster's runner)


@dataclass
class BatchSummary:
    name: str
    workflow: str
    batch_id: str
    out_dir: str
    status: str
    tasks: list[dict[str, Any]]
    loads: int
    unloads: int
    load_s: float
    wall_s: float
    policy: str
    budget_bytes: int
    predicted_loads: int
    naive_loads: int
    resumed: bool

    nodes: list[dict[str, Any]] | None = None  # on a cluster: each node's loads and calls

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "nodes" or v is not None}


class BatchRunner:
    """Runs a validated workflow through one memory manager, phase-major, journaled.

    Its scheduling loop makes every call here; :class:`ai_stack.cluster.ClusterBatchRunner`
    replaces the loop to make them on a cluster's nodes and keeps the rest (the journal, the
    files, resume).

    Built by :meth:`ai_stack.session.Session.batch_runner`, which resolves each task's models,
    the shared load options, the prompt libraries and the configuration the history keeps.
    """

    runner_type: type[RoleRunner] = RoleRunner  # what makes each task's model calls

    def __init__(
        self,
        workflow: Workflow,
        manager: MemoryManager,
        *,
        specs: dict[str, dict[Role, ModelSpec]],
        load_options: dict[ModelSpec, LoadOptions],
        prompts: Callable[[Path | None], PromptLibrary],
        snapshot: Callable[[Settings, dict[Role, ModelSpec]], dict[str, Any]],
        out_dir: Path,
        evidence: EvidenceCollector | None = None,
        store: HistoryStore | None = None,
        guard: ThermalGuard | None = None,
        on_event: Callable[[str, BatchEvent], None] = lambda task, event: None,
        should_stop: Callable[[], bool] = lambda: False,
        source: str = "batch",
        on_fault: Callable[[HistoryError], None] = lambda error: None,
        tools: Callable[[Settings], Toolbox | None] = lambda settings: None,
    ) -> None:
        self.workflow = workflow
        self.tools = tools  # a task's toolbox, where its settings turn tools on
        self.source = source
        self.on_fault = on_fault  # the journal failed mid-run: said once, the batch goes on
        self.manager = manager
        self.specs = specs
        self.load_options = load_options
        self.prompts = prompts
        self.snapshot = snapshot
        self._store = store
        self._output: OutputDir | None = None
        self.guard = guard
        self.evidence = evidence
        self.out_dir = out_dir
        self.on_event = on_event
        self.should_stop = should_stop
        self.on_note: Callable[[str], None] = lambda text: None  # a line for the user
        self.runs = [TaskRun(t, i) for i, t in enumerate(workflow.tasks)]
        self.outputs: dict[str, str] = {}
        self.tally = Tally()
        self.batch_id = ""
        self.resumed = False

    @property
    def store(self) -> HistoryStore:
        """The journal: the run history, or journal.db in the output dir when history is off."""
        if self._store is None:
            raise RuntimeError("BatchRunner.store is set before begin()")
        return self._store

    @store.setter
    def store(self, store: HistoryStore) -> None:
        self._store = store

    @property
    def output(self) -> OutputDir:
        """The output directory, opened and locked by whoever runs the batch (so a second run
        into it is refused before anything loads)."""
        if self._output is None:
            raise RuntimeError("BatchRunner.output is set before begin()")
        return self._output

    @output.setter
    def output(self, output: OutputDir) -> None:
        self._output = output

    # -- set-up ------------------------------------------------------------------------------

    def preflight(self) -> None:
        """Fail before any load if a model is missing or cannot fit any task's run."""
        smallest: dict[ModelSpec, LoadOptions] = {}
        for task in self.workflow.tasks:
            for spec in self.specs[task.id].values():
                self.manager.describe(spec)  # a missing model is an error even if unused
            loads = smallest_loads(task.settings, self.specs[task.id], self.load_options)
            for spec, options in loads.items():
                if spec not in smallest or options.num_ctx > smallest[spec].num_ctx:
                    smallest[spec] = options
        self.manager.check_all(smallest)

    def prediction(self) -> Prediction:
        """The schedule, with each model sized at the largest context its tasks' text suggests
        (templates not yet rendered count as written)."""
        contexts: dict[ModelSpec, int] = {}
        for task in self.workflow.tasks:
            specs = self.specs[task.id]
            tokens = estimate_tokens(f"{task.task}\n\n{task.context or ''}")
            probes = task.settings.evidence.probes
            most = self.evidence.most_checks(task.task, probes) if self.evidence else 3 + probes
            chosen = choose_contexts(
                task.settings,
                specs,
                self.load_options,
                dict.fromkeys(specs.values(), tokens),
                most,
            )
            for spec, choice in chosen.items():
                contexts[spec] = max(contexts.get(spec, 0), choice.num_ctx)
        sizes = {
            str(spec): self.manager.footprint(
                spec, replace(options, num_ctx=contexts.get(spec, options.num_ctx))
            ).total
            for spec, options in self.load_options.items()
        }
        homes, nodes = self._where()
        return predict(
            self.workflow,
            self.specs,
            policy=self.manager.policy,
            budget=self.manager.residency_budget,
            sizes=sizes,
            homes=homes,
            nodes=nodes,
        )

    def _where(self) -> tuple[dict[str, str] | None, dict[str, tuple[str, int]] | None]:
        """Where the models live, for :func:`predict`: here, one resident set (a cluster's
        runner names each model's node, and each node's policy and budget)."""
        return None, None

    def begin(self, *, resume: bool) -> None:
        """Open (or reopen, with ``resume``) this batch in the journal. A link planted where a
        result will be written is refused now, before any load."""
        names = [f"{t.id}.{kind}" for t in self.workflow.tasks for kind in ("md", "json")]
        self.output.refuse_links([*names, "summary.json"])
        workflow, out_dir = str(self.workflow.path), str(self.out_dir)
        previous = self.store.latest_batch(workflow, out_dir) if resume else None
        if resume and previous is None:
            raise UsageError(
                f"Nothing to resume: no earlier run of {self.workflow.path} writing to {out_dir}.",
                hint="Run it without --resume.",
            )
        if previous is not None:
            if previous["digest"] != self.workflow.digest:
                raise UsageError(
                    f"{self.workflow.path} changed since the run being resumed.",
                    hint="Run it without --resume to start over.",
                )
            self.batch_id, self.resumed = previous["id"], True
            self.store.resume_batch(self.batch_id)
            self._load_journal()
        else:
            self.batch_id = uuid.uuid4().hex[:12]
            self.store.start_batch(
                self.batch_id, workflow, self.workflow.digest, out_dir, self.workflow.name
            )

    def _load_journal(self) -> None:
        self.store.reap_orphans()
        journal = self.store.batch_runs(self.batch_id)
        for run in self.runs:
            entry = journal.get(run.planned.id)
            if entry is None:
                continue
            run.run_id = entry["id"]
            if entry["status"] == "ok" and entry["result"]:
                run.status, run.result = "ok", json.loads(entry["result"])
                self.outputs[run.planned.id] = run.result["output"]
                self._write_outputs(run)  # in case the kill came between journal and files
                continue
            done = self.store.run(entry["id"])
            run.resume = Resume(
                run_id=entry["id"],
                plans=done.plans,
                critiques=done.critiques,
                answers=done.answers,
                answer_critiques=done.answer_critiques,
                phases=[
                    PhaseMetrics.model_validate(p.model_dump(exclude={"memory_available_bytes"}))
                    for p in done.metrics.phases
                ],
            )
            run.resumed_phases = len(run.resume.phases)

    # -- the schedule ------------------------------------------------------------------------

    def run(self) -> BatchSummary:
        """Run every task; returns when all are done, or early when ``should_stop`` says so
        (checked before each model call). Whatever stops it — a second Ctrl-C, or a bug — the
        journal and summary.json are closed first."""
        started = time.perf_counter()
        prediction = self.prediction()
        try:
            interrupted = self._schedule()
        except BaseException as exc:  # a second Ctrl-C, or a bug: close the journal, then stop
            stopped = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            self._close(started, prediction, stopped, exc)
            raise
        status = (
            "interrupted"
            if interrupted
            else ("ok" if all(r.status == "ok" for r in self.runs) else "failed")
        )
        return self._close(started, prediction, status)

    def _schedule(self) -> bool:
        """The scheduling loop; True if it stopped early."""
        while True:
            self._start_ready()
            parked = [r for r in self.runs if r.waiting is not None]
            if not parked:
                return False
            resident = {str(spec) for spec in self.manager.resident}
            waiting = [
                Waiting(
                    r.planned.id,
                    r.order,
                    phase_rank(r.waiting.phase, r.waiting.round),
                    r.waiting.model,
                )
                for r in parked
                if r.waiting is not None
            ]
            model = choose_model(waiting, resident)
            # the group loads the model once, with the largest context its tasks need
            group = [r.waiting.num_ctx for r in parked if r.waiting and r.waiting.model == model]
            self.manager.reserve_context(model, max(group))
            for run in parked:
                while run.waiting is not None and run.waiting.model == model:
                    if self.should_stop():
                        return True
                    self._advance(run)

    def _close(
        self,
        started: float,
        prediction: Prediction,
        status: str,
        error: BaseException | None = None,
    ) -> BatchSummary:
        for run in self.runs:
            if run.status == "running":
                if run.recorder is not None:
                    run.recorder.abandon(error or KeyboardInterrupt())
                run.status = "interrupted"
        try:
            self.store.end_batch(self.batch_id, status)
        except HistoryError as fault:  # the results are in summary.json all the same
            self.on_fault(fault)
        summary = BatchSummary(
            name=self.workflow.name,
            workflow=str(self.workflow.path),
            batch_id=self.batch_id,
            out_dir=str(self.out_dir),
            status=status,
            tasks=[self._task_summary(r) for r in self.runs],
            loads=self.tally.loads,
            unloads=self.tally.unloads,
            load_s=round(self.tally.load_s, 4),
            wall_s=round(time.perf_counter() - started, 4),
            policy=self.manager.policy,
            budget_bytes=self.manager.budget,
            predicted_loads=prediction.loads,
            naive_loads=prediction.naive_loads,
            resumed=self.resumed,
            nodes=self._nodes(),
        )
        self._write_summary(summary)
        return summary

    def _nodes(self) -> list[dict[str, Any]] | None:
        """What each node did, for the summary (a cluster's runner; here there are none)."""
        return None

    def _start_ready(self) -> None:
        """Start tasks whose dependencies are done; skip those whose dependencies failed."""
        status = {r.planned.id: r.status for r in self.runs}
        for run in self.runs:
            if run.status != "pending":
                continue
            failed = [d for d in run.planned.depends_on if status[d] in ("failed", "skipped")]
            if failed:
                run.status, run.error = "skipped", f"dependency {failed[0]!r} did not finish"
                status[run.planned.id] = "skipped"
                continue
            if all(status[d] == "ok" for d in run.planned.depends_on):
                self._start(run)
                status[run.planned.id] = run.status

    def _start(self, run: TaskRun) -> None:
        planned = run.planned
        try:
            task = render(planned.task, self.outputs) or ""
            context = render(planned.context, self.outputs)
        except AiStackError as exc:  # a template checked at load time can still fail to render
            run.status, run.error = "failed", exc.message
            return
        settings = planned.settings
        specs = self.specs[planned.id]
        pipeline = Pipeline(
            settings,
            self.manager,
            self.prompts(settings.prompts_dir),
            specs,
            self.load_options,
            guard=self.guard,
            evidence=self.evidence,
            runner_type=self.runner_type,
            toolbox=self.tools(settings),
        )
        run.recorder = HistoryRecorder(
            self.store,
            source=self.source,
            config=self.snapshot(settings, specs),
            batch=(self.batch_id, planned.id),
            on_fault=self.on_fault,
        )
        try:
            files = self._sources(pipeline, planned.knowledge, task, context)
        except AiStackError as exc:
            run.status, run.error = "failed", exc.message
            return
        run.events = iter(pipeline.run(task, context, files=files, resume=run.resume))
        run.status = "running"
        self._advance(run)

    @staticmethod
    def _sources(
        pipeline: Pipeline, names: Sequence[str], task: str, context: str | None
    ) -> list[Attachment]:
        """The passages of the task's knowledge indexes (``kb:``) as numbered sources, as many
        as fit beside the task and its context."""
        if not names:
            return []
        spec = pipeline.specs["executor"]
        passages = retrieve(names, task, PASSAGES)
        room = pipeline.spare_tokens(task, context)
        return as_sources(passages, room, lambda text: pipeline.manager.count_tokens(spec, text))

    def _advance(self, run: TaskRun) -> None:
        """Run a task until it next waits for a model (or ends). A parked task is suspended just
        after its AwaitingModel, so resuming it makes exactly the call it was waiting for.

        A task fails on an :class:`AiStackError` (the others go on); anything else is a bug and
        stops the batch."""
        assert run.events is not None and run.recorder is not None
        run.waiting = run.handoff = None
        try:
            for event in run.events:
                if isinstance(event, AwaitingModel):
                    run.waiting = event
                    return
                if isinstance(event, CallHandedOff):
                    run.handoff = event
                    return
                if isinstance(event, RunStarted):
                    run.run_id = event.run_id
                self.tally.observe(event)
                run.recorder(event)
                self.on_event(run.planned.id, event)
                if isinstance(event, RunFinished):
                    self._finish(run, event.result)
        except AiStackError as exc:
            run.recorder.abandon(exc)
            run.status, run.error = "failed", exc.message
            self.on_event(run.planned.id, TaskFailed(exc.message))
            self._write_summary_partial()

    def _finish(self, run: TaskRun, result: RunResult) -> None:
        run.status, run.run_id = "ok", result.id
        run.result = result.model_dump(mode="json")
        self.outputs[run.planned.id] = result.output
        self._write_outputs(run)
        self._write_summary_partial()

    # -- files -------------------------------------------------------------------------------

    def _write_outputs(self, run: TaskRun) -> None:
        assert run.result is not None
        task_id = run.planned.id
        # The answer file is the answer, as asked for; every other copy is redacted.
        self.output.write(f"{task_id}.md", run.result["output"].rstrip() + "\n")
        self.output.write(
            f"{task_id}.json",
            json.dumps(redact_all(run.result), indent=2, ensure_ascii=False) + "\n",
        )

    def _task_summary(self, run: TaskRun) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": run.planned.id,
            "status": run.status,
            "run_id": run.run_id,
            "error": redact(run.error),
            "resumed_phases": run.resumed_phases,
        }
        if run.status == "ok":
            entry["output_file"] = f"{run.planned.id}.md"
            entry["result_file"] = f"{run.planned.id}.json"
        return entry

    def _write_summary_partial(self) -> None:
        partial = {
            "name": self.workflow.name,
            "batch_id": self.batch_id,
            "status": "running",
            "tasks": [self._task_summary(r) for r in self.runs],
            "loads": self.tally.loads,
            "unloads": self.tally.unloads,
            "load_s": round(self.tally.load_s, 4),
        }
        self.output.write("summary.json", json.dumps(partial, indent=2) + "\n")

    def _write_summary(self, summary: BatchSummary) -> None:
        self.output.write("summary.json", json.dumps(summary.as_dict(), indent=2) + "\n")
