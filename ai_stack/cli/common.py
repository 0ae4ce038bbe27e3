"""What every command shares: the error console, error mapping, and the run options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar, cast

import click
from rich.console import Console
from rich.markup import escape

from ai_stack.config import Settings, load_settings
from ai_stack.errors import AiStackError, HistoryError, UsageError
from ai_stack.files import read_limited
from ai_stack.modes import REVIEWS

EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70
F = TypeVar("F", bound=Callable[..., Any])


def error_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def history_warning(console: Console) -> Callable[[HistoryError], None]:
    """Says once that the history failed, and what to do; the run goes on without it."""
    said: list[HistoryError] = []

    def warn(error: HistoryError) -> None:
        if not said:
            said.append(error)
            console.print(
                f"[yellow]Warning: not recorded in the history. {escape(error.message)}[/]"
            )
            if error.hint:
                console.print(f"[dim]{escape(error.hint)}[/]")

    return warn


NOT_UTF8 = "The input was not valid UTF-8; the bytes that were not are shown as \ufffd."


def readable(text: str) -> tuple[str, bool]:
    """``text`` as valid Unicode, and whether it had to change.

    A stream read with ``surrogateescape`` keeps bytes that were not UTF-8 as lone surrogates,
    which no encoder accepts later (the run would fail when printing or storing the task);
    they become U+FFFD here, once, where the input arrives.
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "replace")
    clean = raw.decode("utf-8", "replace")
    return clean, clean != text


TASK_LIMIT = 1024 * 1024  # a task read from stdin: past this it fits no model's context


