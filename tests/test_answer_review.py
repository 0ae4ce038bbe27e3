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
    ContractReady,
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


def kind(answer: str) -> str:
    """The Planner's decision in the team mode: ``code``, ``value`` or ``text``."""
    return json.dumps({"answer": answer})


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


def test_a_program_answering_a_question_is_replaced_by_its_result(
    scripted: ScriptedBackend,
) -> None:
    question = "Convert 72 degrees Fahrenheit to Celsius, one decimal. Reply with the number only."
    program = "```python\nprint(round((72 - 32) * 5 / 9, 1))\n```"
    scripted.enqueue(kind("value"), program, "22.2")
    result, _ = run(pipeline(scripted, review="team"), question)

    assert phases(result) == ["planner:contract", "executor:execute", "executor:fix"]
    assert result.contract is not None and result.contract.answer == "value"
    assert result.output == "22.2" and result.chosen_answer == 2
    fix = scripted.chats[2].messages[-1]["content"]
    assert "FAIL: the task asks for a result, not a program: your program printed: 22.2" in fix
    assert "Reply to the task with the result\nthe program printed" in fix
    assert "complete corrected answer" not in fix


def test_without_the_planners_decision_no_answer_is_failed_for_its_form(
    scripted: ScriptedBackend,
) -> None:
    """The answer review alone cannot tell what the task asks for: the program stands."""
    question = "Convert 72 degrees Fahrenheit to Celsius, one decimal. Reply with the number only."
    program = "```python\nprint(round((72 - 32) * 5 / 9, 1))\n```"
    scripted.enqueue(program)
    result, _ = run(pipeline(scripted, review="answer"), question)
    assert phases(result) == ["executor:execute"] and result.output == program


def test_a_prose_answer_missing_a_stated_requirement_is_fixed_as_prose(
    scripted: ScriptedBackend,
) -> None:
    """Explain in two sentences: one sentence fails the stated count, never a code check; the
    fix is asked to meet the requirement, not to find the bug in its code."""
    task = "Explain in two sentences why the sky is blue."
    one = "Air scatters blue sunlight more than red."
    two = "Air scatters blue sunlight more than red. So we see blue from every direction."
    scripted.enqueue(kind("text"), one, two)
    result, events = run(pipeline(scripted, review="team"), task)

    assert phases(result) == ["planner:contract", "executor:execute", "executor:fix"]
    (failed,) = result.answers[0].evidence.failures  # type: ignore[union-attr]
    assert (failed.kind, failed.detail) == ("requirement", "the answer has 1 sentence")
    fix = scripted.chats[2].messages[-1]["content"]
    assert "meets every requirement that failed" in fix and "in your code" not in fix
    assert result.output == two and result.answers[1].evidence.failures == []  # type: ignore[union-attr]
    (read,) = [e for e in events if isinstance(e, ContractReady)]
    assert [r.describe() for r in read.requirements] == ['sentences: exactly 2 ("two sentences")']


def test_when_fixes_stall_the_planner_rethinks_and_fresh_answers_are_tried(
    scripted: ScriptedBackend,
) -> None:
    """A fix that repeats the bug ends the review; the repair never shows the failed answer to
    the Executor again: the Planner's new approach, then a fresh sample, each checked."""
    rethink = json.dumps({"cause": "the last run is never added", "approach": ["add the last run"]})
    scripted.enqueue(kind("code"), BUGGY, BUGGY, BUGGY, rethink, BUGGY, FIXED)
    evidence = {"probes": 0, "attempts": 3, "budget": 0}  # the repair itself, unbounded
    settings = {"review": "team", "max_rounds": 1, "evidence": evidence}
    result, _ = run(pipeline(scripted, **settings))

    assert phases(result) == [
        "planner:contract",
        "executor:execute",
        "executor:fix",
        "executor:fix",
        "planner:rethink",
        "executor:attempt",
        "executor:attempt",
    ]
    assert result.answer_stop_reason == "unchanged"  # the fix was the answer again
    assert [a.phase for a in result.answers] == ["execute", "attempt", "attempt"]
    assert result.output == FIXED and result.chosen_answer == 3  # the first that passes: stop
    after_rethink, fresh = scripted.chats[5].messages, scripted.chats[6].messages
    assert "Take this approach:\n1. add the last run" in after_rethink[-1]["content"]
    assert all(BUGGY not in m["content"] for m in after_rethink + fresh)
    assert fresh == scripted.chats[1].messages  # the first answer's own prompt, sampled anew
    assert scripted.chats[6].options.temperature == 0.8
    assert scripted.chats[6].options.seed != scripted.chats[1].options.seed


