"""How an answer is laid out, measured exactly: characters, lines, numbered items, items split
by a separator, the chatter around the answer ("Sure! Here is your list:"), title case, a
signature, which of a task's options it gives, and a letter's greeting and sign-off (which are
not paragraphs: "a two-paragraph note ... sign it Sam" has two paragraphs between "Hi Jo," and
"Sam").

Small pure functions: the checks of :mod:`.requirements` and the mends of :mod:`ai_stack.shape`
are built on them.
"""

from __future__ import annotations

import re

from ai_stack.evidence.phrasings import SIGN_OFFS

_NUMBERED = re.compile(r"^\s*\d{1,3}[.)]\s+\S", re.M)
_MARK = re.compile(r"^\s*(?:[-*\u2022+]|\d{1,3}[.)])\s+")
SMALL_WORDS = frozenset((
    "a", "an", "and", "as", "at", "but", "by", "for", "from", "in", "into", "nor", "of", "off",
    "on", "onto", "or", "out", "over", "per", "the", "to", "up", "via", "vs", "with",
))  # fmt: skip
"""Words title case leaves in lower case inside a title (AP and Chicago agree on these)."""
OPENERS = re.compile(
    r"^(?:sure|certainly|of course|absolutely|okay|ok|great question|here(?:'s| is| are)"
    r"|below (?:is|are)|i'd be happy|happy to help)\b",
    re.I,
)
"""How chatter before an answer begins: "Sure! Here is your list:"."""
CLOSERS = re.compile(
    r"^(?:note:|i hope|hope (?:this|that|you)|let me know|feel free|if you(?:'d| would) like"
    r"|want me to|enjoy\b)",
    re.I,
)
"""How chatter after an answer begins: "Let me know if you want more."."""
_GREETING = re.compile(
    r"^(?:dear|hi|hello|hey|good (?:morning|afternoon|evening)|to)\b.{0,40}[,:!]?$", re.I
)
_SIGN_OFF = re.compile(rf"^(?:{'|'.join(SIGN_OFFS)})\b[^.?!]{{0,20}}[,!.]?$", re.I)


def lines_of(text: str) -> list[str]:
    """The non-blank lines, stripped."""
    return [line.strip() for line in text.strip().splitlines() if line.strip()]


def count_characters(text: str) -> int:
    """Characters, spaces included, the text's own ends aside.

    >>> count_characters("  Hi there!\\n")
    9
    """
    return len(text.strip())


def count_numbered(text: str) -> int:
    """Items numbered ``1.`` or ``1)``.

    >>> count_numbered("Steps:\\n1. Plan\\n2) Do\\n- not this")
    2
    """
    return len(_NUMBERED.findall(text))


def items_per_line(text: str) -> int:
    """Items one per line: the non-blank lines but a lead-in that ends in a colon.

    >>> items_per_line("Names:\\nAda\\n\\n- Bo\\nCy")
    3
    """
    return sum(1 for line in lines_of(text) if not line.endswith(":"))


def separated(text: str, separator: str) -> list[str]:
    """The items of a one-line list split by ``separator``; [] when it is not one line.

    >>> separated("dog grooming, puppy cuts, Leeds", ",")
    ['dog grooming', 'puppy cuts', 'Leeds']
    >>> separated("a, b\\nc, d", ",")
    []
    """
    lines = lines_of(text)
    if len(lines) != 1:
        return []
    return [item.strip() for item in lines[0].split(separator) if item.strip()]


def chatter(text: str) -> list[str]:
    """Lines around the answer that are not it: a lead-in ("Here are ten names:"), a closing
    offer ("Let me know if ..."). What "nothing else" forbids.

    >>> chatter("Sure! Here are three:\\nA\\nB\\nC\\n\\nLet me know if you need more.")
    ['Sure! Here are three:', 'Let me know if you need more.']
    >>> chatter("Ada\\nBo")
    []
    """
    lines = lines_of(text)
    found = []
    if len(lines) > 1 and (OPENERS.match(lines[0]) or lines[0].endswith(":")):
        found.append(lines[0])
    if len(lines) > 1 and CLOSERS.match(lines[-1]):
        found.append(lines[-1])
    if len(lines) == 1 and OPENERS.match(lines[0]) and ":" in lines[0]:
        found.append(lines[0].split(":", 1)[0] + ":")
    return found


