"""ai_stack: Planner → Critic loop → Executor on local models, inside a memory budget.

Importing this package has no side effects: no models, clients or files are touched.
"""

from ai_stack.errors import AiStackError
from ai_stack.types import Critique, Plan, PlanStep, RunMetrics, RunResult, Verdict

__version__ = "0.4.0"

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
