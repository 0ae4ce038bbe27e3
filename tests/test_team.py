"""The team mode on a scripted backend: what the task asks for decided once (by its words, else
by the Planner), the answer checked against it, and a failing answer replaced by versions that
do not anchor on it. The code in the answers really runs (in the sandbox; unisolated here, by
opt-in, so these logic tests run on any machine)."""

from __future__ import annotations

import json

import pytest

from ai_stack.types import AskDecided, Notice
from tests.scripted import ScriptedBackend
from tests.test_answer_review import BUGGY, FIXED, TASK, phases, pipeline, run

FAHRENHEIT = "Convert 72 degrees Fahrenheit to Celsius, one decimal. Reply with the number only."
COMPUTING = "```python\nprint(round((72 - 32) * 5 / 9, 1))\n```"


def kind(answer: str) -> str:
    """The Planner's decision, where the task's words leave it open: code, value or text."""
    return json.dumps({"answer": answer})


def team(scripted: ScriptedBackend, max_rounds: int = 2, **evidence: object) -> object:
    """The team; fresh answers without the Planner's rethink unless asked (its own test)."""
    return pipeline(
        scripted, review="team", max_rounds=max_rounds, evidence={"rethink": False, **evidence}
    )


# -- what the task asks for ----------------------------------------------------------------------


def test_code_the_task_states_is_decided_without_the_planner(scripted: ScriptedBackend) -> None:
    scripted.enqueue(FIXED)
    result, events = run(team(scripted))  # type: ignore[arg-type]
    assert phases(result) == ["executor:execute"]
    assert result.ask is not None
    assert (result.ask.kind, result.ask.by, result.ask.function) == ("code", "task", "compress")
    assert [e.ask.kind for e in events if isinstance(e, AskDecided)] == ["code"]
    assert result.contract is None and result.output == FIXED


@pytest.mark.parametrize(
    "task",
    [
        "Write a haiku about autumn.",
        "Write a short email to my landlord about a broken heater.",
        "How does photosynthesis work?",
        "Show me how a rainbow forms, with examples.",
        "Port this from Python 2 -> 3: print 'hi'",
    ],
)
def test_a_prose_answer_is_never_failed_for_having_no_code(
    scripted: ScriptedBackend, task: str
) -> None:
    """The words a word list took for a request for code ("write", "how does", "show",
    "examples", an arrow) decide nothing: the Planner says text, and a prose answer fails
    nothing (nor is an arrow a test case)."""
    scripted.enqueue("Leaves fall slowly; the light is low and gold.", kind("text"))
    result, _ = run(team(scripted), task)  # type: ignore[arg-type]
    assert phases(result) == ["executor:execute", "planner:contract"]
    assert result.ask is not None and result.ask.kind == "prose"
    evidence = result.answers[0].evidence
    assert evidence is not None and evidence.failures == []
    assert not [c for c in evidence.checks if c.kind == "example"]


def test_stated_requirements_answered_in_prose_need_no_planner(scripted: ScriptedBackend) -> None:
    two = "Air scatters blue sunlight more than red. So the sky looks blue from everywhere."
    scripted.enqueue(two)
    result, _ = run(team(scripted), "Explain in two sentences why the sky is blue.")  # type: ignore[arg-type]
    assert phases(result) == ["executor:execute"]
    assert result.ask is not None and (result.ask.kind, result.ask.by) == ("prose", "task")
    assert result.output == two and result.answers[0].evidence.failures == []  # type: ignore[union-attr]


def test_without_a_valid_decision_no_answer_is_failed_for_its_form(
    scripted: ScriptedBackend,
) -> None:
    scripted.enqueue(COMPUTING, "not json", "still not", "nor this")
    result, events = run(team(scripted), FAHRENHEIT)  # type: ignore[arg-type]
    assert result.ask is not None and result.ask.kind == "unknown"
    assert any(isinstance(e, Notice) and e.kind == "contract" for e in events)
    assert result.output == COMPUTING and result.answers[0].evidence.failures == []  # type: ignore[union-attr]


