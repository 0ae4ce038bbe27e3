"""The run store: every run, plan version, critique, output and per-call metric, in one SQLite
file.

Writes happen as events arrive (one short transaction each), so a run killed at any moment is
recorded up to its last finished phase. The database is in WAL mode with a busy timeout, so a
batch and an interactive session can write at once. A run left ``running`` by a process that no
longer exists is reported as ``interrupted``. Reads return the typed models below.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import psutil
from pydantic import BaseModel, Field

from ai_stack.errors import HistoryError, UsageError
from ai_stack.history import schema
from ai_stack.redaction import redact, redact_all
from ai_stack.types import PhaseMetrics, Plan, Role, RunMetrics, RunResult, StopReason, Turn

Clock = Callable[[], datetime]
T = TypeVar("T")


# The status a run is shown with: a finished run whose answer fails a check of the task's own
# is "unmet", not "ok" (kept "ok" in the table: it is a finished turn a conversation goes on from)
STATUS = (
    "CASE WHEN status = 'ok' AND json_array_length(result, '$.unmet') > 0"
    " THEN 'unmet' ELSE status END"
)


class RunSummary(BaseModel):
    """One line of ``history list``."""

    id: str
    created_at: str
    finished_at: str | None
    status: str
    source: str
    task: str
    models: dict[str, str]
    wall_s: float | None


class StoredPhase(PhaseMetrics):
    """A call as recorded: its metrics, plus the memory available when it finished."""

    memory_available_bytes: int | None = None


class StoredMetrics(RunMetrics):
    phases: list[StoredPhase] = Field(default_factory=list)  # type: ignore[assignment]


class StoredRun(RunResult):
    """A run as the history knows it: the ``--json`` result (partial while unfinished) plus its
    record — status, source, times, error, configuration."""

    status: str
    source: str
    created_at: str
    finished_at: str | None = None
    error: str | None = None
    raw_output: str | None = None  # the last invalid reply of a run that failed on it
    config: dict[str, Any] = Field(default_factory=dict)
    models: dict[Role, str] = Field(default_factory=dict)
    plan: Plan | None = None
    plans: list[Plan] = Field(default_factory=list)
    stop_reason: StopReason | None = None
    rounds: int = 0
    output: str | None = None  # type: ignore[assignment]
    metrics: StoredMetrics = Field(default_factory=StoredMetrics)


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching what starts with ``prefix`` (with ESCAPE '\\')."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def history_error(path: Path, error: BaseException) -> HistoryError:
    """One clear error for whatever SQLite or the file system said, with what to do."""
    text = str(error) or type(error).__name__
    lowered = text.lower()
    unwritable = "unable to open" in lowered and not os.access(path.parent, os.W_OK)
    if (
        isinstance(error, PermissionError)
        or "readonly" in lowered
        or "read-only" in lowered
        or (unwritable)
    ):
        return HistoryError(
            f"The history database {path} cannot be written (read-only: {text}).",
            hint=f"Make {path.parent} writable, set history.path elsewhere, or use --no-history.",
        )
    if "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered:
        return HistoryError(
            f"The history database {path} is damaged ({text}).",
            hint="Run `ai-stack history repair`: it copies what can still be read into a new "
            "database and keeps the damaged file beside it (never deletes it).",
        )
    if "locked" in lowered or "busy" in lowered:
        return HistoryError(
            f"The history database {path} stayed locked ({text}).",
            hint="Another ai-stack process is writing to it; try again when it has finished.",
        )
    return HistoryError(
        f"The history database {path} failed: {text}.",
        hint="Run `ai-stack doctor`, or use --no-history.",
    )


def guarded(method: Callable[..., T]) -> Callable[..., T]:
    """Turn the SQLite and OS errors of a store method into one :class:`HistoryError`."""

    @functools.wraps(method)
    def wrapper(self: HistoryStore, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            raise history_error(self.path, exc) from None

    return wrapper


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
    clock: Clock = field(default=utc_now)

    @classmethod
    def open(cls, path: Path, *, clock: Clock = utc_now) -> HistoryStore:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 30000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA synchronous = NORMAL")
            store = cls(path, db, clock)
            store._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise history_error(path, exc) from None
        return store

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @guarded
    def check_writable(self) -> None:
        """Raise the HistoryError a run would meet writing here. The write is real and rolled
        back: SQLite opens a file it may not write (a read-only mount, ``chattr +i``) read-only
        without a word, and even begins a transaction in it."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
            self.db.execute(f"PRAGMA user_version = {version}")
        finally:
            with suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")

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
            migrations = schema.MIGRATIONS
            if version > len(migrations):
                raise HistoryError(
                    f"The history database {self.path} has schema version {version}, newer than "
                    f"this ai-stack understands ({len(migrations)}).",
                    hint="Upgrade ai-stack, or point AI_STACK_HOME elsewhere.",
                )
            for number, migration in enumerate(migrations[version:], start=version + 1):
                migration(db)
                db.execute("UPDATE schema_version SET version = ?", (number,))

    def _now(self) -> str:
        return self.clock().isoformat(timespec="milliseconds")

    @property
    def version(self) -> int:
        return int(self.db.execute("SELECT version FROM schema_version").fetchone()[0])

    # -- writing -----------------------------------------------------------------------------

    @guarded
    def start_run(
        self,
        run_id: str,
        task: str,
        context: str | None,
        config: dict[str, Any],
        source: str,
        *,
        batch: tuple[str, str] | None = None,
        mode: str | None = None,
        conversation: tuple[str, int] | None = None,
        files: list[dict[str, Any]] | None = None,
        replaces: str | None = None,
    ) -> None:
        """Record a run as running; starting an existing id again resumes it (same record).
        ``conversation``: its id and this run's turn; ``files``: those given as context;
        ``replaces``: the run of the turn it runs again (``/retry``)."""
        pid = os.getpid()
        batch_id, batch_task = batch or (None, None)
        conversation_id, turn = conversation or (None, None)
        stored = json.dumps(redact_all(files), ensure_ascii=False) if files else None
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (id, created_at, status, source, task, context, config, pid,"
                " pid_started, batch_id, batch_task, mode, conversation_id, turn, files,"
                " replaces) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET status = 'running',"
                " finished_at = NULL, error = NULL, pid = excluded.pid,"
                " pid_started = excluded.pid_started",
                (
                    run_id,
                    self._now(),
                    source,
                    redact(task),
                    redact(context),
                    json.dumps(redact_all(config)),
                    pid,
                    _process_started(pid),
                    batch_id,
                    batch_task,
                    mode,
                    conversation_id,
                    turn,
                    stored,
                    replaces,
                ),
            )

    @guarded
    def add_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        """A summary that replaced earlier turns or a file in this run."""
        with self._write() as db:
            (seq,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM summaries WHERE run_id = ?", (run_id,)
            ).fetchone()
            db.execute(
                "INSERT INTO summaries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    seq,
                    summary["subject"],
                    redact(summary["name"]),
                    summary["covered"],
                    redact(summary["text"]),
                    summary["tokens_before"],
                    summary["tokens_after"],
                    self._now(),
                ),
            )

    @guarded
    def add_tool_call(self, run_id: str, call: dict[str, Any]) -> None:
        """One tool call of the Executor's and its result (redacted again: a stored copy)."""
        with self._write() as db:
            (seq,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM tool_calls WHERE run_id = ?", (run_id,)
            ).fetchone()
            db.execute(
                "INSERT INTO tool_calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    seq,
                    call["step"],
                    call["tool"],
                    redact(call["arguments"]),
                    redact(call["text"]),
                    int(call["ok"]),
                    int(call["truncated"]),
                    call["seconds"],
                    self._now(),
                ),
            )

    @guarded
    def tool_calls(self, run_id: str) -> list[dict[str, Any]]:
        """A run's tool calls, in the order they were made."""
        return [
            {
                "step": r["step"],
                "tool": r["tool"],
                "arguments": r["arguments"],
                "result": r["result"],
                "ok": bool(r["ok"]),
                "truncated": bool(r["truncated"]),
                "seconds": r["seconds"],
            }
            for r in self.db.execute(
                "SELECT * FROM tool_calls WHERE run_id = ? ORDER BY seq", (run_id,)
            )
        ]

    @guarded
    def add_plan(self, run_id: str, version: int, plan: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO plans VALUES (?, ?, ?, ?)",
                (run_id, version, json.dumps(redact_all(plan), ensure_ascii=False), self._now()),
            )

    @guarded
    def add_answer(self, run_id: str, version: int, text: str, phase: str = "execute") -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO answers (run_id, version, text, evidence, created_at,"
                " phase) VALUES (?, ?, ?, NULL, ?, ?)",
                (run_id, version, redact(text), self._now(), phase),
            )

    @guarded
    def add_evidence(self, run_id: str, version: int, evidence: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE answers SET evidence = ? WHERE run_id = ? AND version = ?",
                (json.dumps(redact_all(evidence), ensure_ascii=False), run_id, version),
            )

    @guarded
    def add_critique(self, run_id: str, critique: dict[str, Any]) -> None:
        if critique.get("subject") == "answer":
            with self._write() as db:
                db.execute(
                    "INSERT OR REPLACE INTO answer_critiques VALUES (?, ?, ?, ?)",
                    (
                        run_id,
                        critique["round"],
                        json.dumps(redact_all(critique), ensure_ascii=False),
                        self._now(),
                    ),
                )
            return
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO critiques VALUES (?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    critique["round"],
                    critique["verdict"],
                    critique["score"],
                    json.dumps(redact_all(critique["issues"]), ensure_ascii=False),
                    self._now(),
                ),
            )

    @guarded
    def add_phase(self, run_id: str, metrics: dict[str, Any], *, thermal: str | None) -> None:
        available = psutil.virtual_memory().available
        with self._write() as db:
            (seq,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM phases WHERE run_id = ?", (run_id,)
            ).fetchone()
            db.execute(
                "INSERT INTO phases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    seq,
                    metrics["role"],
                    metrics["phase"],
                    metrics["model"],
                    metrics["round"],
                    metrics["attempt"],
                    metrics["load_s"],
                    metrics["ttft_s"],
                    metrics["prompt_tokens"],
                    metrics["output_tokens"],
                    metrics["tokens_per_s"],
                    metrics["wall_s"],
                    thermal,
                    available,
                    self._now(),
                ),
            )

    @guarded
    def finish_run(self, run_id: str, result: dict[str, Any]) -> None:
        metrics = dict(result["metrics"])
        metrics.pop("phases", None)
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = 'ok', finished_at = ?, stop_reason = ?, rounds = ?,"
                " output = ?, loads = ?, unloads = ?, load_s = ?, wall_s = ?, metrics = ?,"
                " result = ? WHERE id = ?",
                (
                    self._now(),
                    result["stop_reason"],
                    result["rounds"],
                    redact(result["output"]),
                    metrics["loads"],
                    metrics["unloads"],
                    metrics["load_s"],
                    metrics["wall_s"],
                    json.dumps(metrics),
                    json.dumps(redact_all(result), ensure_ascii=False),
                    run_id,
                ),
            )

    @guarded
    def end_run(
        self, run_id: str, status: str, error: str | None = None, raw_output: str | None = None
    ) -> None:
        """Close a run that did not finish: ``failed`` (with its error and, when a model's reply
        was invalid, that reply) or ``interrupted``."""
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, error = ?, raw_output = ?"
                " WHERE id = ? AND status = 'running'",
                (status, self._now(), redact(error), redact(raw_output), run_id),
            )

    @guarded
    def reap_orphans(self) -> int:
        """Mark runs whose process is gone as interrupted; returns how many."""
        rows = self.db.execute("SELECT id, pid, pid_started FROM runs WHERE status = 'running'")
        orphans = [
            row["id"] for row in rows.fetchall() if not _alive(row["pid"], row["pid_started"])
        ]
        for run_id in orphans:
            self.end_run(run_id, "interrupted", "the process ended before the run finished")
        return len(orphans)

    @guarded
    def remove(self, run_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    @guarded
    def prune(self, older_than: timedelta) -> int:
        cutoff = (self.clock() - older_than).isoformat(timespec="milliseconds")
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM runs WHERE created_at < ? AND status != 'running'", (cutoff,)
            )
            return cursor.rowcount

    # -- batches -----------------------------------------------------------------------------

    @guarded
    def start_batch(
        self, batch_id: str, workflow: str, digest: str, out_dir: str, name: str
    ) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, NULL, 'running')",
                (batch_id, workflow, digest, out_dir, name, self._now()),
            )

    @guarded
    def end_batch(self, batch_id: str, status: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE batches SET status = ?, finished_at = ? WHERE id = ?",
                (status, self._now(), batch_id),
            )

    @guarded
    def resume_batch(self, batch_id: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE batches SET status = 'running', finished_at = NULL WHERE id = ?",
                (batch_id,),
            )

    @guarded
    def latest_batch(self, workflow: str, out_dir: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT * FROM batches WHERE workflow = ? AND out_dir = ?"
            " ORDER BY created_at DESC LIMIT 1",
            (workflow, out_dir),
        ).fetchone()
        return dict(row) if row else None

    @guarded
    def batch_runs(self, batch_id: str) -> dict[str, dict[str, Any]]:
        """Task id -> its run (id, status, result) in a batch."""
        rows = self.db.execute(
            "SELECT id, batch_task, status, result FROM runs WHERE batch_id = ?"
            " ORDER BY created_at",
            (batch_id,),
        )
        return {row["batch_task"]: dict(row) for row in rows}

    # -- conversations -----------------------------------------------------------------------

    @guarded
    def latest_conversation(self) -> str | None:
        """The id of the conversation the most recent turn belongs to."""
        row = self.db.execute(
            "SELECT conversation_id FROM runs WHERE conversation_id IS NOT NULL"
            " ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
        return str(row[0]) if row else None

    @guarded
    def resolve_conversation(self, prefix: str) -> str | None:
        """The full id of the conversation whose id starts with ``prefix``, or None."""
        rows = self.db.execute(
            "SELECT DISTINCT conversation_id FROM runs WHERE conversation_id LIKE ? ESCAPE '\\'"
            " LIMIT 2",
            (_like_prefix(prefix),),
        ).fetchall()
        if not rows or not prefix:
            return None
        if len(rows) > 1 and prefix not in (row[0] for row in rows):
            raise UsageError(
                f"The id {prefix!r} matches several conversations; give more characters."
            )
        return str(rows[0][0]) if len(rows) == 1 else prefix

    @guarded
    def conversation_turns(self, conversation_id: str) -> list[Turn]:
        """The finished turns, oldest first, numbered from 1; a turn run again (``/retry``) is
        its latest run. Runs that failed or were interrupted are not turns; two follow-ups run
        at once are two turns."""
        rows = self.db.execute(
            "SELECT id, task, output, files, replaces FROM runs WHERE conversation_id = ?"
            " AND status = 'ok' ORDER BY turn, created_at, rowid",
            (conversation_id,),
        ).fetchall()
        replaced = {row["replaces"] for row in rows}
        kept = [row for row in rows if row["id"] not in replaced]
        return [
            Turn(
                number=number,
                task=row["task"],
                answer=row["output"] or "",
                files=[f["path"] for f in json.loads(row["files"])] if row["files"] else [],
                run_id=row["id"],
            )
            for number, row in enumerate(kept, 1)
        ]

    @guarded
    def conversation_summary(self, conversation_id: str) -> tuple[int, str] | None:
        """The most recent summary of the conversation's earlier turns: (turns covered, text)."""
        row = self.db.execute(
            "SELECT s.covered, s.text FROM summaries s JOIN runs r ON r.id = s.run_id"
            " WHERE r.conversation_id = ? AND s.subject = 'turns'"
            " ORDER BY s.created_at DESC, s.seq DESC LIMIT 1",
            (conversation_id,),
        ).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    # -- reading -----------------------------------------------------------------------------

    @guarded
    def resolve(self, prefix: str) -> str:
        """The full id of the run whose id starts with ``prefix``."""
        rows = self.db.execute(
            "SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at DESC LIMIT 2",
            (_like_prefix(prefix),),
        ).fetchall()
        if not rows or not prefix:
            raise UsageError(
                f"No run with id {prefix!r}.", hint="`ai-stack history list` shows ids."
            )
        if len(rows) > 1 and rows[0]["id"] != prefix:
            raise UsageError(f"The id {prefix!r} matches several runs; give more characters.")
        return str(rows[0]["id"])

    @guarded
    def list_runs(self, limit: int | None = 20) -> list[RunSummary]:
        """Newest first."""
        sql = f"SELECT *, {STATUS} AS shown FROM runs ORDER BY created_at DESC" + (
            " LIMIT ?" if limit else ""
        )
        rows = self.db.execute(sql, (limit,) if limit else ()).fetchall()
        return [
            RunSummary(
                id=row["id"],
                created_at=row["created_at"],
                finished_at=row["finished_at"],
                status=row["shown"],
                source=row["source"],
                task=row["task"],
                models=json.loads(row["config"]).get("models", {}),
                wall_s=row["wall_s"],
            )
            for row in rows
        ]

    @guarded
    def run(self, run_id: str) -> StoredRun:
        """The whole run: the result ``--json`` printed for it (as far as it got), its record,
        and each call's metrics."""
        row = self.db.execute(
            f"SELECT *, {STATUS} AS shown FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise UsageError(f"No run with id {run_id!r}.")
        config = json.loads(row["config"])
        phases = [
            {**dict(r), "thermal": r["thermal"] or "unknown"}
            for r in self.db.execute(
                "SELECT * FROM phases WHERE run_id = ? ORDER BY seq", (run_id,)
            )
        ]
        if row["result"]:  # finished: the result as printed, redacted
            data: dict[str, Any] = json.loads(row["result"])
        else:
            plans = [
                json.loads(r["plan"])
                for r in self.db.execute(
                    "SELECT plan FROM plans WHERE run_id = ? ORDER BY version", (run_id,)
                )
            ]
            critiques = [
                {
                    "issues": json.loads(r["issues"]),
                    "score": r["score"],
                    "verdict": r["verdict"],
                    "round": r["round"],
                }
                for r in self.db.execute(
                    "SELECT * FROM critiques WHERE run_id = ? ORDER BY round", (run_id,)
                )
            ]
            answers = [
                {
                    "version": r["version"],
                    "text": r["text"],
                    "phase": r["phase"],
                    "evidence": json.loads(r["evidence"]) if r["evidence"] else None,
                }
                for r in self.db.execute(
                    "SELECT * FROM answers WHERE run_id = ? ORDER BY version", (run_id,)
                )
            ]
            answer_critiques = [
                json.loads(r["critique"])
                for r in self.db.execute(
                    "SELECT critique FROM answer_critiques WHERE run_id = ? ORDER BY round",
                    (run_id,),
                )
            ]
            data = {
                "task": row["task"],
                "context": row["context"],
                "mode": row["mode"] or "plan",
                "models": config.get("models", {}),
                "plan": plans[-1] if plans else None,
                "plans": plans,
                "critiques": critiques,
                "rounds": len(critiques),
                "answers": answers,
                "answer_critiques": answer_critiques,
                "answer_rounds": len(answer_critiques),
                "metrics": json.loads(row["metrics"]) if row["metrics"] else {},
                "conversation_id": row["conversation_id"],
                "turn": row["turn"],
                "files": [f["path"] for f in json.loads(row["files"])] if row["files"] else [],
            }
        data["metrics"] = {**data.get("metrics", {}), "phases": phases}
        return StoredRun.model_validate(
            {
                **data,
                "id": row["id"],
                "status": row["shown"],
                "source": row["source"],
                "created_at": row["created_at"],
                "finished_at": row["finished_at"],
                "error": row["error"],
                "raw_output": row["raw_output"],
                "config": config,
                "tool_calls": self.tool_calls(run_id),  # also while unfinished
            }
        )

    @guarded
    def export_rows(self) -> list[sqlite3.Row]:
        """Every run's row, oldest first (for flat exports)."""
        return self.db.execute("SELECT * FROM runs ORDER BY created_at").fetchall()
