"""Every run out of the history: JSON lines of whole runs, or CSV with one row per run."""

from __future__ import annotations

import csv
import io
import json

from ai_stack.history.store import HistoryStore

CSV_COLUMNS = [
    "id",
    "created_at",
    "finished_at",
    "status",
    "source",
    "task",
    "stop_reason",
    "rounds",
    "loads",
    "unloads",
    "load_s",
    "wall_s",
    "output",
]


def export(store: HistoryStore, fmt: str) -> str:
    """The whole history as ``jsonl`` (each line as ``history show --json``) or ``csv``."""
    if fmt == "jsonl":
        return "".join(
            json.dumps(store.run(summary.id).model_dump(mode="json"), ensure_ascii=False) + "\n"
            for summary in store.list_runs(limit=None)
        )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in store.export_rows():
        writer.writerow({key: row[key] for key in CSV_COLUMNS})
    return buffer.getvalue()