def read_stdin(console: Console) -> str:
    """Stdin as text, up to TASK_LIMIT bytes; bytes that are not UTF-8 are replaced, and the
    user is told."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        text, changed = readable(sys.stdin.read(TASK_LIMIT + 1))
        raw: bytes | None = text.encode("utf-8")
    else:
        raw = read_limited(buffer, TASK_LIMIT)
    if raw is None or len(raw) > TASK_LIMIT:
        raise UsageError(
            f"The task read from stdin is over {TASK_LIMIT // 1024:,} KiB.",
            hint="Give a shorter task; attach long material with -f FILE as context.",
        )
    if buffer is not None:
        try:
            text, changed = raw.decode("utf-8"), False
        except UnicodeDecodeError:
            text, changed = raw.decode("utf-8", "replace"), True
    if changed:
        console.print(f"[yellow]Warning: {escape(NOT_UTF8)}[/]")
    return text


EXIT_DECLINED = 1


def confirm_or_stop(console: Console, question: str) -> None:
    """Ask before deleting; "no" (or no answer: end of input) is a normal "nothing done"."""
    try:
        agreed = click.confirm(question, default=False, err=True)
    except click.Abort:
        agreed = False
    if not agreed:
        console.print("Nothing deleted.")
        sys.exit(EXIT_DECLINED)


def print_error(console: Console, exc: AiStackError) -> None:
    """The one way an error reaches the user: ``Error: message`` and, dimmed, what to do."""
    console.print(f"[bold red]Error:[/] {escape(exc.message)}")
    if exc.hint:
        console.print(f"[dim]{escape(exc.hint)}[/]")


@contextmanager
def reported_errors(console: Console, debug: bool) -> Iterator[None]:
    """Turn failures into one clear message and a non-zero exit (a traceback only with --debug)."""
    try:
        yield
    except AiStackError as exc:
        if debug:
            raise
        print_error(console, exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.print(
            "\n[yellow]Interrupted.[/] Finished phases are kept in the run history (unless "
            "--no-history); run the same command to start the task again."
        )
        sys.exit(EXIT_INTERRUPTED)
    except (click.exceptions.Exit, click.ClickException, SystemExit):
        raise
    except Exception as exc:
        if debug:
            raise
        console.print(
            f"[bold red]Internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
            "[dim]Run again with --debug for a traceback, and please report it.[/]"
        )
        sys.exit(EXIT_INTERNAL)


@dataclass(frozen=True)
class RunOptions:
    """The options every command that runs tasks accepts (same keys as the config file)."""

    planner: str | None
    critic: str | None
    executor: str | None
    backend: str | None
    review: str | None
    direct: bool
    checks: tuple[Path, ...]
    check_cmds: tuple[str, ...]
    allow_exec: bool
    allow_paths: tuple[Path, ...]
    allow_sensitive: tuple[Path, ...]
    truncate_context: bool
    max_rounds: int | None
    memory_budget: float | None
    policy: str | None
    wait_timeout: float | None
    config_file: Path | None
    no_thermal: bool
    debug: bool

    def overrides(self) -> dict[str, Any]:
        """The options as settings data (``None`` = not given, so the layer below wins)."""
        return {
            "planner": {"model": self.planner},
            "critic": {"model": self.critic},
            "executor": {"model": self.executor},
            "backend": self.backend,
            "review": self.review,
            "direct": True if self.direct else None,
            "evidence": {
                "exec": True if self.allow_exec else None,
                "checks": list(self.checks) or None,
                "check_cmds": list(self.check_cmds) or None,
            },
            "files": {
                "allow_paths": list(self.allow_paths) or None,
                "allow_sensitive": list(self.allow_sensitive) or None,
            },
            "limits": {"truncate_context": True if self.truncate_context else None},
            "max_rounds": self.max_rounds,
            "memory": {
                "budget_gb": self.memory_budget,
                "policy": self.policy,
                "wait_timeout_s": self.wait_timeout,
            },
            "thermal": {"enabled": False if self.no_thermal else None},
        }

    def settings(self) -> Settings:
        return load_settings(self.config_file, self.overrides())


def run_options(command: F) -> F:
    """Add the run options to a click command, handed to it as one ``options: RunOptions``."""
    names = [f.name for f in fields(RunOptions)]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        options = RunOptions(**{name: kwargs.pop(name) for name in names})
        return command(*args, options=options, **kwargs)

    decorators = [
        click.option("--planner", metavar="SPEC", help="Planner model, [backend:]name."),
        click.option("--critic", metavar="SPEC", help="Critic model, [backend:]name."),
        click.option("--executor", metavar="SPEC", help="Executor model, [backend:]name."),
        click.option(
            "--backend",
            metavar="NAME",
            help="Backend for specs without a prefix: auto (the default), ollama, embedded, "
            "openai, or an endpoint of the config.",
        ),
        click.option(
            "--review",
            type=click.Choice(REVIEWS),
            help="How the team works: team (what the task asks for is decided once — by its "
            "words, else by the Planner — the answer is checked against it: its code run on "
            "the task's examples, its stated requirements, a result against a program; a "
            "failing answer is written afresh), answer (checked and fixed round by round, the "
            "Critic's edge cases), plan (the Planner's plan reviewed by the Critic), both, or "
            "none (a plan, unreviewed).",
        ),
        click.option(
            "--direct", is_flag=True, help="One Executor call: no plan, no review (the baseline)."
        ),
        click.option(
            "--check",
            "checks",
            multiple=True,
            type=click.Path(path_type=Path, dir_okay=False),
            metavar="FILE",
            help="Python asserts or test_* functions to run against the answer's code.",
        ),
        click.option(
            "--check-cmd",
            "check_cmds",
            multiple=True,
            metavar="CMD",
            help="A command run beside the answer's files (solution.py, solution.sh); "
            "exit 0 passes.",
        ),
        click.option(
            "--exec",
            "allow_exec",
            is_flag=True,
            help="Run answer code even where no isolating sandbox exists (unisolated).",
        ),
        click.option(
            "--allow-path",
            "allow_paths",
            multiple=True,
            type=click.Path(path_type=Path, file_okay=False),
            metavar="DIR",
            help="Let files in DIR become model context (workflow context_files; docs/files.md).",
        ),
        click.option(
            "--allow-sensitive",
            "allow_sensitive",
            multiple=True,
            type=click.Path(path_type=Path),
            metavar="PATH",
            help="Let this one secret location (a key, .env, ...) become model context.",
        ),
        click.option(
            "--truncate-context",
            is_flag=True,
            help="Cut a context too big for the models' num_ctx to fit (the task is never cut).",
        ),
        click.option("--max-rounds", type=click.IntRange(0, 20), help="Review rounds at most."),
        click.option(
            "--memory-budget",
            type=click.FloatRange(min=0.1, max=4096),
            metavar="GB",
            help="Memory the resident models may take (default: derived from this machine).",
        ),
        click.option(
            "--policy",
            type=click.Choice(["one-at-a-time", "fit"]),
            help="Residency policy (default one-at-a-time).",
        ),
        click.option(
            "--wait-timeout",
            type=click.FloatRange(min=1, max=86_400),
            metavar="SECONDS",
            help="How long to wait for another ai-stack process using the model memory "
            "(default 1800).",
        ),
        click.option(
            "--config",
            "config_file",
            type=click.Path(path_type=Path, dir_okay=True),
            help="TOML config file (default ./ai-stack.toml, else yours: ai-stack config path).",
        ),
        click.option(
            "--no-thermal", is_flag=True, help="Ignore thermal and memory-pressure signals."
        ),
        click.option("--debug", is_flag=True, help="Show tracebacks and debug logs."),
    ]
    decorated: Any = wrapper
    for option in reversed(decorators):
        decorated = option(decorated)
    return cast(F, decorated)


def config_options(command: F) -> F:
    """``--config`` and ``--debug``, for commands that read the settings but run no task."""
    command = click.option("--debug", is_flag=True, help="Show tracebacks.")(command)
    return click.option(
        "--config", "config_file", type=click.Path(path_type=Path), help="TOML config file."
    )(command)


@contextmanager
def command(config_file: Path | None, debug: bool) -> Iterator[tuple[Console, Settings]]:
    """The error console and the settings, with errors reported as one line and an exit code."""
    console = error_console()
    configure_logging(debug)
    with reported_errors(console, debug):
        yield console, load_settings(config_file)


def configure_logging(debug: bool) -> None:
    import logging

    if debug:
        from rich.logging import RichHandler

        logging.basicConfig(
            level=logging.DEBUG,
            handlers=[RichHandler(console=error_console())],
            format="%(message)s",
        )
