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

from pydantic import ValidationError

from ai_stack.evidence import layout, phrasings
from ai_stack.evidence.markdown import prose_of
from ai_stack.evidence.phrasings import before
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
        requirement.check in ("bullets", "placeholders", "sections", "include", "numbered")
        and requirement.relation == "none"
        and requirement.count == 0
    )


# -- reading them from the task ----------------------------------------------------------------

_NUM = r"(\d{1,3}(?:,\d{3})+|\d{1,5}|" + "|".join(_NUMERALS.split()) + r"|a single|one single)"
_RELATION = (
    r"(exactly|at least|no less than|no fewer than|a minimum of|minimum of|at most|no more than"
    r"|not more than|a maximum of|maximum of|up to|fewer than|less than|more than|under|over"
    r"|no longer than|shorter than|longer than|not exceeding|not to exceed|not over|at max"
    r"|a max of|max\.?|maximum|within|min\.?|minimum|just|only|<=|\u2264|<|>=|\u2265|>)"
)
_UNIT = "(" + "|".join(sorted(phrasings.UNITS, key=len, reverse=True)) + r")s?"
_UNITS = phrasings.UNITS
_AFTER = re.compile(
    r"\s*(?:or (less|fewer|under|shorter|more|over|longer)\b|(max(?:imum)?|min(?:imum)?|tops"
    r"|at most|at least|at the most|or so)\b|(\+))",
    re.I,
)
_RANGE = re.compile(rf"\b(?:between )?{_NUM}\s*(?:-|\u2013|to|and|or)\s*{_NUM}\s+{_UNIT}\b", re.I)
_SUBJECT = re.compile(r"\b(?:my|our|your|his|her|their|this|these|that)\s+$", re.I)
_QUOTED = r"[\"'\u201c\u2018]([^\"'\u201d\u2019\n]{1,60})[\"'\u201d\u2019]"
_TERM = rf"(?:the (?:words?|phrases?|terms?|keywords?|letters?) )?(?:{_QUOTED}|(\w[\w-]*))"
_NOT = r"(?<!\bno )(?<!\bnot )(?<!\bwithout )(?<!\bnever )"  # "no capital letters": not a case
_FOLLOWING = r"(?:the|this|these)(?: exact)? (?:words?|phrases?|sentence)"
# an unquoted phrase, after "this exact phrase", runs to the end of its sentence
_BARE_PHRASE = r"([^\n\"]{1,60}?[.!?]?)(?=\.?\s+(?:No|Do not|Nothing)\b|\.?\s*$)"
_APPEARS = (
    r"(?:should |must |has to |needs to |to )?(?:appears?|appearing|is used|used|occurs?"
    r"|occurring|shows up|comes up|be used|appear|be mentioned|is mentioned|mentioned)"
)
_RESPONSE = r"(?:answer|reply|response|email|letter|text|note|message|poem|story|essay)"
AVOIDED = {
    "hashtags": "#", "hashtag": "#", "exclamation marks": "!", "exclamation points": "!",
    "exclamation mark": "!", "exclamation point": "!", "semicolons": ";", "semi-colons": ";",
    "question marks": "?", "em dashes": "\u2014", "em-dashes": "\u2014", "ampersands": "&",
    "colons": ":", "asterisks": "*", "commas": ",",
}  # fmt: skip
"""Marks a task bans by name ("no hashtags"), and the character each is."""
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("count", re.compile(rf"(?:(?<!\w){_RELATION}\s*)?\b{_NUM}\s+{_UNIT}\b", re.I)),
    (
        "count-or",
        re.compile(rf"\b{_NUM} or (fewer|less|more) {_UNIT}\b", re.I),
    ),
    (
        "count-limit",
        re.compile(
            rf"\b(?:(?:keep|limit|cap|trim|cut|shorten)(?: it| this| that| (?:the|your) \w+)?"
            rf" (?:to|at)|(?:a |the )?limit of|(?:a |the )?max(?:imum)? of) {_NUM}\s+{_UNIT}\b",
            re.I,
        ),
    ),
    (
        "count-hyphen",
        re.compile(rf"\b{_NUM}-(sentence|paragraph|line|character|char|word)\b", re.I),
    ),
    (
        "lowercase",
        re.compile(
            rf"{_NOT}\b(?:(?:all|entirely|only)(?: in)?|in(?: all)?|(?:use|using|write|written)"
            r"(?: (?:in|only|all))*) lower[- ]?case(?: letters| only)?\b"
            r"|\b(?:no|without|don't use|do not use|never use) (?:any )?(?:capital letters|capitals"
            r"|caps|uppercase letters)\b|\blower[- ]?case only\b",
            re.I,
        ),
    ),
    (
        "uppercase",
        re.compile(
            rf"{_NOT}(?<!\bwords with )(?<!\bwords in )\b(?:(?:all|entirely|only)(?: in)?"
            r"|in(?: all)?|(?:use|using|write|written)(?: (?:in|only|all))*) "
            r"(?:upper[- ]?case(?: letters)?|capital letters|caps)\b"
            r"(?!,? (?:should|must|may|will) appear)",
            re.I,
        ),
    ),
    (
        "capital_words",
        re.compile(
            rf"\bwords (?:with|in) all capital letters (?:should|must|may) appear "
            rf"(?:{_RELATION} )?{_NUM} times\b"
            rf"|\b(?:{_RELATION} )?{_NUM} words? (?:with|in|written in) (?:all )?"
            r"(?:caps|capital letters|capitals|upper[- ]?case)\b",
            re.I,
        ),
    ),
    (
        "letters",
        re.compile(
            rf"\bthe letter [\"']?([a-z])[\"']? (?:should|must|may|to)? ?(?:appears?|is used"
            rf"|occurs?)? ?(?:{_RELATION} )?{_NUM} times\b",
            re.I,
        ),
    ),
    (
        "highlights",
        re.compile(
            rf"\bhighlight (?:{_RELATION} )?{_NUM} (?:[\w-]+ )?(?:sections?|parts?|phrases?|terms?"
            r"|words?|ideas?|points?|concepts?)\b",
            re.I,
        ),
    ),
    (
        "avoid",
        re.compile(
            rf"\b(?:do not|don't|never|without|avoid|refrain from)(?: using| use| the use of"
            rf"| mentioning| mention| including| include| saying| say)?(?: any)? {_TERM}",
            re.I,
        ),
    ),
    (
        "placeholders",
        re.compile(r"\b(?:use|with|include|using|leave|add)(?: \w+)? placeholders\b", re.I),
    ),
    ("no-commas", re.compile(r"\b(?:with|use|using|contain|containing) no commas\b", re.I)),
    (
        "no-marks",
        re.compile(
            r"\b(?:no|without|don't use|do not use|never use|avoid|without using)(?: any)? ("
            + "|".join(AVOIDED)
            + r")\b",
            re.I,
        ),
    ),
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
            r"\b(?:use|include|mention|contain|say|repeat)s?"
            r"(?: (?:the|our|my|your)(?: [\w-]+){1,3}?)?"
            rf" (?:{_QUOTED}"
            r"|(?:(?<=the word )|(?<=the term )|(?<=the hashtag ))([#\w][\w-]*)"
            rf"|(?<=the phrase )([^,.;:!?\n]{{1,40}}?)(?= at | in |[,.;:!?]|$))"
            rf"(?: (?:{_RELATION} )?(?:({_NUM}) times?|(once|twice|thrice)))?",
            re.I,
        ),
    ),
    (
        "frequency",
        re.compile(
            rf"\bthe (?:word|term|phrase|name|keyword) (?:{_QUOTED}|([#\w][\w'-]*))"
            rf" {_APPEARS}(?: (?:{_RELATION}))? ?({_NUM} times?|once|twice|thrice)\b"
            r"|\b(?:mention|use|say|repeat|include)s?"
            r" ((?-i:[A-Z])[\w'-]*(?: (?-i:[A-Z])[\w'-]*)*),?"
            rf" (?:(?:{_RELATION}) )?({_NUM} times?|twice|thrice)\b"
            rf"|{_QUOTED} {_APPEARS}(?: (?:{_RELATION}))? ?({_NUM} times?|once|twice|thrice)\b",
            re.I,
        ),
    ),
    (
        "starts_with",
        re.compile(
            # "a postscript starting with P.S." says how the postscript starts, not the answer
            rf"(?<!postscript )\b(?:start|begin|open)(?:s|ing)?"
            rf"(?: (?:your|the|it|this) ?{_RESPONSE}?)? with"
            rf"(?: {_FOLLOWING})?:? (?:{_QUOTED}|((?:Dear|Hi|Hello|Hey|Good morning|Greetings)"
            r"\b[^.,;:!?\n]{0,30})|(?<=the word )(\w[\w'-]*))"
            rf"|\bthe first word (?:should|must|has to|needs to) be:? (?:{_QUOTED}|(\w[\w'-]*))",
            re.I,
        ),
    ),
    (
        "ends_with",
        re.compile(
            rf"\b(?:end|finish|close|conclude)(?:s|ing)?(?: (?:your|the|it|this) ?{_RESPONSE}?)?"
            rf" with(?: {_FOLLOWING})?:? {_QUOTED}"
            rf"|\bthe (?:last|final) word (?:should|must|has to|needs to) be:? (?:{_QUOTED}"
            rf"|(\w[\w'-]*))|\b(?:end|finish)(?:s|ing)?(?: (?:your|the) "
            rf"{_RESPONSE})? with "
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
    (
        "json",
        re.compile(
            r"\b(?:in|as|return|output|reply in|respond in|give me|formatted as)"
            r" (?:(?:a|an|valid|raw|only|plain|strict) )*JSON\b|\bJSON (?:object|array|format|list"
            r"|only)\b",
            re.I,
        ),
    ),
    (
        "bullets",
        re.compile(
            r"\b(?:as|in|use|using|with|into) (?:a )?(?:bulleted list|bullet[- ]?point list"
            r"|bullet list|bullet[- ]?points|bullets|bullet form)\b|\bbullet[- ]?pointed\b"
            r"|(?<=, )(?:in )?bullet(?:[- ]?point)?s(?= please\b|[.!?;]|$)",
            re.I,
        ),
    ),
    (
        "quoted",
        re.compile(
            r"\b(?:wrap|enclose|put|surround)(?: (?:your|the|it|this))?(?: (?:entire|whole))?"
            r"(?: (?:response|answer|reply|output|text))? (?:with|in|between) (?:double )?"
            r"quot(?:ation marks|es|e marks)\b"
            r"|\b(?:enclosed|wrapped|all) (?:in|inside|within|between) double quot(?:ation marks|es"
            r"|e marks)\b",
            re.I,
        ),
    ),
]


def _relation(word: str | None, count: int, suffix: bool = False) -> tuple[str, int]:
    """The relation a word states; after the number (``200 words or less``) it includes it."""
    word = (word or "exactly").lower()
    word = _SYMBOLS.get(word, word)
    if word in ("less", "fewer", "under", "shorter", "max", "maximum", "tops", "at the most"):
        return "at most", count
    if word in ("longer", "+"):
        return "at least", count
    if word in ("fewer than", "less than", "under", "shorter than"):
        return "at most", max(count - 1, 0)
    if word in ("more than", "over", "longer than") and not suffix:
        return "at least", count + 1
    if word in ("at least", "no less than", "no fewer than", "a minimum of", "minimum of"):
        return "at least", count
    if word in ("min", "min.", "minimum", "more", "over"):
        return "at least", count
    if word in ("exactly", "just", "only"):
        return "exactly", count
    return "at most", count


MAX_COUNT, MAX_QUOTE = 10_000, 160  # what a Requirement holds (types.py)
_SYMBOLS = {"<": "less than", "<=": "at most", "\u2264": "at most", ">": "more than",
            ">=": "at least",
            "\u2265": "at least"}  # fmt: skip
_PART_BEFORE = re.compile(r"\b(?:each|per|every)\b(?:\s+[\w-]+){0,2}\s*$", re.I)
_PART_AFTER = re.compile(r"\s*(?:each|apiece|per \w+|for each|in each|for every)\b", re.I)
_PART_CASE = re.compile(
    r"\b(?:title|heading|headline|subject(?: line)?|name|first word|last word|first letter)s?\b"
    r"[^.,;:!?]{0,20}$",
    re.I,
)
_ASKABLE = {"postscript", "title", "json", "bullets", "quoted", "lowercase", "uppercase"}
"""Kinds whose phrase inside a question is asked about ("is it rude to add a P.S.?")."""
_NEGATED = re.compile(r"\b(?:don't|do not|never|not|no|without|avoid)\b[^.,;:!?]{0,20}$", re.I)


def _counting(quote: str, check: str, relation: str, count: int) -> Requirement:
    """A count's requirement, its check and relation validated as the model's (a table's
    strings are no literals to the type checker)."""
    fields = {"quote": quote, "check": check, "relation": relation, "count": count}
    return Requirement.model_validate(fields)


def _unit(word: str) -> str:
    return _UNITS.get(word.lower().rstrip("s"), "")


def _number(text: str) -> int:
    text = text.lower().replace(",", "")
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
    claimed = phrasings.loose_spans(task)  # "around 200 words": judged, not counted
    for match in _RANGE.finditer(task):
        if not _SUBJECT.search(before(task, match.start())) and (unit := _unit(match.group(3))):
            low, high = _number(match.group(1)), _number(match.group(2))
            if low < high <= MAX_COUNT and len(match.group(0)) <= MAX_QUOTE:
                found += [
                    Requirement(quote=match.group(0), check=unit, relation="at least", count=low),  # type: ignore[arg-type]
                    Requirement(quote=match.group(0), check=unit, relation="at most", count=high),  # type: ignore[arg-type]
                ]
                claimed.append(range(match.start(), match.end()))
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(task):
            if kind.startswith("count") and any(match.end() - 1 in span for span in claimed):
                continue
            try:
                found += _read(kind, match, task)
            except ValidationError:
                continue  # a quote too long to be one, a count beyond any answer's
    found += phrasings.read(task)
    found = _outermost(_marked(found, task), task)
    cases = {r.check for r in found} & {"lowercase", "uppercase"}
    if len(cases) > 1:  # a task cannot want both: neither is checked
        found = [r for r in found if r.check not in cases]
    return list({(r.check, r.relation, r.count, r.text): r for r in found}.values())


def _read(kind: str, match: re.Match[str], task: str) -> list[Requirement]:
    """The requirements one phrase states (a list of keywords states several)."""
    quote = match.group(0).strip()
    if kind.startswith("count") and _SUBJECT.search(before(task, match.start())):
        return []  # "my one-paragraph bio", "this 2-page report": the subject, not the answer
    if kind in _ASKABLE and phrasings.asked_about(task, match.start(), match.end()):
        return []
    if kind in ("lowercase", "uppercase") and _NEGATED.search(before(task, match.start())):
        return []  # "don't write it all in caps"
    if kind in ("lowercase", "uppercase") and _PART_CASE.search(before(task, match.start())):
        return []  # "the title in capital letters": a part
    if kind.startswith("count") and re.search(
        r"\bhighlight\s+\S*\s*\S*\s*$", before(task, match.start()), re.I
    ):
        return []  # "highlight at least 2 sections": highlights
    if kind == "count-or":
        unit = _unit(match.group(3))
        relation, count = _relation(match.group(2), _number(match.group(1)), True)
        return [_counting(quote, unit, relation, count)] if unit else []
    if kind == "count-limit":
        unit = _unit(match.group(2))
        count = _number(match.group(1))
        return [_counting(quote, unit, "at most", count)] if unit else []
    if kind == "count":
        unit = _unit(match.group(3))
        if not unit:
            return []
        if _PART_BEFORE.search(before(task, match.start())) or _PART_AFTER.match(task, match.end()):
            return []  # "each under 10 words", "10 words per bullet": a part, not the answer
        word, suffix = match.group(1), False
        after = _AFTER.match(task, match.end())
        if after and not word:  # "200 words or less", "100 words max", "500+ words"
            word = next(group for group in after.groups() if group) or ""
            suffix, quote = True, task[match.start() : after.end()].strip()
            if word.lower() == "or so":
                return []  # a loose amount: judged (phrasings)
        if unit == "characters" and not word:
            word = "at most"  # "in 160 characters": a limit
        relation, count = _relation(word, _number(match.group(2)), suffix)
        return [_counting(quote, unit, relation, count)]
    if kind == "count-hyphen":
        unit = _UNITS[match.group(2).lower()]
        count = _number(match.group(1))
        relation = "at most" if unit == "characters" else "exactly"
        return [_counting(quote, unit, relation, count)]
    if kind == "capital_words":
        word, amount = (match.group(1), match.group(2)) if match.group(2) else match.groups()[2:4]
        relation, count = _relation(word, _number(amount))
        return [_counting(quote, kind, relation, count)]
    if kind == "highlights":
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
        more = _more_terms("avoid", task, match.end()) if quoted else []
        return [Requirement(quote=quote, check="avoid", text=text[:80]), *more]
    if kind == "frequency":
        groups = match.groups()
        if groups[3]:
            text, relation_word, times = groups[0] or groups[1], groups[2], groups[3]
        elif groups[7]:
            text, relation_word, times = groups[5:8]
        else:
            text, relation_word, times = groups[9:12]
        relation, count = _relation(relation_word or "at least", _number(times.split()[0]))
        return [
            Requirement(quote=quote, check="include", relation=relation, count=count, text=text)  # type: ignore[arg-type]
        ]
    if kind == "no-commas":
        return [Requirement(quote=quote, check="avoid", text=",")]
    if kind == "no-marks":
        return [Requirement(quote=quote, check="avoid", text=AVOIDED[match.group(1).lower()])]
    if kind == "keywords":
        words = re.split(r",\s*(?:and\s+)?|\s+and\s+", match.group(2).strip())
        check = "avoid" if match.group(1) else "include"
        return [
            Requirement(quote=quote, check=check, text=word.strip(" '\"")[:80])  # type: ignore[arg-type]
            for word in words
            if word.strip(" '\"")
        ]
    if kind == "include":
        if re.search(r"(not|n't|never|without)\s*$", before(task, match.start()), re.I):
            return []  # "do not use the word 'x'" is an avoid
        text = next(group for group in match.groups()[:3] if group)
        if match.group(1) and not (match.group(5) or match.group(7)):  # "a", "b" and "c"
            return [
                Requirement(quote=quote, check="include", text=text[:80]),
                *_more_terms("include", task, match.end()),
            ]
        times = match.group(5) or match.group(7)
        relation, count = (
            _relation(match.group(4) or "at least", _number(times)) if times else ("none", 0)
        )
        return [
            Requirement(
                quote=quote,
                check="include",
                relation=relation,  # type: ignore[arg-type]
                count=count,
                text=text.strip()[:80],
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
    if kind == "placeholders":  # "use placeholders": at least one
        return [Requirement(quote=quote, check="placeholders", relation="at least", count=1)]
    if kind == "bullets" and (items := phrasings.items_before(task, match.start())):
        count = phrasings.number(items.group(1))
        quote = task[items.start() : match.end()]
        return [Requirement(quote=quote, check="bullets", relation="exactly", count=count)]
    return [Requirement(quote=quote, check=kind, text="")]  # type: ignore[arg-type]


_MORE = re.compile(rf"(?:,\s*(?:and\s+|or\s+)?|\s+(?:and|or|nor)\s+){_QUOTED}")


def _more_terms(check: str, task: str, end: int) -> list[Requirement]:
    """The quoted terms that follow a first one in a list: ``"a", "b" and "c"``."""
    found = []
    while more := _MORE.match(task, end):
        found.append(Requirement(quote=more.group(0).strip(" ,"), check=check, text=more.group(1)))  # type: ignore[arg-type]
        end = more.end()
    return found


def _outermost(found: list[Requirement], task: str) -> list[Requirement]:
    """One reading per phrase: a count read inside a longer phrase of the same kind ("50 words"
    in "keep it to 50 words") is that phrase's, not a second requirement."""

    spans = {
        r.quote: range(start, start + len(r.quote))
        for r in found
        if (start := task.find(r.quote)) >= 0
    }

    def inside(inner: Requirement, outer: Requirement) -> bool:
        a, b = spans.get(inner.quote, range(0)), spans.get(outer.quote, range(0))
        return inner.check == outer.check and a != b and a.start >= b.start and a.stop <= b.stop

    counts = [r for r in found if r.relation != "none"]
    return [r for r in found if r.relation == "none" or not any(inside(r, o) for o in counts)]


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
    "characters": lambda text, r: layout.count_characters(text),
    "lines": lambda text, r: len(layout.lines_of(text)),
    "numbered": lambda text, r: layout.count_numbered(text),
    "one_per_line": lambda text, r: layout.items_per_line(text),
    "separator": lambda text, r: len(layout.separated(text, r.text)),
}
_LISTS = ("one_per_line", "separator")
"""Lists without a count: at least two items, or it is no list."""
_NOUNS = {
    "include": "time",
    "placeholders": "placeholder",
    "bullets": "bullet point",
    "letters": "time",
    "capital_words": "word in capitals",
    "highlights": "highlighted span",
    "numbered": "numbered item",
    "one_per_line": "line",
    "separator": "item",
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
    if kind in ("sentences", "paragraphs"):
        text = layout.letter_body(text)  # "Hi Jo," and "Best, Sam" are no paragraphs
    if kind in _COUNTERS:
        count = requirement.count
        if _any_number(requirement):
            relation, count = "at least", 1
        elif kind in _LISTS and relation == "none":
            relation, count = "at least", 2
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
    elif kind == "nothing_else":
        extra = layout.chatter(text)
        passed = not extra
        detail = "" if passed else f"the answer adds {extra[0][:40]!r}"
    elif kind == "title_case":
        passed = layout.title_cased(text)
        detail = "" if passed else "not every word is capitalised"
    elif kind == "signature":  # signed above a postscript is signed
        passed = layout.signed(body_of(text), requirement.text)
        detail = "" if passed else f"the answer does not end signed {requirement.text!r}"
    elif kind == "format_choice":
        options = requirement.text.split("|")
        passed = bool(layout.choice(text, options))
        detail = "" if passed else f"the answer is not just one of: {', '.join(options)}"
    else:  # a language, a judgement: judged, never failed by code
        return None
    return Check(kind="requirement", name=requirement.describe(), passed=passed, detail=detail)


__all__ = ["check_requirement", "count_sentences", "count_words", "occurrences", "stated"]
