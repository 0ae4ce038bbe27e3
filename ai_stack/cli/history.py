"""``ai-stack history ...``: browse, export and prune the run history."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from ai_stack.cli.common import command, config_options, confirm_or_stop
from ai_stack.config import Settings
from ai_stack.display import review_ending
from ai_stack.errors import FileAccessError, UsageError
from ai_stack.files import write_atomically
from ai_stack.history import HistoryStore, StoredRun
from ai_stack.history import export as export_history
from ai_stack.history.repair import describe, repair
from ai_stack.modes import MODES
from ai_stack.terminal import escape, strip_controls
from ai_stack.types import Turn

STATUS_STYLE = {
    "ok": "green",
    "unmet": "yellow",
    "running": "cyan",
    "failed": "red",
    "interrupted": "yellow",
}


def _store(settings: Settings) -> HistoryStore:
    path = settings.resolved_history_path()
    if not path.exists():
        raise UsageError(f"No history yet ({path} does not exist).", hint="Run a task first.")
    store = HistoryStore.open(path)
    store.reap_orphans()
    return store


MAX_AGE = timedelta(days=100 * 366)  # older than any run: a cutoff past it would overflow


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``2w``, ``45m`` → a timedelta (at most ``MAX_AGE``).

    >>> parse_age("30d"), parse_age("2w") == parse_age("14d"), parse_age("90m")
    (datetime.timedelta(days=30), True, datetime.timedelta(seconds=5400))
    >>> parse_age("999999999999d")
    Traceback (most recent call last):
    ai_stack.errors.UsageError: The age 999999999999d is longer than any history.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise UsageError(
            f"Cannot read the age {text!r}.", hint="Use a number and a unit: 45m, 12h, 30d, 2w."
        )
    value, unit = float(match.group(1)), match.group(2)
    seconds = value * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    if seconds > MAX_AGE.total_seconds():  # past timedelta's range, or before year 1
        raise UsageError(
            f"The age {text.strip()} is longer than any history.",
            hint=f"Use at most {MAX_AGE.days}d (100 years).",
        )
    return timedelta(seconds=seconds)


def _when(iso: str | None, short: bool = False) -> str:
    if not iso:
        return ""
    shape = "%m-%d %H:%M" if short else "%Y-%m-%d %H:%M"
    return datetime.fromisoformat(iso).astimezone().strftime(shape)


@click.group()
def history() -> None:
    """Browse the run history (every run is recorded unless --no-history)."""


@history.command("list")
@click.option("--limit", type=click.IntRange(min=1, max=1_000_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="A JSON list on stdout.")
@config_options
def list_runs(limit: int, as_json: bool, config_file: Path | None, debug: bool) -> None:
    """The most recent runs, newest first."""
    with command(config_file, debug) as (_, settings):
        with _store(settings) as store:
            runs = store.list_runs(limit)
        if as_json:
            click.echo(json.dumps([r.model_dump(mode="json") for r in runs], ensure_ascii=False))
            return
        # One line per run at any width: the id (a prefix is enough for `history show`), the
        # time and the status keep their size; the task, and the models where there is room,
        # take the rest, cut with an ellipsis.
        console = Console()
        wide = console.width >= 110
        table = Table(expand=True)
        for name, width in (("id", 8), ("when", 11), ("status", 11)):
            table.add_column(name, no_wrap=True, min_width=width, max_width=width)
        table.add_column("task", no_wrap=True, overflow="ellipsis", ratio=3)
        if wide:
            table.add_column("models", no_wrap=True, overflow="ellipsis", ratio=1)
        table.add_column("wall", no_wrap=True, justify="right", min_width=7)
        for run in runs:
            models = ", ".join(dict.fromkeys(run.models.values()))
            task = " ".join(run.task.split())
            style = STATUS_STYLE.get(run.status, "")
            wall = f"{run.wall_s:.1f} s" if run.wall_s is not None else ""
            cells = [run.id[:8], _when(run.created_at, short=True), f"[{style}]{run.status}[/]"]
            cells += [escape(task), *([escape(models)] if wide else []), wall]
            table.add_row(*cells)
        console.print(table)


@history.command("show")
@click.argument("run_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="The run as JSON (the --json result shape).")
@click.option(
    "--answer",
    "answer_only",
    is_flag=True,
    help="Only the run's answer, verbatim (to save it: history show ID --answer > FILE).",
)
@config_options
def show(
    run_id: str, as_json: bool, answer_only: bool, config_file: Path | None, debug: bool
) -> None:
    """One whole run: plans, critiques, answer and per-call metrics; or, given a conversation's
    id, its turns. ID may be a prefix."""
    with command(config_file, debug) as (_, settings):
        if as_json and answer_only:
            raise UsageError("Give either --json or --answer, not both.")
        store = _store(settings)
        try:
            try:
                run = store.run(store.resolve(run_id))
            except UsageError:
                conversation = store.resolve_conversation(run_id)
                if conversation is None:
                    raise
                turns = store.conversation_turns(conversation)
                if answer_only:
                    last = turns[-1].run_id if turns else "RUN"
                    raise UsageError(
                        f"{conversation} is a conversation; --answer shows one run's answer.",
                        hint=f"Give one of its runs: ai-stack history show {last} --answer",
                    ) from None
                summary = store.conversation_summary(conversation)
                if as_json:
                    data = {
                        "conversation_id": conversation,
                        "turns": [turn.model_dump(mode="json") for turn in turns],
                        "summary": {"covered": summary[0], "text": summary[1]} if summary else None,
                    }
                    click.echo(json.dumps(data, ensure_ascii=False))
                    return
                _render_conversation(Console(), conversation, turns, summary)
                return
        finally:
            store.close()
        if as_json:
            click.echo(json.dumps(run.model_dump(mode="json"), ensure_ascii=False))
            return
        if answer_only:
            _write_answer(run)
            return
        _render(Console(), run)


def _write_answer(run: StoredRun) -> None:
    """The answer as stored, byte for byte (a final newline added if it has none): what
    ``ai-stack "task" > file`` wrote, unless a credential in it was redacted. At a terminal,
    without its control sequences."""
    if not run.output:
        raise UsageError(f"Run {run.id} has no answer ({run.status}).")
    text = run.output if run.output.endswith("\n") else run.output + "\n"
    shown = sys.stdout.isatty()
    sys.stdout.write(strip_controls(text) if shown else text)
    sys.stdout.flush()


def _verbatim(out: Console, text: str) -> None:
    """A task or an answer as it is: never wrapped (code stays code when saved to a file) nor
    read as markup or emoji codes; control sequences stripped."""
    out.print(Text(strip_controls(text)), soft_wrap=True)


def _render_conversation(
    out: Console, conversation: str, turns: list[Turn], summary: tuple[int, str] | None
) -> None:
    out.print(f"[bold]Conversation {conversation}[/] · {len(turns)} turn(s)")
    if summary is not None:
        out.print(f"[dim]Turns 1-{summary[0]} reach the models as this summary:[/]")
        out.print(escape(summary[1]))
    for turn in turns:
        files = f" [dim](with {escape(', '.join(turn.files))})[/]" if turn.files else ""
        out.print(f"[bold]Turn {turn.number}[/] · run {turn.run_id}{files}")
        out.print("[bold]User:[/]", Text(strip_controls(turn.task)), soft_wrap=True)
        _verbatim(out, turn.answer)
    out.print(f'[dim]Continue it: ai-stack --conversation {conversation} "..."[/]')


def _render(out: Console, run: StoredRun) -> None:
    style = STATUS_STYLE.get(run.status, "")
    out.print(
        f"[bold]Run {run.id}[/] [{style}]{run.status}[/] · {_when(run.created_at)} · {run.source}"
    )
    if run.conversation_id is not None:
        out.print(f"[dim]Conversation {run.conversation_id}, turn {run.turn}[/]")
    out.print("[bold]Task:[/]", Text(strip_controls(run.task)), soft_wrap=True)
    if run.files:
        out.print(f"[bold]Files:[/] {escape(', '.join(run.files))}")
    for version, plan in enumerate(run.plans, 1):
        out.print(f"[bold green]Plan v{version}[/] — {escape(plan.goal)}")
        for i, step in enumerate(plan.steps, 1):
            out.print(f"  {i}. {escape(step.title)} — {escape(step.detail)}")
    for critique in run.critiques:
        out.print(f"[bold]Critique {critique.round}:[/] {critique.verdict} ({critique.score}/10)")
        for issue in critique.issues:
            out.print(f"  - {escape(issue)}")
    if run.stop_reason:
        out.print(f"[dim]{review_ending('plan', run.stop_reason, run.rounds, repairs=False)}[/]")
    for answer in run.answers if len(run.answers) > 1 or run.answer_critiques else []:
        summary = answer.evidence.summary() if answer.evidence else "not checked"
        out.print(f"[bold]Answer v{answer.version}[/] — {escape(summary)}")
        for check in answer.evidence.checks if answer.evidence else []:
            if check.passed is not True:
                mark = "✗" if check.passed is False else "→"
                out.print(f"  {mark} {escape(check.name)}: {escape(check.detail)}")
    for critique in run.answer_critiques:
        by = " (by the checks)" if critique.source == "evidence" else ""
        out.print(
            f"[bold]Answer review {critique.round}:[/] {critique.verdict} ({critique.score}/10){by}"
        )
        for issue in critique.issues if critique.source == "critic" else []:
            out.print(f"  - {escape(issue)}")
    if run.answer_stop_reason:
        repairs = run.mode in MODES and MODES[run.mode].repairs
        ending = review_ending("answer", run.answer_stop_reason, run.answer_rounds, repairs=repairs)
        out.print(f"[dim]{ending}; the answer below is v{run.chosen_answer}[/]")
    for call in run.tool_calls:
        mark = "" if call.ok else "[yellow]error[/] "
        out.print(f"[cyan]Tool {call.step}:[/] {escape(call.arguments)}")
        out.print(f"  → {mark}{escape(call.result)}")
    if run.error:
        out.print(f"[red]{escape(run.error)}[/]")
    if run.raw_output:
        out.print("[bold]Last invalid reply[/]")
        _verbatim(out, run.raw_output)
    if run.output:
        out.print("[bold]Answer[/]")
        _verbatim(out, run.output)
    # 80 columns: no borders, one space between columns; the model (what --executor takes)
    # has the room left, folded onto more lines past it, never cut.
    figures = [Column(name, justify="right") for name in ("load s", "ttft s", "tokens", "tok/s")]
    model = Column("model", overflow="fold")
    table = Table(
        "role",
        "phase",
        model,
        *figures,
        Column("wall s", justify="right"),
        box=box.SIMPLE_HEAD,
        padding=0,
        show_edge=False,
    )
    for p in run.metrics.phases:
        table.add_row(
            p.role,
            p.phase,
            escape(p.model),
            f"{p.load_s:.2f}",
            f"{p.ttft_s:.2f}",
            str(p.output_tokens),
            f"{p.tokens_per_s:.1f}",
            f"{p.wall_s:.2f}",
        )
    out.print(table)


@history.command("export")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), help="File (default stdout)."
)
@config_options
def export(fmt: str, out: Path | None, config_file: Path | None, debug: bool) -> None:
    """Every run: JSON lines (whole runs) or CSV (one row per run)."""
    with command(config_file, debug) as (console, settings):
        with _store(settings) as store:
            text = export_history(store, fmt)
        if out is None:
            click.echo(text, nl=False)
        else:
            try:
                write_atomically(out, text)
            except OSError as exc:
                raise FileAccessError(str(out), f"Cannot write {out}: {exc.strerror}") from None
            console.print(f"Wrote {out}")


@history.command("rm")
@click.argument("run_id", metavar="ID")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@config_options
def remove(run_id: str, yes: bool, config_file: Path | None, debug: bool) -> None:
    """Delete one run."""
    with command(config_file, debug) as (console, settings):
        with _store(settings) as store:
            full = store.resolve(run_id)
            if not yes:
                confirm_or_stop(console, f"Delete run {full}?")
            store.remove(full)
        console.print(f"Deleted run {full}.")


@history.command("repair")
@config_options
def repair_command(config_file: Path | None, debug: bool) -> None:
    """Copy what can still be read from a damaged history into a new one; the damaged file is
    kept beside it, never deleted."""
    with command(config_file, debug) as (console, settings):
        path = settings.resolved_history_path()
        console.print(describe(path, repair(path)))


@history.command("prune")
@click.option("--older-than", "age", required=True, metavar="AGE", help="e.g. 30d, 12h, 2w.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@config_options
def prune(age: str, yes: bool, config_file: Path | None, debug: bool) -> None:
    """Delete runs older than AGE (runs still in progress are kept)."""
    with command(config_file, debug) as (console, settings):
        older_than = parse_age(age)
        with _store(settings) as store:
            if not yes:
                confirm_or_stop(console, f"Delete every run older than {age}?")
            count = store.prune(older_than)
        console.print(f"Deleted {count} run(s).")
