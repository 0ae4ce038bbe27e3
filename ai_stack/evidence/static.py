"""Static checks of an answer's code: they run nothing."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

import pyflakes.api
import pyflakes.messages

from ai_stack.evidence.markdown import CodeBlock, does_something, python_source
from ai_stack.types import DETAIL_CHARS, Check

_SERIOUS = (
    pyflakes.messages.UndefinedName,
    pyflakes.messages.UndefinedLocal,
    pyflakes.messages.UndefinedExport,
    pyflakes.messages.ReturnOutsideFunction,
    pyflakes.messages.YieldOutsideFunction,
    pyflakes.messages.DuplicateArgument,
)


class _Collector:
    """A pyflakes reporter that keeps what it reports."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    def syntaxError(self, filename: str, msg: str, lineno: int, offset: int, text: str) -> None:
        line = (text or "").strip()
        self.checks.append(
            Check(
                kind="syntax",
                name="Python syntax",
                passed=False,
                detail=f"line {lineno}: {msg}: {line}"[:DETAIL_CHARS],
            )
        )

    def unexpectedError(self, filename: str, msg: str) -> None:
        self.checks.append(Check(kind="syntax", name="Python syntax", passed=False, detail=msg))

    def flake(self, message: pyflakes.messages.Message) -> None:
        if isinstance(message, _SERIOUS):
            text = message.message % message.message_args
            self.checks.append(
                Check(
                    kind="names",
                    name="names defined",
                    passed=False,
                    detail=f"line {message.lineno}: {text}",
                )
            )


def static_checks(blocks: Sequence[CodeBlock]) -> list[Check]:
    """Syntax and undefined names for Python, syntax for shell. Runs nothing."""
    checks: list[Check] = []
    source = python_source(blocks)
    if source is not None:
        collector = _Collector()
        pyflakes.api.check(source, "answer.py", collector)
        checks += collector.checks
        if not collector.checks:
            checks.append(_checked("Python syntax and names", source, "python", passed=True))
    bash = shutil.which("bash")
    for block in blocks:
        if block.language != "shell" or bash is None:
            continue
        done = subprocess.run(
            [bash, "-n"], input=block.code, capture_output=True, text=True, timeout=5, check=False
        )
        detail = done.stderr.replace("bash: ", "").strip()[:DETAIL_CHARS]
        name = f"shell syntax: {_first_line(block.code)}"
        checks.append(_checked(name, block.code, "shell", done.returncode == 0, detail))
    return checks


NOTHING_TO_CHECK = "nothing to check: the code holds no statement (only comments or none)"


def _checked(name: str, code: str, language: str, passed: bool, detail: str = "") -> Check:
    """A syntax check, undecided when the code does nothing: comments pass any parser, and
    a check that checked nothing must not count as passed."""
    if passed and not does_something(code, language):
        return Check(kind="syntax", name=name, passed=None, detail=NOTHING_TO_CHECK)
    return Check(kind="syntax", name=name, passed=passed, detail=detail)


def _first_line(code: str, width: int = 60) -> str:
    line = code.strip().splitlines()[0] if code.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"
