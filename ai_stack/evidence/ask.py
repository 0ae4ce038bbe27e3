"""What a task asks for — code (in a language), a result, or prose with requirements — decided
once per task and read by every check, prompt and judgement downstream.

The kind is the Planner's decision (its :class:`~ai_stack.types.Contract`); the requirements are
what the task's own words state (:func:`~.requirements.stated`), each quoting them. Without a
contract nothing can tell, and the kind is ``unknown``: then no answer is failed for its form.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ai_stack.evidence.markdown import CodeBlock, outside_code, program_blocks
from ai_stack.evidence.requirements import check_requirement, count_words, normal, stated
from ai_stack.types import DETAIL_CHARS, Check, Contract, Requirement

AskKind = Literal["code", "result", "prose", "unknown"]


_KINDS: dict[str, AskKind] = {"code": "code", "value": "result", "text": "prose"}


@dataclass(frozen=True)
class Ask:
    """What the task asks for, and the requirements it states about the answer's form."""

    kind: AskKind = "unknown"
    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def of(cls, contract: Contract | None, task: str) -> Ask:
        """The Planner's decision on the kind, with the task's stated requirements.

        >>> from ai_stack.types import Contract
        >>> ask = Ask.of(Contract(answer="text"), "Explain in two sentences why the sky is blue.")
        >>> ask.describe()
        'prose, 1 requirement'
        >>> Ask.of(None, "Explain in two sentences why.").describe()
        'unknown'
        """
        if contract is None:
            return cls()
        return cls(kind=_KINDS[contract.answer], requirements=tuple(stated(task)))

    @property
    def checked(self) -> list[Requirement]:
        """The requirements code checks (the rest are left for judgement)."""
        return [r for r in self.requirements if r.check != "judgement"]

    def describe(self) -> str:
        """``prose, 2 requirements`` / ``code``."""
        what: str = self.kind
        if self.requirements:
            count = len(self.requirements)
            what += f", {count} requirement{'' if count == 1 else 's'}"
        return what


def form_checks(ask: Ask, answer: str, blocks: Sequence[CodeBlock]) -> list[Check]:
    """Whether the answer has the form the task asks for: code for code, and prose (not a
    program; data such as a JSON block is a form prose may take) for prose. A result's form
    is judged once its program has run (:func:`result_form`). With the kind unknown, every
    form passes."""
    if ask.kind == "code" and not blocks:
        return [
            Check(
                kind="form",
                name="the task asks for code",
                passed=False,
                detail="the answer has no code block",
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
    """Whether an answer gives the result a program computing it printed: numbers compared at
    the precision the answer shows, words compared without case.

    >>> result_agrees("22.2222", "It is about 22.2 degrees.").passed
    True
    >>> result_agrees("Tuesday", "It was a Monday.").detail
    'a program computing it printed: Tuesday'
    """
    found = _numbers(printed)
    if found and len(found) == 1:
        value = found[0]
        agrees = any(_same_number(value, shown) for shown in re.findall(_NUMBER, answer))
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


def _numbers(text: str) -> list[float]:
    return [float(n.replace(",", "")) for n in re.findall(_NUMBER, text)]


def _same_number(value: float, shown: str) -> bool:
    """``22.2`` shows 22.2222 at one decimal; ``46`` is 46.0."""
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return round(value, decimals) == round(float(shown.replace(",", "")), decimals)
