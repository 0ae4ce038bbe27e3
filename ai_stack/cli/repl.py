"""The interactive loop: each line is a task, and the next turn of one conversation, so a
follow-up ("now do it for .js files too") reaches every role with the turns before it. Slash
commands start a new conversation, list its turns, attach files, answer from knowledge indexes
and re-run the last turn.

Works at a terminal (prompt_toolkit: line editing, history across sessions, Ctrl-R, multi-line
input; ``cli/terminal.py``) and with piped input (no prompt, one task a line, ends at EOF), so
``printf 'task one\\ntask two\\n' | ai-stack --interactive`` runs two turns.
"""

from __future__ import annotations

import io
import json
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.table import Table

from ai_stack.access import FilePolicy
from ai_stack.cli.common import NOT_UTF8, print_error, readable
from ai_stack.cli.config_cmd import shown
from ai_stack.config import user_dir
from ai_stack.controller import Pipeline
from ai_stack.conversation import Conversation
from ai_stack.display import Display
from ai_stack.errors import AiStackError
from ai_stack.history import HistoryRecorder
from ai_stack.knowledge.store import IndexStore
from ai_stack.runtime import attach, cite_passages, execute, find_passages
from ai_stack.terminal import escape
from ai_stack.types import Attachment

if TYPE_CHECKING:
    from ai_stack.cli.terminal import TerminalInput

