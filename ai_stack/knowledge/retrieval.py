"""Finding the passages that answer a query: BM25 over each index's FTS5 table, the indexes'
rankings fused by reciprocal rank (their BM25 scores are not comparable across indexes), each
passage numbered for citation as ``[n] file:start-end``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ai_stack.errors import UsageError
from ai_stack.knowledge.store import IndexStore

MAX_TERMS = 64  # a query is a question, not a document
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al. 2009)
LARGE = 10_000  # passages from which common words are left out of a query (rare_terms)
COMMON = 0.1  # the share of passages past which a word is common


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrieved passage: where it is, its text, and its BM25 score (lower is better, as
    SQLite reports it)."""

    index: str
    path: str
    start: int
    end: int
    text: str
    score: float

    @property
    def source(self) -> str:
        """``docs/x.md:10-24``, how a citation names it."""
        return f"{self.path}:{self.start}-{self.end}"


def terms(query: str) -> list[str]:
    """The query's words, lower-cased, each once, at most ``MAX_TERMS``.

    >>> terms('How do I "pull" a model? (ollama) a')
    ['how', 'do', 'i', 'pull', 'a', 'model', 'ollama']
    """
    return list(dict.fromkeys(re.findall(r"\w+", query.lower())))[:MAX_TERMS]


def match_expression(query: str | list[str]) -> str:
    """The query's words as an FTS5 expression any of whose terms may match, each quoted so
    that no character of the query is taken as FTS5 syntax.

    >>> match_expression('How do I "pull" a model? (ollama)')
    '"how" OR "do" OR "i" OR "pull" OR "a" OR "model" OR "ollama"'
    >>> match_expression("?!")
    ''
    """
    words = terms(query) if isinstance(query, str) else query
    return " OR ".join(f'"{term}"' for term in words)


def rare_terms(words: list[str], frequency: dict[str, int], passages: int) -> list[str]:
    """``words`` without those in more than ``COMMON`` of a large index's passages, while
    rarer ones remain. Such a word ("the", "how") makes FTS5 score most of the index — at 100k
    passages, hundreds of milliseconds — and hardly changes BM25's order, whose weight for a
    word falls with the share of passages holding it. A word's frequency is that of its stem
    (:func:`stem_frequencies`); a word not found keeps its place.

    >>> rare_terms(["how", "pull", "model"], {"how": 9_000, "pull": 30, "model": 800}, 20_000)
    ['pull', 'model']
    >>> rare_terms(["how", "the"], {"how": 9_000, "the": 19_000}, 20_000)
    ['how']
    >>> rare_terms(["how", "pull"], {"how": 900}, 1_000)
    ['how', 'pull']
    """
    if passages < LARGE:
        return words
    kept = [w for w in words if frequency.get(w, 0) <= COMMON * passages]
    return kept or [min(words, key=lambda w: frequency.get(w, 0))]


def stem_frequencies(store: IndexStore, words: list[str]) -> dict[str, int]:
    """How many passages hold each word, read from the FTS5 vocabulary. The index stores
    Porter stems, which are (nearly always) prefixes of the word ("models" -> "model", "was" ->
    "wa"): a word's frequency is that of the longest of its prefixes the vocabulary holds."""
    prefixes = {word[:k] for word in words for k in range(2, len(word) + 1)}
    if not prefixes:
        return {}
    marks = ", ".join("?" for _ in prefixes)
    rows = store.query(
        f"SELECT term, doc FROM chunks_vocab WHERE term IN ({marks})", tuple(prefixes)
    )
    found = {row["term"]: int(row["doc"]) for row in rows}
    frequency = {}
    for word in words:
        for k in range(len(word), 1, -1):
            if word[:k] in found:
                frequency[word] = found[word[:k]]
                break
    return frequency


def search_index(store: IndexStore, query: str, limit: int) -> list[Passage]:
    """The ``limit`` passages of one index that match ``query`` best, by BM25."""
    words = terms(query)
    if not words:
        raise UsageError(
            f"The query {query!r} has no words to search for.",
            hint="Search for words that the documents contain.",
        )
    passages = store.passages()
    if passages >= LARGE:
        words = rare_terms(words, stem_frequencies(store, words), passages)
    expression = match_expression(words)
    rows = store.query(
        "SELECT f.shown AS path, c.start, c.end, c.text, chunks_fts.rank AS score "
        "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
        "JOIN files f ON f.id = c.file_id "
        "WHERE chunks_fts MATCH ? ORDER BY chunks_fts.rank LIMIT ?",
        (expression, limit),
    )
    return [
        Passage(store.name, row["path"], row["start"], row["end"], row["text"], row["score"])
        for row in rows
    ]


def fuse(rankings: Sequence[Sequence[Passage]], limit: int) -> list[Passage]:
    """Rankings merged by reciprocal rank fusion: a passage's score is the sum over rankings
    of 1 / (RRF_K + its rank); the best ``limit`` first.

    >>> a = [Passage("a", "x", 1, 2, "", -3.0), Passage("a", "y", 1, 2, "", -1.0)]
    >>> b = [Passage("b", "z", 1, 2, "", -9.0)]
    >>> [p.path for p in fuse([a, b], 3)]
    ['x', 'z', 'y']
    """
    scores: dict[tuple[str, str, int], float] = {}
    first: dict[tuple[str, str, int], Passage] = {}
    for ranking in rankings:
        for rank, passage in enumerate(ranking, start=1):
            key = (passage.index, passage.path, passage.start)
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
            first.setdefault(key, passage)
    order = sorted(scores, key=lambda key: -scores[key])
    return [first[key] for key in order[:limit]]


def retrieve(names: Sequence[str], query: str, limit: int = 5) -> list[Passage]:
    """The best ``limit`` passages for ``query`` across the indexes ``names``."""
    rankings = []
    for name in dict.fromkeys(names):
        with IndexStore.open(name) as store:
            rankings.append(search_index(store, query, limit))
    if len(rankings) == 1:
        return rankings[0]
    return fuse(rankings, limit)


__all__ = ["Passage", "fuse", "match_expression", "rare_terms", "retrieve", "search_index", "terms"]
