"""The requirement corpus (tests/fixtures/requirements/) is well formed: it loads, its ids are
unique, every requirement's quote is the task's own words, and it speaks the agreed vocabulary.

The corpus measures the reader of a task's stated requirements (issue 37); it was written before
the reader was tuned, so the validation below never imports the reader — a corpus checked against
the reader would drift towards whatever the reader already reads. The scorer at the end runs the
real reader over it and measures recall and precision, on a development half and a held-out
half (docs/eval.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

CORPUS = ROOT / "tests" / "fixtures" / "requirements"
EVERYDAY = CORPUS / "everyday.yaml"
PROSE = CORPUS / "prose_requests.yaml"

EXISTING_KINDS = {
    "words", "sentences", "paragraphs", "bullets", "sections", "lowercase", "uppercase",
    "include", "avoid", "starts_with", "ends_with", "title", "placeholders", "postscript",
    "json", "letters", "capital_words", "highlights", "quoted", "judgement",
}  # fmt: skip
NEW_KINDS = {
    "characters", "lines", "numbered", "one_per_line", "separator", "nothing_else",
    "title_case", "language", "signature", "format_choice",
}  # fmt: skip
VOCABULARY = EXISTING_KINDS | NEW_KINDS
RELATIONS = {"at least", "at most", "exactly", "none"}
NEEDS_TEXT = {
    "include", "avoid", "starts_with", "ends_with", "letters", "separator", "language",
    "signature", "format_choice",
}  # fmt: skip
"""Checks that mean nothing without the word, phrase, letter, separator, language, name or
options they are about."""
REQUIREMENT_KEYS = {"check", "relation", "count", "text", "quote", "strict"}


def load(path: Path) -> list[dict[str, Any]]:
    items = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(items, list), f"{path.name}: not a YAML list"
    assert all(isinstance(item, dict) for item in items), f"{path.name}: an item is not a mapping"
    return items


def requirement_problems(item: dict[str, Any]) -> list[str]:
    """Every way one task's requirements break the schema, as ``id: what`` lines."""
    where, task = item["id"], item["task"]
    problems = []
    for req in item["requirements"]:
        if set(req) != REQUIREMENT_KEYS:
            problems.append(f"{where}: keys {sorted(req)} are not {sorted(REQUIREMENT_KEYS)}")
            continue
        if req["check"] not in VOCABULARY:
            problems.append(f"{where}: check {req['check']!r} is not in the vocabulary")
        if req["relation"] not in RELATIONS:
            problems.append(f"{where}: relation {req['relation']!r}")
        count = req["count"]
        if not isinstance(count, int) or isinstance(count, bool):
            problems.append(f"{where}: count {count!r} is not a whole number")
        elif req["relation"] == "none" and count != 0:
            problems.append(f"{where}: count {count} with no relation")
        elif req["relation"] != "none" and count <= 0:
            problems.append(f"{where}: {req['relation']} {count}")
        if not isinstance(req["text"], str):
            problems.append(f"{where}: text {req['text']!r} is not a string")
        elif req["check"] in NEEDS_TEXT and not req["text"]:
            problems.append(f"{where}: {req['check']} without the text it is about")
        if not isinstance(req["strict"], bool):
            problems.append(f"{where}: strict {req['strict']!r} is not true or false")
        quote = req["quote"]
        if not isinstance(quote, str) or not quote or quote not in task:
            problems.append(f"{where}: quote {quote!r} is not verbatim in the task")
    return problems


@pytest.fixture(scope="module")
def everyday() -> list[dict[str, Any]]:
    return load(EVERYDAY)


def test_every_everyday_task_has_an_id_a_task_and_a_list_of_requirements(
    everyday: list[dict[str, Any]],
) -> None:
    for item in everyday:
        assert set(item) == {"id", "task", "requirements"}, item
        assert isinstance(item["id"], str) and item["id"], item
        assert isinstance(item["task"], str) and item["task"].strip(), item
        assert isinstance(item["requirements"], list), item