def without_chatter(text: str) -> str:
    """The text without its lead-in and closing offer.

    >>> without_chatter("Here you go:\\n1. Ada\\n2. Bo\\nHope this helps!")
    '1. Ada\\n2. Bo'
    """
    found = chatter(text)
    kept = text.strip()
    for line in found:
        if kept.startswith(line):
            kept = kept[len(line) :]
        elif kept.endswith(line):
            kept = kept[: -len(line)]
    return kept.strip()


def title_cased(text: str) -> bool:
    """Whether every line has each word capitalised, small words inside a line aside.

    >>> title_cased("Mains From the Grill\\nSides and Extras"), title_cased("Sides and extras")
    (True, False)
    """
    words_seen = False
    for line in lines_of(text):
        words = re.findall(r"[^\W\d_][\w'\u2019-]*", _MARK.sub("", line))
        for index, word in enumerate(words):
            words_seen = True
            if index and word.lower() in SMALL_WORDS:
                continue
            if not word[0].isupper():
                return False
    return words_seen


def to_title_case(text: str) -> str:
    """Each word capitalised, small words inside a line aside; the rest of a word kept.

    >>> to_title_case("mains from the grill\\nsides and extras")
    'Mains from the Grill\\nSides and Extras'
    """

    def line_cased(line: str) -> str:
        seen = [0]

        def word(match: re.Match[str]) -> str:
            seen[0] += 1
            token = match.group(0)
            if seen[0] > 1 and token.lower() in SMALL_WORDS:
                return token.lower()
            return token[0].upper() + token[1:]

        return re.sub(r"[^\W\d_][\w'\u2019-]*", word, line)

    return "\n".join(line_cased(line) for line in text.split("\n"))


def signed(text: str, name: str) -> bool:
    """Whether the text ends with the name as its signature ("Sam", "— Sam", "Best, Sam").

    >>> signed("Thanks for the plants!\\n\\nBest,\\nSam", "Sam"), signed("Thanks, Sam!", "Sam")
    (True, False)
    """
    lines = lines_of(text)
    if not lines:
        return False
    last = re.sub(r"^[-\u2014\u2013~*_\s]+|[*_.!\s]+$", "", lines[-1])
    if re.sub(r"[\"']", "", last).lower() == re.sub(r"[\"']", "", name).lower():
        return True
    return bool(_SIGN_OFF.match(last)) and last.lower().endswith(name.lower()) and len(lines) > 1


def signed_with(text: str, name: str) -> str:
    """The text signed with the name: a placeholder where the name belongs replaced ("[Your
    Name]"), else the name added on a line of its own.

    >>> print(signed_with("See you soon.\\n\\nBest,\\n[Your Name]", "Sam"))
    See you soon.
    <BLANKLINE>
    Best,
    Sam
    >>> print(signed_with("See you soon.", "Sam"))
    See you soon.
    <BLANKLINE>
    Sam
    """
    stripped = text.rstrip()
    placeholder = re.search(r"\[(?:your )?(?:full )?name\]\s*$", stripped, re.I)
    if placeholder:
        return stripped[: placeholder.start()] + name
    return f"{stripped}\n\n{name}"


def choice(text: str, options: list[str]) -> str:
    """The option the whole text is (markup, quotes and a full stop aside), or "".

    >>> choice("**Yes.**", ["yes", "no"]), choice("Yes, it is.", ["yes", "no"])
    ('yes', '')
    """
    bare = re.sub(r"[*_`\"'.!\s]+", " ", text).strip().lower()
    bare = re.sub(r"^(?:answer|option)\s*:?\s*", "", bare)
    bare = re.sub(r"^([a-e])\)$", r"\1", bare)
    return next((option for option in options if bare == option.lower()), "")


