"""The command line: parse options, wire the core, render its events, map errors to exits.

``ai-stack "task"`` runs the default ``run`` command. This package is the only layer that prints
and the only one that turns :class:`~ai_stack.errors.AiStackError` into a message and an exit code.

Each subcommand's module is imported only when that command runs, so ``ai-stack --help`` and
``--version`` load none of the runtime (benchmarks/startup.py measures it).
"""

from __future__ import annotations

import shlex
import signal
import sys
from collections.abc import Iterable
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
    "kb": (
        "ai_stack.cli.kb",
        "kb",
        "Local knowledge: index documents and code, search them, answer from them (--kb).",
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
    "config": (
        "ai_stack.cli.config_cmd",
        "config",
        "Show where your config file is and the settings in force.",
    ),
}


def slips(word: str, name: str) -> int:
    """How many typing slips turn ``word`` into ``name``: letters changed, added or dropped,
    and neighbours swapped (the optimal string alignment distance).

    >>> slips("model", "models"), slips("histroy", "history"), slips("run", "batch")
    (1, 1, 5)
    """
    before: list[int] = []
    previous = list(range(len(name) + 1))
    for i, letter in enumerate(word, 1):
        current = [i] + [0] * len(name)
        for j, other in enumerate(name, 1):
            changed = previous[j - 1] + (letter != other)
            current[j] = min(previous[j] + 1, current[j - 1] + 1, changed)
            if i > 1 and j > 1 and letter == name[j - 2] and word[i - 2] == other:
                current[j] = min(current[j], before[j - 2] + 1)
        before, previous = previous, current
    return previous[-1]


def near_miss(word: str, names: Iterable[str]) -> str | None:
    """The command ``word`` is one slip away from, if any. A three-letter command counts only
    two letters swapped: one letter changed of ``run`` or ``mcp`` is mostly another word that
    may well start a task ("fun", "map").

    >>> near_miss("model", ["models", "mcp"]), near_miss("mpc", ["mcp"])
    ('models', 'mcp')
    >>> near_miss("fun", ["run"]), near_miss("Model", ["models"]), near_miss("models", ["models"])
    (None, None, None)
    """
    for name in sorted(names):
        swapped = sorted(word) == sorted(name)
        if word != name and slips(word, name) == 1 and (len(name) >= 4 or swapped):
            return name
    return None


class LazyGroup(DefaultGroup):
    """A default group whose subcommands are imported when they are run, and which refuses a
    first word one slip away from a command (``ai-stack model list``) rather than loading a
    model to run it as a task."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not ctx.resilient_parsing:  # resilient: shell completion of a partial line
            self.refuse_near_miss(ctx, args)
        return super().parse_args(ctx, args)

    def refuse_near_miss(self, ctx: click.Context, args: list[str]) -> None:
        word = args[0]
        if not (word.isascii() and word.isalpha()):
            return  # an option, "--", or several words in quotes: not a command's name
        near = near_miss(word, self.list_commands(ctx))
        if near is not None:
            raise click.UsageError(
                f"No such command {word!r}. Did you mean {near!r}?\n"
                f"To run it as a task: ai-stack -- {shlex.join(args)}",
                ctx,
            )

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


@click.group(
    cls=LazyGroup,
    default="run",
    default_if_no_args=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
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
    history says interrupted, and the exit is 130. Output that cannot be written (``| head``,
    ``> /dev/full``) ends it as ``cli.common.output_failed`` says."""
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _interrupted)
    try:
        cli(prog_name="ai-stack")
    except OSError as exc:  # click itself handles a closed pipe, not a full device
        _output_failed(exc)
    finally:
        try:  # now, where a failure can be reported, not in the interpreter's last flush
            if sys.stdout is not None:
                sys.stdout.flush()
        except OSError as exc:
            _output_failed(exc)


def _output_failed(error: OSError) -> None:
    from ai_stack.cli.common import OUTPUT_FAULTS, output_failed

    if error.errno not in OUTPUT_FAULTS:
        raise error
    output_failed(error)


__all__ = ["COMMANDS", "cli", "main"]