# -- results -------------------------------------------------------------------------------------


def test_a_value_answered_with_a_program_is_given_as_what_it_printed(
    scripted: ScriptedBackend,
) -> None:
    scripted.enqueue(COMPUTING, kind("value"))
    result, _ = run(team(scripted), FAHRENHEIT)  # type: ignore[arg-type]
    assert phases(result) == ["executor:execute", "planner:contract"]  # no call for the value
    assert [a.phase for a in result.answers] == ["execute", "computed"]
    assert result.output == "22.2" and result.chosen_answer == 2


def test_a_result_given_in_prose_is_checked_against_a_program_computing_it(
    scripted: ScriptedBackend,
) -> None:
    """Small models get arithmetic wrong in prose and right in code (PAL): the program the
    Executor writes for it runs in the sandbox, and its value replaces an answer that
    disagrees, with no further call."""
    scripted.enqueue("21.5", kind("value"), COMPUTING)
    result, _ = run(team(scripted), FAHRENHEIT)  # type: ignore[arg-type]
    assert phases(result) == ["executor:execute", "planner:contract", "executor:compute"]
    first, computed = result.answers
    (failed,) = first.evidence.failures  # type: ignore[union-attr]
    assert (failed.kind, failed.detail) == ("result", "a program computing it printed: 22.2")
    assert computed.phase == "computed" and computed.evidence.failures == []  # type: ignore[union-attr]
    assert result.output == "22.2"
    assert "computes the answer to the task" in scripted.chats[2].messages[-1]["content"]


def test_a_result_that_agrees_with_its_program_stands(scripted: ScriptedBackend) -> None:
    question = "What is 15% of 240? Reply with the number only."
    scripted.enqueue("36", kind("value"), "```python\nprint(240 * 15 / 100)\n```")
    result, _ = run(team(scripted), question)  # type: ignore[arg-type]
    assert phases(result) == ["executor:execute", "planner:contract", "executor:compute"]
    assert result.output == "36" and result.answers[0].evidence.failures == []  # type: ignore[union-attr]


# -- prose ---------------------------------------------------------------------------------------


def test_a_missed_count_is_written_again_in_the_shape_the_task_gives(
    scripted: ScriptedBackend,
) -> None:
    """One sentence for two fails the stated count (never a code check); the answer is written
    afresh as a JSON object holding exactly two sentences, constrained by its schema, and
    composed into text by code."""
    task = "Explain in two sentences why the sky is blue."
    shaped = json.dumps({"sentences": ["Air scatters blue light most.", "So the sky is blue."]})
    scripted.enqueue("Air scatters blue sunlight more than red.", shaped)
    result, events = run(team(scripted), task)  # type: ignore[arg-type]

    assert phases(result) == ["executor:execute", "executor:shape"]
    (failed,) = result.answers[0].evidence.failures  # type: ignore[union-attr]
    assert (failed.kind, failed.detail) == ("requirement", "the answer has 1 sentence")
    sentences = scripted.chats[1].schema["properties"]["sentences"]  # type: ignore[index]
    assert sentences["minItems"] == sentences["maxItems"] == 2
    asked = scripted.chats[1].messages[-1]["content"]
    assert asked.startswith(task) and "- two sentences" in asked
    assert "Air scatters blue sunlight" not in asked  # a fresh answer, not a fix of the first
    assert result.output == "Air scatters blue light most. So the sky is blue."
    assert [a.phase for a in result.answers] == ["execute", "shape"]
    (decided,) = [e for e in events if isinstance(e, AskDecided)]
    assert [r.describe() for r in decided.ask.requirements] == [
        'sentences: exactly 2 ("two sentences")'
    ]


EVEN = "Explain in two sentences what an even number is."
THREE_SENTENCES = (
    "An even number is a whole number that divides by two with nothing left over. "
    "Zero, two and four are even numbers. Odd numbers leave one over."
)


