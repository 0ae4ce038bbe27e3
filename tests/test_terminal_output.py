"""What reaches a terminal: the answer shown on screen (a real pty, read by a terminal emulator),
tables and notes that fit 80 columns without cutting what must be typed, and no control
sequence from a task or an answer — while the answer saved to a file stays verbatim."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
from collections.abc import Sequence

import pyte
import pytest

from tests.conftest import ROOT
from tests.ollama_double import OllamaDouble

# -- a real terminal -----------------------------------------------------------------------------


def run_in_pty(argv: Sequence[str], *, columns: int = 80, rows: int = 24) -> bytes:
    """Everything ``argv`` writes to a terminal of its own (stdin, stdout and stderr are a pty,
    ``columns`` wide), until it exits."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env |= {"TERM": "xterm-256color", "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        list(argv), stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 300)  # a hang guard only
            assert ready, "the command wrote nothing for 300 s"
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every end of the terminal is closed
                break
            if not data:
                break
            chunks.append(data)
        assert child.wait(timeout=300) == 0, b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)
        if child.poll() is None:
            child.kill()
    return b"".join(chunks)


def screen_of(output: bytes, columns: int = 80) -> str:
    """What a terminal shows after receiving ``output`` (tall enough that nothing scrolls off)."""
    screen = pyte.Screen(columns, 500)
    pyte.ByteStream(screen).feed(output)
    return "\n".join(line.rstrip() for line in screen.display).strip()


def ai_stack(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), *args]


@pytest.mark.parametrize("mode", [["--direct"], []], ids=["direct", "default"])
def test_the_answer_is_on_screen_at_a_terminal(on_double: OllamaDouble, mode: list[str]) -> None:
    """A spinner restarted when the model loaded redrew itself over the streamed answer, so
    `--direct` at a terminal showed "Answer", the spinner and the metrics, and no text."""
    on_double.seconds_per_token = 0.05  # the spinner redraws many times while the answer streams
    on_double.enqueue("Red and blue are two colors.", model="qwen2.5:7b")
    output = run_in_pty(ai_stack(*mode, "--executor", "ollama:qwen2.5:7b", "List two colors"))
    screen = screen_of(output)
    assert "Red and blue are two colors." in screen, screen
    assert "0 tokens" not in screen, screen
