"""What a task asks for — code (in a language), a result, or prose with requirements — decided
once per task and read by every check, prompt and choice downstream.

Where the task's own words say it, no model is asked (:func:`read`): a task that shows a
function's signature, or states calls of a function with the results they must give, asks for
code; a task that states requirements of its answer's form ("in two sentences", "all in
lowercase"), answered in prose, asks for prose. Otherwise the Planner decides with one short
question (:func:`planned`); without its decision the kind is ``unknown``, and then no answer is
failed for its form. The requirements are what the task's words state
(:func:`~.requirements.stated`), each quoting them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ai_stack.evidence.examples import examples
from ai_stack.evidence.markdown import (
    CodeBlock,
    code_blocks,
    functions_of,
    outside_code,
    parses,
    program_blocks,
    python_source,
)
from ai_stack.evidence.requirements import check_requirement, count_words, normal, stated
from ai_stack.types import DETAIL_CHARS, Ask, AskKind, Check, Contract

_KINDS: dict[str, AskKind] = {"code": "code", "value": "result", "text": "prose"}
_SIGNATURE = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.M)
_NAMED = re.compile(r"\bfunction\s+`?([A-Za-z_]\w*)\s*\(")


def read(task: str, answer: str) -> Ask | None:
    """What the task asks for, where its own words say it; None where they leave it open.

    >>> read("Write a Python function compress(s). compress('aab') returns 'a2b1'.", "").kind
    'code'
    >>> read("Explain in two sentences why the sky is blue.", "It scatters light.").describe()
    'prose, 1 requirement'
    >>> read("What is 17% of 2340? Reply with the number only.", "397.8") is None
    True
    >>> read("Write a function that returns exactly three words.", "```python\\nx=1\\n```")
    """
    function = signature(task)
    calls = [e for e in examples(task) if not e.bare]
    if function or calls:
        return Ask(kind="code", language="python", function=function, by="task")
    requirements = tuple(stated(task))
    textual = [r for r in requirements if r.check not in ANY_ANSWER]
    if textual and not program_blocks(answer):
        return Ask(kind="prose", requirements=requirements, by="task")
    return None


ANY_ANSWER = frozenset({"nothing_else", "format_choice", "language", "judgement"})
"""Requirements a result may state as well ("the number only", "yes or no", "briefly"): they
say nothing of whether the task asks for prose."""


def planned(contract: Contract | None, task: str, answer: str) -> Ask:
    """The Planner's decision on the kind, with the task's stated requirements; ``unknown``
    without one.

    >>> planned(Contract(answer="value"), "What is 2 + 2?", "4").describe()
    'result'
    >>> planned(None, "Explain in two sentences why.", "").describe()
    'unknown'
    """
    if contract is None:
        return Ask()
    kind = _KINDS[contract.answer]
    blocks = program_blocks(answer)
    language = blocks[0].language if kind == "code" and blocks else ""
    return Ask(
        kind=kind,
        language="" if language == "other" else language,
        function=signature(task) if kind == "code" else "",
        requirements=tuple(stated(task)),
        by="planner",
    )


def signature(task: str) -> str:
    """The function the task's signature names: a ``def`` in its code, else ``function
    name(...)`` in its words; "" when it names none.

    >>> signature("Write a Python function to_snake(name) that converts...")
    'to_snake'
    >>> signature("```python\\ndef add(a, b):\\n    \\"\\"\\"Add.\\"\\"\\"\\n```")
    'add'
    """
    for block in code_blocks(task):
        found = _SIGNATURE.search(block.code)
        if found:
            return found.group(1)
    named = _NAMED.search(task)
    return named.group(1) if named else ""


def form_checks(ask: Ask, answer: str, blocks: Sequence[CodeBlock]) -> list[Check]:
    """Whether the answer has the form the task asks for: code for code — defining the function
    the task's signature names, under that name, whatever name its examples call (a docstring
    quirk must not rename the function) — and prose (not a program; data such as a JSON block
    is a form prose may take) for prose. A result's form is judged once its program has run
    (:func:`result_form`). With the kind unknown, every form passes."""
    if ask.kind == "code" and not blocks:
        return [
            Check(
                kind="form",
                name="the task asks for code",
                passed=False,
                detail="the answer has no code block",
            )
        ]
    source = python_source(blocks)
    if ask.kind == "code" and ask.function and source and parses(source):
        defined = functions_of(source)
        if defined and ask.function not in defined:
            return [
                Check(
                    kind="form",
                    name=f"the task's signature names {ask.function}()",
                    passed=False,
                    detail=f"the answer defines {', '.join(defined)}() instead",
                )
            ]
    programs = [block for block in blocks if block.language in ("python", "shell")]
    if ask.kind == "prose" and programs and count_words(outside_code(answer)) < 8:
        return [
            Check(
                kind="form",
                name="the task asks for prose, not code",
                passed=False,
                detail=f"the answer is a {programs[0].language} program",
            )
        ]
    return []


def dropped_code(ask: Ask, first: str, answer: str) -> list[Check]:
    """A fix that drops the code of an answer that had some fails its form, unless the task
    asks for prose or a result: otherwise it would win by having nothing left to check.

    >>> [c.name for c in dropped_code(Ask(), "```python\\nx = 1\\n```", "Use a loop.")]
    ['the answer keeps its code']
    >>> dropped_code(Ask(kind="prose"), "```python\\nx = 1\\n```", "Use a loop.")
    []
    """
    if ask.kind not in ("code", "unknown") or not program_blocks(first) or program_blocks(answer):
        return []
    if ask.kind == "code":
        return []  # form_checks says it: the task asks for code
    return [
        Check(
            kind="form",
            name="the answer keeps its code",
            passed=False,
            detail="this version has no code block; the answer it fixes had code",
        )
    ]


def requirement_checks(ask: Ask, answer: str) -> list[Check]:
    """The task's stated requirements, checked on a prose or result answer (a code answer's
    requirements are its examples and tests)."""
    if ask.kind not in ("prose", "result"):
        return []
    return [c for r in ask.checked if (c := check_requirement(r, answer)) is not None]


def printed_by(checks: Sequence[Check]) -> list[str]:
    """What the answer's own program printed when it ran in the sandbox (its script checks).

    >>> printed_by([Check(kind="script", name="s", passed=True, detail="printed: 22.2")])
    ['22.2']
    """
    return [
        c.detail.removeprefix("printed: ")
        for c in checks
        if c.kind == "script" and c.passed and c.detail.startswith("printed: ")
    ]


def result_form(ask: Ask, checks: Sequence[Check]) -> list[Check]:
    """A failed check when the task asks for a result and the answer is a program that prints
    it: the user asked for the number, not for code that computes it. Program-aided answers are
    how small models get arithmetic right (PAL, Gao et al. 2022); the program's output, run in
    the sandbox, is the result the answer should give."""
    if ask.kind != "result":
        return []
    printed = printed_by(checks)
    if not printed:
        return []
    return [
        Check(
            kind="result",
            name="the task asks for a result, not a program",
            passed=False,
            detail=f"your program printed: {printed[0]}"[:DETAIL_CHARS],
        )
    ]


def result_agrees(printed: str, answer: str) -> Check:
    """Whether an answer gives the result a program computing it printed, by meaning: numbers
    compared at the precision the answer shows (a fraction and its percentage are one value),
    a truth value and a yes or no alike (``True`` and ``yes``), words compared without case.

    >>> result_agrees("22.2222", "It is about 22.2 degrees.").passed
    True
    >>> result_agrees("Tuesday", "It was a Monday.").detail
    'a program computing it printed: Tuesday'
    >>> result_agrees("True", "Yes.").passed, result_agrees("0.5", "About 50 %.").passed
    (True, True)
    >>> result_agrees("False", "Yes, 17 is prime.").passed
    False
    """
    truth, said = truth_of(printed), _leading_truth(answer)
    found = _numbers(printed)
    if truth is not None and said is not None:
        agrees = truth == said
    elif found and len(found) == 1:
        value = found[0]
        agrees = any(
            _same_number(value, shown) or _same_share(value, shown, printed, answer, end)
            for shown, end in ((m.group(0), m.end()) for m in re.finditer(_NUMBER, answer))
        )
    else:
        agrees = normal(printed) in normal(answer)
    if agrees:
        return Check(
            kind="result",
            name="agrees with a program computing the result",
            passed=True,
            detail=f"the program printed: {printed}"[:DETAIL_CHARS],
        )
    return Check(
        kind="result",
        name="a program computing the result disagrees with the answer",
        passed=False,
        detail=f"a program computing it printed: {printed}"[:DETAIL_CHARS],
    )


_NUMBER = r"-?\d+(?:,\d{3})*(?:\.\d+)?"
_TRUE = frozenset({"true", "yes", "correct", "right"})
_FALSE = frozenset({"false", "no", "incorrect", "wrong"})
_PERCENT = re.compile(r"\s?(?:%|percent\b|per cent\b)", re.I)


def truth_of(text: str) -> bool | None:
    """The truth value a whole text is (``True``, ``yes.``, ``**No**``), or None.

    >>> truth_of("True"), truth_of(" no. "), truth_of("17")
    (True, False, None)
    """
    word = re.sub(r"[*_`\"'.!\s]+", " ", text).strip().lower()
    return True if word in _TRUE else False if word in _FALSE else None


def _leading_truth(answer: str) -> bool | None:
    """The truth value an answer opens with ("Yes, 17 is prime." is yes), or None."""
    first = re.match(r"[\s*_`\"']*([A-Za-z]+)", answer)
    return truth_of(first.group(1)) if first else None


def _same_share(value: float, shown: str, printed: str, answer: str, end: int) -> bool:
    """A fraction and its percentage: 0.5 printed, ``50 %`` answered (or the other way)."""
    if _PERCENT.match(answer, end):
        return _same_number(value * 100, shown)
    if _PERCENT.search(printed):
        return _same_number(value / 100, shown)
    return False


def _numbers(text: str) -> list[float]:
    return [float(n.replace(",", "")) for n in re.findall(_NUMBER, text)]


def _same_number(value: float, shown: str) -> bool:
    """``22.2`` shows 22.2222 at one decimal; ``46`` is 46.0."""
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return round(value, decimals) == round(float(shown.replace(",", "")), decimals)
