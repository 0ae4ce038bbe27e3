"""``ai-stack batch WORKFLOW``: many tasks, scheduled phase-major, resumable."""

from __future__ import annotations

import functools
import json
import signal
import sys
from collections.abc import Callable, Collection
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from ai_stack.batch import BatchEvent, BatchRunner, BatchSummary, Prediction, TaskFailed
from ai_stack.cli.common import (
    EXIT_INTERRUPTED,
    RunOptions,
    configure_logging,
    error_console,
    history_warning,
    reported_errors,
    run_options,
)
from ai_stack.config import Settings, raw_settings
from ai_stack.display import named
from ai_stack.errors import HistoryError
from ai_stack.files import OutputDir, unresolved
from ai_stack.history import HistoryStore
from ai_stack.modes import MODES
from ai_stack.session import Session
from ai_stack.terminal import escape
from ai_stack.types import (
    CallRetried,
    ModelLoaded,
    ModelUnloaded,
    PhaseFinished,
    PhaseStarted,
    Reasked,
    RunFinished,
    ThermalNote,
    ThermalPause,
    ThermalResumed,
)
from ai_stack.workflow import Workflow, load_workflow


class BatchDisplay:
    """A live table of tasks by phases, with loads and problems printed above it and the call
    being made below it.

    The columns are the phases the batch's mode makes (the mode is batch-wide), in its order;
    ``finished`` are the tasks an earlier run of the batch finished (``--resume``)."""

    def __init__(
        self,
        console: Console,
        workflow: Workflow,
        *,
        quiet: bool,
        finished: Collection[str] = (),
    ) -> None:
        self.console = console
        self.quiet = quiet
        settings = workflow.tasks[0].settings
        calls = MODES[settings.mode].active(settings)
        self.phases = tuple(dict.fromkeys(call.phase for call in calls))
        self.cells: dict[str, dict[str, str]] = {
            t.id: dict.fromkeys(self.phases, "")
            | {"status": "[green]done[/]" if t.id in finished else "waiting"}
            for t in workflow.tasks
        }
        self.now: str | None = None  # the call being made: task, phase, model
        self.live = Live(self._table(), console=console, transient=False, auto_refresh=False)

    def __enter__(self) -> BatchDisplay:
        if not self.quiet:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.now = None
        if not self.quiet:
            self.live.update(self._table(), refresh=True)
            self.live.stop()
            if not self.console.is_terminal:  # there, rich leaves the table's last line open
                self.console.line()

    def print(self, text: str) -> None:
        if not self.quiet:
            self.live.console.print(text, soft_wrap=False)

    def __call__(self, task_id: str, event: BatchEvent) -> None:
        row = self.cells[task_id]
        if isinstance(event, PhaseStarted):
            mark = f"{event.round}…" if event.round else "…"
            if event.phase in row:
                row[event.phase] = _replace_last(row[event.phase], mark, event.round)
            row["status"] = "[cyan]running[/]"
            self.now = f"{escape(task_id)}: {event.phase} · [cyan]{named(event.model)}[/]"
        elif isinstance(event, PhaseFinished):
            m = event.metrics
            if m.phase in row:
                done = f"{m.round}✓" if m.round else "✓"
                row[m.phase] = _replace_last(row[m.phase], done, m.round)
        elif isinstance(event, RunFinished):
            row["status"] = "[green]done[/]"
        elif isinstance(event, TaskFailed):
            row["status"] = "[red]failed[/]"
            self.print(f"[red]{task_id} failed:[/] {escape(event.error)}")
        elif isinstance(event, ModelLoaded):
            self.print(f"[dim]Loaded {named(event.model)} in {event.seconds:.2f} s[/]")
        elif isinstance(event, ModelUnloaded):
            self.print(f"[dim]Unloaded {named(event.model)} ({escape(event.reason)})[/]")
        elif isinstance(event, Reasked):
            self.print(f"[yellow]{task_id}: invalid {event.role} reply, asking again[/]")
        elif isinstance(event, CallRetried):
            self.print(f"[yellow]{task_id}: {escape(event.reason)}; asking again[/]")
        elif isinstance(event, ThermalNote | ThermalPause):
            if not isinstance(event, ThermalPause) or event.waited_s == 0:
                self.print(f"[yellow]Thermal: {escape(event.reason)}[/]")
        elif isinstance(event, ThermalResumed):
            self.print(f"[dim]Resumed after {event.paused_s:.0f} s: {escape(event.reason)}[/]")
        else:
            return
        if not self.quiet:
            self.live.update(self._table(), refresh=True)

    def _table(self) -> Table:
        # 80 columns hold the seven phases of the longest mode: no borders, one space between
        # columns, phase names whole; a task id longer than the room left folds, never cut.
        table = Table(
            box=box.SIMPLE_HEAD,
            padding=0,
            show_edge=False,
            caption=self.now,
            caption_justify="left",
        )
        table.add_column("task", overflow="fold")
        for phase in (*self.phases, "status"):
            table.add_column(phase, no_wrap=True, min_width=len(phase))
        for task_id, row in self.cells.items():
            table.add_row(escape(task_id), *(row[p] for p in self.phases), row["status"])
        return table


