"""7. Knowledge indexes: the time to index 1k, 10k and 100k passages, the index's size on disk,
and the latency of a query — what ``kb search`` and ``--kb`` do (open the index, BM25 through
FTS5, the passages read back) — beside a bare FTS5 query on a connection already open (the
expression ``kb search`` sends), in one run; the ratio is to the bare query. The last column is
the bare query with every word of the question, common ones included: what leaving them out of
a large index's queries saves (``retrieval.rare_terms``).

The corpus is generated: Markdown files of 100 sections each (one passage per section), words
drawn from a 20,000-word vocabulary with Zipf-like frequencies, so that BM25 meets common and
rare terms as in prose. Indexing goes through the real path: the walk, the file-access policy,
the chunker, one transaction per file. Queries are five words drawn the same way.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

from ai_stack.access import FilePolicy
from ai_stack.knowledge.indexer import index, resolve_roots
from ai_stack.knowledge.retrieval import (
    match_expression,
    rare_terms,
    retrieve,
    stem_frequencies,
    terms,
)
from ai_stack.knowledge.store import IndexStore
from benchmarks.common import Context, show

SECTIONS = 100  # passages per generated file
VOCABULARY = 20_000
QUERIES = 30


def _words(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choices(letters, k=rng.randint(3, 10))) for _ in range(VOCABULARY)]


def _zipf(words: list[str]) -> list[float]:
    """Cumulative Zipf-like weights (computed once: ``choices`` with plain weights would add
    them up again on every call)."""
    return list(itertools.accumulate(1 / (rank + 1) for rank in range(len(words))))


def _corpus(folder: Path, passages: int, words: list[str], rng: random.Random) -> None:
    cumulative = _zipf(words)
    folder.mkdir(parents=True)
    for number in range(passages // SECTIONS):
        sections = []
        for section in range(SECTIONS):
            body = " ".join(rng.choices(words, cum_weights=cumulative, k=60))
            sections.append(f"## Section {section}\n\n{body}\n")
        (folder / f"doc{number:05}.md").write_text("\n".join(sections))


def _sent(store: IndexStore, query: str) -> str:
    words = terms(query)
    return match_expression(rare_terms(words, stem_frequencies(store, words), store.passages()))


def _bare(db: sqlite3.Connection, expression: str) -> float:
    began = time.perf_counter()
    db.execute(
        "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT 5",
        (expression,),
    ).fetchall()
    return time.perf_counter() - began


def _median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 3)


def knowledge(ctx: Context) -> tuple[dict[str, Any], str]:
    rng = random.Random(7)
    words = _words(rng)
    cumulative = _zipf(words)
    queries = [" ".join(rng.choices(words, cum_weights=cumulative, k=5)) for _ in range(QUERIES)]
    results: dict[str, Any] = {}
    rows = []
    for passages in (1_000, 10_000, 100_000):
        folder = ctx.work / f"corpus-{passages}"
        _corpus(folder, passages, words, rng)
        name = f"bench{passages}"
        began = time.perf_counter()
        with IndexStore.create(name, resolve_roots([folder])) as store:
            index(store, FilePolicy.create([folder]), limit=passages)
            stored = store.counts()[1]
            size = store.size_on_disk()
        index_s = time.perf_counter() - began
        _, database = IndexStore.paths(name)
        with IndexStore.open(name) as store:  # the expression kb search sends, and all words
            sent = {q: _sent(store, q) for q in queries}
        bare = sqlite3.connect(database)
        search, fts, whole = [], [], []
        for _ in range(ctx.repeat):
            for query in queries:  # interleaved, so load on the machine hits all alike
                began = time.perf_counter()
                retrieve([name], query, 5)
                search.append(time.perf_counter() - began)
                fts.append(_bare(bare, sent[query]))
                whole.append(_bare(bare, match_expression(query)))
        bare.close()
        search_ms, fts_ms, whole_ms = _median_ms(search), _median_ms(fts), _median_ms(whole)
        results[str(passages)] = {
            "passages": stored,
            "index_s": round(index_s, 2),
            "bytes": size,
            "search_ms": search_ms,
            "search_max_ms": round(max(search) * 1000, 3),
            "fts_ms": fts_ms,
            "fts_all_words_ms": whole_ms,
        }
        rows.append(
            [
                f"{stored:,}",
                f"{index_s:.1f} s",
                f"{size / 1024**2:.1f} MiB",
                f"{search_ms:.1f} ms (max {max(search) * 1000:.0f})",
                f"{fts_ms:.1f} ms",
                f"{search_ms / fts_ms:.1f}x",
                f"{whole_ms:.1f} ms",
            ]
        )
    table = show(
        f"Knowledge indexes: BM25 (FTS5), {QUERIES} five-word queries x {ctx.repeat}",
        [
            "passages",
            "index time",
            "size on disk",
            "kb search, median",
            "bare FTS5 query",
            "x bare",
            "bare, every word",
        ],
        rows,
    )
    return {"sizes": results, "queries": QUERIES}, table