HELP = """\
Type a task and press Enter; each task follows the conversation so far. A pasted paragraph is
one task, and so is a block between \"\"\" lines; Esc Enter starts a new line. Up and Down
recall earlier tasks (kept across sessions), Ctrl-R searches them, Ctrl-C clears the line
(during a task: stops it). Commands:
  /new         start a new conversation
  /history     the turns of this conversation
  /file PATH   attach a file to the next task (repeatable)
  /kb NAME...  answer the following tasks from these knowledge indexes, citing
               their passages (/kb alone: which; /kb off: none)
  /retry       run the interrupted task again, else the last turn
  /models      the model of each role, and what is loaded now
  /config      the settings in force
  /help        this help
  /quit        leave (also /exit, Ctrl-D)"""


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
        conversation: Conversation | None = None,
        files: Sequence[Attachment] = (),
        policy: FilePolicy | None = None,
        knowledge: Sequence[str] = (),
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
        self.conversation = conversation or Conversation.new()
        self.conversation.ongoing = True
        self.pending: list[Attachment] = list(files)  # attached to the next task
        self.last_files: list[Attachment] = []  # attached to the last task (for /retry)
        self.policy = policy or pipeline.settings.file_policy()
        self.knowledge: list[str] = list(knowledge)  # indexes every task answers from
        # The task that was interrupted or failed, with its files: what /retry runs next
        self.unfinished: tuple[str, list[Attachment]] | None = None
        self.terminal: TerminalInput | None = None

    def loop(self) -> int:
        """Run until /quit or end of input; the exit status is 1 if any task failed."""
        if self.stdin.isatty():
            self.console.print("[bold]ai-stack[/] interactive. /help for commands, /quit to leave.")
        for line in self._lines():
            if line.startswith("/") and "\n" not in line:
                if not self._command(line):
                    break
                continue
            self._task(line)
        return 1 if self.failures else 0

    def _lines(self) -> Iterator[str]:
        interactive = self.stdin.isatty()
        read = self._terminal().read if interactive else self._piped_line
        while True:
            try:
                line = read()
            except (EOFError, KeyboardInterrupt):
                if interactive:
                    self.console.print()
                return
            line, changed = readable(line.strip())
            if changed and not self.warned_encoding:
                self.warned_encoding = True
                self.console.print(f"[yellow]Warning: {escape(NOT_UTF8)}[/]")
            if line:
                yield line

    def _piped_line(self) -> str:
        line = self.stdin.readline()
        if line == "":
            raise EOFError  # the end of a pipe
        return line

    def _terminal(self) -> TerminalInput:
        """The line editor, made on first use: prompt_toolkit is imported only at a terminal."""
        if self.terminal is None:
            from ai_stack.cli.terminal import TerminalInput, open_history

            def warn(message: str) -> None:
                self.console.print(f"[yellow]Warning: {escape(message)}[/]")

            self.terminal = TerminalInput(open_history(user_dir(), warn))
        return self.terminal

    def _task(self, task: str, files: Sequence[Attachment] | None = None) -> bool:
        """Run one turn; False if it failed."""
        display = Display(self.console, None if self.as_json else self.stdout, quiet=self.quiet)
        if files is None:
            files, self.pending = self.pending, []
        self.last_files = list(files)
        try:
            passages = find_passages(self.knowledge, task)  # again on /retry: not in ``files``
            cited = cite_passages(self.pipeline, passages, task, files)
            result = execute(
                self.pipeline,
                task,
                display,
                self.recorder,
                conversation=self.conversation,
                files=[*files, *cited],
            )
        except AiStackError as exc:
            self.failures += 1
            self.unfinished = (task, list(files))
            print_error(self.console, exc)
            return False
        except KeyboardInterrupt:
            # Not a failure: the user stopped it, and /quit after it exits 0.
            self.unfinished = (task, list(files))
            self.console.print("\n[yellow]Task interrupted.[/] /retry runs it again.")
            if not self.stdin.isatty():
                raise
            return False
        self.unfinished = None
        if self.as_json:
            self.stdout.write(json.dumps(result.model_dump(mode="json"), ensure_ascii=False) + "\n")
            self.stdout.flush()
        return True

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
            self.console.print_json(json.dumps(shown(self.pipeline.settings)))
        elif name == "/new":
            self.conversation, self.pending = Conversation.new(), []
            self.conversation.ongoing = True
            self.console.print(f"New conversation {self.conversation.id}.")
        elif name == "/history":
            self._show_turns()
        elif name == "/file":
            self._attach(line[len(name) :].strip())
        elif name == "/retry":
            self._retry()
        elif name == "/kb":
            self._use_knowledge(line[len(name) :].split())
        else:
            self.console.print(f"[yellow]Unknown command {escape(name)}.[/] /help lists them.")
        return True

    def _show_turns(self) -> None:
        conversation, turns = self.conversation, self.conversation.turns
        if not turns:
            self.console.print(f"Conversation {conversation.id} has no turns yet.")
            return
        # One line per turn: the task and the answer's first line cut to fit, with an ellipsis;
        # the run id (for `history show`) whole.
        table = Table(title=f"Conversation {conversation.id}", expand=True)
        table.add_column("turn", no_wrap=True)
        table.add_column("task", no_wrap=True, overflow="ellipsis", ratio=1)
        table.add_column("answer", no_wrap=True, overflow="ellipsis", ratio=1)
        table.add_column("run", no_wrap=True, min_width=max(len(t.run_id or "") for t in turns))
        for turn in turns:
            lines = turn.answer.splitlines()
            first = next((s for s in lines if s.strip() and not s.startswith("```")), "")
            task = " ".join(turn.task.split())
            table.add_row(str(turn.number), escape(task), escape(first), turn.run_id or "")
        self.console.print(table)
        if conversation.summary is not None:
            self.console.print(
                f"[dim]Turns 1-{conversation.summary.covered} reach the models as a summary.[/]"
            )

    def _attach(self, argument: str) -> None:
        try:
            paths = [Path(word) for word in shlex.split(argument)]
        except ValueError as exc:
            self.console.print(f"[yellow]Cannot read the path: {escape(str(exc))}.[/]")
            return
        if not paths:
            self.console.print("[yellow]Usage: /file PATH[/]")
            return
        try:
            attached = attach(self.policy, paths)
        except AiStackError as exc:
            print_error(self.console, exc)
            return
        self.pending += attached
        names = ", ".join(attachment.path for attachment in self.pending)
        self.console.print(f"Attached to the next task: {escape(names)}")

    def _use_knowledge(self, names: list[str]) -> None:
        """``/kb NAME...``: the indexes the following tasks answer from (each checked now)."""
        if names == ["off"]:
            self.knowledge = []
        elif names:
            try:
                for name in names:
                    IndexStore.open(name).close()
            except AiStackError as exc:
                print_error(self.console, exc)
                return
            self.knowledge = names
        if self.knowledge:
            self.console.print(f"Answering from: {escape(', '.join(self.knowledge))}")
        else:
            self.console.print("Answering from no knowledge index (/kb NAME to use one).")

    def _retry(self) -> None:
        if self.unfinished is not None:  # it never became a turn: run it as the next one
            self._task(*self.unfinished)
            return
        turn = self.conversation.drop_last()
        if turn is None:
            self.console.print("[yellow]Nothing to retry: this conversation has no turns.[/]")
            return
        files = [attachment for attachment in self.last_files if attachment.path in turn.files]
        done = False
        self.pipeline.reseed()  # another sample of the turn, not the same answer again
        try:
            done = self._task(turn.task, files)
        finally:
            if not done:
                self.conversation.turns.append(turn)  # the earlier answer stands
                self.unfinished = None  # the next /retry replaces that turn again

    def _show_models(self) -> None:
        table = Table("role", "model", "loaded")
        resident = {str(spec) for spec in self.pipeline.manager.resident}
        for role, spec in self.pipeline.specs.items():
            table.add_row(role, str(spec), "yes" if str(spec) in resident else "no")
        self.console.print(table)
