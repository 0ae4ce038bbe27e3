"""What every command shares: the error console, error mapping, and the run options."""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import click
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from rich.progress import Progress

from ai_stack.config import Settings, layer, load_settings
from ai_stack.errors import AiStackError, HistoryError, UsageError
from ai_stack.files import read_limited
from ai_stack.modes import REVIEWS
from ai_stack.types import ROLES

EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70
EXIT_UNMET = 3  # --strict: the answer was given, but fails a check of the task's own
F = TypeVar("F", bound=Callable[..., Any])


def counted_progress(console: Console, *, quiet: bool = False) -> Progress:
    """The progress bar of work counted in items (eval runs, indexed files) on stderr: what,
    a bar, done of total, time taken; gone once finished."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    return Progress(*columns, TimeElapsedColumn(), console=console, transient=True, disable=quiet)


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


# What an OSError that reaches a front end means: the output could not be written (a closed
# pipe, a full disk or device). Anything else a command raises is a bug.
OUTPUT_FAULTS = frozenset({errno.EPIPE, errno.ENOSPC, errno.EDQUOT})


def output_failed(exc: OSError) -> NoReturn:
    """End the run after the output could not be written. A reader that went away (``| head
    -c 1``) ends it quietly, as other command-line tools do; a full disk or device (``>
    /dev/full``) is one clear message. Standard output is pointed at /dev/null first, so the
    interpreter's last flush has nothing to complain about."""
    with suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    if exc.errno != errno.EPIPE:
        with suppress(OSError):
            print_error(
                error_console(),
                AiStackError(
                    f"Cannot write the output: {exc.strerror or exc}.",
                    hint="Free some space where it goes (or send it elsewhere) and run again.",
                ),
            )
    sys.exit(1)


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
        if isinstance(exc, OSError) and exc.errno in OUTPUT_FAULTS:
            output_failed(exc)
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
    seed: int | str | None
    temperature: float | None
    model_options: tuple[tuple[str, str], ...]
    memory_budget: float | None
    policy: str | None
    wait_timeout: float | None
    config_file: Path | None
    no_thermal: bool
    debug: bool

    def overrides(self) -> dict[str, Any]:
        """The options as settings data (``None`` = not given, so the layer below wins); the
        ``-o`` options last, over the flags."""
        return layer(self._flags(), *(model_option(k, v) for k, v in self.model_options))

    def _flags(self) -> dict[str, Any]:
        return {
            "planner": {"model": self.planner},
            "critic": {"model": self.critic},
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
            "seed": self.seed,
            "executor": {"model": self.executor, "temperature": self.temperature},
            "memory": {
                "budget_gb": self.memory_budget,
                "policy": self.policy,
                "wait_timeout_s": self.wait_timeout,
            },
            "thermal": {"enabled": False if self.no_thermal else None},
        }

    def settings(self) -> Settings:
        return load_settings(self.config_file, self.overrides())


# -o KEY=VALUE: a model option, as llm's -o; the Executor's unless a role is named
MODEL_OPTIONS = ("temperature", "max_tokens", "num_ctx", "seed", "repeat_penalty")
RUN_WIDE = ("seed", "repeat_penalty")  # options of every call, not of one role


def model_option(key: str, value: str) -> dict[str, Any]:
    """``-o KEY=VALUE`` as settings data (validated with the rest of the settings).

    >>> model_option("temperature", "0.9"), model_option("critic.max_tokens", "64")
    ({'executor': {'temperature': '0.9'}}, {'critic': {'max_tokens': '64'}})
    >>> model_option("seed", "7")
    {'seed': '7'}
    """
    role, _, name = key.rpartition(".")
    if name in RUN_WIDE and not role:
        return {name: value}
    return {role or "executor": {name: value}}


def _model_options(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    """Each ``-o`` as (key, value); a key that is no model option is a usage error (exit 2)."""
    pairs = []
    for item in values:
        key, equals, value = item.partition("=")
        role, _, name = key.strip().rpartition(".")
        if not equals or name not in MODEL_OPTIONS or role not in ("", *ROLES):
            raise click.BadParameter(
                f"{item!r} is not KEY=VALUE with KEY one of {', '.join(MODEL_OPTIONS)} "
                "(a role's own: ROLE.KEY, e.g. planner.temperature=0.5)",
                ctx,
                param,
            )
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def _seed(ctx: click.Context, param: click.Parameter, value: str | None) -> int | str | None:
    """``--seed N`` or ``--seed random`` (a fresh seed each run, recorded with it)."""
    if value is None or value == "random":
        return value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a whole number or 'random'", ctx, param
        ) from None


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
            help="Let this secret location (a key, .env, a directory) become model context.",
        ),
        click.option(
            "--truncate-context",
            is_flag=True,
            help="Cut a context too big for the models' num_ctx to fit (the task is never cut).",
        ),
        click.option(
            "--max-rounds",
            type=click.IntRange(0, 20),
            help="The extra work any mode may do after the first answer (default 2): review "
            "rounds of the plan, fixes of the answer, or the team's new versions of each kind; "
            "0: the answer is checked, never replaced.",
        ),
        click.option(
            "--seed",
            callback=_seed,
            metavar="N|random",
            help="Sampling seed (default 42, repeatable runs); random: a fresh one each run. "
            "The seed used is recorded (--json, history).",
        ),
        click.option(
            "--temperature",
            type=click.FloatRange(0.0, 2.0),
            metavar="T",
            help="The Executor's sampling temperature (the answer's).",
        ),
        click.option(
            "-o",
            "--option",
            "model_options",
            multiple=True,
            callback=_model_options,
            metavar="KEY=VALUE",
            help=f"A model option, the Executor's or ROLE.KEY (repeatable): "
            f"{', '.join(MODEL_OPTIONS)}.",
        ),
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
            help="TOML config file, read alone (default: yours — ai-stack config path — then "
            "./ai-stack.toml where it only narrows it).",
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