def test_everyday_ids_are_unique(everyday: list[dict[str, Any]]) -> None:
    ids = [item["id"] for item in everyday]
    assert sorted({i for i in ids if ids.count(i) > 1}) == []


def test_every_requirement_quotes_its_task_and_speaks_the_vocabulary(
    everyday: list[dict[str, Any]],
) -> None:
    """The quote is the evidence a reader must find: a paraphrase could never be found."""
    problems = [line for item in everyday for line in requirement_problems(item)]
    assert problems == []


def test_the_corpus_mixes_stated_requirements_with_look_alikes(
    everyday: list[dict[str, Any]],
) -> None:
    """Enough of both for recall (tasks that state requirements) and precision (tasks that
    only look as if they do)."""
    stating = [item for item in everyday if item["requirements"]]
    silent = [item for item in everyday if not item["requirements"]]
    assert len(everyday) >= 90
    assert len(stating) >= 65
    assert len(silent) >= 25


def test_every_new_kind_is_exercised(everyday: list[dict[str, Any]]) -> None:
    """The new kinds are why the corpus exists: each needs at least one task to measure."""
    used = {req["check"] for item in everyday for req in item["requirements"]}
    assert sorted(NEW_KINDS - used) == []


def test_the_prose_requests_are_twenty_plain_tasks() -> None:
    prose = load(PROSE)
    assert len(prose) == 20
    for item in prose:
        assert set(item) == {"id", "task"}, item
        assert isinstance(item["task"], str) and item["task"].strip(), item
    ids = [item["id"] for item in prose]
    assert len(set(ids)) == len(ids)


def test_a_broken_requirement_is_reported() -> None:
    """The checker above is the only guard of the corpus: it must see each kind of mistake."""
    item = {
        "id": "bad",
        "task": "Write it in two sentences.",
        "requirements": [
            {"check": "sentences", "relation": "exactly", "count": 2, "text": "",
             "quote": "in 2 sentences", "strict": True},
            {"check": "sentence", "relation": "none", "count": 0, "text": "",
             "quote": "two sentences", "strict": True},
            {"check": "words", "relation": "at most", "count": 0, "text": "",
             "quote": "two sentences", "strict": True},
            {"check": "signature", "relation": "none", "count": 0, "text": "",
             "quote": "two sentences", "strict": "yes"},
        ],
    }  # fmt: skip
    problems = requirement_problems(item)
    assert any("not verbatim" in line for line in problems)
    assert any("not in the vocabulary" in line for line in problems)
    assert any("at most 0" in line for line in problems)
    assert any("without the text" in line for line in problems)
    assert any("strict 'yes'" in line for line in problems)


# -- the scorer: the real reader against the corpus (issue 37) ---------------------------------
#
# Protocol against overfitting: items at even positions are the development half (read, tuned
# on); items at odd positions are held out and only ever scored in aggregate. Run
# ``python -m tests.test_requirement_corpus`` for the figures of both halves and the dev half's
# misses one by one.


def _span(task: str, quote: str) -> range:
    start = task.find(quote)
    return range(start, start + len(quote)) if start >= 0 else range(0)


def _same_text(gold: str, read: str) -> bool:
    def key(text: str) -> str:
        return text.strip(" '\"").lower()

    return key(gold) == key(read)


def _same_amount(gold: dict[str, Any], read: Any) -> bool:
    """The relation and count agree. The corpus reads "under N" / "less than N" as ``at most N``
    (its header's convention); the reader reads them strictly, as ``at most N-1``, the way the
    instruction-following checks it was first built for count them: the same requirement."""
    if gold["relation"] == "none":
        return True
    if (gold["relation"], gold["count"]) == (read.relation, read.count):
        return True
    return gold["relation"] == read.relation == "at most" and read.count == gold["count"] - 1


def matches(gold: dict[str, Any], read: Any, task: str) -> bool:
    """Whether the reader's requirement is the gold one. Strict gold: the same check, with the
    same relation, count and text where the gold has them. Loose gold (``strict: false``, never
    to be failed): a judgement whose quote overlaps the gold's — a strict reading of a loose
    phrase is wrong, since it could fail a right answer."""
    if not gold["strict"]:
        overlap = set(_span(task, gold["quote"])) & set(_span(task, read.quote))
        return read.check == "judgement" and bool(overlap)
    if read.check != gold["check"]:
        return False
    if gold["text"] and not _same_text(gold["text"], read.text):
        return False
    return _same_amount(gold, read)


