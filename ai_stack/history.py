"""Run history: every run, plan version, critique, output and per-call metric, in one SQLite file.

Writes happen as events arrive (one short transaction each), so a run killed at any moment is
recorded up to its last finished phase. The database is in WAL mode with a busy timeout, so a
batch and an interactive session can write at once. A run left ``running`` by a process that no
longer exists is reported as ``interrupted``.

The schema is created and upgraded by numbered migrations; a newer program opens an older
database, and an older program refuses a newer one instead of misreading it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psutil

from ai_stack.errors import AiStackError, UsageError
from ai_stack.types import (
    CritiqueReady,
    Event,
    PhaseFinished,
    PlanReady,
    RunFinished,
    RunStarted,
)

STATUSES = ("running", "ok", "failed", "interrupted")
REDACTED = "[redacted]"


class HistoryError(AiStackError):
    """The history database cannot be opened, read or written."""


# -- redaction ------------------------------------------------------------------------------

# (name, pattern) — documented in docs/history.md; keep the two in step.
REDACTION_RULES: list[tuple[str, re.Pattern[str]]] = [
    (
        "private key blocks",
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.S,
        ),
    ),
    ("OpenAI/Anthropic-style keys", re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}")),
    ("GitHub tokens", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")),
    ("GitLab tokens", re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}")),
    ("AWS access key ids", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")),
    ("Google API keys", re.compile(r"\bAIza[A-Za-z0-9_\-]{35}\b")),
    ("Slack tokens", re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}")),
    ("Hugging Face tokens", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    (
        "JSON web tokens",
        re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    ),
    ("bearer tokens", re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/\-]{12,}=*")),
    (
        "password/secret/token/api key assignments",
        re.compile(
            r"(?i)\b([A-Za-z_]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)"
            r"[A-Za-z_]*)(\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;]+)"
        ),
    ),
    ("credentials in URLs", re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]+):[^\s@/]+@")),
]


def redact(text: str | None) -> str | None:
    """Replace obvious credentials with ``[redacted]``.

    >>> redact("export OPENAI_API_KEY=sk-abcdefghijklmnopqrstuv and password: hunter2")
    'export OPENAI_API_KEY=[redacted] and password: [redacted]'
    >>> redact("curl -H 'Authorization: Bearer abcdef1234567890xyz' https://u:p4ss@host/x")
    "curl -H 'Authorization: Bearer [redacted]' https://u:[redacted]@host/x"
    """
    if not text:
        return text
    for name, pattern in REDACTION_RULES:
        if name.startswith("password"):
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
        elif name == "bearer tokens":
            text = pattern.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
        elif name == "credentials in URLs":
            text = pattern.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def redact_all(value: Any) -> Any:
    """:func:`redact` every string inside a JSON-like value (before it is serialised, so a rule
    can never eat a quote and break the JSON)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_all(item) for item in value]
    if isinstance(value, dict):
        return {key: redact_all(item) for key, item in value.items()}
    return value


# -- durations ------------------------------------------------------------------------------


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``2w``, ``45m`` → a timedelta.

    >>> parse_age("30d"), parse_age("2w") == parse_age("14d"), parse_age("90m")
    (datetime.timedelta(days=30), True, datetime.timedelta(seconds=5400))
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise UsageError(
            f"Cannot read the age {text!r}.", hint="Use a number and a unit: 45m, 12h, 30d, 2w."
        )
    value, unit = float(match.group(1)), match.group(2)
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    return timedelta(seconds=value * seconds)


# -- schema ---------------------------------------------------------------------------------


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Statement by statement: ``executescript`` would commit the migration's transaction."""
    for statement in script.split(";"):
        if statement.strip():
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


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migration_1, _migration_2]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _process_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _alive(pid: int | None, started: float | None) -> bool:
    """Whether the process that wrote a run still runs (the start time guards pid reuse)."""
    now_started = _process_started(pid) if pid is not None else None
    return now_started is not None and abs(now_started - (started or 0)) <= 1


