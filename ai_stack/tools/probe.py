"""The tool-call conformance probe (``ai-stack models probe NAME --tools``): does this model call
a tool when one fits, and answer when none does, under the step schema?

Each trial is one real step of the tool loop (one attempt, no re-asks) on two cases — a question
a tool answers, and one no tool helps with — over a fixed pair of tools whose run functions are
never called. Under the schema every reply should parse and validate (a server that ignores the
schema is what this catches); what it measures beyond that is the choice. The router seed's
checks: valid JSON, an existing tool, arguments matching its schema, answering instead of
calling when no tool fits.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Mapping
from typing import Any

from ai_stack.backends import ModelSpec
from ai_stack.backends.base import LoadOptions, Message
from ai_stack.config import Settings
from ai_stack.errors import InvalidOutputError
from ai_stack.memory import MemoryManager
from ai_stack.probe import trial_call
from ai_stack.prompts import PromptLibrary
from ai_stack.roles import RoleRunner
from ai_stack.tools.base import Tool, Toolbox
from ai_stack.tools.loop import tool_messages
from ai_stack.tools.schema import Answer, Call, parse_step, step_schema
from ai_stack.types import PhaseFinished

CASES = {
    "fits": "What does the file notes/todo.txt say? Read it.",
    "none_fits": "What is the capital of France?",
}


def _never(arguments: Mapping[str, Any]) -> str:
    raise AssertionError("the probe never runs a tool")


def probe_tools() -> Toolbox:
    """The probe's two tools: one that fits the first case, one that fits neither."""
    return Toolbox(
        [
            Tool(
                "read_file",
                "Read a text file.",
                {
                    "type": "object",
                    "properties": {"path": {"type": "string", "maxLength": 200}},
                    "required": ["path"],
                },
                _never,
            ),
            Tool(
                "get_weather",
                "The weather in a city today.",
                {
                    "type": "object",
                    "properties": {"city": {"type": "string", "maxLength": 100}},
                    "required": ["city"],
                },
                _never,
            ),
        ]
    )


def run_tool_probe(
    manager: MemoryManager,
    spec: ModelSpec,
    settings: Settings,
    prompts: PromptLibrary,
    trials: int,
    on_trial: Callable[[str, int], None] = lambda case, trial: None,
) -> dict[str, Any]:
    """Per case, how often ``spec``'s step is valid JSON, a valid step, and the right choice (a
    call of ``read_file`` where it fits, the answer where nothing does)."""
    box = probe_tools()
    schema = step_schema(box)
    runner = RoleRunner(manager, max_reasks=0)
    executor = settings.executor
    load = LoadOptions(num_ctx=min(executor.num_ctx, 4096))
    cases: dict[str, Any] = {}
    for case, task in CASES.items():
        messages: list[Message] = tool_messages(prompts, box, [{"role": "user", "content": task}])
        valid_json = valid_step = right = 0
        latencies: list[float] = []
        for trial in range(trials):
            on_trial(case, trial + 1)
            call = trial_call(settings, "executor", "act", spec, load, trial)
            events = runner.constrained(call, messages, schema, lambda t: parse_step(t, schema))
            try:
                while True:
                    event = next(events)
                    if isinstance(event, PhaseFinished):
                        latencies.append(event.metrics.wall_s - event.metrics.load_s)
            except StopIteration as done:
                valid_json += 1
                valid_step += 1
                step = done.value
                right += (
                    isinstance(step, Call) and step.tool == "read_file"
                    if case == "fits"
                    else isinstance(step, Answer)
                )
            except InvalidOutputError as error:
                valid_json += _is_json(error.last_raw)
        cases[case] = {
            "trials": trials,
            "valid_json_rate": valid_json / trials,
            "valid_step_rate": valid_step / trials,
            "right_choice_rate": right / trials,
            "median_latency_s": round(statistics.median(latencies), 3) if latencies else None,
        }
    fits, none = cases["fits"], cases["none_fits"]
    verdict = (
        f"{spec}, under the step schema: valid steps {_share(fits, none, 'valid_step_rate')}; "
        f"calls the tool that fits {fits['right_choice_rate']:.0%} of the time, answers when no "
        f"tool fits {none['right_choice_rate']:.0%} of the time."
    )
    return {"model": str(spec), "mode": "constrained", "cases": cases, "verdict": verdict}


def _is_json(text: str | None) -> bool:
    try:
        json.loads(text or "", strict=False)
    except json.JSONDecodeError:
        return False
    return True


def _share(a: dict[str, Any], b: dict[str, Any], key: str) -> str:
    total = a["trials"] + b["trials"]
    return f"{(a[key] * a['trials'] + b[key] * b['trials']) / total:.0%}"


__all__ = ["CASES", "probe_tools", "run_tool_probe"]