def _replace_last(cell: str, mark: str, round_: int) -> str:
    """Cells hold one mark per round: update this round's, or append it."""
    marks = cell.split()
    prefix = str(round_) if round_ else ""
    if marks and marks[-1].startswith(prefix) and marks[-1].endswith("…"):
        marks[-1] = mark
    else:
        marks.append(mark)
    return " ".join(marks)


def show_prediction(console: Console, prediction: Prediction, policy: str) -> None:
    homes = prediction.homes
    table = Table("#", "phase", "model", *(("node",) if homes else ()), "tasks")
    for number, (label, model, tasks) in enumerate(prediction.groups, 1):
        where = (escape(homes[model]),) if homes else ()
        table.add_row(str(number), label, named(model), *where, ", ".join(tasks))
    console.print(table)
    bound = "" if prediction.exact else "at most "
    if homes:
        nodes = Table("node", "models", "predicted loads")
        for node, loads in prediction.node_loads.items():
            models = [escape(m) for m, home in homes.items() if home == node]
            nodes.add_row(escape(node), ", ".join(models) or "(spare)", f"{bound}{loads}")
        console.print(nodes)
    console.print(
        f"Model loads ({policy}): {bound}{prediction.loads} phase-major, against "
        f"{bound}{prediction.naive_loads} in the naive task-by-task order."
    )
    if not prediction.exact:
        console.print("[dim]Reviews that end early (approval) need fewer calls and loads.[/]")


def show_summary(console: Console, summary: BatchSummary) -> None:
    console.print()
    table = Table("task", "status", "output", "note")
    for task in summary.tasks:
        style = {"ok": "green", "failed": "red", "skipped": "yellow"}.get(task["status"], "")
        note = task["error"] or (
            f"resumed after {task['resumed_phases']} phase(s)" if task["resumed_phases"] else ""
        )
        table.add_row(
            task["id"], f"[{style}]{task['status']}[/]", task.get("output_file") or "", escape(note)
        )
    console.print(table)
    console.print(
        f"{summary.loads} load(s) (predicted {summary.predicted_loads}; naive order "
        f"{summary.naive_loads}), {summary.unloads} unload(s), {summary.load_s:.1f} s loading, "
        f"{summary.wall_s:.1f} s in all. Results in {summary.out_dir}"
    )