class Score:
    """Recall and precision of the reader on some of the corpus, with what it missed."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        from ai_stack.evidence.requirements import stated  # the entry point ask.py calls

        self.gold = self.recalled = self.read = self.right = 0
        self.missed: dict[str, int] = {}
        self.wrong: dict[str, int] = {}
        self.details: list[str] = []
        for item in items:
            task, golds = item["task"], item["requirements"]
            reads = stated(task)
            for gold in golds:
                self.gold += 1
                if any(matches(gold, read, task) for read in reads):
                    self.recalled += 1
                    continue
                what = gold["check"] if gold["strict"] else f"loose {gold['check']}"
                self.missed[what] = self.missed.get(what, 0) + 1
                self.details.append(f"{item['id']}: missed {what} «{gold['quote']}»")
            for read in reads:
                self.read += 1
                if any(matches(gold, read, task) for gold in golds):
                    self.right += 1
                    continue
                self.wrong[read.check] = self.wrong.get(read.check, 0) + 1
                self.details.append(f"{item['id']}: wrongly read {read.describe()}")

    @property
    def recall(self) -> float:
        return self.recalled / self.gold if self.gold else 1.0

    @property
    def precision(self) -> float:
        return self.right / self.read if self.read else 1.0

    def summary(self) -> str:
        return (
            f"recall {self.recall:.2f} ({self.recalled}/{self.gold}), "
            f"precision {self.precision:.2f} ({self.right}/{self.read}); "
            f"missed {dict(sorted(self.missed.items()))}; wrong {dict(sorted(self.wrong.items()))}"
        )


def halves(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The development half (even positions) and the held-out half (odd positions)."""
    return items[0::2], items[1::2]


# Floors a little under what the reader measured (docs/eval.md): a regression guard, not the
# issue's target (recall 0.8 and precision 0.95 on the held-out half), which it does not reach.
FLOORS = {"dev": (0.95, 0.95), "held out": (0.7, 0.8)}


@pytest.mark.parametrize("half", ["dev", "held out"])
def test_the_reader_recalls_the_corpus_requirements_without_inventing_any(
    everyday: list[dict[str, Any]], half: str
) -> None:
    """Every task through the reader as :mod:`ai_stack.evidence.ask` calls it; only the
    aggregate is shown for the held-out half."""
    dev, held_out = halves(everyday)
    score = Score(dev if half == "dev" else held_out)
    print(f"{half}: {score.summary()}")
    recall, precision = FLOORS[half]
    assert score.recall >= recall and score.precision >= precision, score.summary()


def test_the_scorer_tells_a_loose_reading_from_a_strict_one() -> None:
    """A loose phrase read as a strict count could fail a right answer: no match."""
    from ai_stack.types import Requirement

    task = "Write around 200 words on sleep, in under 3 paragraphs."
    loose = {"check": "words", "relation": "exactly", "count": 200, "text": "",
             "quote": "around 200 words", "strict": False}  # fmt: skip
    strict = {"check": "paragraphs", "relation": "at most", "count": 3, "text": "",
              "quote": "under 3 paragraphs", "strict": True}  # fmt: skip
    judged = Requirement(quote="around 200 words", check="judgement")
    counted = Requirement(quote="200 words", check="words", relation="exactly", count=200)
    assert matches(loose, judged, task) and not matches(loose, counted, task)
    under = Requirement(quote="under 3 paragraphs", check="paragraphs", relation="at most", count=2)
    assert matches(strict, under, task)
    assert not matches(strict, under.model_copy(update={"relation": "exactly"}), task)


if __name__ == "__main__":
    dev, held_out = halves(load(EVERYDAY))
    print("dev:     ", Score(dev).summary())
    print("held out:", Score(held_out).summary())
    print("\n".join(Score(dev).details))
