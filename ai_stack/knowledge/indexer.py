"""Bringing an index up to date with the files it names: the walk (bounded, no symlinked
directories followed, hidden and build directories left out), each file read through the
file-access policy, re-read only when its size or modification time moved and re-chunked only
when its content hash changed, files gone from disk dropped.

Each file is committed on its own, so Ctrl-C keeps every file finished and the next
``kb update`` goes on from there. Per-file refusals inside a directory (a binary, a secret, a
link leading outside it) skip that file and are reported; a path named on the command line that
cannot be indexed stops with one message.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ai_stack.access import FilePolicy
from ai_stack.errors import FileAccessError, InputLimitError, KnowledgeError
from ai_stack.files import read_regular
from ai_stack.knowledge.chunking import Chunk, chunk_pages, chunk_text, content_hash
from ai_stack.knowledge.pdf import MAX_PDF_BYTES, pdf_pages
from ai_stack.knowledge.store import IndexStore, Root

MAX_FILES = 20_000  # a docs tree or a codebase; past this, say so rather than walk on for hours
SKIPPED_DIRS = frozenset({"node_modules", "__pycache__", "venv", "site-packages"})


@dataclass
class Report:
    """What one indexing did; ``skipped`` holds each file left out and why."""

    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    moving: list[str] = field(default_factory=list)  # changed while being read


@dataclass(frozen=True, slots=True)
class Found:
    """A file to index: the path to read, and how citations show it."""

    path: Path
    shown: str
    named: bool  # named on the command line itself (a refusal stops; else it skips)


Progress = Callable[[int, int, str], None]  # files done, files in all, the file now


def resolve_roots(paths: list[Path]) -> tuple[Root, ...]:
    """The paths given to ``kb add``, each as a real path and as shown; a missing path or a
    symlink loop is refused here, before anything is written."""
    roots = []
    for path in paths:
        try:
            real = path.expanduser().resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            why = "a symlink loop" if _is_loop(exc) else "not found"
            raise FileAccessError(
                str(path), f"Cannot index {path}: {why}.", hint="Check the path and try again."
            ) from None
        if not (real.is_dir() or real.is_file()):
            raise FileAccessError(
                str(path),
                f"Cannot index {path}: it is neither a file nor a directory.",
                hint="Name text files or directories holding them.",
            )
        roots.append(Root(str(real), os.path.normpath(str(path))))
    return tuple(roots)


def _is_loop(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == 40  # ELOOP


def walk(roots: tuple[Root, ...], limit: int, report: Report, name: str = "NAME") -> list[Found]:
    """Every file under ``roots``, at most ``limit`` (more is refused: name a narrower
    directory or raise ``--max-files``). Symlinked directories are not followed (no loop can
    hold the walk); hidden directories (``.git``) and build directories are left out."""
    found: list[Found] = []
    for root in roots:
        real = Path(root.real)
        if not real.exists():  # unmounted, moved, deleted: never read as "every file is gone"
            raise KnowledgeError(
                f"{root.shown} ({root.real}) no longer exists; the index is unchanged.",
                hint="Restore it (or mount its disk) and update again, or remove the index: "
                f"ai-stack kb rm {name}",
            )
        items = [Found(real, root.shown, named=True)] if real.is_file() else None
        for item in items or _tree(real, root.shown, report):
            found.append(item)
            if len(found) > limit:  # stop walking here: a tree of millions is not walked
                raise InputLimitError(
                    f"{root.shown} holds more than {limit:,} files; nothing was indexed.",
                    hint="Name the directories that hold the documents, or raise the limit "
                    "with --max-files N.",
                )
    return found


def _tree(top: Path, shown: str, report: Report) -> Iterator[Found]:
    for here, dirs, files in os.walk(top, followlinks=False, onerror=None):
        base = Path(here)
        keep = []
        for name in sorted(dirs):
            if name.startswith(".") or name in SKIPPED_DIRS:
                continue
            if (base / name).is_symlink():
                report.skipped.append((_shown(shown, top, base / name), "a link to a directory"))
                continue
            keep.append(name)
        dirs[:] = keep
        for name in sorted(files):
            if not name.startswith("."):
                yield Found(base / name, _shown(shown, top, base / name), named=False)


def _shown(shown: str, top: Path, path: Path) -> str:
    return os.path.normpath(os.path.join(shown, os.path.relpath(path, top)))


def index(
    store: IndexStore,
    policy: FilePolicy,
    *,
    limit: int = MAX_FILES,
    progress: Progress = lambda done, total, path: None,
) -> Report:
    """Bring ``store`` up to date with its files (the first time: index them all)."""
    report = Report()
    found = walk(store.info.roots, limit, report, store.name)
    # The total bounds what one run sends to a model; an index sends only retrieved passages,
    # and the number of files bounds it: each file is still held to the per-file limit.
    policy = dataclasses.replace(policy, max_total_bytes=sys.maxsize, read_bytes=0)
    known = store.known_files()
    store.set_state("complete", "no")
    seen: set[str] = set()
    for done, item in enumerate(found):
        progress(done, len(found), item.shown)
        real = _index_one(store, policy, item, known, report)
        if real is not None:
            seen.add(real)
    progress(len(found), len(found), "")
    gone = [real for real in known if real not in seen]
    store.files_dropped(gone)
    report.removed = len(gone)
    store.set_state("complete", "yes")
    return report


def _index_one(
    store: IndexStore,
    policy: FilePolicy,
    item: Found,
    known: dict[str, tuple[int, int, int, str]],
    report: Report,
) -> str | None:
    """Index one file; its real path when the index holds it afterwards."""
    try:
        real = str(policy.check(item.path))
        before = os.stat(real)
        if not stat.S_ISREG(before.st_mode):
            raise FileAccessError(item.shown, f"{item.shown} is not a regular file.")
        old = known.get(real)
        if old is not None and (old[1], old[2]) == (before.st_size, before.st_mtime_ns):
            report.unchanged += 1
            return real
        data, chunks = _read(policy, item, Path(real))
        after = os.stat(real)
    except FileAccessError as exc:
        if item.named:
            raise
        report.skipped.append((item.shown, _reason(exc)))
        return None
    except (OSError, RuntimeError) as exc:  # vanished, unreadable, a symlink loop
        why = "a symlink loop" if _is_loop(exc) else (getattr(exc, "strerror", None) or str(exc))
        if item.named:
            raise FileAccessError(item.shown, f"Cannot index {item.shown}: {why}.") from None
        report.skipped.append((item.shown, why))
        return None
    digest = content_hash(data)
    mtime = after.st_mtime_ns
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        report.moving.append(item.shown)
        mtime = -1  # indexed as read; the next update reads it again
    if old is not None and old[3] == digest:
        store.file_touched(old[0], mtime)
        report.unchanged += 1
        return real
    store.file_written(real, item.shown, before.st_size, mtime, digest, chunks)
    report.chunks += len(chunks)
    if old is None:
        report.added += 1
    else:
        report.changed += 1
    return real


def _read(policy: FilePolicy, item: Found, real: Path) -> tuple[bytes, list[Chunk]]:
    """A file's bytes (what its hash is of) and its passages. Text through the policy's
    ``read``; a PDF, binary to the policy, by its own bounded path: its text extracted, then
    held to the policy's text checks and per-file limit."""
    if real.suffix.lower() != ".pdf":
        text = policy.read(item.path)
        return text.encode("utf-8"), chunk_text(item.shown, text)
    data = read_regular(real, MAX_PDF_BYTES)
    if data is None:
        raise FileAccessError(
            item.shown, f"{item.shown} is over the {MAX_PDF_BYTES // 1024**2} MiB limit for a PDF."
        )
    pages = pdf_pages(item.shown, data)
    policy.admit(item.shown, "\n".join(pages).encode("utf-8"))
    return data, chunk_pages(pages)


def _reason(exc: FileAccessError) -> str:
    """The refusal's message without the path it starts with (the report shows the path)."""
    message = exc.message
    for prefix in (f"Refusing to read {exc.path}", f"{exc.path} is ", f"{exc.path}"):
        if message.startswith(prefix):
            message = message[len(prefix) :].lstrip(" :")
            break
    return message.rstrip(".")


__all__ = ["MAX_FILES", "Found", "Report", "index", "resolve_roots", "walk"]
