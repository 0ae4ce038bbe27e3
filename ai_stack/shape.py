"""The shape a task's stated requirements give its answer, for an answer written to fit it.

A small model told "in two sentences" writes one or three, and asked to fix that writes the same
again; constrained to a JSON object whose ``sentences`` array holds exactly two items, each one
sentence, it cannot miss (measured on Qwen2.5-Coder-1.5B: docs/eval.md). A :class:`Shape` turns
the requirements a schema can hold — a count of sentences, paragraphs or bullet points, a bound
on words, no commas, a title, the opening and closing words, a postscript — into a pydantic
model, whose JSON schema constrains generation as every structured call's does, and composes the
answer's text from the reply. What no schema holds (a word to use three times, a word to avoid)
is left to the checks; a case is applied by code, which is exact (:func:`mend`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, create_model

from ai_stack.evidence import layout
from ai_stack.evidence.requirements import check_requirement
from ai_stack.types import Requirement

Unit = Literal[
    "sentences", "paragraphs", "bullets", "numbered", "one_per_line", "lines", "separator", "text"
]  # fmt: skip
_JOIN: dict[Unit, str] = {
    "sentences": " ", "paragraphs": "\n\n", "bullets": "\n", "numbered": "\n",
    "one_per_line": "\n", "lines": "\n", "separator": ", ", "text": "",
}  # fmt: skip
_EACH: dict[Unit, str] = {
    "sentences": "one sentence",
    "paragraphs": "one paragraph",
    "bullets": "one bullet point's text",
    "numbered": "one item's text, without its number",
    "one_per_line": "one item",
    "lines": "one line",
    "separator": "one item",
    "text": "the whole text",
}
_UNITS: tuple[Unit, ...] = (
    "numbered", "bullets", "one_per_line", "separator", "lines", "paragraphs", "sentences"
)  # fmt: skip
"""The unit a shape is made of, where several are stated: the most specific list first."""
CHARS_PER_WORD = (5, 7)  # a word and its space, at the fewest and the most: bounds from counts
# The most characters a pattern may count: a schema's {low,high} becomes a regex (pydantic's
# has a size limit) and a grammar of nested optionals (llama.cpp's); past this the text is
# left free in length, and the word count is still checked on the answer.
MOST_COUNTED = 4000


@dataclass(frozen=True)
class Shape:
    """The JSON object an answer is written as, and how its text is composed from it."""

    model: type[BaseModel]
    unit: Unit
    count: str  # "exactly 2", "at most 3", "" for any number
    title: Literal["", "plain", "angled"] = ""
    opening: str = ""  # the words the answer must start with
    closing: str = ""  # ... and end with
    postscript: str = ""  # its marker, "P.S."
    case: Literal["", "lowercase", "uppercase"] = ""
    divider: str = ""  # between paragraphs, besides the blank line: "***"
    quoted: bool = False  # the whole answer in double quotes
    separator: str = ""  # between the items of a separated list: ","
    signature: str = ""  # the name the answer is signed with, added by code

    def describe(self) -> str:
        """What the prompt asks for: ``a JSON object with "title" (the title) and "sentences"
        (exactly 2 items, each one sentence)``."""
        fields = []
        if self.title:
            fields.append('"title" (the title)')
        if self.opening:
            fields.append(f'"opening" (the first line, starting with "{self.opening}")')
        items = f"{self.count} items, each " if self.count else "each item "
        if self.unit == "text":
            fields.append('"text" (the whole answer)')
        else:
            fields.append(f'"{self.unit}" ({items}{_EACH[self.unit]})')
        if self.closing:
            fields.append(f'"closing" (the last line, ending with "{self.closing}")')
        if self.postscript:
            fields.append(f'"postscript" (what follows "{self.postscript}")')
        listed = ", ".join(fields[:-1]) + f" and {fields[-1]}" if len(fields) > 1 else fields[0]
        return f"a JSON object with {listed}"

    def compose(self, reply: BaseModel) -> str:
        """The answer's text from the reply.

        >>> from ai_stack.evidence.requirements import stated
        >>> shape = shape_for(stated("Explain in two sentences why, with a title."))
        >>> reply = shape.model(title="Blue", sentences=["It scatters.", "Blue most."])
        >>> print(shape.compose(reply))
        Blue
        <BLANKLINE>
        It scatters. Blue most.
        """
        data: dict[str, Any] = reply.model_dump()
        parts = [str(part).strip() for part in data.get(self.unit) or []]
        if self.unit in ("bullets", "numbered", "one_per_line"):
            parts = [re.sub(r"^[-*\u2022\d.)\s]+", "", part) for part in parts]
        if self.unit == "bullets":
            parts = ["- " + part for part in parts]
        if self.unit == "numbered":
            parts = [f"{index}. {part}" for index, part in enumerate(parts, 1)]
        if self.unit == "text":
            parts = [str(data["text"]).strip()]
        blocks = []
        if self.title:
            title = data["title"].strip().strip("<>#* ")
            blocks.append(f"<<{title}>>" if self.title == "angled" else title)
        if self.opening:
            blocks.append(data["opening"].strip())
        joiner = f"\n\n{self.divider}\n\n" if self.divider else _JOIN[self.unit]
        if self.separator:
            joiner = f"{self.separator} " if self.separator.strip() else self.separator
        blocks.append(joiner.join(parts))
        if self.closing:
            blocks.append(data["closing"].strip())
        if self.postscript:
            note = data["postscript"].strip().removeprefix(self.postscript).strip()
            blocks.append(f"{self.postscript} {note}")
        text = _cased("\n\n".join(block for block in blocks if block), self.case)
        if self.signature and not layout.signed(text, self.signature):
            text = layout.signed_with(text, self.signature)  # the name, as written: by code
        return f'"{text}"' if self.quoted else text


def shape_for(requirements: Sequence[Requirement]) -> Shape | None:
    """The shape that holds what it can of ``requirements``; None when it would hold nothing
    that a plain answer is not already free to do (no count, no title, no opening, ...).

    >>> from ai_stack.evidence.requirements import stated
    >>> shape_for(stated("Explain in two sentences why the sky is blue.")).describe()
    'a JSON object with "sentences" (exactly 2 items, each one sentence)'
    >>> shape_for(stated("Write a haiku about autumn.")) is None
    True
    """
    by_kind: dict[str, Requirement] = {}
    for requirement in requirements:
        by_kind.setdefault(requirement.check, requirement)
    no_commas = any(r.check == "avoid" and r.text.strip() == "," for r in requirements)
    banned = '\\n"\\\\' + ("," if no_commas else "")  # quotes would break the JSON string
    unit: Unit = next((u for u in _UNITS if u in by_kind), "text")
    fields: dict[str, Any] = {}
    title: Literal["", "plain", "angled"] = ""
    if "title" in by_kind:
        title = "angled" if "<<" in by_kind["title"].text else "plain"
        fields["title"] = (_line(banned, 1, 80), ...)
    opening = by_kind["starts_with"].text if "starts_with" in by_kind else ""
    if opening:
        fields["opening"] = (_line(banned, 0, 200, start=opening), ...)
    low, high = _word_bounds(by_kind.get("words"))
    count = ""
    if unit == "text":
        fields["text"] = (_text(banned, low, high), ...)
    else:
        requirement = by_kind[unit]
        least, most = _items(requirement)
        count = requirement.relation if requirement.relation != "none" else ""
        count = f"{count} {requirement.count}" if count else ""
        share = max(least, 1)
        if unit in ("one_per_line", "separator") and requirement.relation == "none":
            least, count = 2, ""
        item_banned = banned + (by_kind[unit].text if unit == "separator" else "")
        item = (
            _sentence(banned, low // share, high // share if high else 0)
            if unit == "sentences"
            else _line(item_banned, max(low // share, 2), high // share if high else 0)
        )
        fields[unit] = (list[item], Field(min_length=least, max_length=most))  # type: ignore[valid-type]
    closing = by_kind["ends_with"].text if "ends_with" in by_kind else ""
    if closing:
        fields["closing"] = (_line(banned, 0, 200, end=closing), ...)
    postscript = by_kind["postscript"].text if "postscript" in by_kind else ""
    if postscript:
        fields["postscript"] = (_line(banned, 3, 300), ...)
    case = next((c for c in ("lowercase", "uppercase") if c in by_kind), "")
    divider = by_kind["paragraphs"].text if unit == "paragraphs" else ""
    holds = unit != "text" or title or opening or closing or postscript or no_commas or high
    if not holds:
        return None
    model = create_model("ShapedAnswer", **fields)
    return Shape(
        model,
        unit,
        count,
        title,
        opening,
        closing,
        postscript,
        case,  # type: ignore[arg-type]
        divider,
        quoted="quoted" in by_kind,
        separator=by_kind["separator"].text if unit == "separator" else "",
        signature=by_kind["signature"].text if "signature" in by_kind else "",
    )


def mend(text: str, requirements: Sequence[Requirement]) -> str | None:
    """The answer with what code can do exactly done: the chatter around it dropped where the
    task wants nothing else, an answer that opens with one of the task's options reduced to it
    ("Yes, a tomato is a fruit." to "Yes"), title case, the case the task asks for, the name it
    is to be signed with, the double quotes it is to be wrapped in. None when that changes
    nothing, or something else still fails. A word's frequency is never mended by code: words
    put in by code would not read.

    >>> from ai_stack.evidence.requirements import stated
    >>> mend("Fresh Bread Daily", stated("A slogan in all capital letters."))
    'FRESH BREAD DAILY'
    >>> mend("Fresh bread", stated("A slogan in capital letters, in two sentences.")) is None
    True
    >>> mend("Yes, a tomato is a fruit.", stated("Is a tomato a fruit? Reply only with yes or no."))
    'Yes'
    >>> mend("True", stated("Reply only with yes or no: is 17 a prime number?"))
    'yes'
    """
    kinds = {r.check: r for r in requirements}
    mended = text.strip()
    if "nothing_else" in kinds:
        mended = layout.without_chatter(mended)
    if "format_choice" in kinds:
        options = kinds["format_choice"].text.split("|")
        if not layout.choice(mended, options):
            mended = (
                layout.truth_as(mended, options)  # a program's True, where "yes or no" was asked
                or layout.leading_choice(mended, options)
                or mended
            )
    if "title_case" in kinds:
        mended = layout.to_title_case(mended)
    case = next((r.check for r in requirements if r.check in ("lowercase", "uppercase")), "")
    mended = _cased(mended, case)  # type: ignore[arg-type]
    if "signature" in kinds and not layout.signed(mended, kinds["signature"].text):
        mended = layout.signed_with(mended, kinds["signature"].text)
    if any(r.check == "quoted" for r in requirements) and not mended.startswith('"'):
        mended = f'"{mended}"'
    if mended == text.strip():
        return None
    still = [c for r in requirements if (c := check_requirement(r, mended)) and c.passed is False]
    return None if still else mended


def _cased(text: str, case: Literal["", "lowercase", "uppercase"]) -> str:
    if case == "lowercase":
        return text.lower()
    if case == "uppercase":
        return text.upper()
    return text


def _items(requirement: Requirement) -> tuple[int, int | None]:
    """How many items a count allows: ``at most 3`` is 1 to 3."""
    if requirement.relation == "exactly":
        return requirement.count, requirement.count
    if requirement.relation == "at most":
        return 1, max(requirement.count, 1)
    if requirement.relation == "at least":
        return max(requirement.count, 1), None
    return 1, None


def _word_bounds(requirement: Requirement | None) -> tuple[int, int]:
    """Characters a word count allows the text, at the least and the most (0: no bound)."""
    if requirement is None or requirement.relation == "none":
        return 0, 0
    fewest, most = CHARS_PER_WORD
    if requirement.count * most > MOST_COUNTED:
        return 0, 0
    if requirement.relation == "at least":
        return requirement.count * most, 0
    if requirement.relation == "at most":
        return 0, requirement.count * fewest
    return requirement.count * fewest, requirement.count * most


def _repeat(low: int, high: int) -> str:
    if high:
        return f"{{{low},{max(high, low, 1)}}}"
    return f"{{{low},}}" if low else "*"


def _line(banned: str, low: int, high: int, *, start: str = "", end: str = "") -> Any:
    """One line of text (no line break), optionally starting or ending with given words."""
    body = f"^{_literal(start)}[^{banned}]{_repeat(low, high)}"
    pattern = f"{body}{_literal(end)}[.!]?$" if end else f"{body}$"
    return Annotated[str, StringConstraints(pattern=pattern)]


def _sentence(banned: str, low: int, high: int) -> Any:
    """One sentence: no sentence end inside it, one at its end."""
    return Annotated[
        str, StringConstraints(pattern=f"^[^.!?{banned}]{_repeat(max(low, 8), high or 400)}[.!?]$")
    ]


def _text(banned: str, low: int, high: int) -> Any:
    """A whole text, line breaks allowed (but no quotes, which would end the JSON string)."""
    allowed = banned.replace("\\n", "")
    return Annotated[str, StringConstraints(pattern=f"^[^{allowed}]{_repeat(max(low, 1), high)}$")]


def _literal(words: str) -> str:
    """``words`` as a pattern that matches them exactly: each regex special as a one-character
    class (``[.]``), never a backslash escape — llama.cpp's schema-to-grammar converter copies
    ``\\.`` into a grammar literal it then cannot parse, and the process crashed. Quotes,
    backslashes and the characters a class cannot hold plainly (``[ ] ^``) are dropped.

    >>> print(_literal("P.S. (see) a+b? $5 {x}|y [z]^w"))
    P[.]S[.] [(]see[)] a[+]b[?] [$]5 [{]x[}][|]y zw
    >>> import re; bool(re.fullmatch(_literal("P.S. (see)"), "P.S. (see)"))
    True
    """
    words = re.sub(r'["\\\[\]^]', "", words)
    return re.sub(r"([.$*+?(){}|])", r"[\1]", words)


__all__ = ["Shape", "mend", "shape_for"]
