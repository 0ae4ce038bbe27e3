"""``ai-stack mcp``: the local team as tools for another agent (Claude Code, Claude Desktop,
Cursor, ...), over stdio, on the official MCP SDK (2.x: ``MCPServer``).

The paid agent reasons; the local models do the grunt work. Each tool call runs in a worker
thread on one session — one memory manager, so models stay loaded between calls — one call at
a time, and takes the machine-wide residency lease like any other ai-stack process. Long calls
report progress (one notification per model call or batch phase) and can be cancelled: the
call stops at its next event and unloads what it loaded, as Ctrl-C does. Every call is recorded
in the history with the source ``mcp``. Errors reach the client as tool errors carrying the
CLI's one-line message and hint, the hint naming tool arguments or the server's config file
instead of command-line flags (:func:`for_mcp`).
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import uuid
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from ai_stack import __version__
from ai_stack.cli.common import configure_logging, error_console, reported_errors
from ai_stack.config import Settings, layer, load_settings, narrowed, raw_settings, user_dir
from ai_stack.context import typical_context
from ai_stack.errors import AiStackError, HistoryError, UsageError
from ai_stack.files import OutputDir
from ai_stack.history import HistoryStore, RunSummary, StoredRun
from ai_stack.knowledge.retrieval import retrieve
from ai_stack.profile import profile
from ai_stack.runtime import attach, cite_passages, drive, find_passages, open_recorder
from ai_stack.session import Session
from ai_stack.trust import Untrusted
from ai_stack.types import (
    Critique,
    Event,
    PhaseStarted,
    Plan,
    Review,
    RunResult,
    StopReason,
)
from ai_stack.workflow import load_workflow

T = TypeVar("T")
ReportProgress = Callable[[str], None]
Rounds = Annotated[int | None, Field(ge=0, le=20)]

INSTRUCTIONS = """\
Local models on this machine (ai-stack): an Executor answers and the team checks the answer
against what the task asks for — its code run in a sandbox on the task's examples, its stated
requirements — replacing a failing answer with fresh versions (a Planner decides what the task
asks for where its words do not say; a Critic reviews in the review modes). Use run_task for
self-contained grunt work (small functions, shell one-liners, summaries, boilerplate) and check
what comes back; plan for a reviewed plan only; batch_run for many independent tasks at once.
Calls take seconds to minutes: the models are small and run locally, one at a time."""


class PlanOutcome(BaseModel):
    """What the ``plan`` tool returns: the Planner's plan after the Critic's review."""

    task: str
    plan: Plan
    plans: list[Plan]
    critiques: list[Critique]
    rounds: int
    stop_reason: StopReason


class BatchJob(BaseModel):
    """A batch started by ``batch_run``: its id, status and, once finished, its summary."""

    job_id: str
    status: Literal["running", "ok", "failed", "interrupted"]
    out_dir: str
    summary: dict[str, Any] | None = None
    error: str | None = None


class ModelList(BaseModel):
    models: list[dict[str, Any]]


class RunList(BaseModel):
    runs: list[RunSummary]


class KnowledgeHit(BaseModel):
    """A passage of a knowledge index, as `kb search --json` gives it."""

    n: int
    index: str
    path: str
    start: int
    end: int
    text: str


class KnowledgeHits(BaseModel):
    passages: list[KnowledgeHit]


class Cancelled(KeyboardInterrupt):
    """The client cancelled the call: stop like Ctrl-C (the history says interrupted)."""


def serialised(method: Callable[..., T]) -> Callable[..., T]:
    """One call at a time on the session; a cancelled call unloads what is loaded (Ctrl-C)."""

    @functools.wraps(method)
    def wrapper(self: Service, *args: Any, **kwargs: Any) -> T:
        with self.lock:
            try:
                return method(self, *args, **kwargs)
            except KeyboardInterrupt:
                if self._session is not None:
                    for _ in self._session.manager.release_all(
                        "the call was cancelled", "shutdown"
                    ):
                        pass
                raise

    return wrapper


# A client's arguments are not the user's own settings (docs/mcp.md)
CLIENT = Untrusted("the call's arguments", "an MCP client", "Set it in the server's own config.")


class Service:
    """What the tools do, synchronously, against one session. Calls are serialised: one memory
    manager cannot serve two pipelines at once, and the models stay loaded between calls."""

    def __init__(self, settings: Settings, *, root: Path) -> None:
        self.settings = settings
        self.root = root  # files a client names must lie here (or in files.allow_paths)
        self.lock = threading.Lock()
        self._session: Session | None = None
        self.jobs: dict[str, BatchJob] = {}

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = Session.open(self.settings)
        return self._session

    def close(self) -> None:
        """Unload everything, once a call still winding down (cancelled) has finished."""
        with self.lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def settings_for(self, **overrides: Any) -> Settings:
        """The server's settings with a call's options on top (None: left as configured); a
        client's options may only narrow them, as a workflow's may (trust.py)."""
        try:
            data = narrowed(self.settings.model_dump(mode="json"), overrides, CLIENT)
        except AiStackError as error:
            raise ToolError(error.message) from None
        return Settings.model_validate(data)

    @serialised
    def run_task(
        self,
        settings: Settings,
        task: str,
        context: str | None,
        files: list[str],
        progress: ReportProgress,
        cancelled: threading.Event,
        knowledge: list[str] | None = None,
    ) -> RunResult:
        policy = settings.file_policy(self.root)
        attached = attach(
            policy, [Path(f) if Path(f).is_absolute() else self.root / f for f in files]
        )
        passages = find_passages(knowledge or [], task)
        session = self.session
        pipeline = session.pipeline(settings)
        pipeline.preflight()
        attached += cite_passages(pipeline, passages, task, attached)
        recorder = open_recorder(session, pipeline, "mcp", lambda error: None)
        events = cast(Generator[Event, None, None], pipeline.run(task, context, files=attached))
        try:
            return drive(_watched(events, progress, cancelled), recorder)
        finally:
            if recorder is not None:
                recorder.store.close()

    @serialised
    def plan(
        self,
        settings: Settings,
        task: str,
        context: str | None,
        progress: ReportProgress,
        cancelled: threading.Event,
    ) -> PlanOutcome:
        pipeline = self.session.pipeline(settings)
        pipeline.preflight()
        recorder = open_recorder(self.session, pipeline, "mcp", lambda error: None)
        try:
            outcome = yield_from(
                pipeline.plan_only(task, context), progress, cancelled, recorder or _ignore
            )
            if recorder is not None:
                recorder.finish_without_answer()
        except BaseException as exc:
            if recorder is not None:
                recorder.abandon(exc)
            raise
        finally:
            if recorder is not None:
                recorder.store.close()
        return PlanOutcome(
            task=task.strip(),
            plan=outcome.subject,
            plans=outcome.versions,
            critiques=outcome.critiques,
            rounds=outcome.rounds,
            stop_reason=outcome.stop_reason,
        )

    @serialised
    def batch(
        self,
        job: BatchJob,
        workflow_file: Path,
        overrides: dict[str, Any],
        progress: ReportProgress,
        cancelled: threading.Event,
    ) -> BatchJob:
        from ai_stack.cli.batch import open_journal

        base, _ = raw_settings(None)
        base = layer(base, self.settings.model_dump(mode="json"))
        narrowed(base, overrides, CLIENT)  # the workflow's defaults are narrowed in load_workflow
        workflow = load_workflow(workflow_file, base, overrides)
        runner = self.session.batch_runner(workflow, Path(job.out_dir), source="mcp")
        runner.preflight()
        settings = workflow.tasks[0].settings

        def on_event(task_id: str, event: object) -> None:
            if isinstance(event, PhaseStarted):
                progress(f"{task_id}: {event.role} · {event.phase} · {event.model}")

        with OutputDir.open(Path(job.out_dir)) as output:
            runner.output = output
            runner.store = open_journal(settings, output, lambda error: None)
            runner.begin(resume=False)
            runner.on_event = on_event
            runner.should_stop = cancelled.is_set
            summary = runner.run()
        job.summary = summary.as_dict()
        job.status = (
            "ok"
            if summary.status == "ok"
            else ("interrupted" if summary.status == "interrupted" else "failed")
        )
        return job

    def list_models(self) -> ModelList:
        rows, _ = self.session.model_rows()
        return ModelList(models=rows)

    def system_profile(self) -> dict[str, Any]:
        manager = self.session.manager
        executor = self.settings.executor
        return profile(
            manager,
            ollama=manager.backend("ollama"),
            embedded=manager.backend("embedded"),
            servers={name: manager.backend(name) for name in self.session.servers},
            num_ctx=typical_context(executor.num_ctx, executor.fixed_ctx),
        )

    def history(self) -> HistoryStore:
        if not self.settings.history.enabled:
            raise UsageError("The history is off (history.enabled = false).")
        return HistoryStore.open(self.settings.resolved_history_path())


def _watched(
    events: Generator[Event, None, T], progress: ReportProgress, cancelled: threading.Event
) -> Generator[Event, None, T]:
    """Pass events on, reporting each model call, and stop at the next one once cancelled;
    returns what ``events`` returned."""
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        if cancelled.is_set():
            events.close()
            raise Cancelled()
        if isinstance(event, PhaseStarted):
            round_ = f" (round {event.round})" if event.round else ""
            progress(f"{event.role} · {event.phase}{round_} · {event.model}")
        yield event


def _ignore(event: Event) -> None:
    pass


def yield_from(
    events: Generator[Event, None, T],
    progress: ReportProgress,
    cancelled: threading.Event,
    on_event: Callable[[Event], None] = _ignore,
) -> T:
    """Drive a generator of events to its return value, watched like a run, each event handed
    to ``on_event`` (the history's recorder)."""
    watched = _watched(events, progress, cancelled)
    while True:
        try:
            on_event(next(watched))
        except StopIteration as stop:
            return stop.value


class ToolCalls:
    """One method per MCP tool, over a :class:`Service`; :func:`build_server` registers each."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def _in_worker(
        self, ctx: Context, work: Callable[[ReportProgress, threading.Event], T]
    ) -> T:
        """Run ``work`` in a thread; its progress becomes MCP progress notifications, and a
        cancelled call tells it to stop (it unloads and returns on its own)."""
        cancelled = threading.Event()
        count = 0

        def progress(message: str) -> None:
            nonlocal count
            count += 1
            with contextlib.suppress(Exception):  # the client went away: the work goes on
                anyio.from_thread.run(ctx.report_progress, count, None, message)

        try:
            return await anyio.to_thread.run_sync(
                lambda: work(progress, cancelled), abandon_on_cancel=True
            )
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        except AiStackError as error:
            raise tool_error(error) from None

    async def run_task(
        self,
        task: str,
        ctx: Context,
        context: str | None = None,
        files: list[str] | None = None,
        review: Review | None = None,
        direct: bool = False,
        max_rounds: Rounds = None,
        planner: str | None = None,
        critic: str | None = None,
        executor: str | None = None,
        kb: list[str] | None = None,
    ) -> RunResult:
        """Run a task through the local team and return the result (the `ai-stack --json`
        object: `output` is the answer; `answers` holds every version with the checks run on
        it). `files`: paths (relative to the server's directory) given as context. `kb`: names
        of knowledge indexes (`ai-stack kb list`) whose best passages become numbered sources
        the answer cites; `sources` and `citations` in the result. `review`:
        how the team works (team: the default, the answer checked against what the task asks
        for — its code run on the task's examples, its stated requirements, a result against a
        program — and a failing answer written afresh; answer: checked and fixed round by round
        with the Critic's edge cases; plan; both; none); `direct`: one call, no review.
        `max_rounds`: the extra work after the first answer, in any mode (plan review rounds,
        fixes, or the team's new versions of each kind; 0: the answer is checked, never
        replaced). `unmet` lists the task's own checks the answer still fails. Model specs
        such as `ollama:qwen2.5:14b`."""
        settings = self.service.settings_for(
            review=review,
            direct=direct or None,
            max_rounds=max_rounds,
            planner={"model": planner},
            critic={"model": critic},
            executor={"model": executor},
        )
        return await self._in_worker(
            ctx,
            lambda p, c: self.service.run_task(settings, task, context, files or [], p, c, kb),
        )

    async def search_knowledge(
        self, index: str, query: str, limit: Annotated[int, Field(ge=1, le=50)] = 5
    ) -> KnowledgeHits:
        """The passages of a knowledge index (`ai-stack kb add NAME PATH...`) that match
        `query` best (BM25), each with its file and lines: no model is called."""
        try:
            passages = retrieve([index], query, limit)
        except AiStackError as error:
            raise tool_error(error) from None
        return KnowledgeHits(
            passages=[
                KnowledgeHit(n=n, index=p.index, path=p.path, start=p.start, end=p.end, text=p.text)
                for n, p in enumerate(passages, start=1)
            ]
        )

    async def plan(
        self,
        task: str,
        ctx: Context,
        context: str | None = None,
        max_rounds: Rounds = None,
        planner: str | None = None,
        critic: str | None = None,
    ) -> PlanOutcome:
        """A plan for a task: the Planner drafts it, the Critic reviews it and the Planner
        revises it (no answer is written)."""
        settings = self.service.settings_for(
            review="plan",
            max_rounds=max_rounds,
            planner={"model": planner},
            critic={"model": critic},
        )
        return await self._in_worker(
            ctx, lambda p, c: self.service.plan(settings, task, context, p, c)
        )

    async def batch_run(
        self,
        ctx: Context,
        workflow: str | None = None,
        tasks: list[str] | None = None,
        wait: bool = True,
        review: Review | None = None,
        direct: bool = False,
    ) -> BatchJob:
        """Run many tasks at once, each model loaded once per phase: a workflow file (path) or
        a list of task texts. With `wait` (default) the call returns when the batch ends, with
        progress meanwhile; otherwise it returns the job id at once: ask `batch_status`."""
        job_id = uuid.uuid4().hex[:12]
        job_dir = user_dir() / "mcp-jobs" / job_id
        if workflow:
            path = Path(workflow) if Path(workflow).is_absolute() else self.service.root / workflow
            try:  # a workflow file is read like any file a client names
                self.service.settings.file_policy(self.service.root).check(path)
            except AiStackError as error:
                raise tool_error(error) from None
        elif tasks:
            path = job_dir / "workflow.yaml"
            job_dir.mkdir(parents=True, exist_ok=True)
            import yaml

            path.write_text(
                yaml.safe_dump(
                    {
                        "name": f"mcp-{job_id}",
                        "tasks": [{"id": f"t{i}", "task": text} for i, text in enumerate(tasks, 1)],
                    }
                )
            )
        else:
            raise ToolError("Give a workflow file or a list of tasks.")
        job = BatchJob(job_id=job_id, status="running", out_dir=str(job_dir / "results"))
        self.service.jobs[job_id] = job
        overrides = {"review": review, "direct": True if direct else None}

        def work(progress: ReportProgress, cancelled: threading.Event) -> BatchJob:
            try:
                return self.service.batch(job, path, overrides, progress, cancelled)
            except AiStackError as error:
                job.status, job.error = "failed", error.message
                raise
            except KeyboardInterrupt:
                job.status = "interrupted"
                raise

        if wait:
            return await self._in_worker(ctx, work)

        def background() -> None:
            with contextlib.suppress(AiStackError, KeyboardInterrupt):
                work(lambda message: None, threading.Event())

        threading.Thread(target=background, name=f"batch-{job_id}", daemon=True).start()
        return job

    async def batch_status(self, job_id: str) -> BatchJob:
        """The status of a batch started with `batch_run` (and its summary once it ended)."""
        job = self.service.jobs.get(job_id)
        if job is None:
            raise ToolError(f"No batch job {job_id!r} in this server.")
        return job

    async def list_models(self, ctx: Context) -> ModelList:
        """The models installed on each backend this machine has (Ollama, embedded GGUF)."""
        return await self._in_worker(ctx, lambda p, c: self.service.list_models())

    async def system_profile(self, ctx: Context) -> dict[str, Any]:
        """This machine: memory, GPU, backends, the memory budget, recommended models."""
        return await self._in_worker(ctx, lambda p, c: self.service.system_profile())

    async def history_list(self, limit: Annotated[int, Field(ge=1, le=500)] = 20) -> RunList:
        """Recent runs, newest first (every source: the CLI, batches, this server)."""
        with _open(self.service) as store:
            return RunList(runs=store.list_runs(limit))

    async def history_show(self, run_id: str) -> StoredRun:
        """One whole run from the history: plans, critiques, answers, checks, metrics."""
        with _open(self.service) as store:
            try:
                return store.run(store.resolve(run_id))
            except AiStackError as error:
                raise tool_error(error) from None


# What a hint written for the command line means to an MCP client: its tool's arguments, or
# the server's config file (an MCP client cannot widen what the server allows).
_FOR_MCP = {
    "--allow-path DIR": "files.allow_paths in the server's config file",
    "--allow-sensitive": "files.allow_sensitive in the server's config file:",
    "--truncate-context": "truncate_context = true in the server's config file",
    "--wait-timeout SECONDS": "memory.wait_timeout_s in the server's config file",
    "--no-history": "history.enabled = false in the server's config file",
    "--max-rounds": "the max_rounds argument",
    "--executor": "the executor argument",
    "--planner": "the planner argument",
    "--critic": "the critic argument",
    "--review": "the review argument",
    "--direct": "the direct argument",
    "--exec": "evidence.exec = true in the server's config file",
}


def for_mcp(hint: str) -> str:
    """A hint that names command-line flags, said in an MCP client's terms.

    >>> for_mcp("Allow its directory with --allow-path DIR (or files.allow_paths).")
    "Allow its directory with files.allow_paths in the server's config file (or \
files.allow_paths)."
    >>> for_mcp("Use another model: --executor ollama:qwen2.5:7b")
    'Use another model: the executor argument ollama:qwen2.5:7b'
    """
    flags = sorted(_FOR_MCP, key=len, reverse=True)  # the longest first: --exec in --executor
    pattern = "|".join(re.escape(flag) + r"(?![\w-])" for flag in flags)
    return re.sub(pattern, lambda match: _FOR_MCP[match.group(0)], hint)


def tool_error(error: AiStackError) -> ToolError:
    """An error as the client sees it: the message and the hint, in the client's terms."""
    hint = f" {for_mcp(error.hint)}" if error.hint else ""
    return ToolError(f"{error.message}{hint}")


def build_server(service: Service) -> MCPServer:
    """The MCP server and its tools, over ``service``."""
    server = MCPServer("ai-stack", instructions=INSTRUCTIONS, version=__version__)
    calls = ToolCalls(service)
    for tool in (
        calls.run_task,
        calls.plan,
        calls.batch_run,
        calls.batch_status,
        calls.list_models,
        calls.system_profile,
        calls.history_list,
        calls.history_show,
        calls.search_knowledge,
    ):
        server.tool()(tool)
    return server


def _open(service: Service) -> HistoryStore:
    try:
        return service.history()
    except (HistoryError, UsageError) as error:
        raise tool_error(error) from None


def serve(config_file: Path | None, debug: bool) -> None:
    """Serve the local team over stdio until the client disconnects."""
    console = error_console()
    configure_logging(debug)
    with reported_errors(console, debug):
        service = Service(load_settings(config_file), root=Path.cwd())
        try:
            build_server(service).run("stdio")
        finally:
            service.close()


__all__ = ["Service", "build_server", "serve"]
