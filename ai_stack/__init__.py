"""ai_stack: a local, Claude-like assistant from a team of local models — an Executor that answers,
a Planner asked what a task wants where its words do not say, checks that replace a failing
answer, and a Critic in the review modes — inside a memory budget.

Importing this package has no side effects: no models, clients or files are touched, and the
names below are imported on first use (so the command line starts fast).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.6.0"

_EXPORTS = {
    "AiStackError": "ai_stack.errors",
    "Critique": "ai_stack.types",
    "Plan": "ai_stack.types",
    "PlanStep": "ai_stack.types",
    "RunMetrics": "ai_stack.types",
    "RunResult": "ai_stack.types",
    "Verdict": "ai_stack.types",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ai_stack' has no attribute {name!r}")


__all__ = [
    "AiStackError",
    "Critique",
    "Plan",
    "PlanStep",
    "RunMetrics",
    "RunResult",
    "Verdict",
    "__version__",
]
