"""The requirement corpus (tests/fixtures/requirements/) is well formed: it loads, its ids are
unique, every requirement's quote is the task's own words, and it speaks the agreed vocabulary.

The corpus measures the reader of a task's stated requirements (issue 37); it was written before
the reader was tuned, so this file validates the corpus alone and never imports the reader — a
corpus checked against the reader would drift towards whatever the reader already reads."""

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
