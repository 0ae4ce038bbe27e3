"""Cutting a document into passages that follow its structure, so a retrieved passage is a
whole section, paragraph, function or class rather than an arbitrary window of characters.

- Markdown (``.md``, ``.markdown``): one passage per heading's section; a long section is cut
  at its paragraphs.
- Python (``.py``): one passage per top-level function or class (decorators included), with the
  module-level code between them grouped; a file ``ast`` cannot parse is cut like other text.
- Anything else (code or prose): blocks separated by blank lines, grouped up to the size limit.
- A PDF's pages (:func:`chunk_pages`): each page's text cut like prose; cited by page.

Every passage keeps its 1-based first and last line, so a citation can name ``file:10-24``, and
a hash of its text. A passage is at most ``MAX_CHARS`` long: longer blocks are cut at lines.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass

MAX_CHARS = 1500  # about 400 tokens: several passages fit a 2,048-token context beside a task
MARKDOWN = (".md", ".markdown", ".mdx", ".rst")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One passage of a file: its lines ``start``..``end`` (1-based, inclusive) and their text."""

    start: int
    end: int
    text: str

    @property
    def hash(self) -> str:
        return content_hash(self.text.encode("utf-8"))


def content_hash(data: bytes) -> str:
    """The hash that tells whether a file or a passage changed.

    >>> content_hash(b"a")[:12]
    'ca978112ca1b'
    """
    return hashlib.sha256(data).hexdigest()


Block = tuple[int, int]  # 0-based first line, exclusive end


def chunk_text(name: str, text: str, max_chars: int = MAX_CHARS) -> list[Chunk]:
    """The passages of a file called ``name`` holding ``text``.

    >>> [(c.start, c.end) for c in chunk_text("a.md", "# A\\nx\\n\\n# B\\ny\\n")]
    [(1, 3), (4, 5)]
    >>> [(c.start, c.end) for c in chunk_text("a.py", "import os\\n\\ndef f():\\n    pass\\n")]
    [(1, 1), (3, 4)]
    """
    lines = text.splitlines()
    lower = name.lower()
    if lower.endswith(MARKDOWN):
        blocks = _sections(lines, max_chars)
    elif lower.endswith(".py"):
        blocks = _python(text, lines, max_chars)
    else:
        blocks = _group(_paragraphs(lines, 0, len(lines)), lines, max_chars)
    chunks = []
    for first, stop in _bounded(blocks, lines, max_chars):
        body = "\n".join(lines[first:stop]).strip("\n")
        if body.strip():
            chunks.append(Chunk(first + 1, stop, body))
    return chunks


def chunk_pages(pages: list[str], max_chars: int = MAX_CHARS) -> list[Chunk]:
    """The passages of a PDF's pages: each page's paragraphs, grouped; a passage's ``start``
    and ``end`` are its page's number (a PDF has no lines to cite, its pages are).

    >>> [(c.start, c.end, c.text) for c in chunk_pages(["One.\\n\\nTwo.", "", "Three."])]
    [(1, 1, 'One.\\n\\nTwo.'), (3, 3, 'Three.')]
    """
    chunks = []
    for number, page in enumerate(pages, start=1):
        chunks += [Chunk(number, number, c.text) for c in chunk_text("page.txt", page, max_chars)]
    return chunks


def _paragraphs(lines: list[str], first: int, stop: int) -> list[Block]:
    """Runs of non-blank lines in ``lines[first:stop]``.

    >>> _paragraphs(["a", "b", "", "", "c"], 0, 5)
    [(0, 2), (4, 5)]
    """
    blocks, start = [], None
    for i in range(first, stop):
        if lines[i].strip():
            start = i if start is None else start
        elif start is not None:
            blocks.append((start, i))
            start = None
    if start is not None:
        blocks.append((start, stop))
    return blocks


def _size(lines: list[str], block: Block) -> int:
    return sum(len(line) + 1 for line in lines[block[0] : block[1]])


def _group(blocks: list[Block], lines: list[str], max_chars: int) -> list[Block]:
    """Neighbouring blocks joined while together they stay within ``max_chars``, so a file of
    one-line paragraphs does not become one passage per line.

    >>> _group([(0, 1), (2, 3), (4, 5)], ["aa", "", "bb", "", "cc"], 7)
    [(0, 3), (4, 5)]
    """
    grouped: list[Block] = []
    for block in blocks:
        if grouped and _size(lines, (grouped[-1][0], block[1])) <= max_chars:
            grouped[-1] = (grouped[-1][0], block[1])
        else:
            grouped.append(block)
    return grouped


def _bounded(blocks: list[Block], lines: list[str], max_chars: int) -> list[Block]:
    """Blocks over ``max_chars`` cut into runs of whole lines (a single longer line stays whole:
    it is cut by the context sizing, not here)."""
    out: list[Block] = []
    for first, stop in blocks:
        start = first
        size = 0
        for i in range(first, stop):
            size += len(lines[i]) + 1
            if size > max_chars and i > start:
                out.append((start, i))
                start, size = i, len(lines[i]) + 1
        out.append((start, stop))
    return out


def _sections(lines: list[str], max_chars: int) -> list[Block]:
    """One block per heading's section (ATX ``#`` headings outside code fences); a section over
    the limit becomes its paragraphs, grouped."""
    starts, fenced = [0], False
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and i > 0 and re.match(r"#{1,6}\s+\S", line):
            starts.append(i)
    bounds = [*starts[1:], len(lines)]
    blocks: list[Block] = []
    for first, stop in zip(starts, bounds, strict=True):
        if _size(lines, (first, stop)) <= max_chars:
            blocks.append((first, stop))
        else:
            blocks.extend(_group(_paragraphs(lines, first, stop), lines, max_chars))
    return blocks


def _python(text: str, lines: list[str], max_chars: int) -> list[Block]:
    """One block per top-level function or class, from its first decorator; the module-level
    code between them grouped by blank lines."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):  # not Python after all, or a NUL byte
        return _group(_paragraphs(lines, 0, len(lines)), lines, max_chars)
    blocks: list[Block] = []
    cursor = 0
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
        stop = node.end_lineno or node.lineno
        blocks.extend(_group(_paragraphs(lines, cursor, first), lines, max_chars))
        blocks.append((first, stop))
        cursor = stop
    blocks.extend(_group(_paragraphs(lines, cursor, len(lines)), lines, max_chars))
    return blocks


__all__ = ["MAX_CHARS", "Chunk", "chunk_pages", "chunk_text", "content_hash"]
