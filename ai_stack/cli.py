"""The command line: parse options, wire the pipeline, render its events, map errors to exits.

``ai-stack "task"`` runs the default ``run`` command. This is the only layer that prints and the
only one that turns :class:`~ai_stack.errors.AiStackError` into a message and an exit code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from click_default_group import DefaultGroup
from rich.console import Console
from rich.markup import escape

from ai_stack import __version__
from ai_stack.config import Settings, load_settings
from ai_stack.controller import Pipeline
from ai_stack.display import Display
from ai_stack.errors import AiStackError, UsageError
from ai_stack.types import RunFinished, RunResult

EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70
F = TypeVar("F", bound=Callable[..., Any])


def error_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


@contextmanager
def reported_errors(console: Console, debug: bool) -> Iterator[None]:
    """Turn failures into one clear message and a non-zero exit (a traceback only with --debug)."""
    try:
        yield
    except AiStackError as exc:
        if debug:
            raise
        console.print(f"[bold red]Error:[/] {escape(exc.message)}")
        if exc.hint:
            console.print(f"[dim]{escape(exc.hint)}[/]")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.print("\n[yellow]Interrupted.[/] Nothing was saved; run the same command again.")
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


def run_options(command: F) -> F:
    """The options every command that runs tasks accepts (same keys as the config file)."""
    options = [
        click.option("--planner", metavar="SPEC", help="Planner model, [backend:]name."),
        click.option("--critic", metavar="SPEC", help="Critic model, [backend:]name."),
        click.option("--executor", metavar="SPEC", help="Executor model, [backend:]name."),
        click.option(
            "--backend",
            type=click.Choice(["auto", "ollama", "embedded"]),
            help="Backend for specs without a prefix (default auto).",
        ),
        click.option("--max-rounds", type=click.IntRange(0, 20), help="Critic rounds at most."),
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
            "--config",
            "config_file",
            type=click.Path(path_type=Path, dir_okay=True),
            help="TOML config file (default ./ai-stack.toml, else the user dir's config.toml).",
        ),
        click.option("--debug", is_flag=True, help="Show tracebacks and debug logs."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def settings_from_options(
    config_file: Path | None,
    planner: str | None,
    critic: str | None,
    executor: str | None,
    backend: str | None,
    max_rounds: int | None,
    memory_budget: float | None,
    policy: str | None,
) -> Settings:
    overrides: dict[str, Any] = {
        "planner": {"model": planner},
        "critic": {"model": critic},
        "executor": {"model": executor},
        "backend": backend,
        "max_rounds": max_rounds,
        "memory": {"budget_gb": memory_budget, "policy": policy},
    }
    return load_settings(config_file, overrides)


def execute(pipeline: Pipeline, task: str, display: Display) -> RunResult:
    """Run one task to its result, rendering every event."""
    result: RunResult | None = None
    try:
        for event in pipeline.run(task):
            display.handle(event)
            if isinstance(event, RunFinished):
                result = event.result
    finally:
        display.close()
    assert result is not None, "the pipeline ended without a result"
    return result


@click.group(cls=DefaultGroup, default="run", default_if_no_args=False)
@click.version_option(__version__, prog_name="ai-stack")
def cli() -> None:
    """ai-stack: a Planner drafts a plan, a Critic reviews it until approved, an Executor answers,
    each on its own local model.

    \b
    ai-stack "Write a shell one-liner that counts lines in all .py files"
    ai-stack --json "TASK"          one JSON object on stdout
    ai-stack --interactive          a prompt; each line is a task
    """


@cli.command("run")
@click.argument("task", nargs=-1)
@click.option("-i", "--interactive", is_flag=True, help="Read tasks line by line (a REPL).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output on stderr.")
@run_options
def run_command(
    task: tuple[str, ...],
    interactive: bool,
    as_json: bool,
    quiet: bool,
    planner: str | None,
    critic: str | None,
    executor: str | None,
    backend: str | None,
    max_rounds: int | None,
    memory_budget: float | None,
    policy: str | None,
    config_file: Path | None,
    debug: bool,
) -> None:
    """Run TASK through Planner → Critic → Executor (the default command).

    TASK may be several words; "-" reads it from stdin.
    """
    console = error_console()
    _configure_logging(debug)
    with reported_errors(console, debug):
        settings = settings_from_options(
            config_file, planner, critic, executor, backend, max_rounds, memory_budget, policy
        )
        text = " ".join(task).strip()
        if interactive:
            if text:
                raise UsageError("Give either a task or --interactive, not both.")
        else:
            if text == "-":
                text = sys.stdin.read().strip()
            if not text:
                raise UsageError(
                    "The task is empty.",
                    hint='Usage: ai-stack "TASK"  (or --interactive; see --help)',
                )
        pipeline = Pipeline.from_settings(settings)
        try:
            if not quiet:
                console.print(f"[dim]Backend: {escape(pipeline.backend_note)}[/]")
            pipeline.check_models()
            if interactive:
                from ai_stack.repl import Repl

                sys.exit(Repl(pipeline, console, as_json=as_json, quiet=quiet).loop())
            display = Display(console, None if as_json else sys.stdout, quiet=quiet)
            result = execute(pipeline, text, display)
            if as_json:
                click.echo(json.dumps(result.model_dump(mode="json"), ensure_ascii=False))
        finally:
            pipeline.close()


def _configure_logging(debug: bool) -> None:
    import logging

    if debug:
        from rich.logging import RichHandler

        logging.basicConfig(
            level=logging.DEBUG,
            handlers=[RichHandler(console=error_console())],
            format="%(message)s",
        )


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="ai-stack")


if __name__ == "__main__":  # pragma: no cover
    main()
