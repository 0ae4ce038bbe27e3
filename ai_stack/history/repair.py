"""Repairing a damaged history database: copy out what can still be read, keep the damaged file.

Nothing is deleted or overwritten: the damaged file (with its ``-wal``/``-shm`` companions) is
renamed ``history.db.damaged-YYYYmmdd-HHMMSS`` beside the new one, so its contents can still be
recovered with other tools (``sqlite3 FILE .recover``).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ai_stack.errors import UsageError
from ai_stack.history.store import HistoryStore, history_error, utc_now

TABLES = ("batches", "runs", "plans", "critiques", "phases", "answers", "answer_critiques")


@dataclass
class Repair:
    """What a repair did: rows copied per table, and where the damaged file went."""

    damaged: bool
    copied: dict[str, int] = field(default_factory=dict)
    kept_at: Path | None = None
    problem: str = ""


def check(path: Path) -> str | None:
    """What is wrong with the database at ``path``, or None when it reads cleanly. Where it
    cannot be written (a read-only mount, an immutable file) it is read as immutable: SQLite
    cannot make its WAL index there, which is no damage."""
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    options = "mode=ro" if writable else "mode=ro&immutable=1"
    try:
        with sqlite3.connect(f"file:{path}?{options}", uri=True) as db:
            result = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        return str(exc)
    return None if result == "ok" else str(result)


def repair(path: Path, now: datetime | None = None) -> Repair:
    """Copy every readable row of ``path`` into a fresh database that takes its place."""
    if not path.exists():
        raise UsageError(f"There is no history database at {path}; nothing to repair.")
    problem = check(path)
    if problem is None:
        return Repair(damaged=False)
    stamp = (now or utc_now()).strftime("%Y%m%d-%H%M%S")
    fresh = path.with_name(f"{path.name}.repairing-{stamp}")
    store = HistoryStore.open(fresh)
    report = Repair(damaged=True, problem=problem)
    try:
        old = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        old = None
    try:
        for table in TABLES:
            report.copied[table] = _copy(old, store.db, table) if old is not None else 0
    finally:
        if old is not None:
            old.close()
        store.close()
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    try:
        for suffix in ("", "-wal", "-shm"):
            companion = path.with_name(path.name + suffix)
            if companion.exists():
                companion.rename(kept.with_name(kept.name + suffix))
        fresh.rename(path)
        for suffix in ("-wal", "-shm"):
            leftover = fresh.with_name(fresh.name + suffix)
            if leftover.exists():
                leftover.rename(path.with_name(path.name + suffix))
    except OSError as exc:
        raise history_error(path, exc) from None
    report.kept_at = kept
    return report


def _copy(old: sqlite3.Connection, new: sqlite3.Connection, table: str) -> int:
    """Copy rows until the damage stops the reading; columns both schemas have."""
    try:
        wanted = [row[1] for row in new.execute(f"PRAGMA table_info({table})")]
        present = {row[1] for row in old.execute(f"PRAGMA table_info({table})")}
    except sqlite3.Error:
        return 0
    columns = [c for c in wanted if c in present]
    if not columns:
        return 0
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    copied = 0
    try:
        for row in old.execute(f"SELECT {names} FROM {table}"):
            try:
                new.execute(f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})", row)
                copied += 1
            except sqlite3.Error:
                continue
    except sqlite3.Error:
        pass  # the damage: keep what was read before it
    return copied


def describe(path: Path, repaired: Repair) -> str:
    if not repaired.damaged:
        return f"{path} reads cleanly; nothing to repair."
    rows = ", ".join(f"{n} {t}" for t, n in repaired.copied.items() if n)
    return (
        f"Repaired {path} ({repaired.problem}): copied {rows or 'nothing readable'}. "
        f"The damaged file is kept at {repaired.kept_at}."
    )


__all__ = ["Repair", "check", "describe", "repair"]