def test_a_replacement_that_loses_what_the_answer_said_is_not_given(
    scripted: ScriptedBackend,
) -> None:
    """A version that meets the count by losing what the answer said (none of the task's
    words the answer used: "even", "number") is worse than the answer it would replace: the
    first answer stands, and the run says what it did not meet."""
    shaped = json.dumps({"sentences": ["It returns False for one.", "It returns True for two."]})
    fresh = "Even."
    scripted.enqueue(THREE_SENTENCES, shaped, fresh)
    result, _ = run(team(scripted, max_rounds=1, budget=0), EVEN)  # type: ignore[arg-type]
    assert [a.phase for a in result.answers] == ["execute", "shape", "attempt"]
    assert result.answers[1].evidence.failures == []  # type: ignore[union-attr]  # count met
    assert result.output == THREE_SENTENCES and result.chosen_answer == 1
    assert result.unmet == ['sentences: exactly 2 ("two sentences") (the answer has 3 sentences)']


def test_a_replacement_never_fails_a_check_the_first_answer_passed(
    scripted: ScriptedBackend,
) -> None:
    """The first answer passes one example and fails two; a version that passes those two but
    breaks the one is not given, though it fails fewer: what worked must keep working."""
    task = "Write a Python function sq(x): sq(2) -> 4, sq(3) -> 9, sq(4) -> 16."
    first = "```python\ndef sq(x):\n    return x + 2\n```"
    breaks = "```python\ndef sq(x):\n    return 5 if x == 2 else x * x\n```"
    scripted.enqueue(first, breaks)
    result, _ = run(team(scripted, max_rounds=1, budget=0), task)  # type: ignore[arg-type]
    assert [len(a.evidence.failures) for a in result.answers] == [2, 1]  # type: ignore[union-attr]
    assert result.output == first and result.chosen_answer == 1
    assert [u.split(" (")[0] for u in result.unmet] == [
        "sq(3) should return 9",
        "sq(4) should return 16",
    ]


def test_a_run_whose_answer_meets_its_checks_has_nothing_unmet(scripted: ScriptedBackend) -> None:
    scripted.enqueue("Even numbers divide by two. Four is one.")
    result, _ = run(team(scripted), EVEN)  # type: ignore[arg-type]
    assert result.unmet == [] and result.answers[0].evidence.decided  # type: ignore[union-attr]


def test_a_case_the_task_asks_for_is_applied_by_code(scripted: ScriptedBackend) -> None:
    scripted.enqueue("Fresh Bread Daily")
    result, _ = run(team(scripted), "Write a slogan for a bakery in all capital letters.")  # type: ignore[arg-type]
    assert phases(result) == ["executor:execute"]
    assert [a.phase for a in result.answers] == ["execute", "mended"]
    assert result.output == "FRESH BREAD DAILY"


# -- code ----------------------------------------------------------------------------------------


def test_code_failing_its_examples_is_answered_afresh_not_fixed(
    scripted: ScriptedBackend,
) -> None:
    """A fix conditioned on the wrong code repeats it (measured); a fresh answer never sees
    it, is sampled more freely, and is asked for the code alone (a third of the tokens)."""
    scripted.enqueue(BUGGY, FIXED)
    result, _ = run(team(scripted))  # type: ignore[arg-type]
    assert phases(result) == ["executor:execute", "executor:attempt"]
    fresh = scripted.chats[1]
    assert all(BUGGY not in m["content"] for m in fresh.messages)
    assert fresh.messages[-1]["content"].startswith(TASK)
    assert "in one ```python block, with no explanation" in fresh.messages[-1]["content"]
    assert fresh.options.temperature == 0.8
    assert [a.phase for a in result.answers] == ["execute", "attempt"]
    assert result.output == FIXED and result.answer_stop_reason == "approved"


