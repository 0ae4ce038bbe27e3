"""Input/output examples a task states, as calls with expected values."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Example:
    """``call`` gives ``expected``. ``call`` is a Python expression, or a bare input to give to
    the answer's function (``'aaabcc' -> 'a3b1c2'``)."""

    call: str
    expected: str
    bare: bool = False


_ARROW = re.compile(r"->|→|=>|==>|==|\bshould return\b|\breturns\b|\bshould give\b|\bgives\b")
_REACH = 300  # the most characters an example's call, or its value, takes
# Characters parsed in all while looking for one task's examples. Each arrow costs up to a few
# hundred parses of up to _REACH characters; a task that is all arrows ('f(1) == ' * 800 took
# 32 s) stops here, with the examples found so far.
_WORK = 1_000_000


class _Budget:
    """What is left of _WORK; each parse of a candidate spends its length."""

    def __init__(self, characters: int = _WORK) -> None:
        self.left = characters

    def spend(self, text: str) -> bool:
        """Whether ``text`` may still be parsed."""
        self.left -= len(text)
        return self.left >= 0


def examples(task: str) -> list[Example]:
    """Input/output examples the task states: doctest lines, ``expr -> value`` (also ``→``,
    ``=>``, ``==``, ``returns``, ``should return``, ``gives``), ``Input:``/``Output:`` pairs.

    The work is linear in the task's length and bounded in all (``_WORK``).

    >>> examples("For example compress('aaabcc') should return 'a3b1c2'.")
    [Example(call="compress('aaabcc')", expected="'a3b1c2'", bare=False)]
    >>> examples("'aaabcc' -> 'a3b1c2' and '' -> ''")[1]
    Example(call="''", expected="''", bare=True)
    >>> examples(">>> add(2, 3)\\n5")
    [Example(call='add(2, 3)', expected='5', bare=False)]
    """
    budget = _Budget()
    found: list[Example] = []
    found += _doctests(task, budget)
    for match in _ARROW.finditer(task):
        if budget.left <= 0:
            break
        left = _expression_before(_before(task, match.start()), budget)
        right = _literal_after(_after(task, match.end()), budget) if left is not None else None
        if left is not None and right is not None:
            found.append(Example(left[0], right, bare=left[1]))
    for value, expected in _input_output(task):
        given = _literal_after(value[: _REACH + 2], budget)
        wanted = _literal_after(expected[: _REACH + 2], budget)
        if given is not None and wanted is not None:
            found.append(Example(given, wanted, bare=True))
    return list(dict.fromkeys(found))


def _before(task: str, end: int) -> str:
    """The text an example's call may take, up to ``end`` (whitespace before it skipped), with
    room for the word before it (``_names_a_version``)."""
    while end > 0 and task[end - 1].isspace():
        end -= 1
    return task[max(end - _REACH - 100, 0) : end]


def _after(task: str, start: int) -> str:
    """The text an example's value may take, from ``start`` (whitespace skipped)."""
    while start < len(task) and task[start].isspace():
        start += 1
    return task[start : start + _REACH + 2]


def _input_output(task: str) -> Iterator[tuple[str, str]]:
    """``Input: X`` and, on the next line with a word on it, ``Output: Y``: (X, Y), stripped.

    >>> list(_input_output("Input: [3, 1]\\n\\n---\\n  Output: [1, 3]\\nInput: 2"))
    [('[3, 1]', '[1, 3]')]
    """
    lines = task.splitlines()
    for index, line in enumerate(lines):
        given = re.match(r"\W*input\s*:(.*)", line, re.IGNORECASE)
        if given is None or not given.group(1).strip():
            continue
        following = index + 1
        while following < len(lines) and re.fullmatch(r"\W*", lines[following]):
            following += 1
        if following == len(lines):
            continue
        wanted = re.match(r"\W*output\s*:(.*)", lines[following], re.IGNORECASE)
        if wanted is not None and wanted.group(1).strip():
            yield given.group(1).strip(), wanted.group(1).strip()


