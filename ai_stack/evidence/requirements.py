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
_NOT = r"(?<!\bno )(?<!\bnot )(?<!\bwithout )(?<!\bnever )"  # "no capital letters": not a case
_FOLLOWING = r"(?:the|this|these)(?: exact)? (?:words?|phrases?|sentence)"
# an unquoted phrase, after "this exact phrase", runs to the end of its sentence
_BARE_PHRASE = r"([^\n\"]{1,60}?[.!?]?)(?=\.?\s+(?:No|Do not|Nothing)\b|\.?\s*$)"
_RESPONSE = r"(?:answer|reply|response|email|letter|text|note|message|poem|story|essay)"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("count", re.compile(rf"\b(?:{_RELATION}\s+)?{_NUM}\s+{_UNIT}\b", re.I)),
    ("count-hyphen", re.compile(rf"\b{_NUM}-(sentence|paragraph)\b", re.I)),
    (
        "lowercase",
        re.compile(
            rf"{_NOT}\b(?:(?:all|entirely|only)(?: in)?|in(?: all)?) lower[- ]?case(?: letters)?\b"
            r"|\bno capital letters\b",
            re.I,
        ),
    ),
    (
        "uppercase",
        re.compile(
            rf"{_NOT}(?<!\bwords with )\b(?:(?:all|entirely|only)(?: in)?|in(?: all)?) "
            r"(?:upper[- ]?case(?: letters)?|capital letters|caps)\b"
            r"(?!,? (?:should|must|may|will) appear)",
            re.I,
        ),
    ),
    (
        "capital_words",
        re.compile(
            rf"\bwords (?:with|in) all capital letters (?:should|must|may) appear "
            rf"(?:{_RELATION} )?{_NUM} times\b",
            re.I,
        ),
    ),
    (
        "letters",
        re.compile(
            rf"\bthe letter [\"']?([a-z])[\"']? (?:should|must|may) appear (?:{_RELATION} )?"
            rf"{_NUM} times\b",
            re.I,
        ),
    ),
    (
        "highlights",
        re.compile(rf"\bhighlight (?:{_RELATION} )?{_NUM} (?:sections?|parts?|phrases?)\b", re.I),
    ),
    (
        "avoid",
        re.compile(
            rf"\b(?:do not|don't|never|without|avoid|refrain from)(?: using| use| the use of"
            rf"| mentioning| mention| including| include| saying| say)?(?: any)? {_TERM}",
            re.I,
        ),
    ),
    ("no-commas", re.compile(r"\b(?:with|use|using|contain|containing) no commas\b", re.I)),
    (
        "keywords",
        re.compile(
            r"\b(do not |don't |never )?(?:include|use|mention)s? (?:the )?key ?words? "
            r"(\w[\w'-]*(?: \w[\w'-]*)?(?:, \w[\w'-]*(?: \w[\w'-]*)?)*"
            r"(?:,? and \w[\w'-]*(?: \w[\w'-]*)?)?)(?= in (?:the|your) \w+|[.;]|$)",
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
            rf"\b(?:start|begin)s?(?: (?:your|the) {_RESPONSE})? with(?: {_FOLLOWING})?:?"
            rf" {_QUOTED}",
            re.I,
        ),
    ),
    (
        "ends_with",
        re.compile(
            rf"\b(?:end|finish)(?:s|ing)?(?: (?:your|the) {_RESPONSE})? with(?: {_FOLLOWING})?:?"
            rf" {_QUOTED}|\b(?:end|finish)(?:s|ing)?(?: (?:your|the) {_RESPONSE})? with "
            rf"{_FOLLOWING}:? {_BARE_PHRASE}",
            re.I,
        ),
    ),
    (
        "title",
        re.compile(
            r"\b(?:include|with|give|add|has|have|contain|put)s?(?: (?:it|them|the \w+|your \w+))?"
            r" a title\b",
            re.I,
        ),
    ),
    (
        "postscript",
        re.compile(
            r"\b(?:add|include|with|end with)(?: a| an)? (?:postscript|p\.\s?s\.?)"
            r"(?: (?:starting|beginning) with ((?:P\.\s?)+S\.?))?",
            re.I,
        ),
    ),
    ("json", re.compile(r"\b(?:in|as) (?:valid )?JSON\b|\bJSON (?:object|format)\b", re.I)),
    (
        "bullets",
        re.compile(r"\b(?:as|in|use|using|with) (?:a )?(?:bulleted|bullet[- ]point) list\b", re.I),
    ),
    (
        "quoted",
        re.compile(
            r"\bwrap (?:your |the )?(?:entire |whole )?(?:response|answer|reply|output) "
            r"(?:with|in) double quot(?:ation marks|es)\b",
            re.I,
        ),
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

    Negations and look-alikes are not what they resemble:

    >>> [r.check for r in stated("All in lowercase letters. No capital letters are allowed.")]
    ['lowercase']
    >>> [r.describe() for r in stated("Words with all capital letters should appear 3 times.")]
    ['capital words: exactly 3 ("Words with all capital letters should appear 3 times")']
    >>> [r.check for r in stated("Highlight at least 2 sections with markdown.")]
    ['highlights']
    """
    found: list[Requirement] = []
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(task):
            found += _read(kind, match, task)
    found = _marked(found, task)
    cases = {r.check for r in found} & {"lowercase", "uppercase"}
    if len(cases) > 1:  # a task cannot want both: neither is checked
        found = [r for r in found if r.check not in cases]
    return list({(r.check, r.relation, r.count, r.text): r for r in found}.values())


def _read(kind: str, match: re.Match[str], task: str) -> list[Requirement]:
    """The requirements one phrase states (a list of keywords states several)."""
    quote = match.group(0).strip()
    if kind == "count":
        unit = _UNITS.get(match.group(3).lower().rstrip("s"))
        if unit is None:  # lines: no checker of its own
            return []
        before = task[: match.start()]
        if unit == "sections" and re.search(r"\bhighlight\s+\S*\s*\S*\s*$", before, re.I):
            return []  # "highlight at least 2 sections": highlights
        relation, count = _relation(match.group(1), _number(match.group(2)))
        return [Requirement(quote=quote, check=unit, relation=relation, count=count)]  # type: ignore[arg-type]
    if kind == "count-hyphen":
        unit = _UNITS[match.group(2).lower()]
        count = _number(match.group(1))
        return [Requirement(quote=quote, check=unit, relation="exactly", count=count)]  # type: ignore[arg-type]
    if kind in ("capital_words", "highlights"):
        relation, count = _relation(match.group(1), _number(match.group(2)))
        return [Requirement(quote=quote, check=kind, relation=relation, count=count)]  # type: ignore[arg-type]
    if kind == "letters":
        relation, count = _relation(match.group(2), _number(match.group(3)))
        letter = match.group(1).lower()
        return [
            Requirement(quote=quote, check="letters", relation=relation, count=count, text=letter)  # type: ignore[arg-type]
        ]
    if kind == "avoid":
        quoted, bare = match.group(1), match.group(2)
        if bare and bare.lower() in ("keyword", "keywords"):
            return []  # "do not include keywords x, y": a list, read below
        if not quoted and "the " not in quote.lower() and bare.lower() != "commas":
            return []  # "without a doubt": only a quoted term or "the word X" is one
        text = "," if (bare or "").lower() in ("comma", "commas") else quoted or bare
        return [Requirement(quote=quote, check="avoid", text=text[:80])]
    if kind == "no-commas":
        return [Requirement(quote=quote, check="avoid", text=",")]
    if kind == "keywords":
        words = re.split(r",\s*(?:and\s+)?|\s+and\s+", match.group(2).strip())
        check = "avoid" if match.group(1) else "include"
        return [
            Requirement(quote=quote, check=check, text=word.strip(" '\"")[:80])  # type: ignore[arg-type]
            for word in words
            if word.strip(" '\"")
        ]
    if kind == "include":
        if re.search(r"(not|n't|never|without)\s*$", task[: match.start()], re.I):
            return []  # "do not use the word 'x'" is an avoid
        times = match.group(2)
        return [
            Requirement(
                quote=quote,
                check="include",
                relation="at least" if times else "none",
                count=_number(times) if times else 0,
                text=match.group(1)[:80],
            )
        ]
    if kind in ("starts_with", "ends_with"):
        text = next(group for group in match.groups() if group)
        return [Requirement(quote=quote, check=kind, text=text.strip()[:80])]  # type: ignore[arg-type]
    if kind == "title":
        angled = bool(re.search(r"<<|angular brackets", task, re.I))
        return [Requirement(quote=quote, check="title", text="<<>>" if angled else "")]
    if kind == "postscript":
        marker = re.sub(r"\s+", "", match.group(1) or "P.S.").upper()
        return [Requirement(quote=quote, check="postscript", text=marker)]
    return [Requirement(quote=quote, check=kind, text="")]  # type: ignore[arg-type]


def _marked(found: list[Requirement], task: str) -> list[Requirement]:
    """Sections marked by a word (``Mark the beginning of each section with SECTION X``) and
    paragraphs split by a divider (``separated with the markdown divider: ***``) carry it."""
    marker = re.search(r"\beach section with ['\"]?([A-Za-z]+)\b", task)
    divider = re.search(r"\bparagraphs\b[^.]*(?:separated|divided)[^\n]*\*\*\*", task, re.I)
    marked = []
    for requirement in found:
        if requirement.check == "sections" and marker:
            requirement = requirement.model_copy(update={"text": marker.group(1)})
        elif requirement.check == "paragraphs" and divider:
            requirement = requirement.model_copy(update={"text": "***"})
        marked.append(requirement)
    return marked


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


def count_capital_words(text: str) -> int:
    """Words written all in capitals (two letters or more).

    >>> count_capital_words("GO NOW, it is A fine DAY")
    3
    """
    return sum(1 for word in _WORD.findall(text) if len(word) > 1 and word.isupper())


_HIGHLIGHT = re.compile(r"\*\*[^\n*]+\*\*|(?<!\*)\*[^\n*\s][^\n*]*\*(?!\*)")


def count_highlights(text: str) -> int:
    """Spans highlighted with Markdown emphasis (``*this*`` or ``**this**``), not bullets.

    >>> count_highlights("* a bullet\\nSome *key idea* and **another**.")
    2
    """
    return len(_HIGHLIGHT.findall(text))


_COUNTERS: dict[str, Callable[[str, Requirement], int]] = {
    "words": lambda text, r: count_words(text),
    "sentences": lambda text, r: count_sentences(text),
    "paragraphs": lambda text, r: count_paragraphs(text),
    "bullets": lambda text, r: len(_BULLET.findall(text)),
    "sections": lambda text, r: count_sections(text, r.text),
    "placeholders": lambda text, r: len(_PLACEHOLDER.findall(text)),
    "include": lambda text, r: occurrences(text, r.text),
    "letters": lambda text, r: text.lower().count(r.text.lower()),
    "capital_words": lambda text, r: count_capital_words(text),
    "highlights": lambda text, r: count_highlights(text),
}
_NOUNS = {
    "include": "time",
    "placeholders": "placeholder",
    "bullets": "bullet point",
    "letters": "time",
    "capital_words": "word in capitals",
    "highlights": "highlighted span",
}


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
        counted = kind in ("include", "letters")
        detail = f"found {actual} times" if counted else f"the answer has {found}"
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
    elif kind == "quoted":
        stripped = text.strip()
        passed = len(stripped) > 1 and stripped[0] == stripped[-1] == '"'
        detail = "" if passed else "the answer is not wrapped in double quotes"
    else:
        return None
    return Check(kind="requirement", name=requirement.describe(), passed=passed, detail=detail)


__all__ = ["check_requirement", "count_sentences", "count_words", "occurrences", "stated"]
