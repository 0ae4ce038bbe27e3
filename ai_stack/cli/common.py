"""What every command shares: the error console, error mapping, and the run options."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from ai_stack.config import Settings, load_settings
from ai_stack.errors import AiStackError

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
        click.option(
            "--no-thermal", is_flag=True, help="Ignore thermal and memory-pressure signals."
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
    no_thermal: bool = False,
) -> Settings:
    overrides = option_overrides(
        planner, critic, executor, backend, max_rounds, memory_budget, policy, no_thermal
    )
    return load_settings(config_file, overrides)


def option_overrides(
    planner: str | None,
    critic: str | None,
    executor: str | None,
    backend: str | None,
    max_rounds: int | None,
    memory_budget: float | None,
    policy: str | None,
    no_thermal: bool,
) -> dict[str, Any]:
    """The run options as settings data (``None`` = not given, so the layer below wins)."""
    return {
        "planner": {"model": planner},
        "critic": {"model": critic},
        "executor": {"model": executor},
        "backend": backend,
        "max_rounds": max_rounds,
        "memory": {"budget_gb": memory_budget, "policy": policy},
        "thermal": {"enabled": False if no_thermal else None},
    }


def configure_logging(debug: bool) -> None:
    import logging

    if debug:
        from rich.logging import RichHandler

        logging.basicConfig(
            level=logging.DEBUG,
            handlers=[RichHandler(console=error_console())],
            format="%(message)s",
        )
