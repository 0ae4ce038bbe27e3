"""The structured-output conformance probe: can this model fill the Planner's and the Critic's
JSON schemas? Each trial is a real role call (one attempt, no re-asks) made by the same
:class:`~ai_stack.roles.RoleRunner` the pipeline uses."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from ai_stack.backends import ModelSpec
from ai_stack.backends.base import ChatOptions, LoadOptions, Message
from ai_stack.config import Settings
from ai_stack.errors import InvalidOutputError
from ai_stack.memory import MemoryManager
from ai_stack.prompts import PromptLibrary
from ai_stack.recommend import DEMO, demo_model
from ai_stack.roles import RoleCall, RoleRunner
from ai_stack.types import Phase, PhaseFinished, Plan, Role, Verdict

SAMPLE_TASK = "Write a shell one-liner that counts lines in all .py files"
SAMPLE_PLAN = Plan.model_validate(
    {
        "goal": "count lines of Python code",
        "steps": [
            {"title": "Find files", "detail": "find . -name '*.py'"},
            {"title": "Count", "detail": "pipe them to xargs wc -l"},
        ],
    }
)


def run_probe(
    manager: MemoryManager,
    spec: ModelSpec,
    settings: Settings,
    prompts: PromptLibrary,
    trials: int,
    on_trial: Callable[[str, int], None] = lambda role, trial: None,
) -> dict[str, Any]:
    """How often ``spec``'s planner and critic replies are valid JSON and valid in the schema,
    with median latency and decode speed, and a verdict on which roles it is fit for."""
    cases: dict[Role, tuple[Phase, list[Message], type[BaseModel]]] = {
        "planner": ("plan", prompts.render("planner", task=SAMPLE_TASK, context=None), Plan),
        "critic": (
            "critique",
            prompts.render(
                "critic",
                task=SAMPLE_TASK,
                context=None,
                plan=SAMPLE_PLAN,
                round=1,
                approve_score=settings.approve_score,
            ),
            Verdict,
        ),
    }
    load = LoadOptions(num_ctx=max(settings.planner.num_ctx, settings.critic.num_ctx))
    runner = RoleRunner(manager, max_reasks=0)
    roles: dict[str, Any] = {}
    for role, (phase, messages, model) in cases.items():
        valid_json = schema_valid = 0
        latencies: list[float] = []
        speeds: list[float] = []
        for trial in range(trials):
            on_trial(role, trial + 1)
            call = trial_call(settings, role, phase, spec, load, trial)
            events = runner.structured(call, messages, model)
            try:
                while True:
                    event = next(events)
                    if isinstance(event, PhaseFinished):  # the call itself, not its load
                        latencies.append(event.metrics.wall_s - event.metrics.load_s)
                        speeds.append(event.metrics.tokens_per_s)
            except StopIteration:
                valid_json += 1
                schema_valid += 1
            except InvalidOutputError as exc:
                valid_json += exc.kind == "schema"
        roles[role] = {
            "trials": trials,
            "valid_json_rate": valid_json / trials,
            "schema_valid_rate": schema_valid / trials,
            "median_latency_s": round(statistics.median(latencies), 3),
            "median_tokens_per_s": round(statistics.median(speeds), 2),
        }
    fit = [role for role, r in roles.items() if r["schema_valid_rate"] >= 0.9]
    if demo_model(manager.describe(spec).parameters):
        fit = []
        verdict = f"{spec} is {DEMO} (its replies fit the schemas {_rates(roles)})."
    elif len(fit) == 2:
        verdict = f"{spec} is fit for the planner and critic roles."
    elif fit:
        verdict = f"{spec} is fit for the {fit[0]} role only; use another model for the other."
    else:
        verdict = (
            f"{spec} is not fit for the planner or critic roles: its structured replies "
            "often fail validation (ai-stack re-asks, but each re-ask costs a call)."
        )
    return {"model": str(spec), "roles": roles, "fit_roles": fit, "verdict": verdict}


def trial_call(
    settings: Settings, role: Role, phase: Phase, spec: ModelSpec, load: LoadOptions, trial: int
) -> RoleCall:
    """One probe trial's call: the role's own sampling, one seed per trial (so trials differ
    and a rerun repeats them). Shared by the structured-output and the tool-step probes."""
    role_settings = settings.role(role)
    chat = ChatOptions(
        temperature=role_settings.temperature,
        max_tokens=role_settings.max_tokens,
        repeat_penalty=settings.repeat_penalty,
        seed=trial,
    )
    return RoleCall(role, phase, spec, load, chat)


def _rates(roles: dict[str, Any]) -> str:
    rates = (f"{r['schema_valid_rate']:.0%} of the time as {role}" for role, r in roles.items())
    return " and ".join(rates)
