"""The command line: parse options, wire the core, render its events, map errors to exits.

``ai-stack "task"`` runs the default ``run`` command. This package is the only layer that prints
and the only one that turns :class:`~ai_stack.errors.AiStackError` into a message and an exit code.

Each subcommand's module is imported only when that command runs, so ``ai-stack --help`` and
``--version`` load none of the runtime (benchmarks/startup.py measures it).
"""

from __future__ import annotations

import signal
from importlib import import_module
from typing import Any

import click
from click_default_group import DefaultCommandFormatter, DefaultGroup

from ai_stack import __version__

# name: (module, attribute, the short help --help shows without importing the module). A test
# holds each short help to the command's own.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": (
        "ai_stack.cli.run",
        "run_command",
        "Run TASK with the team: the answer is checked, and replaced while checks fail (the "
        "default command).",
    ),
    "batch": (
        "ai_stack.cli.batch",
        "batch_command",
        "Run every task of a workflow file (YAML or JSON), loading each model once per phase.",
    ),
    "eval": (
        "ai_stack.cli.eval",
        "eval_command",
        "Run every task of SUITE in each mode and check the answers (docs/eval.md).",
    ),
    "models": (
        "ai_stack.cli.models",
        "models",
        "Manage models: list, ps, pull, add, rm, show, stop, probe.",
    ),
    "history": (
        "ai_stack.cli.history",
        "history",
        "Browse the run history (every run is recorded unless --no-history).",
    ),
    "system": (
        "ai_stack.cli.system",
        "system",
        "This machine: CPU, memory, GPU, OS, backends, the budget, and role recommendations.",
    ),
    "doctor": (
        "ai_stack.cli.system",
        "doctor",
        "Check everything ai-stack needs and say how to fix what is wrong.",
    ),
    "monitor": (
        "ai_stack.cli.monitor",
        "monitor",
        "Watch the thermal level, memory pressure and resident models (no sudo needed).",
    ),
    "tools": (
        "ai_stack.cli.tools",
        "tools",
        "The Executor's tools (--tools): files through the policy, a sandboxed interpreter.",
    ),
    "mcp": (
        "ai_stack.cli.mcp",
        "mcp",
        "Serve the local team to another agent over MCP (stdio): see docs/mcp.md.",
    ),
}


class LazyGroup(DefaultGroup):
    """A default group whose subcommands are imported when they are run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        known = cmd_name in self.commands or cmd_name in COMMANDS
        self.load(cmd_name if known else self.default_cmd_name or "")
        return super().get_command(ctx, cmd_name)

    def load(self, name: str) -> None:
        if name in COMMANDS and name not in self.commands:
            module, attribute, _ = COMMANDS[name]
            self.add_command(getattr(import_module(module), attribute), name)

    def format_commands(self, ctx: click.Context, formatter: Any) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            DefaultCommandFormatter(self, formatter, mark="*").write_dl(rows)


@click.group(cls=LazyGroup, default="run", default_if_no_args=False)
@click.version_option(__version__, prog_name="ai-stack")
def cli() -> None:
    """ai-stack: a team of local models answers your task. The Executor answers; what the task
    asks for — code, a result, or prose — is decided once (by its words, else by the Planner)
    and the answer is checked against it: its code run in a sandbox on the task's examples,
    the requirements the task states, a result against a program. A failing answer is written
    afresh (in the shape the requirements give; fresh code that never sees the failed one). Each
    role runs on its own local model, one resident at a time.

    \b
    ai-stack "Write a shell one-liner that counts lines in all .py files"
    ai-stack --json "TASK"          one JSON object on stdout
    ai-stack --interactive          a prompt; each line is a task
    """


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point. SIGTERM and SIGHUP (a closed terminal, ``timeout``, an MCP
    client stopping the server) stop the run as Ctrl-C does: what was loaded is unloaded, the
    history says interrupted, and the exit is 130."""
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _interrupted)
    cli(prog_name="ai-stack")


__all__ = ["COMMANDS", "cli", "main"]
