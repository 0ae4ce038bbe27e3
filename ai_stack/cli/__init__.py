"""The command line: parse options, wire the core, render its events, map errors to exits.

``ai-stack "task"`` runs the default ``run`` command. This package is the only layer that prints
and the only one that turns :class:`~ai_stack.errors.AiStackError` into a message and an exit code.
"""

from __future__ import annotations

from pathlib import Path

import click
from click_default_group import DefaultGroup

from ai_stack import __version__
from ai_stack.cli.batch import batch_command
from ai_stack.cli.eval import eval_command
from ai_stack.cli.history import history
from ai_stack.cli.models import models
from ai_stack.cli.monitor import monitor
from ai_stack.cli.run import run_command
from ai_stack.cli.system import doctor, system


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


cli.add_command(run_command)
cli.add_command(models)
cli.add_command(history)
cli.add_command(batch_command)
cli.add_command(eval_command)
cli.add_command(monitor)
cli.add_command(system)
cli.add_command(doctor)


@cli.command("mcp")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="TOML config file.")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs (on stderr).")
def mcp(config_file: Path | None, debug: bool) -> None:
    """Serve the local team to another agent over MCP (stdio): see docs/mcp.md."""
    from ai_stack.cli.serve_mcp import serve  # the SDK loads only for this command

    serve(config_file, debug)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="ai-stack")


__all__ = ["cli", "main"]
