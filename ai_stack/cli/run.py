"""``ai-stack [run] TASK``: one task, or a REPL with --interactive."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click
from rich.console import Console
from rich.markup import escape

from ai_stack.cli.common import (
    RunOptions,
    configure_logging,
    error_console,
    history_warning,
    read_stdin,
    reported_errors,
    run_options,
)
from ai_stack.controller import Pipeline
from ai_stack.display import Display
from ai_stack.errors import HistoryError, UsageError
from ai_stack.history import HistoryRecorder, HistoryStore
from ai_stack.sandbox import SandboxReport
from ai_stack.session import Session
from ai_stack.types import RunFinished, RunResult


def execute(
    pipeline: Pipeline, task: str, display: Display, recorder: HistoryRecorder | None = None
) -> RunResult:
    """Run one task to its result, rendering every event and recording it as it arrives."""
    result: RunResult | None = None
    try:
        for event in pipeline.run(task):
            if recorder is not None:
                recorder(event)
            display.handle(event)
            if isinstance(event, RunFinished):
                result = event.result
    except BaseException as exc:
        if recorder is not None:
            recorder.abandon(exc)
        raise
    finally:
        display.close()
    assert result is not None, "the pipeline ended without a result"
    return result


def say_how_code_runs(console: Console, session: Session) -> None:
    """Once per process: when answers are reviewed but their code cannot run here."""
    if session.settings.mode in ("answer", "both"):
        for note in SandboxReport.of(session.evidence().sandbox).notes:
            console.print(f"[yellow]{escape(note)}[/]")


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


@click.command("run")
@click.argument("task", nargs=-1)
@click.option("-i", "--interactive", is_flag=True, help="Read tasks line by line (a REPL).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output on stderr.")
@click.option("--no-history", is_flag=True, help="Do not record this run in the history.")
@run_options
def run_command(
    task: tuple[str, ...],
    interactive: bool,
    as_json: bool,
    quiet: bool,
    no_history: bool,
    options: RunOptions,
) -> None:
    """Run TASK through Planner → Critic → Executor (the default command).

    TASK may be several words; "-" reads it from stdin.
    """
    console = error_console()
    configure_logging(options.debug)
    with reported_errors(console, options.debug):
        settings = options.settings()
        if no_history:
            settings.history.enabled = False
        text = " ".join(task).strip()
        if interactive:
            if text:
                raise UsageError("Give either a task or --interactive, not both.")
        else:
            if text == "-":
                text = read_stdin(console).strip()
            if not text:
                raise UsageError(
                    "The task is empty.",
                    hint='Usage: ai-stack "TASK"  (or --interactive; see --help)',
                )
        with Session.open(settings) as session:
            if not quiet:
                console.print(f"[dim]Backend: {escape(session.backend_note)}[/]")
                say_how_code_runs(console, session)
            pipeline = session.pipeline()
            pipeline.preflight()
            source = "interactive" if interactive else "oneshot"
            recorder = open_recorder(session, pipeline, source, history_warning(console))
            try:
                if interactive:
                    from ai_stack.cli.repl import Repl

                    repl = Repl(pipeline, console, as_json=as_json, quiet=quiet, recorder=recorder)
                    sys.exit(repl.loop())
                display = Display(console, None if as_json else sys.stdout, quiet=quiet)
                result = execute(pipeline, text, display, recorder)
            finally:
                if recorder is not None:
                    recorder.store.close()
            if as_json:
                click.echo(json.dumps(result.model_dump(mode="json"), ensure_ascii=False))
