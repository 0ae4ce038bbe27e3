"""The history database's schema: numbered migrations, applied in order, never edited once
released. A newer program upgrades an older database; an older one refuses a newer database."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Statement by statement, inside the migration's transaction (``executescript`` would
    commit it). A statement ends at a ``;`` that sqlite3 says completes it, so a trigger's body
    or a ``';'`` literal is not cut in two.

    >>> db = sqlite3.connect(":memory:")
    >>> _run_script(db, "CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('a;b');")
    >>> db.execute("SELECT x FROM t").fetchall()
    [('a;b',)]
    """
    statement = ""
    for piece in script.split(";"):
        statement += piece + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \n\t;"):
                db.execute(statement)
            statement = ""
    if statement.strip(" \n\t;"):
        db.execute(statement)


def _migration_1(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'interrupted')),
            source TEXT NOT NULL,
            task TEXT NOT NULL,
            context TEXT,
            config TEXT NOT NULL,          -- JSON: roles, models, budget, policy, ...
            pid INTEGER,
            pid_started REAL,              -- the process's start time, against pid reuse
            stop_reason TEXT,
            rounds INTEGER,
            output TEXT,
            error TEXT,
            loads INTEGER,
            unloads INTEGER,
            load_s REAL,
            wall_s REAL,
            metrics TEXT                   -- JSON: the run's metrics beyond the phases
        );
        CREATE INDEX runs_created ON runs (created_at);
        CREATE TABLE plans (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            plan TEXT NOT NULL,            -- JSON
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, version)
        );
        CREATE TABLE critiques (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            round INTEGER NOT NULL,
            verdict TEXT NOT NULL,
            score INTEGER NOT NULL,
            issues TEXT NOT NULL,          -- JSON list
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, round)
        );
        CREATE TABLE phases (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            role TEXT NOT NULL,
            phase TEXT NOT NULL,
            model TEXT NOT NULL,
            round INTEGER NOT NULL,
            attempt INTEGER NOT NULL,
            load_s REAL NOT NULL,
            ttft_s REAL NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            tokens_per_s REAL NOT NULL,
            wall_s REAL NOT NULL,
            thermal TEXT,
            memory_available_bytes INTEGER,
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        );
        """,
    )


def _migration_2(db: sqlite3.Connection) -> None:
    """Batches: the history is the batch journal, so a killed batch resumes from it."""
    _run_script(
        db,
        """
        CREATE TABLE batches (
            id TEXT PRIMARY KEY,
            workflow TEXT NOT NULL,        -- absolute path of the workflow file
            digest TEXT NOT NULL,          -- sha256 of its bytes: --resume needs the same file
            out_dir TEXT NOT NULL,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL
        );
        ALTER TABLE runs ADD COLUMN batch_id TEXT REFERENCES batches (id) ON DELETE SET NULL;
        ALTER TABLE runs ADD COLUMN batch_task TEXT;
        ALTER TABLE runs ADD COLUMN result TEXT;   -- the --json object of a finished run
        CREATE INDEX runs_batch ON runs (batch_id, batch_task)
        """,
    )


def _migration_3(db: sqlite3.Connection) -> None:
    """The last raw output of a run that failed on invalid model output, to see what it wrote."""
    db.execute("ALTER TABLE runs ADD COLUMN raw_output TEXT")


def _migration_4(db: sqlite3.Connection) -> None:
    """The answer review: every version of the answer with the evidence gathered on it, and
    the critiques of answers (a table of their own: plan critiques are keyed by round too)."""
    _run_script(
        db,
        """
        CREATE TABLE answers (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            text TEXT NOT NULL,
            evidence TEXT,                 -- JSON: the checks made on this version
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, version)
        );
        CREATE TABLE answer_critiques (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            round INTEGER NOT NULL,
            critique TEXT NOT NULL,        -- JSON: issues, score, verdict, source
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, round)
        );
        ALTER TABLE runs ADD COLUMN mode TEXT
        """,
    )


def _migration_5(db: sqlite3.Connection) -> None:
    """Conversations: a run may be a turn of one (its id and place in it), with the files given
    to it; summaries that replaced text too long for the context, kept with the run that made
    them (a conversation's latest summary of earlier turns is reused by its next turn)."""
    _run_script(
        db,
        """
        ALTER TABLE runs ADD COLUMN conversation_id TEXT;
        ALTER TABLE runs ADD COLUMN turn INTEGER;
        ALTER TABLE runs ADD COLUMN files TEXT;     -- JSON list of {path, text}
        CREATE INDEX runs_conversation ON runs (conversation_id, turn);
        CREATE TABLE summaries (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            subject TEXT NOT NULL CHECK (subject IN ('turns', 'file')),
            name TEXT NOT NULL,            -- "turns 1-3", or the file's path
            covered INTEGER NOT NULL,      -- turns: how many of the earliest turns it replaces
            text TEXT NOT NULL,
            tokens_before INTEGER NOT NULL,
            tokens_after INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        )
        """,
    )


def _migration_6(db: sqlite3.Connection) -> None:
    """The call that wrote each answer version: the first answer, a fix, or a fresh attempt of
    the team's repair."""
    _run_script(db, "ALTER TABLE answers ADD COLUMN phase TEXT NOT NULL DEFAULT 'execute'")


def _migration_7(db: sqlite3.Connection) -> None:
    """A re-run of a turn (``/retry``) names the run it replaces, so that two follow-ups of one
    conversation run at once are two turns, not one hiding the other. Re-runs recorded before
    are linked as they were read: the later of two finished runs of one turn replaces the
    earlier."""
    _run_script(
        db,
        """
        ALTER TABLE runs ADD COLUMN replaces TEXT;
        UPDATE runs SET replaces = (
            SELECT earlier.id FROM runs AS earlier
            WHERE earlier.conversation_id = runs.conversation_id
              AND earlier.turn = runs.turn AND earlier.status = 'ok'
              AND (earlier.created_at, earlier.rowid) < (runs.created_at, runs.rowid)
            ORDER BY earlier.created_at DESC, earlier.rowid DESC LIMIT 1
        )
        WHERE conversation_id IS NOT NULL AND status = 'ok'
        """,
    )


def _migration_8(db: sqlite3.Connection) -> None:
    """The Executor's tool calls (``--tools``): each call and its result as the model saw them
    (bounded and redacted), in the order they were made."""
    _run_script(
        db,
        """
        CREATE TABLE IF NOT EXISTS tool_calls (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            step INTEGER NOT NULL,
            tool TEXT NOT NULL,
            arguments TEXT NOT NULL,       -- the call's JSON, redacted
            result TEXT NOT NULL,          -- what the model was shown, bounded and redacted
            ok INTEGER NOT NULL,           -- 0: an error the model was shown as data
            truncated INTEGER NOT NULL,
            seconds REAL NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        )
        """,
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7,
    _migration_8,
]
