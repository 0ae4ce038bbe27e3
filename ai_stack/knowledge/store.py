"""Where knowledge indexes live: one SQLite database per index, ``<user dir>/knowledge/NAME.db``,
beside the history, with a small ``NAME.json`` saying what it indexes.

One database per index keeps a damaged index from taking the others with it, makes ``kb rm`` a
file deletion, and lets ``kb update --rebuild`` start afresh from ``NAME.json`` — the index is
derived data, rebuilt from the files it names. The database holds each file (its path as shown,
its real path, size, modification time, content hash), its passages (lines, hash, text) and an
FTS5 table over the passages' text (BM25 ranking); the passages are the FTS5 table's external
content, kept in step by triggers.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ai_stack.config import user_dir
from ai_stack.errors import KnowledgeError, UsageError
from ai_stack.files import write_atomically
from ai_stack.knowledge.chunking import Chunk

SCHEMA_VERSION = 1
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

SCHEMA = """
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    real TEXT NOT NULL UNIQUE,      -- the resolved path, what identifies the file
    shown TEXT NOT NULL,            -- the path as citations show it (under the path named)
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,      -- -1: changed while read, so the next update reads it again
    hash TEXT NOT NULL
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    hash TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX chunks_file ON chunks (file_id);
CREATE VIRTUAL TABLE chunks_fts USING fts5 (
    text, content = 'chunks', content_rowid = 'id', tokenize = 'porter unicode61'
);
CREATE VIRTUAL TABLE chunks_vocab USING fts5vocab (chunks_fts, 'row');
CREATE TRIGGER chunks_added AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER chunks_removed AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def knowledge_dir() -> Path:
    return user_dir() / "knowledge"


def check_name(name: str) -> str:
    """``name`` if it can name an index (it becomes a file name).

    >>> check_name("docs")
    'docs'
    >>> check_name("../x")
    Traceback (most recent call last):
    ...
    ai_stack.errors.UsageError: Cannot name an index '../x'.
    """
    if not NAME.fullmatch(name):
        raise UsageError(
            f"Cannot name an index {name!r}.",
            hint="Use letters, digits, '-' and '_' (at most 64), starting with a letter or digit.",
        )
    return name


@dataclass(frozen=True, slots=True)
class Root:
    """A path given to ``kb add``: its real path, and how citations show what lies under it."""

    real: str
    shown: str


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """What ``NAME.json`` says of an index."""

    name: str
    roots: tuple[Root, ...]
    created: str

    def to_json(self) -> str:
        data = {
            "name": self.name,
            "created": self.created,
            "roots": [{"real": r.real, "shown": r.shown} for r in self.roots],
        }
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> IndexInfo:
        data = json.loads(text)
        roots = tuple(Root(str(r["real"]), str(r["shown"])) for r in data["roots"])
        return cls(str(data["name"]), roots, str(data["created"]))


def damaged(name: str, exc: BaseException) -> KnowledgeError:
    return KnowledgeError(
        f"The knowledge index {name!r} is damaged ({exc}).",
        hint=f"Rebuild it from its files: ai-stack kb update {name} --rebuild",
    )


