"""The code in a Markdown answer: its fenced blocks, by language, and the program it offers."""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

_PYTHON = {"python", "py", "python3", "py3"}
_SHELL = {"bash", "sh", "shell", "zsh", "console"}
_TEXT = {"markdown", "md", "text", "txt", "plain", "plaintext"}
_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.S)


@dataclass(frozen=True, slots=True)
class CodeBlock:
    language: Literal["python", "shell", "text", "other"]
    code: str


def code_blocks(answer: str) -> list[CodeBlock]:
    """The fenced code blocks of a Markdown answer (an unclosed last fence counts), by language.
    A block tagged ``markdown`` or ``text`` is prose in a fence, not code.

    >>> text = "x\\n```python\\ndef f(): pass\\n```\\n```bash\\nls\\n```\\n```markdown\\nHi\\n```"
    >>> [b.language for b in code_blocks(text)]
    ['python', 'shell', 'text']
    """
    blocks = []
    for tag, code in _FENCE.findall(answer):
        code = textwrap.dedent(code).strip("\n")
        if not code.strip():
            continue
        tag = tag.lower()
        if tag in _PYTHON or (
            not tag and parses(code) and re.search(r"^\s*(def|class|import|from)\b", code, re.M)
        ):
            blocks.append(CodeBlock("python", code))
        elif tag in _TEXT:
            blocks.append(CodeBlock("text", code))
        elif tag in _SHELL or not tag:
            blocks.append(CodeBlock("shell", _strip_prompts(code)))
        else:
            blocks.append(CodeBlock("other", code))
    return blocks


def program_blocks(answer: str) -> list[CodeBlock]:
    """The blocks that hold code (prose in a ``markdown`` fence is not code)."""
    return [block for block in code_blocks(answer) if block.language != "text"]


def prose_of(answer: str) -> str:
    """The answer as prose: a reply wrapped whole in one ``markdown``/``text`` fence (small
    coder models do that) is unwrapped; anything else is kept as it is.

    >>> prose_of("```markdown\\nRoses are red.\\n```")
    'Roses are red.'
    >>> prose_of("Use ```ls```.")
    'Use ```ls```.'
    """
    stripped = answer.strip()
    match = re.fullmatch(r"```[ \t]*(\w*)[^\n]*\n(.*?)\n?[ \t]*(```)?", stripped, re.S)
    if match and match.group(1).lower() in _TEXT | {""} and "```" not in match.group(2):
        return match.group(2).strip()
    return stripped


def outside_code(answer: str) -> str:
    """The text of an answer outside its code blocks (prose fences count as text)."""
    kept = []
    last = 0
    for match in _FENCE.finditer(answer):
        kept.append(answer[last : match.start()])
        if match.group(1).lower() in _TEXT:
            kept.append(match.group(2))
        last = match.end()
    kept.append(answer[last:])
    return "".join(kept).strip()


def _strip_prompts(code: str) -> str:
    """``$ ls`` → ``ls``: shell blocks often show a prompt."""
    lines = code.splitlines()
    if lines and all(line.startswith("$ ") or not line.strip() for line in lines):
        return "\n".join(line[2:] for line in lines)
    return code


def parses(code: str) -> bool:
    """Whether ``code`` is Python that parses."""
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def does_something(code: str, language: str = "python") -> bool:
    """Whether ``code`` holds a statement that does something: a block of comments, a
    docstring, ``pass`` or ``...`` alone runs nothing, so its checks decide nothing.

    >>> does_something("# count lines\\n# wc -l *.py"), does_something("pass  # todo")
    (False, False)
    >>> does_something("print(1)"), does_something("# lines\\nwc -l *.py", "shell")
    (True, True)
    >>> does_something("  # nothing here\\n", "shell")
    False
    """
    if language != "python":
        return any(line.strip() and not line.strip().startswith("#") for line in code.splitlines())
    try:
        body = ast.parse(code).body
    except (SyntaxError, ValueError):
        return True  # it does something: fail to parse, which the syntax check says
    return any(
        not isinstance(node, ast.Pass)
        and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
        for node in body
    )


def python_source(blocks: Sequence[CodeBlock]) -> str | None:
    """The program an answer offers: its Python blocks that define something, joined (usage
    snippets after them are left out), else its first Python block."""
    python = [b.code for b in blocks if b.language == "python"]
    if not python:
        return None
    defining = [code for code in python if re.search(r"^\s*(def|class)\s", code, re.M)]
    return "\n\n".join(defining) if defining else python[0]


def functions_of(source: str) -> list[str]:
    """The top-level functions ``source`` defines, in order (it must parse)."""
    return [
        node.name
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def top_level_names(source: str) -> set[str]:
    """What ``source`` defines at its top level — functions, classes, assigned names — that a
    stated example could call (it must parse).

    >>> sorted(top_level_names("def f(): pass\\nclass C: pass\\ng = f\\nimport os"))
    ['C', 'f', 'g']
    """
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names
