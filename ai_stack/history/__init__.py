"""The run history: a SQLite store (also the batch journal), the recorder that writes a run's
events into it as they arrive, and exports. See docs/history.md."""

from ai_stack.history.export import export
from ai_stack.history.recorder import HistoryRecorder
from ai_stack.history.store import HistoryStore, RunSummary, StoredPhase, StoredRun

__all__ = ["HistoryRecorder", "HistoryStore", "RunSummary", "StoredPhase", "StoredRun", "export"]
