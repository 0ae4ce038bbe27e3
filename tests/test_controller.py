"""Controller logic against the scripted backend: loop bounds, stop reasons, re-asks, events."""

from __future__ import annotations

import itertools
from collections.abc import Generator

import pytest

from ai_stack.backends import ModelSpec
from ai_stack.config import Settings
from ai_stack.controller import Pipeline, review_loop
from ai_stack.errors import InvalidOutputError, UsageError
from ai_stack.memory import MemoryManager
from ai_stack.prompts import PromptLibrary
from ai_stack.session import resolve_roles
from ai_stack.types import (
    Critique,
    CritiqueReady,
    Event,
    LoopStopped,
    ModelLoaded,
    ModelUnloaded,
    PhaseFinished,
    PlanReady,
    Reasked,
    RunFinished,
    RunResult,
    RunStarted,
    Token,
)
from tests.conftest import plan, verdict
from tests.scripted import ScriptedBackend


def make_pipeline(
    backend: ScriptedBackend,
    roles: dict[str, str] | None = None,
    manager: MemoryManager | None = None,
    **settings: object,
) -> Pipeline:
    config = Settings.model_validate({"review": "plan", **settings, **(roles or {})})
    manager = manager or MemoryManager(lambda name: backend, budget_bytes=10**9)
    return Pipeline(config, manager, PromptLibrary(), resolve_roles(config, "embedded"))


def run(pipeline: Pipeline, task: str = "count lines") -> tuple[RunResult, list[object]]:
    events = list(pipeline.run(task))
    assert isinstance(events[-1], RunFinished)
    return events[-1].result, events


def test_approval_on_first_round_stops_the_loop(scripted: ScriptedBackend) -> None:
    scripted.enqueue(plan("find files", "count"), verdict("approve", 9), "find . | wc -l")
    result, events = run(make_pipeline(scripted))

    assert result.stop_reason == "approved"
    assert result.rounds == 1
    assert result.output == "find . | wc -l"
    assert [p.title for p in result.plan.steps] == ["find files", "count"]
    assert [(m.role, m.phase) for m in result.metrics.phases] == [
        ("planner", "plan"),
        ("critic", "critique"),
        ("executor", "execute"),
    ]
    assert isinstance(events[0], RunStarted)
    assert any(isinstance(e, Token) and e.role == "executor" for e in events)


def test_score_threshold_stops_even_when_the_critic_says_revise(scripted: ScriptedBackend) -> None:
    scripted.enqueue(plan("a"), verdict("revise", 8, "minor"), "answer")
    result, _ = run(make_pipeline(scripted, approve_score=8))
    assert result.stop_reason == "score"


def test_revision_loop_runs_until_max_rounds_without_an_unreviewed_revision(
    scripted: ScriptedBackend,
) -> None:
    scripted.enqueue(
        plan("a"),
        verdict("revise", 2, "too vague"),
        plan("a", "b"),
        verdict("revise", 3, "still vague"),
        "answer",
    )
    result, events = run(make_pipeline(scripted, max_rounds=2))

    assert result.stop_reason == "max_rounds"
    assert result.rounds == 2
    assert [c.round for c in result.critiques] == [1, 2]
    assert len(result.plans) == 2 and result.plan == result.plans[-1]
    assert [p.phase for p in result.metrics.phases] == [
        "plan",
        "critique",
        "revise",
        "critique",
        "execute",
    ]
    assert [e.version for e in events if isinstance(e, PlanReady)] == [1, 2]
    assert [e.reason for e in events if isinstance(e, LoopStopped)] == ["max_rounds"]
    # the revision prompt carried the critic's issue to the planner
    revise_prompt = scripted.chats[2].messages[-1]["content"]
    assert "too vague" in revise_prompt


def test_an_unchanged_revision_ends_the_loop(scripted: ScriptedBackend) -> None:
    scripted.enqueue(plan("a"), verdict("revise", 2, "x"), plan("a"), "answer")
    result, _ = run(make_pipeline(scripted, max_rounds=5))
    assert result.stop_reason == "unchanged"
    assert result.rounds == 1
    assert len(result.plans) == 1


def test_zero_rounds_skips_the_critic(scripted: ScriptedBackend) -> None:
    scripted.enqueue(plan("a"), "answer")
    result, events = run(make_pipeline(scripted, max_rounds=0))
    assert result.rounds == 0 and result.critiques == []
    assert result.stop_reason == "max_rounds"
    assert not any(isinstance(e, CritiqueReady) for e in events)


def test_invalid_structured_output_is_reasked_with_the_validation_error(
    scripted: ScriptedBackend,
) -> None:
    scripted.enqueue(
        '{"goal": "x", "steps": []}',  # violates min_length=1
        plan("a"),
        verdict("approve", 15),  # score out of range: numeric bounds are not grammar-enforced
        verdict("approve", 9),
        "answer",
    )
    result, events = run(make_pipeline(scripted))

    reasks = [e for e in events if isinstance(e, Reasked)]
    assert [(r.role, r.attempt) for r in reasks] == [("planner", 2), ("critic", 2)]
    assert "steps" in reasks[0].error and "score" in reasks[1].error
    # the re-ask shows the model its own reply and the error
    second_plan_call = scripted.chats[1].messages
    assert second_plan_call[-2] == {"role": "assistant", "content": '{"goal": "x", "steps": []}'}
    assert "not valid" in second_plan_call[-1]["content"]
    assert [(m.role, m.attempt) for m in result.metrics.phases] == [
        ("planner", 1),
        ("planner", 2),
        ("critic", 1),
        ("critic", 2),
        ("executor", 1),
    ]


