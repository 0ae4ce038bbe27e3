"""The modes and the answer review, on a scripted backend: the code in the answers really runs
(in the sandbox; unisolated here, by opt-in, so these logic tests run on any machine)."""

from __future__ import annotations

import json

import pytest

from ai_stack.config import Settings
from ai_stack.controller import Pipeline
from ai_stack.evidence import EvidenceCollector
from ai_stack.memory import MemoryManager
from ai_stack.prompts import PromptLibrary
from ai_stack.sandbox import Limits, Sandbox
from ai_stack.session import resolve_roles
from ai_stack.types import (
    AnswerReady,
    EvidenceReady,
    LoopStopped,
    PlanReady,
    RunFinished,
    RunResult,
)
from tests.conftest import plan, verdict
from tests.scripted import ScriptedBackend

TASK = (
    "Write a Python function compress(s) that run-length encodes s: compress('aaabcc') -> 'a3b1c2'."
)
BUGGY = """Here it is:
```python
def compress(s):
    out = ""
    count = 1
    for i in range(1, len(s)):
        if s[i] == s[i - 1]:
            count += 1
        else:
            out += s[i - 1] + str(count)
            count = 1
    return out
```"""
FIXED = """Fixed:
```python
def compress(s):
    out = ""
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and s[j] == s[i]:
            j += 1
        out += s[i] + str(j - i)
        i = j
    return out
```"""
CRASHES_ON_EMPTY = FIXED.replace('    out = ""\n    i = 0', '    out = s[0] and ""\n    i = 0')


def probes(*calls: str) -> str:
    return json.dumps({"calls": list(calls)})


def pipeline(backend: ScriptedBackend, **settings: object) -> Pipeline:
    config = Settings.model_validate(settings)
    manager = MemoryManager(lambda name: backend, budget_bytes=10**9)
    sandbox = Sandbox(Limits(seconds=10), isolation="none", allow_unisolated=True)
    return Pipeline(
        config,
        manager,
        PromptLibrary(),
        resolve_roles(config, "embedded"),
        evidence=EvidenceCollector(sandbox),
    )


def run(p: Pipeline, task: str = TASK) -> tuple[RunResult, list[object]]:
    events = list(p.run(task))
    assert isinstance(events[-1], RunFinished)
    return events[-1].result, events


def phases(result: RunResult) -> list[str]:
    return [f"{m.role}:{m.phase}" for m in result.metrics.phases]


def test_a_failed_example_is_fed_back_and_the_fix_replaces_the_answer(
    scripted: ScriptedBackend,
) -> None:
    scripted.enqueue(BUGGY, FIXED)
    result, events = run(pipeline(scripted, review="answer", max_rounds=1))

    assert phases(result) == ["executor:execute", "executor:fix"]  # the checks decided: no Critic
    assert result.mode == "answer" and result.plan is None and result.stop_reason is None
    assert result.output == FIXED and result.chosen_answer == 2
    first, second = result.answers
    assert first.evidence is not None and second.evidence is not None
    (failed,) = first.evidence.failures
    assert failed.name == "compress('aaabcc') should return 'a3b1c2'"
    assert failed.detail == "returned 'a3b1'"
    assert second.evidence.failures == [] and second.evidence.executed
    # the fix prompt carried the failure, and continued the Executor's own conversation
    fix = scripted.chats[1].messages
    asked = len(scripted.chats[0].messages)
    assert fix[:asked] == scripted.chats[0].messages
    assert fix[asked] == {"role": "assistant", "content": BUGGY}
    assert "FAIL: compress('aaabcc') should return 'a3b1c2': returned 'a3b1'" in fix[-1]["content"]
    assert [c.source for c in result.answer_critiques] == ["evidence", "evidence"]
    assert [c.verdict for c in result.answer_critiques] == ["revise", "approve"]
    assert result.answer_stop_reason == "approved"
    assert [e.answer.version for e in events if isinstance(e, AnswerReady)] == [1, 2]
    assert [(e.version, e.round) for e in events if isinstance(e, EvidenceReady)] == [
        (1, 1),
        (2, 2),
    ]


def test_without_the_planners_decision_no_answer_is_failed_for_its_form(
    scripted: ScriptedBackend,
) -> None:
    """The answer review alone cannot tell what the task asks for: the program stands."""
    question = "Convert 72 degrees Fahrenheit to Celsius, one decimal. Reply with the number only."
    program = "```python\nprint(round((72 - 32) * 5 / 9, 1))\n```"
    scripted.enqueue(program)
    result, _ = run(pipeline(scripted, review="answer"), question)
    assert phases(result) == ["executor:execute"] and result.output == program