def _doctests(text: str, budget: _Budget) -> list[Example]:
    found = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(">>> ") and index + 1 < len(lines):
            expected = lines[index + 1].strip()
            call = stripped[4:].strip()
            if not budget.spend(call + expected):
                break  # each parsed once or twice, as in the arrows' search
            if is_literal(expected) and is_call(call):
                found.append(Example(call, expected))
    return found


_LITERAL_STARTS = frozenset("'\"([{-+.0123456789")


def _expression_before(text: str, budget: _Budget) -> tuple[str, bool] | None:
    """The longest call (``name(...)``) or literal that ends ``text``; bare is True for a
    literal. Tried longest first, from where a name or a literal can start (not inside a
    word), up to _REACH characters back."""
    text = text.rstrip()
    best: tuple[str, bool] | None = None
    for start in range(max(len(text) - _REACH + 1, 0), len(text)):
        first, previous = text[start], text[start - 1 : start] or " "
        if not (first.isidentifier() or first in _LITERAL_STARTS):
            continue
        if first.isidentifier() and (previous.isalnum() or previous == "_"):
            continue  # inside a word
        candidate = text[start:]
        node = _parse(candidate, budget)
        if node is not None and _literal_call(node):
            best = (candidate, False)
            break
        if node is not None and _constant(node) and not re.match(r"[\w.]", previous):
            best = (candidate, True)
            break
        if budget.left <= 0:
            return None
    if best and best[1] and _names_a_version(text[: len(text) - len(best[0])], best[0]):
        return None
    return best


def _parse(text: str, budget: _Budget) -> ast.expr | None:
    """``text`` as one expression, or None; its length is spent from the budget."""
    budget.spend(text)
    try:
        return ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None


def _names_a_version(before: str, literal: str) -> bool:
    """``Python 2 -> 3``, ``Windows 10 -> 11``: a number right after a capitalised word is part
    of a name, not an input.

    >>> _names_a_version("Port this from Python ", "2"), _names_a_version("so ", "2")
    (True, False)
    """
    return bool(re.fullmatch(r"[\d.]+", literal) and re.search(r"\b[A-Z][\w+#-]*\s+$", before))


def _literal_after(text: str, budget: _Budget) -> str | None:
    """The longest literal that starts ``text`` (trailing punctuation dropped), tried longest
    first."""
    text = text.lstrip()
    first = text[:1]
    if not first or not (first in _LITERAL_STARTS or _NAMED_LITERAL.match(text)):
        return None
    best = None
    for end in range(min(len(text), _REACH), 0, -1):
        candidate = text[:end]
        continues = re.match(r"\w|\.\d", text[end : end + 2])  # 2 of 2.5, 2. of 2.5
        if candidate.endswith(",") or (re.match(r"[\w.]", candidate[-1]) and continues):
            continue
        if candidate[-1].isspace():
            continue
        node = _parse(candidate, budget)
        if node is not None and _constant(node):
            best = candidate
            break
        if budget.left <= 0:
            return None
    if best is not None and best.endswith("."):  # "returns 5." is 5, not 5.0
        best = best[:-1] if is_literal(best[:-1]) else best
    return best


# A literal that starts with a letter: a constant, or a string with a prefix (b'', r'', u'').
_NAMED_LITERAL = re.compile(r"(?:True|False|None)\b|[rRbBuU]{1,2}['\"]")


def is_call(text: str) -> bool:
    """``name(literal, ...)``: a call whose arguments are all literals (so ``f(s) returns True
    if ...`` in prose is no example)."""
    if text != text.strip():
        return False
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return _literal_call(node)


def _literal_call(node: ast.expr) -> bool:
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


def _constant(node: ast.expr) -> bool:
    """Whether ``node`` is a literal (``is_literal`` of its text, parsed once)."""
    try:
        ast.literal_eval(node)
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
