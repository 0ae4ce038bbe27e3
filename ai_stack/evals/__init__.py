"""``ai-stack eval``: does the team answer better than one call, on the user's own tasks?

A suite (YAML, or HumanEval-style JSON lines) pairs tasks with checkers the models never see;
the runner sends every task through each mode side by side, checks each final answer in the
sandbox, and reports pass rates with 95 % intervals, time, tokens and loads per mode.
"""

from ai_stack.evals.checker import check_answer
from ai_stack.evals.runner import MODES, EvalReport, EvalRun, ModeSummary, TaskOutcome
from ai_stack.evals.suite import Checker, Suite, SuiteTask, load_suite

__all__ = [
    "MODES",
    "Checker",
    "EvalReport",
    "EvalRun",
    "ModeSummary",
    "Suite",
    "SuiteTask",
    "TaskOutcome",
    "check_answer",
    "load_suite",
]