FIXES = ["planner:contract", "executor:execute", "executor:fix", "executor:fix"]


@pytest.mark.parametrize(
    ("budget", "calls"),
    [
        (1.0, FIXES),
        (2.0, [*FIXES, "executor:attempt"]),  # no room for a rethink and its answer: a sample
        (0, [*FIXES, "planner:rethink", "executor:attempt", "executor:attempt"]),
    ],
)
def test_the_review_and_repair_cost_a_bounded_multiple_of_the_first_answer(
    scripted: ScriptedBackend, budget: float, calls: list[str]
) -> None:
    """A task the model keeps failing: with ``evidence.budget``, no call starts once the calls
    after the first answer have cost that many times its own (in tokens, so the bound does not
    depend on how busy the machine is); the best version so far is the answer."""
    rethink = json.dumps({"cause": "the last run is never added", "approach": ["add the last run"]})
    replies = [kind("code"), BUGGY, BUGGY + " ", BUGGY + "  "]
    scripted.enqueue(*replies, *([rethink] if budget == 0 else []), BUGGY, BUGGY)
    evidence = {"probes": 0, "attempts": 2, "budget": budget}
    result, _ = run(pipeline(scripted, review="team", max_rounds=2, evidence=evidence))
    assert phases(result) == calls
    assert result.output.strip() == BUGGY.strip()


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


def test_a_fix_without_code_fails_and_the_answer_with_code_is_kept(
    scripted: ScriptedBackend,
) -> None:
    scripted.enqueue(kind("code"), BUGGY, "Use a loop that counts each run of characters.")
    settings = {"review": "team", "max_rounds": 1, "evidence": {"attempts": 0}}
    result, _ = run(pipeline(scripted, **settings))
    (failed,) = result.answers[1].evidence.failures  # type: ignore[union-attr]
    assert (failed.kind, failed.detail) == ("form", "the answer has no code block")
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


def test_a_result_given_in_prose_is_checked_against_a_program_computing_it(
    scripted: ScriptedBackend,
) -> None:
    """Small models get arithmetic wrong in prose and right in code: a program the Executor
    writes for it runs in the sandbox, and an answer that disagrees is fixed to its result."""
    question = "Convert 72 degrees Fahrenheit to Celsius, one decimal. Reply with the number only."
    computing = "```python\nprint(round((72 - 32) * 5 / 9, 1))\n```"
    scripted.enqueue(kind("value"), "21.5", computing, "22.2")
    result, _ = run(pipeline(scripted, review="team"), question)

    assert phases(result) == [
        "planner:contract",
        "executor:execute",
        "executor:compute",
        "executor:fix",
    ]
    first, fixed = result.answers
    (failed,) = first.evidence.failures  # type: ignore[union-attr]
    assert (failed.kind, failed.detail) == ("result", "a program computing it printed: 22.2")
    assert fixed.text == "22.2" and fixed.evidence.failures == []  # type: ignore[union-attr]
    assert result.output == "22.2"
    assert "computes the answer to the task" in scripted.chats[2].messages[-1]["content"]


def test_a_result_that_agrees_with_its_program_needs_no_fix(scripted: ScriptedBackend) -> None:
    question = "What is 15% of 240? Reply with the number only."
    scripted.enqueue(kind("value"), "36", "```python\nprint(240 * 15 / 100)\n```")
    result, _ = run(pipeline(scripted, review="team"), question)
    assert phases(result) == ["planner:contract", "executor:execute", "executor:compute"]
    assert result.output == "36" and result.answers[0].evidence.failures == []  # type: ignore[union-attr]


def test_a_value_still_answered_with_a_program_is_given_as_what_it_printed(
    scripted: ScriptedBackend,
) -> None:
    """The fix answered with a program again: its one line of output is the value asked for."""
    question = "Convert 72 degrees Fahrenheit to Celsius, one decimal. Reply with the number only."
    computing = "```python\nprint(round((72 - 32) * 5 / 9, 1))\n```"
    scripted.enqueue(kind("value"), "21.7", computing, "The bug was...\n" + computing)
    result, _ = run(pipeline(scripted, review="team", max_rounds=1), question)
    assert [a.phase for a in result.answers] == ["execute", "fix", "computed"]
    assert result.output == "22.2" and result.chosen_answer == 3