@pytest.mark.parametrize("budget", [0, 1.0])
def test_with_rethink_the_planner_says_another_approach_first(
    scripted: ScriptedBackend, budget: float
) -> None:
    """Planning after trial: the Planner sees the failing answer and its failures; the fresh
    answer sees only its approach. The default budget (1.0) has room for it: the rethink and
    the fresh code together cost about what the first answer did."""
    rethink = json.dumps({"cause": "the last run is never added", "approach": ["add the last run"]})
    scripted.enqueue(BUGGY, rethink, FIXED)
    result, _ = run(team(scripted, rethink=True, budget=budget))  # type: ignore[arg-type]
    assert phases(result) == ["executor:execute", "planner:rethink", "executor:attempt"]
    assert BUGGY.split("\n")[2] in scripted.chats[1].messages[-1]["content"]
    fresh = scripted.chats[2].messages[-1]["content"]
    assert "Take this approach:\n1. add the last run" in fresh and BUGGY not in fresh
    assert result.output == FIXED


@pytest.mark.parametrize(("rounds", "made"), [(0, 0), (1, 1), (3, 3)])
def test_fresh_answers_stop_at_max_rounds(
    scripted: ScriptedBackend, rounds: int, made: int
) -> None:
    """``max_rounds`` bounds the team's new versions as it bounds every mode's extra work."""
    scripted.enqueue(BUGGY, *[BUGGY] * made)
    result, _ = run(team(scripted, max_rounds=rounds, budget=0))  # type: ignore[arg-type]
    assert phases(result) == ["executor:execute", *["executor:attempt"] * made]
    assert result.output == BUGGY and result.chosen_answer == 1  # the earliest of equals
    assert result.answer_stop_reason == "max_rounds"
    assert len(result.answers) == 1 + made


def test_max_rounds_0_gives_no_new_version_not_even_one_without_a_call(
    scripted: ScriptedBackend,
) -> None:
    """0: the answer is checked, never replaced (not by the value its program printed)."""
    scripted.enqueue(COMPUTING, kind("value"))
    result, _ = run(team(scripted, max_rounds=0), FAHRENHEIT)  # type: ignore[arg-type]
    assert [a.phase for a in result.answers] == ["execute"] and result.output == COMPUTING
    assert result.answers[0].evidence.failures  # type: ignore[union-attr]
    assert result.answer_stop_reason == "max_rounds"


@pytest.mark.parametrize(("attempts", "made"), [(1, 1), (3, 2)])
def test_evidence_attempts_is_still_read_and_bounds_no_more_than_max_rounds(
    scripted: ScriptedBackend, attempts: int, made: int
) -> None:
    """The deprecated key keeps working for a release: the lower bound of the two holds,
    and the run says the key is deprecated."""
    scripted.enqueue(BUGGY, *[BUGGY] * made)
    result, events = run(team(scripted, attempts=attempts, budget=0))  # type: ignore[arg-type]
    assert phases(result) == ["executor:execute", *["executor:attempt"] * made]
    assert any(
        isinstance(e, Notice) and "evidence.attempts is deprecated" in e.message for e in events
    )


@pytest.mark.parametrize(("budget", "made"), [(1.0, 1), (2.0, 2), (0, 8)])
def test_the_repair_costs_a_bounded_multiple_of_the_first_answer(
    scripted: ScriptedBackend, budget: float, made: int
) -> None:
    """With ``evidence.budget``, no call starts once the calls after the first answer have cost
    that many times its own (in tokens, so the bound does not depend on how busy the machine
    is); 0 is no bound."""
    long_buggy = BUGGY + "\n" + " ".join(["word"] * 300)  # a first answer of some 400 tokens
    scripted.enqueue(long_buggy, *[long_buggy] * 8)
    result, _ = run(team(scripted, max_rounds=8, budget=budget))  # type: ignore[arg-type]
    assert phases(result) == ["executor:execute", *["executor:attempt"] * made]
    assert result.answer_stop_reason == ("budget" if budget else "max_rounds")