class IndexStore:
    """One index's database, open. Writes go in one transaction per file (``file_written``),
    so an interrupted indexing keeps every file it finished."""

    def __init__(self, info: IndexInfo, db: sqlite3.Connection) -> None:
        self.info = info
        self.db = db

    @property
    def name(self) -> str:
        return self.info.name

    # -- opening -------------------------------------------------------------------------------

    @staticmethod
    def paths(name: str) -> tuple[Path, Path]:
        base = knowledge_dir() / check_name(name)
        return base.with_suffix(".json"), base.with_suffix(".db")

    @classmethod
    def names(cls) -> list[str]:
        where = knowledge_dir()
        if not where.is_dir():
            return []
        return sorted(p.stem for p in where.glob("*.json") if NAME.fullmatch(p.stem))

    @classmethod
    def exists(cls, name: str) -> bool:
        return cls.paths(name)[0].exists()

    @classmethod
    def create(cls, name: str, roots: tuple[Root, ...]) -> IndexStore:
        meta, _ = cls.paths(name)
        if meta.exists():
            raise UsageError(
                f"There is already a knowledge index named {name!r}.",
                hint=f"Refresh it with `ai-stack kb update {name}`, or remove it first "
                f"(`ai-stack kb rm {name}`).",
            )
        meta.parent.mkdir(parents=True, exist_ok=True)
        info = IndexInfo(name, roots, datetime.now(UTC).isoformat(timespec="seconds"))
        write_atomically(meta, info.to_json())
        return cls.open(name)

    @classmethod
    def open(cls, name: str) -> IndexStore:
        meta, path = cls.paths(name)
        try:
            info = IndexInfo.from_json(meta.read_text(encoding="utf-8"))
        except FileNotFoundError:
            known = ", ".join(cls.names()) or "none yet"
            raise UsageError(
                f"No knowledge index named {name!r} (indexes: {known}).",
                hint=f"Make it with `ai-stack kb add {name} PATH...`.",
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KnowledgeError(
                f"The description of the knowledge index {name!r} ({meta}) cannot be read: {exc}.",
                hint=f"Remove it (`ai-stack kb rm {name}`) and add it again.",
            ) from None
        try:
            db = sqlite3.connect(path, timeout=30, isolation_level=None)
            db.execute("PRAGMA busy_timeout = 30000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA synchronous = NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                with _transaction(db):
                    for statement in _statements(SCHEMA):
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version > SCHEMA_VERSION:
                raise KnowledgeError(
                    f"The knowledge index {name!r} was made by a newer ai-stack.",
                    hint=f"Upgrade ai-stack, or rebuild it: ai-stack kb update {name} --rebuild",
                )
        except sqlite3.DatabaseError as exc:
            raise damaged(name, exc) from None
        return cls(info, db)

    @classmethod
    def remove(cls, name: str) -> None:
        """Delete the index (its database and its description); the files it indexed stay."""
        cls.drop_database(name)
        cls.paths(name)[0].unlink()

    @classmethod
    def drop_database(cls, name: str) -> None:
        """Delete the index's database, keeping its description (``kb update --rebuild``)."""
        meta, path = cls.paths(name)
        if not meta.exists():
            cls.open(name)  # raises the message naming the indexes there are
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------

    @contextmanager
    def guarded(self) -> Iterator[None]:
        """SQLite's errors on this index as one message that says how to rebuild it."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise damaged(self.name, exc) from None

    def known_files(self) -> dict[str, tuple[int, int, int, str]]:
        """Each indexed file's real path: its id, size, modification time and hash."""
        with self.guarded():
            rows = self.db.execute("SELECT real, id, size, mtime_ns, hash FROM files").fetchall()
        return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}

    def counts(self) -> tuple[int, int]:
        """Files and passages held."""
        with self.guarded():
            files = self.db.execute("SELECT count(*) FROM files").fetchone()[0]
            chunks = self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return int(files), int(chunks)

    def passages(self) -> int:
        """Passages held (FTS5's own count, kept with its BM25 statistics)."""
        with self.guarded():
            row = self.db.execute("SELECT count(*) FROM chunks").fetchone()
        return int(row[0])

    def file_rows(self) -> list[tuple[str, int, int]]:
        """Each file as shown, its size and its passages."""
        with self.guarded():
            rows = self.db.execute(
                "SELECT f.shown, f.size, count(c.id) FROM files f "
                "LEFT JOIN chunks c ON c.file_id = f.id GROUP BY f.id ORDER BY f.shown"
            ).fetchall()
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    def state(self, key: str) -> str | None:
        with self.guarded():
            row = self.db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def size_on_disk(self) -> int:
        _, path = self.paths(self.name)
        return sum(
            Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists()
        )

    # -- writing -------------------------------------------------------------------------------

    def set_state(self, key: str, value: str) -> None:
        with self.guarded(), _transaction(self.db):
            self.db.execute(
                "INSERT INTO state (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def file_written(
        self, real: str, shown: str, size: int, mtime_ns: int, digest: str, chunks: list[Chunk]
    ) -> None:
        """Replace what the index holds of one file, in one transaction."""
        with self.guarded(), _transaction(self.db):
            self.db.execute("DELETE FROM files WHERE real = ?", (real,))
            file_id = self.db.execute(
                "INSERT INTO files (real, shown, size, mtime_ns, hash) VALUES (?, ?, ?, ?, ?)",
                (real, shown, size, mtime_ns, digest),
            ).lastrowid
            self.db.executemany(
                "INSERT INTO chunks (file_id, start, end, hash, text) VALUES (?, ?, ?, ?, ?)",
                [(file_id, c.start, c.end, c.hash, c.text) for c in chunks],
            )

    def file_touched(self, file_id: int, mtime_ns: int) -> None:
        """The file's content is unchanged; only its modification time moved."""
        with self.guarded(), _transaction(self.db):
            self.db.execute("UPDATE files SET mtime_ns = ? WHERE id = ?", (mtime_ns, file_id))

    def files_dropped(self, reals: list[str]) -> None:
        with self.guarded(), _transaction(self.db):
            self.db.executemany("DELETE FROM files WHERE real = ?", [(r,) for r in reals])

    def query(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        with self.guarded():
            self.db.row_factory = sqlite3.Row
            return list(self.db.execute(sql, params).fetchall())


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _statements(script: str) -> Iterator[str]:
    statement = ""
    for piece in script.split(";"):
        statement += piece + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \n\t;"):
                yield statement
            statement = ""


__all__ = ["IndexInfo", "IndexStore", "Root", "check_name", "damaged", "knowledge_dir"]
