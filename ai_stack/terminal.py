"""Text from a task or a model, made safe to show at a terminal.

A terminal obeys the control sequences in what it prints: OSC 52 writes the clipboard, CSI
sequences move the cursor, clear the screen or recolour what follows, and an unterminated OSC
swallows the rest of the output. A task or an answer is data, so everything rendered to a
terminal goes through :func:`strip_controls` (rich's own cleaning keeps ESC). The answer written
to a file or a pipe is not rendered: it stays verbatim.
"""

from __future__ import annotations

import re

from rich.markup import escape as escape_markup

# A whole sequence: CSI; the string sequences (OSC, DCS, SOS, PM, APC, 7- or 8-bit) up to their
# terminator (BEL or ST); any other escape sequence (ESC, intermediates, a final byte).
_SEQUENCE = (
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[\s\S]*?(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*(?![\[\]PX^_])[0-~]"
)
_WHOLE = re.compile(_SEQUENCE)
# ... or, failing that, any one control character but tab and newline (a lone or cut ESC too).
_CONTROL = re.compile(f"{_SEQUENCE}|[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f]")
_STARTS = re.compile(r"[\x1b\x90\x98\x9b\x9d\x9e\x9f]")  # what may begin a sequence
HOLD_LIMIT = 4096  # a sequence still open after this many characters is taken as broken


def strip_controls(text: str) -> str:
    """``text`` without control sequences or control characters (tab and newline stay).

    >>> strip_controls("a\\x1b]52;c;aGk=\\x07b\\x1b[2J\\x1b[31mc\\r\\n\\td\\x1b")
    'abc\\n\\td'
    >>> strip_controls("\\x1b]0;cut off")  # no terminator: the ESC goes, the rest is text
    ']0;cut off'
    """
    return _CONTROL.sub("", text)


def escape(text: str) -> str:
    """Text for rich markup that reaches a terminal: control sequences stripped, markup escaped.

    >>> escape("[bold]\\x1b[5mx")
    '\\\\[bold]x'
    """
    return escape_markup(strip_controls(text))


class ControlFilter:
    """:func:`strip_controls` over a stream (an answer as it is written): a sequence cut
    between two pieces is held until it is whole, so neither half reaches the terminal.

    >>> f = ControlFilter()
    >>> f.feed("one \\x1b]52;c;"), f.feed("aGk=\\x07two \\x1b["), f.feed("2Jthree"), f.flush()
    ('one ', 'two ', 'three', '')
    """

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        self._held += text
        cut = _open_from(self._held)
        ready, self._held = self._held[:cut], self._held[cut:]
        return strip_controls(ready)

    def flush(self) -> str:
        """What is held, cleaned: the stream ended (a sequence never finished is dropped)."""
        ready, self._held = self._held, ""
        return strip_controls(ready)


def _open_from(text: str) -> int:
    """Where the sequence still open at the end of ``text`` begins (its length if none is)."""
    position = 0
    while (start := _STARTS.search(text, position)) is not None:
        whole = _WHOLE.match(text, start.start())
        if whole is not None:
            position = whole.end()
        elif len(text) - start.start() <= HOLD_LIMIT:
            return start.start()
        else:
            position = start.start() + 1
    return len(text)
