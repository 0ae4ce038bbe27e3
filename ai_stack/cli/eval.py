"""``ai-stack eval SUITE``: every task in each mode side by side, checked, summed up."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ai_stack.batch import BatchEvent, TaskFailed
from ai_stack.cli.batch import StopFlag, open_journal
from ai_stack.cli.common import (
    EXIT_INTERRUPTED,
    RunOptions,
    configure_logging,
    counted_progress,
    error_console,
    history_warning,
    reported_errors,
    run_options,
)
from ai_stack.errors import UsageError
from ai_stack.evals import MODES, EvalReport, load_suite
from ai_stack.evals.runner import mode_settings
from ai_stack.files import OutputDir, unresolved
from ai_stack.sandbox import SandboxReport
from ai_stack.session import Session
from ai_stack.types import Mode, PhaseStarted, RunFinished


def parse_modes(text: str) -> list[Mode]:
    """``direct,team`` → the modes, in the order given, each once."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise UsageError(
            f"Unknown mode {unknown[0]!r}." if unknown else "No modes given.",
            hint=f"Modes: {', '.join(MODES)} (e.g. --modes direct,team).",
        )
    return cast(list[Mode], list(dict.fromkeys(modes)))


class EvalDisplay:
    """A progress bar over all runs, with each verdict printed as it comes."""

    def __init__(self, console: Console, total: int, *, quiet: bool) -> None:
        self.quiet = quiet
        self.progress = counted_progress(console)
        self.bar = self.progress.add_task("eval", total=total)
        self.verdicts: dict[str, bool] = {}

    def __enter__(self) -> EvalDisplay:
        if not self.quiet:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, run_id: str, event: BatchEvent, passed: bool | None = None) -> None:
        if isinstance(event, PhaseStarted):
            self.progress.update(self.bar, description=f"{event.phase} · {run_id}")
        elif isinstance(event, RunFinished | TaskFailed):
            self.progress.advance(self.bar)

    def verdict(self, run_id: str, passed: bool, detail: str) -> None:
        if not self.quiet:
            mark = "[green]pass[/]" if passed else "[red]fail[/]"
            self.progress.console.print(f"{mark} {escape(run_id)} [dim]{escape(detail[:100])}[/]")


def show_report(out: Console, report: EvalReport) -> None:
    table = Table(
        "mode",
        "passed",
        "rate [95% CI]",
        "time",
        "x direct",
        "tokens out",
        "calls",
        "loads",
        title=f"{report.suite}: {len(report.outcomes) // max(len(report.modes), 1)} tasks",
        title_justify="left",
    )
    for s in report.summaries:
        relative = f"{s.relative_time:.2f}" if s.relative_time is not None else ""
        table.add_row(
            s.mode,
            f"{s.passed}/{s.total}",
            f"{s.rate:.0%} [{s.ci_low:.0%}-{s.ci_high:.0%}]",
            f"{s.seconds:.0f} s",
            relative,
            f"{s.output_tokens:,}",
            str(s.calls),
            str(s.loads),
        )
    out.print(table)
    out.print(f"[dim]Models: {escape(', '.join(f'{r} {m}' for r, m in report.models.items()))}.")
    out.print(f"[dim]Answers, checks and report.json in {escape(report.out_dir)}[/]")


@click.command("eval")
@click.argument("suite_file", metavar="SUITE", type=click.Path(path_type=Path))
@click.option(
    "--modes",
    default="direct,team",
    show_default=True,
    help=f"Modes to compare, comma-separated: {', '.join(MODES)}.",
)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Output directory.")
@click.option("--resume", is_flag=True, help="Continue the last eval of this suite.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output on stderr.")
@run_options
def eval_command(
    suite_file: Path,
    modes: str,
    out: Path | None,
    resume: bool,
    as_json: bool,
    quiet: bool,
    options: RunOptions,
) -> None:
    """Run every task of SUITE in each mode and check the answers (docs/eval.md).

    SUITE is YAML (tasks with checkers) or HumanEval-style JSON lines. The table shows, per
    mode, the tasks passed with a 95% interval, the time the runs took (relative to direct),
    the tokens generated, the model calls and the loads.
    """
    console = error_console()
    configure_logging(options.debug)
    with reported_errors(console, options.debug):
        chosen = parse_modes(modes)
        settings = options.settings()
        suite = load_suite(suite_file, settings.limits)
        out_dir = unresolved(out or suite_file.parent / f"{suite_file.stem}-eval")
        # made and locked before anything loads, like a batch's (docs/workflows.md#results)
        with OutputDir.open(out_dir) as output, Session.open(settings) as session:
            sandbox = session.evidence().sandbox
            if not sandbox.can_run:
                raise UsageError(
                    "ai-stack eval runs the answers' code to check them, and this machine has "
                    "no isolating sandbox (bubblewrap on Linux, sandbox-exec on macOS).",
                    hint="Install bubblewrap, or pass --exec to run answer code unisolated.",
                )
            remote = session.remote_note(*(mode_settings(settings, mode) for mode in chosen))
            if remote:  # said even when quiet: it is where the prompts go
                console.print(f"[yellow]{escape(remote)}[/]")
            if not quiet:
                console.print(f"[dim]Backend: {escape(session.backend_note)}[/]")
                for note in SandboxReport.of(sandbox).notes:
                    console.print(f"[yellow]{escape(note)}[/]")
            evaluation = session.eval_run(suite, chosen, out_dir)
            runner = evaluation.runner
            runner.output = output
            runner.preflight()
            runner.store = open_journal(settings, output, history_warning(console))
            runner.on_fault = history_warning(console)
            runner.begin(resume=resume)
            view = EvalDisplay(console, len(runner.runs), quiet=quiet)
            evaluation.on_event = view
            evaluation.on_verdict = view.verdict
            with StopFlag(console) as stop, view:
                runner.should_stop = stop
                try:
                    report = evaluation.run()
                except KeyboardInterrupt:
                    report = None
        if report is None or report.status == "interrupted":
            again = f"ai-stack eval {suite_file} --modes {','.join(chosen)} --resume"
            console.print(f"[yellow]Interrupted.[/] Finished runs are kept. Resume with: {again}")
            sys.exit(EXIT_INTERRUPTED)
        if as_json:
            click.echo(report.model_dump_json())
        else:
            show_report(Console(), report)
