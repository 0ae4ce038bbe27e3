"""Input/output examples a task states, as calls with expected values."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Example:
    """``call`` gives ``expected``. ``call`` is a Python expression, or a bare input to give to
    the answer's function (``'aaabcc' -> 'a3b1c2'``)."""

    call: str
    expected: str
    bare: bool = False


_ARROW = re.compile(
    r"\s*(?:->|→|=>|==>|==|\bshould return\b|\breturns\b|\bshould give\b|\bgives\b)\s*"
)


def examples(task: str) -> list[Example]:
    """Input/output examples the task states: doctest lines, ``expr -> value`` (also ``→``,
    ``=>``, ``==``, ``returns``, ``should return``, ``gives``), ``Input:``/``Output:`` pairs.

    >>> examples("For example compress('aaabcc') should return 'a3b1c2'.")
    [Example(call="compress('aaabcc')", expected="'a3b1c2'", bare=False)]
    >>> examples("'aaabcc' -> 'a3b1c2' and '' -> ''")[1]
    Example(call="''", expected="''", bare=True)
    >>> examples(">>> add(2, 3)\\n5")
    [Example(call='add(2, 3)', expected='5', bare=False)]
    """
    found: list[Example] = []
    found += _doctests(task)
    for match in _ARROW.finditer(task):
        left = _expression_before(task[: match.start()])
        right = _literal_after(task[match.end() :])
        if left is not None and right is not None:
            found.append(Example(left[0], right, bare=left[1]))
    for match in re.finditer(r"(?im)^\W*input\s*:\s*(.+?)\s*$\s*^\W*output\s*:\s*(.+?)\s*$", task):
        value, expected = _literal_after(match.group(1)), _literal_after(match.group(2))
        if value is not None and expected is not None:
            found.append(Example(value, expected, bare=True))
    return list(dict.fromkeys(found))


def _doctests(text: str) -> list[Example]:
    found = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(">>> ") and index + 1 < len(lines):
            expected = lines[index + 1].strip()
            call = stripped[4:].strip()
            if is_literal(expected) and is_call(call):
                found.append(Example(call, expected))
    return found


def _expression_before(text: str) -> tuple[str, bool] | None:
    """The longest call (``name(...)``) or literal that ends ``text``; bare is True for a
    literal."""
    text = text.rstrip()
    best: tuple[str, bool] | None = None
    for start in range(len(text) - 1, max(len(text) - 300, -1), -1):
        candidate = text[start:]
        if not candidate[:1].strip():
            continue
        if is_call(candidate):
            best = (candidate, False)
        elif is_literal(candidate) and not re.match(r"[\w.]", text[start - 1 : start] or " "):
            best = (candidate, True)
    if best and best[1] and _names_a_version(text[: len(text) - len(best[0])], best[0]):
        return None
    return best


def _names_a_version(before: str, literal: str) -> bool:
    """``Python 2 -> 3``, ``Windows 10 -> 11``: a number right after a capitalised word is part
    of a name, not an input.

    >>> _names_a_version("Port this from Python ", "2"), _names_a_version("so ", "2")
    (True, False)
    """
    return bool(re.fullmatch(r"[\d.]+", literal) and re.search(r"\b[A-Z][\w+#-]*\s+$", before))


def _literal_after(text: str) -> str | None:
    """The longest literal that starts ``text`` (trailing punctuation dropped)."""
    text = text.lstrip()
    best = None
    for end in range(1, min(len(text), 300) + 1):
        candidate = text[:end]
        continues = re.match(r"\w|\.\d", text[end : end + 2])  # 2 of 2.5, 2. of 2.5
        if candidate.endswith(",") or (re.match(r"[\w.]", candidate[-1]) and continues):
            continue
        if is_literal(candidate):
            best = candidate
    if best is not None and best.endswith("."):  # "returns 5." is 5, not 5.0
        best = best[:-1] if is_literal(best[:-1]) else best
    return best


def is_call(text: str) -> bool:
    """``name(literal, ...)``: a call whose arguments are all literals (so ``f(s) returns True
    if ...`` in prose is no example)."""
    if text != text.strip():
        return False
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError):
        return False
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        return False
    arguments = [*node.args, *(keyword.value for keyword in node.keywords)]
    placeholder = any(isinstance(a, ast.Constant) and a.value is Ellipsis for a in arguments)
    return not placeholder and all(is_literal(ast.unparse(argument)) for argument in arguments)


def is_literal(text: str) -> bool:
    if text != text.strip() or not text:
        return False
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return True


def splat(source: str, function: str, literal: str) -> bool:
    """Whether a bare tuple input is the function's positional arguments (its arity matches)."""
    value = ast.literal_eval(literal)
    if not isinstance(value, tuple):
        return False
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return len(node.args.args) == len(value) > 1
    return False


def called_name(call: str) -> str | None:
    """The function a call expression calls.

    >>> called_name("add(2, 3)"), called_name("'x'")
    ('add', None)
    """
    try:
        node = ast.parse(call, mode="eval").body
    except (SyntaxError, ValueError):
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id
    return None


def onto(call: str, function: str) -> str:
    """The call with its function replaced by ``function``: a stated example that calls another
    name than the answer's function (a docstring's examples calling an old name) still tests
    the answer's function, and never makes a fix rename it.

    >>> onto("old_name([1, 2])", "new_name")
    'new_name([1, 2])'
    """
    node = ast.parse(call, mode="eval").body
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    node.func.id = function
    return ast.unparse(node)
