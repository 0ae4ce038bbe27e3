"""Retrieved passages as the numbered sources a run is given, the citations an answer makes,
and whether each names a source it was given.

A citation is a bracketed number outside code, ``[3]`` or ``[1, 2]``: code spans and fenced
blocks are left out, as is a subscript (``a[0]``, ``x][1]``), so an answer's code is never read
as citing anything. What the number names is checked by code, not by a model: a citation of a
passage that was never retrieved is an invented source.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from ai_stack.errors import InputLimitError
from ai_stack.knowledge.retrieval import Passage
from ai_stack.types import Attachment, Citations, Source

PASSAGES = 5  # passages retrieved for a task; fewer are given when they do not all fit
SOURCE_LABEL_TOKENS = 24  # what the "Source [n], file:lines" lines around a passage take

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
CITATION = re.compile(r"(?<![\w\]\)])\[(\d{1,4}(?:\s*,\s*\d{1,4})*)\](?!\()")


def as_sources(
    passages: Sequence[Passage], room: int, count: Callable[[str], int]
) -> list[Attachment]:
    """``passages`` as numbered sources ([1] docs/x.md:10-24), the best first, as many as fit
    in ``room`` tokens (``count`` counts a text's): a passage that does not fit is dropped,
    never summarised, so that what an answer cites is what the index holds."""
    kept: list[Attachment] = []
    for passage in passages:
        room -= count(passage.text) + SOURCE_LABEL_TOKENS
        if room < 0:
            break
        source = Source(
            n=len(kept) + 1,
            index=passage.index,
            path=passage.path,
            start=passage.start,
            end=passage.end,
        )
        kept.append(Attachment(path=passage.source, text=passage.text, source=source))
    if passages and not kept:
        raise InputLimitError(
            f"No passage of {passages[0].index} fits beside the task in the models' context.",
            hint="Raise num_ctx for the roles, or attach fewer files.",
        )
    return kept


def cited(text: str) -> list[int]:
    """The source numbers ``text`` cites, in order of first citation.

    >>> cited("Pull it first [2]. Then run it [1, 3][2].")
    [2, 1, 3]
    >>> cited("`xs[1]` and xs[2] and ```\\nys[3]\\n``` and [link](x) and [4](y)")
    []
    """
    prose = CODE_SPAN.sub("", FENCE.sub("", text))
    numbers: dict[int, None] = {}
    for match in CITATION.finditer(prose):
        for part in match.group(1).split(","):
            numbers.setdefault(int(part), None)
    return list(numbers)


def check_citations(text: str, given: Iterable[int]) -> Citations:
    """Each citation of ``text`` against the numbers of the sources given.

    >>> check_citations("As [1] and [7] say.", [1, 2]).unknown
    [7]
    """
    known = set(given)
    numbers = cited(text)
    return Citations(cited=numbers, unknown=[n for n in numbers if n not in known])


__all__ = ["PASSAGES", "as_sources", "check_citations", "cited"]