def test_an_example_calling_another_name_does_not_rename_the_function(
    scripted: ScriptedBackend,
) -> None:
    """A docstring whose example calls another name than its signature: the example tests the
    signature's function, and a fresh answer that takes the example's name fails its form."""
    task = (
        "Complete this Python function.\n\n```python\ndef add(a, b):\n"
        '    """Add two numbers.\n    >>> add_two(1, 2)\n    3\n    """\n```'
    )
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    renamed = "```python\ndef add_two(a, b):\n    return a + b\n```"
    right = "```python\ndef add(a, b):\n    return a + b\n```"
    scripted.enqueue(wrong, renamed, right)
    result, _ = run(team(scripted, budget=0), task)  # type: ignore[arg-type]
    assert result.ask is not None and result.ask.function == "add"
    (failed,) = result.answers[1].evidence.failures  # type: ignore[union-attr]
    assert (failed.kind, failed.name) == ("form", "the task's signature names add()")
    assert result.output == right


def test_a_fresh_answer_without_code_fails_and_the_answer_with_code_is_kept(
    scripted: ScriptedBackend,
) -> None:
    scripted.enqueue(BUGGY, "Use a loop that counts each run of characters.")
    result, _ = run(team(scripted, max_rounds=1, budget=0))  # type: ignore[arg-type]
    (failed,) = result.answers[1].evidence.failures  # type: ignore[union-attr]
    assert (failed.kind, failed.detail) == ("form", "the answer has no code block")
    assert result.chosen_answer == 1 and result.output == BUGGY


def test_a_program_that_only_prints_a_constant_is_no_evidence(scripted: ScriptedBackend) -> None:
    """Asked for a program computing "a primary colour", the model prints one: that computes
    nothing, so it cannot overrule the answer."""
    scripted.enqueue("Red", kind("value"), '```python\nprint("Blue")\n```')
    result, _ = run(team(scripted), "Name a primary colour.")  # type: ignore[arg-type]
    assert phases(result) == ["executor:execute", "planner:contract", "executor:compute"]
    assert result.output == "Red" and result.answers[0].evidence.failures == []  # type: ignore[union-attr]


def test_the_team_asks_the_critic_for_no_edge_cases(scripted: ScriptedBackend) -> None:
    """Measured on 48 code tasks, the Critic's edge cases changed no outcome in the team and
    cost a tenth to a third of its time: a passing function is given as it is."""
    scripted.enqueue(FIXED)
    result, _ = run(pipeline(scripted, review="team"))
    assert phases(result) == ["executor:execute"]


def test_what_a_run_calls_is_what_the_mode_table_says(scripted: ScriptedBackend) -> None:
    """The table in ai_stack/modes.py is the one source: each run's calls, in order, are a
    part of the calls its mode lists for its settings (the upper bound batch predictions use),
    and the phase-major schedule ranks them in the order they are made."""
    from ai_stack.config import Settings
    from ai_stack.modes import MODES, phase_rank

    rethink = json.dumps({"cause": "the last run is never added", "approach": ["add the last run"]})
    shaped = json.dumps({"sentences": ["Air scatters blue light most.", "So the sky is blue."]})
    runs = [
        ({"rethink": True, "budget": 0}, TASK, [BUGGY, rethink, BUGGY, FIXED]),
        ({}, "Explain in two sentences why the sky is blue.", ["Blue light scatters.", shaped]),
        ({}, FAHRENHEIT, ["21.5", kind("value"), COMPUTING]),
    ]
    for evidence, task, replies in runs:
        scripted.enqueue(*replies)
        result, _ = run(pipeline(scripted, review="team", evidence=evidence), task)
        settings = Settings.model_validate({"review": "team", "evidence": evidence})
        table = [f"{role}:{phase}" for phase, _, role in MODES["team"].steps(settings)]
        made = phases(result)
        position = 0
        for call in made:
            assert call in table[position:], (call, made, table)
            position = table.index(call, position) + 1
        ranks = [phase_rank(m.phase, m.round) for m in result.metrics.phases]
        assert ranks == sorted(ranks), made