@dataclass
class HistoryStore:
    """The SQLite run store. Open with :meth:`open`; every write commits at once."""

    path: Path
    db: sqlite3.Connection

    @classmethod
    def open(cls, path: Path) -> HistoryStore:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 30000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA synchronous = NORMAL")
            store = cls(path, db)
            store._migrate()
        except sqlite3.DatabaseError as exc:
            raise HistoryError(
                f"Cannot open the history database {path}: {exc}",
                hint="Move the file aside to start a new history, or run with --no-history.",
            ) from None
        except OSError as exc:
            raise HistoryError(
                f"Cannot create the history database {path}: {exc.strerror}",
                hint="Check AI_STACK_HOME, or run with --no-history.",
            ) from None
        return store

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction (BEGIN IMMEDIATE waits for other writers)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (0)")
            if version > len(MIGRATIONS):
                raise HistoryError(
                    f"The history database {self.path} has schema version {version}, newer than "
                    f"this ai-stack understands ({len(MIGRATIONS)}).",
                    hint="Upgrade ai-stack, or point AI_STACK_HOME elsewhere.",
                )
            for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                migration(db)
                db.execute("UPDATE schema_version SET version = ?", (number,))

    @property
    def version(self) -> int:
        return int(self.db.execute("SELECT version FROM schema_version").fetchone()[0])

    # -- writing -----------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        task: str,
        context: str | None,
        config: dict[str, Any],
        source: str,
        *,
        batch: tuple[str, str] | None = None,
    ) -> None:
        """Record a run as running; starting an existing id again resumes it (same record)."""
        pid = os.getpid()
        batch_id, batch_task = batch or (None, None)
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (id, created_at, status, source, task, context, config, pid,"
                " pid_started, batch_id, batch_task) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?,"
                " ?, ?) ON CONFLICT (id) DO UPDATE SET status = 'running', finished_at = NULL,"
                " error = NULL, pid = excluded.pid, pid_started = excluded.pid_started",
                (run_id, _now(), source, redact(task), redact(context), json.dumps(config),
                 pid, _process_started(pid), batch_id, batch_task),
            )  # fmt: skip

    def add_plan(self, run_id: str, version: int, plan: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO plans VALUES (?, ?, ?, ?)",
                (run_id, version, json.dumps(redact_all(plan), ensure_ascii=False), _now()),
            )

    def add_critique(self, run_id: str, critique: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO critiques VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, critique["round"], critique["verdict"], critique["score"],
                 json.dumps(redact_all(critique["issues"]), ensure_ascii=False), _now()),
            )  # fmt: skip

    def add_phase(self, run_id: str, metrics: dict[str, Any], *, thermal: str | None) -> None:
        available = psutil.virtual_memory().available
        with self._write() as db:
            (seq,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM phases WHERE run_id = ?", (run_id,)
            ).fetchone()
            db.execute(
                "INSERT INTO phases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, seq, metrics["role"], metrics["phase"], metrics["model"],
                 metrics["round"], metrics["attempt"], metrics["load_s"], metrics["ttft_s"],
                 metrics["prompt_tokens"], metrics["output_tokens"], metrics["tokens_per_s"],
                 metrics["wall_s"], thermal, available, _now()),
            )  # fmt: skip

    def finish_run(self, run_id: str, result: dict[str, Any]) -> None:
        metrics = dict(result["metrics"])
        metrics.pop("phases", None)
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = 'ok', finished_at = ?, stop_reason = ?, rounds = ?,"
                " output = ?, loads = ?, unloads = ?, load_s = ?, wall_s = ?, metrics = ?,"
                " result = ? WHERE id = ?",
                (_now(), result["stop_reason"], result["rounds"], redact(result["output"]),
                 metrics["loads"], metrics["unloads"], metrics["load_s"], metrics["wall_s"],
                 json.dumps(metrics), json.dumps(redact_all(result), ensure_ascii=False), run_id),
            )  # fmt: skip

    def end_run(self, run_id: str, status: str, error: str | None = None) -> None:
        """Close a run that did not finish: ``failed`` (with its error) or ``interrupted``."""
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE id = ?"
                " AND status = 'running'",
                (status, _now(), redact(error), run_id),
            )

    def reap_orphans(self) -> int:
        """Mark runs whose process is gone as interrupted; returns how many."""
        rows = self.db.execute("SELECT id, pid, pid_started FROM runs WHERE status = 'running'")
        orphans = [
            row["id"] for row in rows.fetchall() if not _alive(row["pid"], row["pid_started"])
        ]
        for run_id in orphans:
            self.end_run(run_id, "interrupted", "the process ended before the run finished")
        return len(orphans)

    def remove(self, run_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    def prune(self, older_than: timedelta) -> int:
        cutoff = (datetime.now(timezone.utc) - older_than).isoformat(timespec="milliseconds")
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM runs WHERE created_at < ? AND status != 'running'", (cutoff,)
            )
            return cursor.rowcount

    # -- batches -----------------------------------------------------------------------------

    def start_batch(
        self, batch_id: str, workflow: str, digest: str, out_dir: str, name: str
    ) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, NULL, 'running')",
                (batch_id, workflow, digest, out_dir, name, _now()),
            )

    def end_batch(self, batch_id: str, status: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE batches SET status = ?, finished_at = ? WHERE id = ?",
                (status, _now(), batch_id),
            )

    def resume_batch(self, batch_id: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE batches SET status = 'running', finished_at = NULL WHERE id = ?",
                (batch_id,),
            )

    def latest_batch(self, workflow: str, out_dir: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT * FROM batches WHERE workflow = ? AND out_dir = ?"
            " ORDER BY created_at DESC LIMIT 1",
            (workflow, out_dir),
        ).fetchone()
        return dict(row) if row else None

    def batch_runs(self, batch_id: str) -> dict[str, dict[str, Any]]:
        """Task id -> its run (id, status, result) in a batch."""
        rows = self.db.execute(
            "SELECT id, batch_task, status, result FROM runs WHERE batch_id = ?"
            " ORDER BY created_at",
            (batch_id,),
        )
        return {row["batch_task"]: dict(row) for row in rows}

    def progress(self, run_id: str) -> dict[str, Any]:
        """The finished phases of a run, to resume it: plans, critiques and phase metrics."""
        run = self.run(run_id)
        return {"plans": run["plans"], "critiques": run["critiques"],
                "phases": run["metrics"]["phases"]}  # fmt: skip

    # -- reading -----------------------------------------------------------------------------

    def resolve(self, prefix: str) -> str:
        """The full id of the run whose id starts with ``prefix``."""
        rows = self.db.execute(
            "SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at DESC LIMIT 2",
            (prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",),
        ).fetchall()
        if not rows or not prefix:
            raise UsageError(
                f"No run with id {prefix!r}.", hint="`ai-stack history list` shows ids."
            )
        if len(rows) > 1 and rows[0]["id"] != prefix:
            raise UsageError(f"The id {prefix!r} matches several runs; give more characters.")
        return str(rows[0]["id"])

    def list_runs(self, limit: int | None = 20) -> list[dict[str, Any]]:
        """Newest first: id, created_at, status, source, task, models, wall_s."""
        sql = "SELECT * FROM runs ORDER BY created_at DESC" + (" LIMIT ?" if limit else "")
        rows = self.db.execute(sql, (limit,) if limit else ()).fetchall()
        return [
            {
                "id": row["id"],
                "created_at": row["created_at"],
                "finished_at": row["finished_at"],
                "status": row["status"],
                "source": row["source"],
                "task": row["task"],
                "models": json.loads(row["config"]).get("models", {}),
                "wall_s": row["wall_s"],
            }
            for row in rows
        ]

    def run(self, run_id: str) -> dict[str, Any]:
        """The whole run, in the shape ``ai-stack --json`` prints, plus id, status and times."""
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise UsageError(f"No run with id {run_id!r}.")
        config = json.loads(row["config"])
        plans = [
            json.loads(r["plan"])
            for r in self.db.execute(
                "SELECT plan FROM plans WHERE run_id = ? ORDER BY version", (run_id,)
            )
        ]
        critiques = [
            {"issues": json.loads(r["issues"]), "score": r["score"], "verdict": r["verdict"],
             "round": r["round"]}
            for r in self.db.execute(
                "SELECT * FROM critiques WHERE run_id = ? ORDER BY round", (run_id,)
            )
        ]  # fmt: skip
        phase_columns = ("role", "phase", "model", "round", "attempt", "load_s", "ttft_s",
                         "prompt_tokens", "output_tokens", "tokens_per_s", "wall_s")  # fmt: skip
        phases = [
            {
                **{key: r[key] for key in phase_columns},
                "thermal": r["thermal"],
                "memory_available_bytes": r["memory_available_bytes"],
            }
            for r in self.db.execute(
                "SELECT * FROM phases WHERE run_id = ? ORDER BY seq", (run_id,)
            )
        ]
        totals = json.loads(row["metrics"]) if row["metrics"] else {}
        return {
            "id": row["id"],
            "status": row["status"],
            "source": row["source"],
            "created_at": row["created_at"],
            "finished_at": row["finished_at"],
            "error": row["error"],
            "config": config,
            "task": row["task"],
            "context": row["context"],
            "models": config.get("models", {}),
            "plan": plans[-1] if plans else None,
            "plans": plans,
            "critiques": critiques,
            "rounds": row["rounds"] if row["rounds"] is not None else len(critiques),
            "stop_reason": row["stop_reason"],
            "output": row["output"],
            "metrics": {**totals, "phases": phases},
        }

    def export(self, fmt: str) -> str:
        """Every run as JSON lines (whole runs) or CSV (one row per run)."""
        ids = [r["id"] for r in self.list_runs(limit=None)]
        if fmt == "jsonl":
            return "".join(json.dumps(self.run(i), ensure_ascii=False) + "\n" for i in ids)
        buffer = io.StringIO()
        columns = ["id", "created_at", "finished_at", "status", "source", "task", "stop_reason",
                   "rounds", "loads", "unloads", "load_s", "wall_s", "output"]  # fmt: skip
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in self.db.execute("SELECT * FROM runs ORDER BY created_at"):
            writer.writerow({key: row[key] for key in columns})
        return buffer.getvalue()


class HistoryRecorder:
    """Records one pipeline's events into the store as they arrive."""

    def __init__(
        self,
        store: HistoryStore,
        *,
        source: str,
        config: dict[str, Any],
        batch: tuple[str, str] | None = None,
    ) -> None:
        self.store = store
        self.source = source
        self.config = config
        self.batch = batch
        self.run_id: str | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.run_id = event.run_id
            config = {**self.config, "models": event.models}
            self.store.start_run(
                event.run_id, event.task, event.context, config, self.source, batch=self.batch
            )
        elif self.run_id is None:
            return
        elif isinstance(event, PlanReady):
            self.store.add_plan(self.run_id, event.version, event.plan.model_dump(mode="json"))
        elif isinstance(event, CritiqueReady):
            self.store.add_critique(self.run_id, event.critique.model_dump(mode="json"))
        elif isinstance(event, PhaseFinished):
            metrics = event.metrics.model_dump(mode="json")
            self.store.add_phase(self.run_id, metrics, thermal=metrics.get("thermal"))
        elif isinstance(event, RunFinished):
            self.store.finish_run(self.run_id, event.result.model_dump(mode="json"))
            self.run_id = None

    def abandon(self, error: BaseException) -> None:
        """The run stopped early: record why (Ctrl-C → interrupted, anything else → failed)."""
        if self.run_id is None:
            return
        if isinstance(error, KeyboardInterrupt):
            self.store.end_run(self.run_id, "interrupted", "stopped by the user (Ctrl-C)")
        else:
            self.store.end_run(self.run_id, "failed", str(error) or type(error).__name__)
        self.run_id = None
