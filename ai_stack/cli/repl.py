"""The interactive loop: each line is a task; slash commands inspect the session.

Works at a terminal (rich prompt) and with piped input (no prompt, ends at EOF), so
``printf 'task one\\ntask two\\n' | ai-stack --interactive`` runs two tasks.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.prompt import Prompt
from rich.table import Table

from ai_stack.cli.common import NOT_UTF8, print_error, readable
from ai_stack.cli.run import execute
from ai_stack.controller import Pipeline
from ai_stack.display import Display
from ai_stack.errors import AiStackError
from ai_stack.history import HistoryRecorder

HELP = """\
Type a task and press Enter. Commands:
  /help     this help
  /models   the model of each role, and what is loaded now
  /config   the settings in force
  /quit     leave (also /exit, Ctrl-D)"""


class Repl:
    """One pipeline, many tasks: models stay loaded between tasks where the policy allows."""

    def __init__(
        self,
        pipeline: Pipeline,
        console: Console,
        *,
        as_json: bool = False,
        quiet: bool = False,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        recorder: HistoryRecorder | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.console = console
        self.as_json = as_json
        self.quiet = quiet
        self.stdin = stdin or sys.stdin
        if isinstance(self.stdin, io.TextIOWrapper):
            # Keep undecodable bytes (as surrogates) so one bad line is replaced, not fatal.
            self.stdin.reconfigure(errors="surrogateescape")
        self.warned_encoding = False
        self.stdout = stdout or sys.stdout
        self.failures = 0
        self.recorder = recorder

    def loop(self) -> int:
        """Run until /quit or end of input; the exit status is 1 if any task failed."""
        if self.stdin.isatty():
            self.console.print("[bold]ai-stack[/] interactive. /help for commands, /quit to leave.")
        for line in self._lines():
            if line.startswith("/"):
                if not self._command(line):
                    break
                continue
            self._task(line)
        return 1 if self.failures else 0

    def _lines(self) -> Iterator[str]:
        interactive = self.stdin.isatty()
        while True:
            try:
                line = (
                    Prompt.ask("[bold cyan]task[/]", console=self.console)
                    if interactive
                    else self.stdin.readline()
                )
            except (EOFError, KeyboardInterrupt):
                if interactive:
                    self.console.print()
                return
            if not interactive and line == "":
                return  # EOF on a pipe
            line, changed = readable(line.strip())
            if changed and not self.warned_encoding:
                self.warned_encoding = True
                self.console.print(f"[yellow]Warning: {escape(NOT_UTF8)}[/]")
            if line:
                yield line

    def _task(self, task: str) -> None:
        display = Display(self.console, None if self.as_json else self.stdout, quiet=self.quiet)
        try:
            result = execute(self.pipeline, task, display, self.recorder)
        except AiStackError as exc:
            self.failures += 1
            print_error(self.console, exc)
            return
        except KeyboardInterrupt:
            self.failures += 1
            self.console.print("\n[yellow]Task interrupted.[/]")
            if not self.stdin.isatty():
                raise
            return
        if self.as_json:
            self.stdout.write(json.dumps(result.model_dump(mode="json"), ensure_ascii=False) + "\n")
            self.stdout.flush()

    def _command(self, line: str) -> bool:
        """Handle a slash command; False means leave."""
        name = line.split()[0].lower()
        if name in ("/quit", "/exit", "/q"):
            return False
        if name in ("/help", "/?"):
            self.console.print(HELP)
        elif name == "/models":
            self._show_models()
        elif name == "/config":
            settings = self.pipeline.settings.model_dump(mode="json")
            self.console.print_json(json.dumps(settings))
        else:
            self.console.print(f"[yellow]Unknown command {escape(name)}.[/] /help lists them.")
        return True

    def _show_models(self) -> None:
        table = Table("role", "model", "loaded")
        resident = {str(spec) for spec in self.pipeline.manager.resident}
        for role, spec in self.pipeline.specs.items():
            table.add_row(role, str(spec), "yes" if str(spec) in resident else "no")
        self.console.print(table)