_TRUTHS = {"true": ("yes", "true"), "false": ("no", "false")}


def truth_as(text: str, options: list[str]) -> str:
    """A truth value given as the option that means it: a program's ``True`` where the task
    asked for "yes or no" is ``yes``; "" when the text is no truth value or no option means it.

    >>> truth_as("True", ["yes", "no"]), truth_as("no", ["True", "False"]), truth_as("7", ["A"])
    ('yes', 'False', '')
    """
    word = re.sub(r"[*_`\"'.!\s]+", " ", text).strip().lower()
    for truth, words in (("true", ("true", "yes")), ("false", ("false", "no"))):
        if word in words:
            return next((o for o in options if o.lower() in _TRUTHS[truth]), "")
    return ""


def leading_choice(text: str, options: list[str]) -> str:
    """The option an answer opens with ("Yes, a tomato is a fruit." -> "Yes"), as the answer
    writes it; "" when it opens with none, or names more than one of them.

    >>> leading_choice("Yes, a tomato is a fruit.", ["yes", "no"])
    'Yes'
    >>> leading_choice("Yes and no: it depends.", ["yes", "no"])
    ''
    """
    bare = re.sub(r"^[*_`\"'\s]+", "", text.strip())
    for option in options:
        found = re.match(rf"({re.escape(option)})(?=$|[\s,.!:;)*_-])", bare, re.I)
        if found:
            others = [o for o in options if o != option]
            first_words = bare[:40].lower()
            if any(re.search(rf"\b{re.escape(o.lower())}\b", first_words) for o in others):
                return ""
            return found.group(1)
    return ""


def letter_body(text: str) -> str:
    """A letter without its greeting line and sign-off lines: what its paragraphs are.

    >>> print(letter_body("Hi Jo,\\n\\nThanks a lot.\\n\\nSee you.\\n\\nBest,\\nSam"))
    Thanks a lot.
    <BLANKLINE>
    See you.
    >>> letter_body("Dear Jo,\\n\\nThanks.\\n\\nWarm wishes,\\nSam Lee")
    'Thanks.'
    """
    pieces = [piece.strip() for piece in re.split(r"\n\s*\n", text.strip()) if piece.strip()]
    if len(pieces) > 1:
        first = pieces[0].splitlines()
        if _GREETING.match(first[0].strip()) and len(first[0].split()) <= 6:
            pieces[0] = "\n".join(first[1:]).strip()
            pieces = [piece for piece in pieces if piece]
    while len(pieces) > 1 and _closing(pieces[-1]):
        pieces.pop()
    if pieces:
        last = pieces[-1].splitlines()
        while len(last) > 1 and _short_closing_line(last[-1]):
            last.pop()
        pieces[-1] = "\n".join(last)
    return "\n\n".join(piece for piece in pieces if piece)


def _closing(piece: str) -> bool:
    """A sign-off block: short lines only, a sign-off word or a bare name among them."""
    lines = lines_of(piece)
    return len(lines) <= 3 and all(_short_closing_line(line) for line in lines)


def _short_closing_line(line: str) -> bool:
    line = line.strip()
    if _SIGN_OFF.match(line) or re.fullmatch(r"[A-Z][\w'\u2019]*(?: [\w'\u2019]+){0,3},", line):
        return True  # "Warm wishes," "With love,": a sign-off's shape
    name = re.sub(r"^[-\u2014\u2013~\s]+", "", line)
    return bool(re.fullmatch(r"(?:[A-Z][\w'.-]*|\[[^\]]{1,30}\])(?: [A-Z][\w'.-]*){0,2}", name))


__all__ = [
    "chatter",
    "choice",
    "count_characters",
    "count_numbered",
    "items_per_line",
    "leading_choice",
    "letter_body",
    "lines_of",
    "separated",
    "signed",
    "signed_with",
    "title_cased",
    "to_title_case",
    "without_chatter",
]
