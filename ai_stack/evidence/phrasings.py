"""Everyday phrasings of an answer's form, as data: the words people use for a list one per line,
a separator, "nothing else", title case, a language, a signature, a choice of options, and the
loose amounts and tones that are judged, never failed ("a couple of sentences", "formal").

The tables below are the vocabulary; :func:`read` turns each phrase it finds into a
:class:`~ai_stack.types.Requirement` quoting the task's own words (a slice of the task, so the
quote is verbatim by construction). A phrase inside a question ("when do you use a semicolon
vs a colon?", "should I say yes or no?") is asked about, not asked for: it states nothing.

Measured on the everyday corpus (tests/fixtures/requirements/, docs/eval.md), on a held-out half
never read while these tables were written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydantic import ValidationError

from ai_stack.types import Requirement

# -- the vocabulary ----------------------------------------------------------------------------

NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)  # fmt: skip
_NUMBER_VALUES = {word: value for value, word in enumerate(NUMBER_WORDS)}
NUMBER = r"(?:\d{1,3}(?:,\d{3})+|\d{1,5}|" + "|".join(NUMBER_WORDS) + ")"

UNITS = {
    "word": "words",
    "sentence": "sentences",
    "sentance": "sentences",
    "sentense": "sentences",
    "paragraph": "paragraphs",
    "paragraphe": "paragraphs",
    "pargraph": "paragraphs",
    "bullet": "bullets",
    "bullet point": "bullets",
    "bulletpoint": "bullets",
    "section": "sections",
    "placeholder": "placeholders",
    "line": "lines",
    "character": "characters",
    "charachter": "characters",
    "charater": "characters",
    "char": "characters",
}
"""A unit as people write it (singular, common misspellings included) and the check it counts."""

LOOSE_WORDS = ("around", "about", "roughly", "approximately", "approx.", "approx", "~", "some")
"""Before a number, a target rather than a limit: judged, never failed."""

LOOSE_AMOUNTS = (
    "a couple of", "a couple", "a few", "a handful of", "several", "one or two", "a short",
    "a brief", "a quick",
)  # fmt: skip
"""Before a unit ("a couple of sentences", "a short paragraph"): an amount stated loosely."""

ONE_PER_LINE = (
    r"one (?:[\w-]+ )?per line", r"each on (?:its|their) own line",
    r"each on a (?:new|separate) line",
    r"on (?:separate|individual|their own) lines", r"one on each line", r"each (?:one )?on a line",
    r"one (?:[\w-]+ )?per row", r"each on its own row",
)  # fmt: skip

SEPARATORS = {
    "comma": ",", "commas": ",", "semicolon": ";", "semicolons": ";", "semi-colon": ";",
    "semi-colons": ";", "pipe": "|", "pipes": "|", "|": "|", "slash": "/", "slashes": "/",
    "/": "/", ";": ";", ",": ",",
}  # fmt: skip

NOTHING_ELSE = (
    r"nothing else", r"nothing more", r"no other text", r"no (?:extra|additional) text",
    r"no explanations?", r"without (?:any )?explanations?", r"no preamble", r"no commentary",
    r"no intro(?:duction)?", r"(?:don't|do not) (?:say|add|write|include) anything else",
    r"just the (?:list|message|answer|number|names?|title|text|code|result|words?|email|"
    r"subject line|tweet|slogan|caption|letter|headline|keywords?|translation)",
    r"(?:output|return|give|reply with|respond with|send|print) only the [\w-]+(?: [\w-]+)?",
    r"(?:give|output|return|send|write|reply with)(?: me)? the [\w-]+(?: [\w-]+)? only",
    r"only (?:output|return|give|reply with|respond with) the [\w-]+(?: [\w-]+)?",
    r"(?:reply|respond|answer) with only", r"no need to explain", r"(?:don't|do not) explain",
    r"without (?:any )?(?:other|extra|additional) (?:text|commentary|words|explanation)",
    r"no (?:other|extra|additional) (?:words|commentary|explanation|text)",
    r"(?:don't|do not) (?:include|add) (?:any )?(?:other|extra|additional) (?:text|commentary)",
    r"just the [\w-]+(?: [\w-]+)?(?=[,.;!]|$)", r"nothing but the [\w-]+(?: [\w-]+)?",
)  # fmt: skip
"""Saying that the answer is to be the thing asked for and nothing around it."""

TITLE_CASE = (
    r"(?:in|use|using|as|into|to|with) title[- ]case", r"title[- ]cased",
    r"every word (?:is |should be |must be |)capitali[sz]ed", r"each word capitali[sz]ed",
    r"capitali[sz]e (?:each|every|the first letter of (?:each|every)) word",
    r"(?:each|every) word (?:starts|starting|begins|beginning) with a capital",
    r"title[- ]case (?:it|them|each|every|all)", r"headline[- ]case",
    r"capitali[sz]e (?:all|every|each) (?:the )?words?", r"all (?:the )?words capitali[sz]ed",
)  # fmt: skip

LANGUAGES = (
    "English", "French", "Spanish", "German", "Italian", "Portuguese", "Dutch", "Japanese",
    "Chinese", "Mandarin", "Cantonese", "Korean", "Russian", "Arabic", "Hindi", "Polish",
    "Swedish", "Greek", "Turkish", "Welsh", "Irish", "Gaelic", "Latin", "Hebrew", "Norwegian",
    "Danish", "Finnish", "Vietnamese", "Thai", "Indonesian", "Ukrainian", "Czech", "Romanian",
    "Hungarian", "Swahili", "Bengali", "Urdu", "Tagalog", "Catalan", "Esperanto",
)  # fmt: skip

SIGN_OFFS = (
    "All the best", "Best wishes", "Best regards", "Kind regards", "Warm regards", "Regards",
    "Many thanks", "Thanks", "Thank you", "Cheers", "Best", "Love", "Sincerely",
    "Yours sincerely", "Yours truly", "Yours", "Warmly", "Take care",
)  # fmt: skip
"""The words before a name at the end of a letter: "Finish with Cheers, Jo" is signed Jo."""

OPTIONS = (r"(?:yes|no|maybe)", r"(?:true|false)", r"[A-E]")
"""Options a reply is to be one of: ``yes or no``, ``true or false``, ``A, B or C``."""

TONES = (
    "short", "brief", "concise", "succinct", "formal", "informal", "casual", "friendly",
    "professional", "polite", "funny", "humorous", "humourous", "playful", "witty", "upbeat",
    "cheerful", "warm", "heartfelt", "persuasive", "rhyming", "light-hearted", "lighthearted",
    "positive", "enthusiastic", "empathetic", "sincere", "respectful", "diplomatic", "apologetic",
    "encouraging", "motivational", "sarcastic", "punchy", "snappy", "conversational",
)  # fmt: skip
"""Adjectives of an answer before the noun they qualify ("a formal apology"): judged."""

GENRES = (
    "short story", "short stories", "short film", "short list", "brief history", "light bulb",
    "simple interest", "quick sort", "kind of", "light year", "firm ground",
)  # fmt: skip
"""Compound nouns whose adjective is no tone: "a short story" is a kind of text."""

JUDGED = (
    r"tone: [^.\n]+", r"in an? [\w ,-]{1,30}? tone", r"keep it (?:short|brief|simple|light|casual)",
    r"nothing too \w+", r"not too \w+", r"\w+ enough for (?:my |a |an |the )?\w+",
    r"for (?:a class of |an? )?\w+-year-olds?", r"\d+(?:-\d+)? (?:minutes?|seconds?) long",
    rf"(?:keep|make) it (?:sound )?(?:more )?(?:{'|'.join(TONES)}|simple|light|clean|fun|tight)"
    rf"(?: and (?:{'|'.join(TONES)}|simple|light|clean|fun|tight))?",
    r"(?:explain )?like I'?m (?:\d+|five|a child|a kid|a beginner)",
    r"in (?:plain|simple) (?:English|terms|language|words)", r"in layman'?s terms",
    r"for (?:a )?(?:beginners?|kids|children|a child|a general audience|non-experts|laypeople"
    r"|a lay audience|teenagers|teens)",
    r"short and sweet", r"rhym(?:ing|es?)", r"in rhyme",
    r"(?:casual|formal|friendly|professional) tone",
    r"(?:don't|do not) make it (?:too )?\w+", r"no jargon", r"avoid jargon",
)  # fmt: skip
"""A tone, an audience, a duration: what the answer should be like, for judgement only."""

_QUESTION_START = re.compile(
    r"^\W*(?:what|why|how|when|where|which|who|whose|is|are|was|were|do|does|did|should|shall"
    r"|am)\b",
    re.I,
)


# -- reading -----------------------------------------------------------------------------------


def number(text: str) -> int:
    """A count written in digits or words.

    >>> number("7"), number("Seven"), number("1,300")
    (7, 7, 1300)
    """
    text = text.lower().replace(",", "")
    return int(text) if text.isdigit() else _NUMBER_VALUES.get(text, 1)


def _sentence_of(task: str, start: int, end: int) -> str:
    """The sentence around a span, from the previous ``.?!`` or line break to the next."""
    before = max(task.rfind(mark, 0, start) for mark in ".?!\n")
    ends = [i for i in (task.find(mark, end) for mark in ".?!\n:") if i >= 0]
    return task[before + 1 : min(ends) + 1 if ends else len(task)]


def before(task: str, at: int, reach: int = 80) -> str:
    """The few words before ``at``: what a phrase's look-behind rules read (bounded, so a long
    task costs no more per phrase than a short one)."""
    return task[max(at - reach, 0) : at]


def asked_about(task: str, start: int, end: int) -> bool:
    """Whether the span is inside a question ("when do you use a semicolon?"): a phrase asked
    about, not asked for.

    >>> task = "Should I say yes or no to the offer?"
    >>> asked_about(task, task.find("yes"), task.find("no ") + 2)
    True
    """
    sentence = _sentence_of(task, start, end).strip()
    return sentence.endswith("?") and bool(_QUESTION_START.search(sentence))


_QUOTES = re.compile('["\u201c\u201d]')


def _open_quote(task: str, at: int) -> bool:
    """Whether ``at`` is inside double quotes."""
    return len(_QUOTES.findall(task[:at])) % 2 == 1


def _alternatives(phrases: tuple[str, ...]) -> str:
    return "|".join(phrases)


_ITEMS_BEFORE = re.compile(
    rf"(?<![\w$£€#-])({NUMBER})\s+(?![\w-]*(?:%|percent))[A-Za-z][\w'-]*", re.I
)
_SUBJECT = re.compile(r"\b(?:my|our|your|his|her|their|this|these|the)\s+$", re.I)


def items_before(task: str, start: int) -> re.Match[str] | None:
    """The count of items a list phrase refers to: the last number before it, in the same or
    the previous sentence, that counts things ("10 baby name ideas ... One per line"), not a
    number about the subject ("my 2 kids")."""
    window_start = max(task.rfind(mark, 0, max(task.rfind(".", 0, start), 0)) for mark in ".?!")
    found = None
    for match in _ITEMS_BEFORE.finditer(task, max(window_start, start - ITEMS_REACH, 0), start):
        if match.group(1).lower() in ("one", "zero") or _SUBJECT.search(
            before(task, match.start())
        ):
            continue
        found = match
    return found


ITEMS_REACH = 100
"""How far before a list phrase its count may be, in characters."""


def _requirement(
    task: str, start: int, end: int, check: str, text: str = "", count: int = 0
) -> Requirement | None:
    """The requirement a span states; None where it cannot be one (a quote over the length a
    requirement quotes, a count beyond any answer's)."""
    fields = {
        "quote": task[start:end].strip(),
        "check": check,
        "relation": "exactly" if count else "none",
        "count": count,
        "text": text[:80],
    }
    try:
        return Requirement.model_validate(fields)
    except ValidationError:
        return None


def _counted(task: str, match: re.Match[str], check: str, text: str = "") -> Requirement | None:
    """A list phrase with the count of its items where the task states it."""
    items = items_before(task, match.start())
    after = re.match(rf"\s+list of ({NUMBER})\b", task[match.end() :], re.I)
    if items is None and after:  # "a comma-separated list of 10 fruits"
        end = match.end() + after.end()
        return _requirement(task, match.start(), end, check, text, number(after.group(1)))
    if items is None:
        return _requirement(task, match.start(), match.end(), check, text)
    return _requirement(task, items.start(), match.end(), check, text, number(items.group(1)))


_NUMBERED = re.compile(
    rf"\bnumbered list(?: of ({NUMBER})\b)?|\b({NUMBER}) numbered [\w-]+"
    rf"|\bnumbered (?:1|one) ?(?:-|\u2013|to|through) ?({NUMBER})\b"
    r"|\bnumber (?:them|each (?:one|item|step|point|idea))\b|\bas numbered [\w-]+"
    r"|(?<=, )numbered(?=[.!?;]|$)",
    re.I,
)
_ONE_PER_LINE = re.compile(rf"\b(?:{_alternatives(ONE_PER_LINE)})\b", re.I)
_SEPARATOR = re.compile(
    r"\b(comma|semicolon|semi-colon|pipe|slash)[- ]separated\b"
    r"|\b(?:separated|separate (?:them|each \w+)|delimited|split) (?:by|with) (?:an? |single )?"
    r"(?:(commas?|semi-?colons?|pipes?|slash(?:es)?)\b|['\"]?([|/;,])['\"]?)"
    r"(?: (?:characters?|symbols?|signs?))?",
    re.I,
)
_NOTHING_ELSE = re.compile(rf"\b(?:{_alternatives(NOTHING_ELSE)})\b", re.I)
_TITLE_CASE = re.compile(rf"\b(?:{_alternatives(TITLE_CASE)})\b", re.I)
_LANGUAGE = re.compile(
    rf"\b(?:(?:in|into)|(?<=translate )[^.?!\n]{{0,60}}?\bto|(?<=translate it )to)"
    rf" ((?i:{_alternatives(LANGUAGES)}))\b(?! (?:word|words|name|food|class|lesson|culture)s?\b)"
)
_NAME = (
    r"(?:[\"'\u201c\u2018]([^\"'\u201d\u2019\n]{1,40})[\"'\u201d\u2019]"
    r"|((?:(?:Dr|Mr|Mrs|Ms|Prof)\.? )?[A-Z][\w'-]+(?: [A-Z][\w'-]+)?))"
)
_SIGNED = re.compile(
    rf"\b(?i:sign(?:ed)?(?:[- ]off)?(?: it| this| the [a-z]+| your [a-z]+)?(?: off)?"
    rf"(?: as| with| from| by)?(?: (?:my|our) name,?)?):?,? \(?{_NAME}"
)
_SIGNED_OFF = re.compile(
    r"\b(?i:(?:end|finish|close|sign off)(?:s|ing)?(?: (?:it|the [a-z]+|your [a-z]+))? with):? "
    rf"((?:{_alternatives(SIGN_OFFS)}),? ([A-Z][\w'-]+))\b"
)
_CHOICE = re.compile(
    rf"\b((?i:{OPTIONS[0]}|{OPTIONS[1]})(?:(?:,\s*|\s*/\s*|,?\s+or\s+)(?i:{OPTIONS[0]}|{OPTIONS[1]}))+"
    rf"|{OPTIONS[2]}(?:,\s*{OPTIONS[2]})*,?\s+or\s+{OPTIONS[2]})\b"
)
_CHOOSING = re.compile(
    r"\b(?:reply|respond|answer|say|just|only|simply|either|choose|pick|letter|word|with)\b"
    r"[^.?!\n]{0,40}$",
    re.I,
)
_MORE_THAN_CHOICE = re.compile(
    r"[^.?!:\n]{0,30}?\b(?:and|then|explain|justify|why|because|with (?:a|an|your)|followed by"
    r"|plus)\b",
    re.I,
)
_LOOSE_COUNT = re.compile(
    rf"(?:(?<!\w)(?:{_alternatives(tuple(re.escape(w) for w in LOOSE_WORDS))}) ?({NUMBER})"
    rf"|\b(?:{_alternatives(LOOSE_AMOUNTS)}))[\s-]+(?:[a-z]+ )?"
    rf"({_alternatives(tuple(UNITS))})s?\b"
    rf"|\ba (sentence|paragraph|line) or two\b|\b(?P<target>{NUMBER})[- ]word(?= [a-z])"
    rf"|\b({NUMBER}) ({_alternatives(tuple(UNITS))})s? or so\b",
    re.I,
)
TARGET_WORDS = 10
"""From how many words a length written before a noun ("a 500-word article") is a target to
aim at, judged; under it ("a one-word answer", "a 3-word slogan") it is exact."""


def _loose_counts(task: str) -> Iterator[re.Match[str]]:
    for match in _LOOSE_COUNT.finditer(task):
        target = match.group("target")
        if target is None or number(target) >= TARGET_WORDS:
            yield match


_TONE = re.compile(rf"\b({_alternatives(TONES)})\b(?= [a-z][\w-]*)", re.I)
_JUDGED = re.compile(rf"\b(?:{_alternatives(JUDGED)})", re.I)


def read(task: str) -> list[Requirement]:
    """The everyday phrasings' requirements a task states, each quoting it.

    >>> for r in read("Give me 10 names for a cat. One per line, nothing else. Sign it Sam."):
    ...     print(r.describe())
    one per line: exactly 10 ("10 names for a cat. One per line")
    nothing else ("nothing else")
    signature 'Sam' ("Sign it Sam")
    >>> [r.text for r in read("Reply only with yes or no: is 17 prime?")]
    ['yes|no']
    >>> read("When do you use a semicolon vs a colon?"), read("Should I say yes or no?")
    ([], [])
    """
    return [r for r in _found(task) if r is not None and r.quote]


def _found(task: str) -> Iterator[Requirement | None]:
    for match in _NUMBERED.finditer(task):
        count = next((g for g in match.groups() if g), None)
        if count:
            yield _requirement(task, match.start(), match.end(), "numbered", count=number(count))
        else:
            yield _counted(task, match, "numbered")
    for match in _ONE_PER_LINE.finditer(task):
        if not asked_about(task, match.start(), match.end()):
            yield _counted(task, match, "one_per_line")
    for match in _SEPARATOR.finditer(task):
        if asked_about(task, match.start(), match.end()):
            continue
        name = next(g for g in match.groups() if g).lower()
        separator = SEPARATORS.get(name) or SEPARATORS.get(name.rstrip("s"), name)
        yield _counted(task, match, "separator", separator)
    for match in _NOTHING_ELSE.finditer(task):
        yield _requirement(task, match.start(), match.end(), "nothing_else")
    for match in _TITLE_CASE.finditer(task):
        if not asked_about(task, match.start(), match.end()):
            yield _requirement(task, match.start(), match.end(), "title_case")
    for match in _LANGUAGE.finditer(task):
        if not asked_about(task, match.start(), match.end()):
            language = match.group(1).capitalize()
            yield _requirement(task, match.start(), match.end(), "language", language)
    for match in _SIGNED_OFF.finditer(task):
        yield _requirement(task, match.start(), match.end(), "ends_with", match.group(1))
        yield _requirement(task, match.start(1), match.end(1), "signature", match.group(2))
    for match in _SIGNED.finditer(task):
        name = match.group(1) or match.group(2)
        name = re.sub(rf"^(?:{_alternatives(SIGN_OFFS)}),?\s+", "", name, flags=re.I)
        if name.lower() not in ("off", "up", "in", "out", "i"):
            yield _requirement(task, match.start(), match.end(), "signature", name)
    for match in _CHOICE.finditer(task):
        if asked_about(task, match.start(), match.end()):
            continue
        if _MORE_THAN_CHOICE.match(task, match.end()):
            continue  # "answer yes or no, and explain why": more than the option
        if _CHOOSING.search(task[max(match.start() - 60, 0) : match.start()]):
            options = re.split(r",\s*(?:or\s+)?|\s*/\s*|\s+or\s+", match.group(1))
            yield _requirement(task, match.start(), match.end(), "format_choice", "|".join(options))
    yield from _judged(task)


def loose_spans(task: str) -> list[range]:
    """Where the task states an amount loosely: no strict count is read there."""
    return [range(m.start(), m.end()) for m in _loose_counts(task)]


def _judged(task: str) -> Iterator[Requirement | None]:
    """Loose amounts, tones, audiences: requirements for judgement, never failed by code."""
    for match in _loose_counts(task):
        yield _requirement(task, match.start(), match.end(), "judgement", match.group(0))
    loose = loose_spans(task)
    for match in _TONE.finditer(task):
        if any(match.start() in span for span in loose):
            continue  # "a short paragraph": a loose amount, read above
        if any(task[match.start() :].lower().startswith(genre) for genre in GENRES):
            continue
        if _open_quote(task, match.start()):
            continue  # a word inside quoted text ("Warm regards, Priya") is no tone
        if not asked_about(task, match.start(), match.end()):
            yield _requirement(task, match.start(), match.end(), "judgement", match.group(0))
    for match in _JUDGED.finditer(task):
        if not asked_about(task, match.start(), match.end()):
            yield _requirement(task, match.start(), match.end(), "judgement", match.group(0))


__all__ = ["LANGUAGES", "SIGN_OFFS", "asked_about", "before", "loose_spans", "number", "read"]