class StopFlag:
    """First Ctrl-C: finish the current model call, then stop. Second: stop at once."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> StopFlag:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.console.print(
            "\n[yellow]Stopping after the current model call (Ctrl-C again to stop at once).[/]"
        )

    def __call__(self) -> bool:
        return self.requested


@click.command("batch")
@click.argument("workflow_file", metavar="WORKFLOW", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Output directory.")
@click.option("--resume", is_flag=True, help="Continue the last run of this workflow.")
@click.option("--dry-run", is_flag=True, help="Validate and print the schedule; load nothing.")
@click.option(
    "--cluster",
    metavar="ADDRESS",
    help="Run on a Ray cluster (its address, or auto), each node keeping its own models "
    "resident (docs/cluster.md; needs the cluster extra).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary (or schedule) as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output on stderr.")
@run_options
def batch_command(
    workflow_file: Path,
    out: Path | None,
    resume: bool,
    dry_run: bool,
    cluster: str | None,
    as_json: bool,
    quiet: bool,
    options: RunOptions,
) -> None:
    """Run every task of a workflow file (YAML or JSON), loading each model once per phase.

    Results go to <workflow>-results/ beside the file (or --out): ID.md, ID.json, summary.json.
    """
    console = error_console()
    configure_logging(options.debug)
    with reported_errors(console, options.debug):
        base, _ = raw_settings(options.config_file)
        workflow = load_workflow(workflow_file, base, options.overrides())
        settings = workflow.tasks[0].settings  # batch-wide options are the same in every task
        out_dir = unresolved(out or workflow.output_dir)
        with ExitStack() as stack:
            # made and locked before anything loads: a file in its place, a link or another
            # run writing there is said now, not after every model call
            output = None if dry_run else stack.enter_context(OutputDir.open(out_dir))
            session, runner, left_out = _wire(stack, settings, workflow, out_dir, cluster)
            remote = session.remote_note(*(task.settings for task in workflow.tasks))
            if remote:  # said even when quiet: it is where the prompts go
                console.print(f"[yellow]{escape(remote)}[/]")
            if not quiet:
                console.print(f"[dim]Backend: {escape(session.backend_note)}[/]")
            runner.preflight()
            if not quiet:
                for line in left_out():
                    console.print(f"[yellow]Left out: {escape(line)}[/]")
            prediction = runner.prediction()
            if output is None:  # --dry-run: nothing is written
                policy = session.manager.policy
                if as_json:
                    click.echo(json.dumps(_schedule_json(workflow, prediction, policy, left_out())))
                else:
                    show_prediction(Console(), prediction, policy)
                return
            runner.output = output
            runner.store = open_journal(settings, output, history_warning(console))
            runner.on_fault = history_warning(console)
            runner.begin(resume=resume)
            finished = [run.planned.id for run in runner.runs if run.status == "ok"]
            view = BatchDisplay(console, workflow, quiet=quiet, finished=finished)
            with StopFlag(console) as stop, view:
                runner.on_event, runner.should_stop = view, stop
                runner.on_note = lambda text: view.print(f"[yellow]{escape(text)}[/]")
                try:
                    summary = runner.run()
                except KeyboardInterrupt:  # the second Ctrl-C: the journal is already closed
                    summary = None
        if summary is None or summary.status == "interrupted":
            again = f"ai-stack batch {workflow_file} --resume" + (f" --out {out}" if out else "")
            console.print(f"[yellow]Interrupted.[/] Finished phases are kept. Resume with: {again}")
            sys.exit(EXIT_INTERRUPTED)
        if as_json:
            click.echo(json.dumps(summary.as_dict(), ensure_ascii=False))
        elif not quiet:
            show_summary(console, summary)
        if summary.status != "ok":
            sys.exit(1)


def _wire(
    stack: ExitStack, settings: Settings, workflow: Workflow, out_dir: Path, address: str | None
) -> tuple[Session, BatchRunner, Callable[[], list[str]]]:
    """The session and runner, here or on the cluster at ``address`` (closed by ``stack``,
    which then has each node unload what it loaded), and the nodes left out."""
    if address is None:
        session = stack.enter_context(Session.open(settings))
        return session, session.batch_runner(workflow, out_dir), list
    from ai_stack.cluster import Cluster, ClusterBatchRunner

    joined = Cluster.connect(address, settings.cluster)
    stack.callback(joined.close, settings.cluster.release_timeout_s)
    session = stack.enter_context(joined.session(settings))
    runner = session.batch_runner(
        workflow, out_dir, runner=functools.partial(ClusterBatchRunner, cluster=joined)
    )
    return session, runner, lambda: list(joined.left_out)


def open_journal(
    settings: Settings, output: OutputDir, warn: Callable[[HistoryError], None]
) -> HistoryStore:
    """The batch's journal: the run history, or journal.db in the output directory when the
    history is off — or when it cannot be opened (said once; the batch still resumes from it)."""
    if settings.history.enabled:
        try:
            return HistoryStore.open(settings.resolved_history_path())
        except HistoryError as error:
            warn(error)
    output.refuse_links(["journal.db"])
    return HistoryStore.open(output.path / "journal.db")


def _schedule_json(
    workflow: Workflow, prediction: Prediction, policy: str, left_out: list[str]
) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "name": workflow.name,
        "policy": policy,
        "groups": [
            {"phase": label, "model": model, "tasks": tasks}
            | ({"node": prediction.homes[model]} if prediction.homes else {})
            for label, model, tasks in prediction.groups
        ],
        "predicted_loads": prediction.loads,
        "naive_loads": prediction.naive_loads,
        "exact": prediction.exact,
    }
    if prediction.homes:
        schedule["nodes"] = {
            node: {
                "models": [m for m, home in prediction.homes.items() if home == node],
                "predicted_loads": loads,
            }
            for node, loads in prediction.node_loads.items()
        }
        schedule["left_out"] = left_out
    return schedule