def test_passing_checks_go_to_the_critic_with_its_edge_cases_run(
    scripted: ScriptedBackend,
) -> None:
    scripted.enqueue(FIXED, probes("compress('')", "compress('aaaa')"), verdict("approve", 9))
    result, _ = run(pipeline(scripted, review="answer"))

    assert phases(result) == ["executor:execute", "critic:probe", "critic:review"]
    evidence = result.answers[0].evidence
    assert evidence is not None
    outputs = {c.name: (c.passed, c.detail) for c in evidence.checks if c.kind == "probe"}
    assert outputs == {
        "compress('')": (None, "returned ''"),
        "compress('aaaa')": (None, "returned 'a4'"),
    }
    review = scripted.chats[2].messages
    asked = len(scripted.chats[1].messages)
    assert review[:asked] == scripted.chats[1].messages
    assert review[asked]["role"] == "assistant"  # the Critic's own edge cases...
    assert "RESULT: compress('aaaa'): returned 'a4'" in review[-1]["content"]  # ...and results
    assert result.answer_stop_reason == "approved" and result.output == FIXED


def test_an_edge_case_call_that_does_not_fit_the_function_is_dropped(
    scripted: ScriptedBackend,
) -> None:
    scripted.enqueue(
        FIXED, probes("compress()", "compress('a', 'b')", "compress(5)"), verdict("approve", 9)
    )
    result, _ = run(pipeline(scripted, review="answer"))
    evidence = result.answers[0].evidence
    assert evidence is not None
    probed = {c.name: c.passed for c in evidence.checks if c.kind == "probe"}
    assert probed == {"compress(5)": None}  # a wrong type is for judgement; arity errors dropped
    assert phases(result)[-1] == "critic:review"


def test_an_edge_case_that_crashes_is_a_failure_without_asking_the_critic(
    scripted: ScriptedBackend,
) -> None:
    scripted.enqueue(CRASHES_ON_EMPTY, probes("compress('')"), FIXED)
    result, _ = run(pipeline(scripted, review="answer", max_rounds=1))
    assert phases(result) == ["executor:execute", "critic:probe", "executor:fix"]
    assert "IndexError" in scripted.chats[2].messages[-1]["content"]
    assert result.output == FIXED


def test_the_critic_can_ask_for_a_fix_when_every_check_passes(scripted: ScriptedBackend) -> None:
    scripted.enqueue(
        FIXED,
        probes("compress('')"),
        verdict("revise", 3, "compress('') should be None"),
        FIXED + "\n",
    )
    result, _ = run(pipeline(scripted, review="answer"))
    assert phases(result) == ["executor:execute", "critic:probe", "critic:review", "executor:fix"]
    assert "compress('') should be None" in scripted.chats[3].messages[-1]["content"]
    assert result.answer_stop_reason == "unchanged"  # the fix changed nothing


def test_with_nothing_left_to_judge_the_checks_decide(scripted: ScriptedBackend) -> None:
    """No edge cases proposed, every check passed: there is no fact for a Critic to judge, so
    no review call is made (a Critic reviewing text alone approves everything; measured)."""
    scripted.enqueue(FIXED, probes())
    result, _ = run(pipeline(scripted, review="answer"))
    assert phases(result) == ["executor:execute", "critic:probe"]
    assert result.answer_critiques[0].source == "evidence" and result.output == FIXED


def test_a_fix_that_repeats_the_failing_answer_is_asked_again(scripted: ScriptedBackend) -> None:
    scripted.enqueue(BUGGY, BUGGY, FIXED)
    result, _ = run(pipeline(scripted, review="answer", max_rounds=1))
    assert phases(result) == ["executor:execute", "executor:fix", "executor:fix"]
    again = scripted.chats[2]
    assert again.messages[-2] == {"role": "assistant", "content": BUGGY}
    assert "same code as before" in again.messages[-1]["content"]
    assert (again.options.temperature, again.options.seed) == (0.8, 43)  # sampled more freely
    assert result.output == FIXED


def test_a_fix_with_more_failures_keeps_the_earlier_answer(scripted: ScriptedBackend) -> None:
    worse = "```python\ndef compress(s):\n    return helper(s)\n```"  # undefined, then crashes
    scripted.enqueue(BUGGY, worse)
    result, _ = run(pipeline(scripted, review="answer", max_rounds=2))
    v1, v2 = result.answers
    assert v1.evidence and v2.evidence
    assert (len(v1.evidence.failures), len(v2.evidence.failures)) == (1, 2)
    assert result.output == BUGGY and result.chosen_answer == 1
    assert result.answer_stop_reason == "no_progress"  # no third call after a fix this bad


def test_a_fix_failing_as_many_checks_stops_and_the_first_answer_is_kept(
    scripted: ScriptedBackend,
) -> None:
    other = "```python\ndef compress(s):\n    return s\n```"
    scripted.enqueue(BUGGY, other)
    result, _ = run(pipeline(scripted, review="answer", max_rounds=2))
    assert len(result.answers) == 2 and result.answer_stop_reason == "no_progress"
    # no better than the first: the model's own answer is given, not a fix that failed as much
    assert result.chosen_answer == 1 and result.output == BUGGY


