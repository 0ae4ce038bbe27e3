"""The REPL's input at a terminal: line editing, history across sessions, Ctrl-R search and
multi-line input, from prompt_toolkit (what ``ollama run`` and ``llm chat`` users expect).

One task is one entry, however many lines it has: a pasted paragraph arrives as one bracketed
paste and stays in the line being edited until Enter, and a block opened with ``\"\"\"`` goes on
until a line ends with ``\"\"\"`` (Ollama's convention). Esc Enter (or Alt-Enter) starts a new
line anywhere. Piped input never comes here (``Repl`` reads it line by line, as always).

The history file lives in the user directory, is created private (0600, like a shell's), and
gets every entry through :func:`ai_stack.redaction.redact`: a key pasted into a task stays out
of it. A history file that cannot be read or written costs one warning, never the session.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.application import get_app
from prompt_toolkit.filters import Condition, is_searching
from prompt_toolkit.formatted_text import HTML
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.output import create_output

from ai_stack.redaction import redact

HISTORY_NAME = "repl-history"
FENCE = '"""'


def block_open(text: str) -> bool:
    """Whether ``text`` is a ``\"\"\"`` block still waiting for its closing ``\"\"\"``.

    >>> block_open('\"\"\"')
    True
    >>> block_open('\"\"\"first line\\nsecond')
    True
    >>> block_open('\"\"\"first line\\nsecond\"\"\"')
    False
    >>> block_open('say \"\"\"hi\"\"\"')
    False
    """
    body = text.lstrip()
    if not body.startswith(FENCE):
        return False
    return not body[len(FENCE) :].rstrip().endswith(FENCE)


def unfence(text: str) -> str:
    """The task inside a ``\"\"\"`` block (the text itself when it is none).

    >>> unfence('\"\"\"\\nline one\\nline two\\n\"\"\"')
    'line one\\nline two'
    >>> unfence('\"\"\"one line\"\"\"')
    'one line'
    >>> unfence('a task')
    'a task'
    """
    body = text.strip()
    if not body.startswith(FENCE):
        return text
    body = body[len(FENCE) :]
    if body.endswith(FENCE):
        body = body[: -len(FENCE)]
    return body.strip()


class PrivateHistory(FileHistory):
    """prompt_toolkit's history file, private and redacted, whose faults are warnings."""

    def __init__(self, path: Path, warn: Callable[[str], None]) -> None:
        super().__init__(str(path))
        self.path = path
        self.warn = warn
        self.failed = False
        # Read now, not in the prompt's event loop: a warning printed there garbles the prompt.
        self.earlier = self._read()

    def _read(self) -> list[str]:
        try:
            return list(super().load_history_strings())
        except OSError as exc:
            self._fault("read", exc)
            return []

    def load_history_strings(self) -> Iterable[str]:
        return self.earlier

    def store_string(self, string: str) -> None:
        if self.failed:
            return
        try:
            # Created 0600 (a shell history's mode): tasks may say more than the file's
            # neighbours should read.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            super().store_string(redact(string) or "")
        except OSError as exc:
            self._fault("write", exc)

    def _fault(self, verb: str, exc: OSError) -> None:
        if not self.failed:
            self.failed = True
            self.warn(
                f"Cannot {verb} the input history {self.path} ({exc.strerror}); this "
                "session's entries are kept in memory only."
            )


def open_history(directory: Path, warn: Callable[[str], None]) -> History:
    """The history shared by every REPL session of this user directory."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        warn(f"Cannot create {directory} ({exc.strerror}); the input history is not kept.")
        return InMemoryHistory()
    return PrivateHistory(directory / HISTORY_NAME, warn)


class TerminalInput:
    """Reads one task at a time at a terminal; the prompt goes where the progress goes
    (stderr), so ``ai-stack -i > answers.md`` keeps only the answers on stdout."""

    def __init__(self, history: History) -> None:
        screen = sys.stderr if sys.stderr.isatty() else sys.stdout
        self.session: PromptSession[str] = PromptSession(
            history=history,
            key_bindings=_bindings(),
            output=create_output(stdout=screen),
            prompt_continuation=lambda width, line, wrapped: "." * (width - 1) + " ",
        )

    def read(self) -> str:
        """The next task; "" when Ctrl-C discarded the line. Raises EOFError at Ctrl-D."""
        try:
            text = self.session.prompt(HTML("<b><ansicyan>task</ansicyan></b>: "))
        except KeyboardInterrupt:
            return ""
        return unfence(text)


def _bindings() -> KeyBindings:
    bindings = KeyBindings()
    in_block = Condition(lambda: block_open(get_app().current_buffer.text))

    @bindings.add("enter", filter=in_block & ~is_searching)
    def _next_line_of_block(event: KeyPressEvent) -> None:
        event.current_buffer.newline(copy_margin=False)

    @bindings.add("escape", "enter", filter=~is_searching)
    def _new_line(event: KeyPressEvent) -> None:
        event.current_buffer.newline(copy_margin=False)

    return bindings


__all__ = ["HISTORY_NAME", "TerminalInput", "block_open", "open_history", "unfence"]