def test_reasks_are_bounded_and_end_in_a_clear_error(scripted: ScriptedBackend) -> None:
    scripted.enqueue("not json", "still not json", "{}")
    pipeline = make_pipeline(scripted, max_reasks=2)
    with pytest.raises(InvalidOutputError) as info:
        list(pipeline.run("task"))
    assert info.value.role == "planner"
    assert info.value.attempts == 3
    assert info.value.last_raw == "{}"
    assert len(scripted.chats) == 3


def test_an_empty_executor_answer_is_reasked(scripted: ScriptedBackend) -> None:
    scripted.enqueue(plan("a"), verdict("approve", 9), "   ", "real answer")
    result, _ = run(make_pipeline(scripted))
    assert result.output == "real answer"


def test_schemas_constrain_planner_and_critic_but_not_the_executor(
    scripted: ScriptedBackend,
) -> None:
    scripted.enqueue(plan("a"), verdict("approve", 9), "answer")
    run(make_pipeline(scripted))
    planner, critic, executor = scripted.chats
    assert planner.schema is not None and "steps" in planner.schema["properties"]
    assert critic.schema is not None and critic.schema["properties"]["verdict"]["enum"] == [
        "approve",
        "revise",
    ]
    assert executor.schema is None


def test_role_settings_reach_the_backend(scripted: ScriptedBackend) -> None:
    scripted.enqueue(plan("a"), verdict("approve", 9), "answer")
    run(make_pipeline(scripted, executor={"max_tokens": 99, "temperature": 0.7}))
    assert scripted.chats[2].options.max_tokens == 99
    assert scripted.chats[2].options.temperature == 0.7


def test_one_model_at_a_time_across_three_role_models(scripted: ScriptedBackend) -> None:
    scripted.enqueue(plan("a"), verdict("revise", 1, "x"), plan("b"), verdict("approve", 9), "ok")
    roles = {"planner": "embedded:a", "critic": "embedded:b", "executor": "embedded:c"}
    ticks = itertools.count()  # every reading of the clock is 1.5 s later: each load takes 1.5 s
    manager = MemoryManager(
        lambda name: scripted, budget_bytes=10**9, clock=lambda: 1.5 * next(ticks)
    )
    pipeline = make_pipeline(scripted, roles, manager)
    result, events = run(pipeline)

    resident: set[str] = set()
    for action, model in scripted.log:
        if action == "load":
            assert not resident, f"{model} loaded while {resident} still resident"
            resident.add(model)
        else:
            resident.discard(model)
    assert [m for a, m in scripted.log if a == "load"] == ["a", "b", "a", "b", "c"]
    assert result.metrics.loads == 5 and result.metrics.unloads == 4
    loaded = [e.model for e in events if isinstance(e, ModelLoaded)]
    unloaded = [e.model for e in events if isinstance(e, ModelUnloaded)]
    assert loaded == ["embedded:a", "embedded:b", "embedded:a", "embedded:b", "embedded:c"]
    assert len(unloaded) == 4
    # the load time is charged to the phase that caused it, and totals come from the events
    assert [p.load_s for p in result.metrics.phases] == [1.5, 1.5, 1.5, 1.5, 1.5]
    assert result.metrics.load_s == 7.5
    assert sum(e.seconds for e in events if isinstance(e, ModelLoaded)) == 7.5
    assert {e.cause for e in events if isinstance(e, ModelUnloaded)} == {"policy"}
    assert result.models == {
        "planner": "embedded:a",
        "critic": "embedded:b",
        "executor": "embedded:c",
    }


def test_a_shared_model_loads_once_per_pipeline_even_across_tasks(
    scripted: ScriptedBackend,
) -> None:
    scripted.enqueue(
        plan("a"), verdict("approve", 9), "one", plan("b"), verdict("approve", 9), "two"
    )
    pipeline = make_pipeline(scripted)
    first, _ = run(pipeline, "task one")
    second, _ = run(pipeline, "task two")
    assert (first.metrics.loads, second.metrics.loads) == (1, 0)
    assert scripted.log == [("load", "smollm2")]


def test_an_empty_task_is_refused_before_any_model_call(scripted: ScriptedBackend) -> None:
    with pytest.raises(UsageError):
        list(make_pipeline(scripted).run("   "))
    assert scripted.log == []


def test_phase_finished_events_match_the_result_metrics(scripted: ScriptedBackend) -> None:
    scripted.enqueue(plan("a"), verdict("approve", 9), "answer")
    result, events = run(make_pipeline(scripted))
    assert [e.metrics for e in events if isinstance(e, PhaseFinished)] == result.metrics.phases


def test_explicit_backend_prefix_wins_over_the_backend_option() -> None:
    config = Settings.model_validate({"planner": "ollama:qwen2.5:7b", "critic": "tiny"})
    specs = resolve_roles(config, "embedded")
    assert specs["planner"] == ModelSpec("ollama", "qwen2.5:7b")
    assert specs["critic"] == ModelSpec("embedded", "tiny")
    assert specs["executor"] == ModelSpec("embedded", "smollm2")


def test_a_spent_budget_stops_the_review_before_a_revision() -> None:
    def review(subject: str, round_: int) -> Generator[Event, None, Critique]:
        return Critique(round=round_, issues=["wrong"], score=2, verdict="revise")
        yield

    def revise(subject: str, critique: Critique, round_: int) -> Generator[Event, None, str]:
        raise AssertionError("no revision once the budget is spent")
        yield

    loop = review_loop(
        "draft", review=review, revise=revise, max_rounds=3, approve_score=8, spent=lambda: True
    )
    try:
        while True:
            next(loop)
    except StopIteration as done:
        outcome = done.value
    assert outcome.stop_reason == "budget" and outcome.versions == ["draft"]