def test_without_the_planner_a_fix_that_drops_the_code_does_not_win(
    scripted: ScriptedBackend,
) -> None:
    """The answer review alone does not know the task asks for code; that the answer had code
    and its fix has none is a fact it does know (SmolLM2 answered a fix with its failure)."""
    scripted.enqueue(BUGGY, "- FAIL: the code counts wrong.")
    result, _ = run(pipeline(scripted, review="answer", max_rounds=1))
    (failed,) = result.answers[1].evidence.failures  # type: ignore[union-attr]
    assert (failed.kind, failed.name) == ("form", "the answer keeps its code")
    assert result.chosen_answer == 1 and result.output == BUGGY


def test_up_to_max_rounds_fixes_while_each_makes_progress(scripted: ScriptedBackend) -> None:
    """Two examples; the first fix passes one of them, the second both."""
    task = "compress('aaabcc') -> 'a3b1c2' and compress('abc') -> 'a1b1c1'."
    half = "```python\ndef compress(s):\n    return 'a3b1c2' if s == 'aaabcc' else s\n```"
    scripted.enqueue("```python\ndef compress(s):\n    return s\n```", half, FIXED)
    result, _ = run(pipeline(scripted, review="answer", max_rounds=2), task)
    assert phases(result) == ["executor:execute", "executor:fix", "executor:fix"]
    assert [len(a.evidence.failures) for a in result.answers if a.evidence] == [2, 1, 0]
    assert result.output == FIXED and result.answer_stop_reason == "approved"


def test_a_critic_without_valid_output_costs_only_its_own_part(scripted: ScriptedBackend) -> None:
    scripted.enqueue(FIXED, "not json", "nope")  # the edge cases, then the review: both invalid
    result, _ = run(pipeline(scripted, review="answer", max_reasks=0))
    assert result.output == FIXED  # the answer survives; the checks decided
    assert result.answer_critiques[0].source == "evidence"


def test_direct_is_one_executor_call(scripted: ScriptedBackend) -> None:
    scripted.enqueue(BUGGY)
    result, events = run(pipeline(scripted, direct=True))
    assert phases(result) == ["executor:execute"] and result.mode == "direct"
    assert result.output == BUGGY and result.answers[0].evidence is None
    assert result.plan is None and result.critiques == [] and result.answer_critiques == []
    assert not any(isinstance(e, PlanReady | LoopStopped) for e in events)


def test_review_none_is_planner_then_executor(scripted: ScriptedBackend) -> None:
    scripted.enqueue(plan("write it"), FIXED)
    result, _ = run(pipeline(scripted, review="none"))
    assert phases(result) == ["planner:plan", "executor:execute"]
    assert result.plan is not None and result.stop_reason is None and result.rounds == 0
    assert "Plan to follow" in scripted.chats[1].messages[-1]["content"]


def test_both_reviews_the_plan_then_the_answer(scripted: ScriptedBackend) -> None:
    scripted.enqueue(plan("write it"), verdict("approve", 9), BUGGY, FIXED)
    result, events = run(pipeline(scripted, review="both", max_rounds=1))
    assert phases(result) == [
        "planner:plan",
        "critic:critique",
        "executor:execute",
        "executor:fix",
    ]
    assert result.stop_reason == "approved" and result.answer_stop_reason == "approved"
    assert [e.subject for e in events if isinstance(e, LoopStopped)] == ["plan", "answer"]
    assert result.output == FIXED


def test_the_plan_review_alone_is_todays_pipeline(scripted: ScriptedBackend) -> None:
    scripted.enqueue(plan("write it"), verdict("approve", 9), BUGGY)
    result, _ = run(pipeline(scripted, review="plan"))
    assert phases(result) == ["planner:plan", "critic:critique", "executor:execute"]
    assert result.output == BUGGY and result.answer_critiques == []


@pytest.mark.parametrize("review", ["none", "plan", "answer", "both"])
def test_every_role_shares_the_prompt_prefix(scripted: ScriptedBackend, review: str) -> None:
    """The task opens every prompt, with no system message before it, so a cache serves all
    roles (the team mode's one-line question about the task is the exception)."""
    scripted.enqueue(plan("a"), verdict("approve", 9), FIXED, probes(), verdict("approve", 9))
    run(pipeline(scripted, review=review))
    assert all(chat.messages[0]["role"] == "user" for chat in scripted.chats)
    assert all(chat.messages[0]["content"].startswith(TASK) for chat in scripted.chats)


def test_without_a_sandbox_the_answer_gets_static_checks_only(scripted: ScriptedBackend) -> None:
    config = Settings.model_validate({"review": "answer"})
    manager = MemoryManager(lambda name: scripted, budget_bytes=10**9)
    refusing = EvidenceCollector(Sandbox(isolation="none"))
    p = Pipeline(
        config, manager, PromptLibrary(), resolve_roles(config, "embedded"), evidence=refusing
    )
    undefined = "```python\ndef compress(s):\n    return helper(s)\n```"
    scripted.enqueue(undefined, FIXED)
    result, _ = run(p)
    evidence = result.answers[0].evidence
    assert evidence is not None and not evidence.executed
    assert evidence.note and "--exec" in evidence.note
    assert [c.detail for c in evidence.failures] == ["line 2: undefined name 'helper'"]
    assert result.output == FIXED
