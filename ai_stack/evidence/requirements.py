"""Requirements a task states about its answer's form, and small deterministic checkers.

:func:`stated` reads them from the task's words: a small grammar of the phrases people use to
state a length, a case, words to use or avoid, a start or an end, a title, a postscript, a
format ("in two sentences", "at most 80 words", "do not use the word 'urgent'", "end with 'Best
regards'", "as JSON"). Each :class:`~ai_stack.types.Requirement` quotes the words it comes from,
so it is grounded by construction.
A requirement stated in a task that asks for code is its code's business (examples, tests):
requirements are checked on prose and results only (:mod:`.ask`).

Why code and not the Planner: asked for requirements with quotes, Qwen2.5-Coder-1.5B invented
every quote of 8 tasks (docs/eval.md); the phrases are few and regular, and a parse of them is
exact, instant and testable both ways.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from ai_stack.evidence.markdown import prose_of
from ai_stack.types import Check, Requirement

# Typographic quotes, written as escapes: the text compared is the model's and the user's.
_CURLY: dict[str, str | int | None] = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'}
_NUMERALS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
)
_NUMBERS = {word: value for value, word in enumerate(_NUMERALS.split())}
_NUMBERS |= {"once": 1, "twice": 2, "thrice": 3, "single": 1, "a": 1, "an": 1, "dozen": 12}


def normal(text: str) -> str:
    """Lower case, straight quotes, single spaces: how quotes are compared with the task.

    >>> normal("Don\\u2019t  use\\n\\u201clight\\u201d")
    'don\\'t use "light"'
    """
    text = text.translate(str.maketrans(_CURLY))
    return re.sub(r"\s+", " ", text).strip().lower()


def _any_number(requirement: Requirement) -> bool:
    """``use bullet points``, ``with [placeholders]``: a count the task leaves open, at least 1."""
    return (
        requirement.check in ("bullets", "placeholders", "sections", "include")
        and requirement.relation == "none"
        and requirement.count == 0
    )


# -- reading them from the task ----------------------------------------------------------------

_NUM = r"(\d{1,5}|" + "|".join(_NUMERALS.split()) + r"|a single|one single)"
_RELATION = (
    r"(exactly|at least|no less than|no fewer than|a minimum of|minimum of|at most|no more than"
    r"|not more than|a maximum of|maximum of|up to|fewer than|less than|more than|under|over)"
)
_UNIT = (
    r"(words?|sentences?|paragraphs?|bullet points?|bullets?|sections?|placeholders?"
    r"|lines?)"
)
_UNITS = {
    "word": "words",
    "sentence": "sentences",
    "paragraph": "paragraphs",
    "bullet": "bullets",
    "bullet point": "bullets",
    "section": "sections",
    "placeholder": "placeholders",
}
_QUOTED = r"[\"'\u201c\u2018]([^\"'\u201d\u2019\n]{1,60})[\"'\u201d\u2019]"
_TERM = rf"(?:the (?:words?|phrases?|terms?|keywords?|letters?) )?(?:{_QUOTED}|(\w[\w-]*))"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("count", re.compile(rf"\b(?:{_RELATION}\s+)?{_NUM}\s+{_UNIT}\b", re.I)),
    ("count-hyphen", re.compile(rf"\b{_NUM}-(sentence|paragraph)\b", re.I)),
    ("lowercase", re.compile(r"\b(?:all |entirely |only )?(?:in )?lower[- ]?case\b", re.I)),
    (
        "uppercase",
        re.compile(
            r"\b(?:all |entirely |only )?(?:in )?(?:upper[- ]?case|capital letters|all caps)\b",
            re.I,
        ),
    ),
    (
        "avoid",
        re.compile(
            rf"\b(?:do not|don't|never|without|avoid)(?: using| use| mentioning| mention"
            rf"| including| include| saying| say)?(?: any)? {_TERM}",
            re.I,
        ),
    ),
    (
        "include",
        re.compile(
            rf"\b(?:use|include|mention|contain)s?(?: the (?:words?|phrases?|terms?|keywords?))?"
            rf" {_QUOTED}(?: at least {_NUM} times?)?",
            re.I,
        ),
    ),
    (
        "starts_with",
        re.compile(
            rf"\b(?:start|begin)s?(?: (?:your|the) (?:answer|reply|response|email|letter|text))?"
            rf" with(?: the (?:words?|phrase|sentence))? {_QUOTED}",
            re.I,
        ),
    ),
    (
        "ends_with",
        re.compile(
            rf"\b(?:end|finish)(?:s|ing)?(?: (?:your|the) (?:answer|reply|response|email|letter"
            rf"|text))? with(?: the (?:words?|phrase|sentence))? {_QUOTED}",
            re.I,
        ),
    ),
    ("title", re.compile(r"\b(?:include|with|give it|add|has|have) a title\b", re.I)),
    (
        "postscript",
        re.compile(r"\b(?:add|include|with|end with) a (?:postscript|p\.\s?s\.?)", re.I),
    ),
    ("json", re.compile(r"\b(?:in|as) (?:valid )?JSON\b|\bJSON (?:object|format)\b", re.I)),
    (
        "bullets",
        re.compile(r"\b(?:as|in|use|using|with) (?:a )?(?:bulleted|bullet[- ]point) list\b", re.I),
    ),
]


def _relation(word: str | None, count: int) -> tuple[str, int]:
    word = (word or "exactly").lower()
    if word in ("fewer than", "less than", "under"):
        return "at most", max(count - 1, 0)
    if word in ("more than", "over"):
        return "at least", count + 1
    if word in ("at least", "no less than", "no fewer than", "a minimum of", "minimum of"):
        return "at least", count
    if word == "exactly":
        return "exactly", count
    return "at most", count


def _number(text: str) -> int:
    text = text.lower()
    return int(text) if text.isdigit() else _NUMBERS.get(text.split()[-1], 1)


def stated(task: str) -> list[Requirement]:
    """The requirements about its answer's form that a task states, each quoting it.

    >>> [r.describe() for r in stated("Explain in two sentences why the sky is blue.")]
    ['sentences: exactly 2 ("two sentences")']
    >>> for r in stated("Answer in at most 80 words, without the word 'light'."):
    ...     print(r.describe())
    words: at most 80 ("at most 80 words")
    avoid 'light' ("without the word 'light'")
    >>> stated("Write a haiku about autumn."), stated("Port this from Python 2 -> 3.")
    ([], [])
    """
    found: list[Requirement] = []
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(task):
            quote = match.group(0).strip()
            if kind == "count":
                unit = _UNITS.get(match.group(3).lower().rstrip("s"))
                if unit is None:  # lines: no checker of its own
                    continue
                relation, count = _relation(match.group(1), _number(match.group(2)))
                found.append(Requirement(quote=quote, check=unit, relation=relation, count=count))  # type: ignore[arg-type]
            elif kind == "count-hyphen":
                unit = _UNITS[match.group(2).lower()]
                count = _number(match.group(1))
                found.append(Requirement(quote=quote, check=unit, relation="exactly", count=count))  # type: ignore[arg-type]
            elif kind == "avoid":
                quoted, bare = match.group(1), match.group(2)
                if not quoted and "the " not in quote.lower() and bare.lower() != "commas":
                    continue  # "without a doubt": only a quoted term or "the word X" is one
                text = "," if (bare or "").lower() in ("comma", "commas") else quoted or bare
                found.append(Requirement(quote=quote, check="avoid", text=text[:80]))
            elif kind == "include":
                if re.search(r"(not|n't|never|without)\s*$", task[: match.start()], re.I):
                    continue  # "do not use the word 'x'" is an avoid
                times = match.group(2)
                found.append(
                    Requirement(
                        quote=quote,
                        check="include",
                        relation="at least" if times else "none",
                        count=_number(times) if times else 0,
                        text=match.group(1)[:80],
                    )
                )
            elif kind in ("starts_with", "ends_with"):
                found.append(Requirement(quote=quote, check=kind, text=match.group(1)[:80]))  # type: ignore[arg-type]
            else:
                text = "P.S." if kind == "postscript" else ""
                found.append(Requirement(quote=quote, check=kind, text=text))  # type: ignore[arg-type]
    return list({(r.check, r.relation, r.count, r.text): r for r in found}.values())


# -- the checkers ------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_BULLET = re.compile(r"^\s*(?:[-*•+]|\d{1,3}[.)])\s+\S", re.M)
_PLACEHOLDER = re.compile(r"\[[^\[\]\n]{1,40}\]")


def _markup_free(text: str) -> str:
    """Headings' ``#``, emphasis and bullets' marks dropped: what is counted as words."""
    text = re.sub(r"^\s*(#{1,6}|[-*•+]|\d{1,3}[.)])\s+", "", text, flags=re.M)
    return re.sub(r"[*_`]{1,3}", "", text)


def count_words(text: str) -> int:
    """Words, markup aside.

    >>> count_words("It's a well-known fact: the sky is blue.")
    8
    """
    return len(_WORD.findall(_markup_free(text)))


def count_sentences(text: str) -> int:
    """Sentences end at ``.``, ``!`` or ``?`` before a space and a capital (or the end); a
    list item or heading without a full stop is a sentence of its own.

    >>> count_sentences("The sky is blue. It scatters light, e.g. blue light! Why? Dr. Who.")
    4
    """
    count = 0
    for line in _markup_free(text).splitlines():
        line = line.strip()
        if not _WORD.search(line):
            continue
        parts = _SENTENCE_END.split(line)
        count += sum(1 for part in parts if _WORD.search(part) and not _abbreviation(part))
    return count


def _abbreviation(part: str) -> bool:
    """``Dr.``, ``e.g.``: a piece that is only an abbreviation ends no sentence of its own."""
    return bool(re.fullmatch(r"(?i)(mr|mrs|ms|dr|prof|st|vs|etc|e\.g|i\.e)\.", part.strip()))


def count_paragraphs(text: str) -> int:
    """Paragraphs, split by blank lines or a ``***`` line.

    >>> count_paragraphs("One.\\n\\nTwo,\\nstill two.\\n***\\nThree.")
    3
    """
    pieces = re.split(r"\n\s*\n|^\s*\*\*\*+\s*$", text, flags=re.M)
    return sum(1 for piece in pieces if _WORD.search(piece))


def count_sections(text: str, marker: str = "") -> int:
    """Markdown headings, or lines starting with ``marker`` (``Section 1``)."""
    if marker:
        pattern = rf"^\s*(?:#+\s*)?\**{re.escape(marker)}\b"
        return len(re.findall(pattern, text, re.M | re.I))
    return len(re.findall(r"^\s*#{1,6}\s+\S", text, re.M))


def occurrences(text: str, phrase: str) -> int:
    """How often ``phrase`` occurs, case-insensitively, as whole words where it has letters.

    >>> occurrences("Light, lights and LIGHT.", "light"), occurrences("a, b, c", ",")
    (2, 2)
    """
    phrase = normal(phrase)
    if not phrase:
        return 0
    start = r"\b" if phrase[0].isalnum() else ""
    end = r"\b" if phrase[-1].isalnum() else ""
    return len(re.findall(start + re.escape(phrase) + end, normal(text)))


def _edge(text: str, marks: str = " \t\n\"'`*_#>\u2018\u2019\u201c\u201d") -> str:
    return normal(text.strip(marks))


def _starts(text: str, phrase: str) -> bool:
    return _edge(text).startswith(_edge(phrase).rstrip(".!?"))


def _ends(text: str, phrase: str) -> bool:
    return _edge(text).rstrip(".!?").endswith(_edge(phrase).rstrip(".!?"))


def _title(text: str) -> bool:
    lines = [line.strip() for line in text.strip().splitlines()]
    if not lines:
        return False
    first = lines[0]
    if re.fullmatch(r"(#{1,6}\s+.+|<<.+>>|\*\*.+\*\*|__.+__)", first):
        return True
    return (
        len(lines) > 1
        and not lines[1]
        and count_words(first) <= 12
        and not first.endswith((".", ",", ";"))
    )


def _postscript(text: str, marker: str) -> bool:
    marker = normal(marker or "P.S.")
    return any(normal(line).startswith(marker) for line in text.strip().splitlines()[-6:])


def _json(text: str) -> bool:
    body = re.sub(r"^```\w*\n|\n?```$", "", text.strip())
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _compare(actual: int, relation: str, count: int) -> bool:
    if relation == "at least":
        return actual >= count
    if relation == "at most":
        return actual <= count
    return actual == count


_COUNTERS: dict[str, Callable[[str, Requirement], int]] = {
    "words": lambda text, r: count_words(text),
    "sentences": lambda text, r: count_sentences(text),
    "paragraphs": lambda text, r: count_paragraphs(text),
    "bullets": lambda text, r: len(_BULLET.findall(text)),
    "sections": lambda text, r: count_sections(text, r.text),
    "placeholders": lambda text, r: len(_PLACEHOLDER.findall(text)),
    "include": lambda text, r: occurrences(text, r.text),
}
_NOUNS = {"include": "time", "placeholders": "placeholder", "bullets": "bullet point"}


def body_of(text: str) -> str:
    """The text without a closing postscript: what its sentences, words and paragraphs are.

    >>> body_of("Come at six.\\n\\nP.S. Bring cake.")
    'Come at six.'
    """
    match = re.search(r"^\s*[*_]*p\.\s?(?:p\.\s?)?s\.", text, re.I | re.M)
    return text[: match.start()].rstrip() if match and match.start() > 0 else text


def check_requirement(requirement: Requirement, answer: str) -> Check | None:
    """The check of one requirement on an answer, or None for one left for judgement."""
    text = prose_of(answer)
    kind = requirement.check
    relation = requirement.relation
    if kind in ("words", "sentences", "paragraphs"):
        text = body_of(text)
    if kind in _COUNTERS:
        count = requirement.count
        if _any_number(requirement):
            relation, count = "at least", 1
        actual = _COUNTERS[kind](text, requirement)
        noun = _NOUNS.get(kind, kind.rstrip("s"))
        found = f"{actual} {noun}{'' if actual == 1 else 's'}"
        detail = f"found {actual} times" if kind == "include" else f"the answer has {found}"
        passed = _compare(actual, "exactly" if relation == "none" else relation, count)
    elif kind == "avoid":
        actual = occurrences(text, requirement.text)
        passed, detail = actual == 0, f"found {actual} times"
    elif kind in ("lowercase", "uppercase"):
        letters = re.sub(r"[^\w]|\d|_", "", text)
        passed = bool(letters) and letters == (
            letters.lower() if kind == "lowercase" else letters.upper()
        )
        detail = "" if passed else f"the answer is not all in {kind[:5]} case"
    elif kind == "starts_with":
        passed = _starts(text, requirement.text)
        detail = "" if passed else f"the answer starts with {text[:40]!r}"
    elif kind == "ends_with":
        passed = _ends(text, requirement.text)
        detail = "" if passed else f"the answer ends with {text[-40:]!r}"
    elif kind == "title":
        passed = _title(text)
        detail = "" if passed else "the first line is not a title"
    elif kind == "postscript":
        passed = _postscript(text, requirement.text)
        detail = "" if passed else "no postscript at the end"
    elif kind == "json":
        passed = _json(text)
        detail = "" if passed else "the answer is not valid JSON"
    else:
        return None
    return Check(kind="requirement", name=requirement.describe(), passed=passed, detail=detail)


__all__ = ["check_requirement", "count_sentences", "count_words", "occurrences", "stated"]
