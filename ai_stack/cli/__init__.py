"""The command line: parse options, wire the core, render its events, map errors to exits.

``ai-stack "task"`` runs the default ``run`` command. This package is the only layer that prints
and the only one that turns :class:`~ai_stack.errors.AiStackError` into a message and an exit code.
"""

from __future__ import annotations

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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="ai-stack")


__all__ = ["cli", "main"]
