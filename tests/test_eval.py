"""``ai-stack eval``: suites load (YAML, HumanEval JSON lines) with clear errors; the shipped
suite's checkers accept correct answers and reject wrong ones; modes run side by side through
the batch runner, every answer is checked as its run finishes, and a stopped eval resumes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ai_stack.config import LimitsSettings, Settings
from ai_stack.errors import WorkflowError
from ai_stack.evals import check_answer, load_suite
from ai_stack.evals.runner import wilson
from ai_stack.files import OutputDir
from ai_stack.history import HistoryStore
from ai_stack.memory import MemoryManager
from ai_stack.sandbox import Limits, Sandbox
from ai_stack.session import Session
from tests.conftest import ROOT, invoke
from tests.ollama_double import OllamaDouble
from tests.scripted import ScriptedBackend
from tests.test_batch import held
from tests.test_cli import assert_clean_error

SUITE = ROOT / "examples" / "eval" / "suite.yaml"
REFERENCE = ROOT / "tests" / "fixtures" / "eval" / "reference-answers.yaml"
RUNS = Sandbox(Limits(seconds=20), isolation="none", allow_unisolated=True)


def test_the_shipped_suite_has_a_dozen_mixed_tasks() -> None:
    suite = load_suite(SUITE)
    kinds = [task.check.kind for task in suite.tasks]
    assert len(suite.tasks) >= 12
    assert {"asserts", "command", "regex"} <= set(kinds)


def test_every_checker_accepts_a_correct_answer() -> None:
    """A checker that rejected right answers would make the eval's numbers lie."""
    answers = yaml.safe_load(REFERENCE.read_text())
    suite = load_suite(SUITE)
    assert set(answers) == {task.id for task in suite.tasks}
    for task in suite.tasks:
        verdict = check_answer(RUNS, task.check, answers[task.id], Limits(seconds=20))
        assert verdict.passed, (task.id, verdict.detail)


RESULTS = {
    "percent": "397.8",
    "days-between": "46",
    "squares": "2870",
    "compound": "1159.27",
    "weekday": "Tuesday",
    "hex": "0xBEEF",
    "primes": "168",
    "mean": "18",
}


def test_the_result_questions_checkers_accept_the_result_and_not_a_program() -> None:
    suite = load_suite(SUITE.with_name("results.yaml"))
    assert {task.id for task in suite.tasks} == set(RESULTS)
    for task in suite.tasks:
        assert check_answer(RUNS, task.check, RESULTS[task.id], Limits(seconds=20)).passed
        program = "```python\nprint(solve())  # the result is not in the answer\n```"
        assert not check_answer(RUNS, task.check, program, Limits(seconds=20)).passed, task.id


@pytest.mark.parametrize(
    ("task_id", "answer"),
    [
        ("dedupe", "```python\ndef dedupe(items):\n    return list(set(items))\n```"),
        ("rle", "```python\ndef compress(s):\n    return s[0] + str(len(s))\n```"),
        ("count-py-lines", "```bash\nfind . -name '*.py' | xargs wc -l\n```"),
        ("replace-in-txt", "```bash\nsed -i 's/foo/bar/g' *\n```"),
        ("iso-date", "2024-5-3"),
        ("fahrenheit", "22.22"),
        ("csv-to-json", '[{"name": "Ann", "age": "31"}, {"name": "Bob", "age": "27"}]'),
    ],
)
def test_checkers_reject_wrong_answers(task_id: str, answer: str) -> None:
    task = next(t for t in load_suite(SUITE).tasks if t.id == task_id)
    assert not check_answer(RUNS, task.check, answer, Limits(seconds=20)).passed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: s\ntasks:\n  - {id: a, task: t, check: {regex: x}}\n"
            "  - {id: a, task: u, check: {regex: y}}\n",
            "duplicate task id 'a'",
        ),
        (
            "name: s\ntasks:\n  - {id: a, task: t, check: {regex: x, command: y}}\n",
            "exactly one of asserts, text, command, regex",
        ),
        ("name: s\ntasks:\n  - {id: a, task: t, check: {regex: '('}}\n", "regex does not compile"),
        (
            "name: s\ntasks:\n  - {id: a, task: t, check: {asserts: 'assert f(1) =='}}\n",
            "task 'a': its checker does not compile: invalid syntax",
        ),
        (
            "name: s\ntasks:\n  - {id: b, task: t, check: {text: 'assert (answer'}}\n",
            "task 'b': its checker does not compile",
        ),
        ("name: s\ntasks:\n  - {id: a, task: t}\n", "tasks.0.check"),
        ("tasks: [", "YAML syntax error"),
    ],
)
def test_bad_suites_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    with pytest.raises(WorkflowError, match=message) as info:
        load_suite(path)
    assert str(path) in info.value.message


def test_humaneval_lines_become_tasks_with_their_tests(tmp_path: Path) -> None:
    path = tmp_path / "sample.jsonl"
    line = {
        "task_id": "HumanEval/0",
        "prompt": "from typing import List\n\n\ndef total(xs: List[int]) -> int:\n"
        '    """Sum.\n    >>> total([1, 2])\n    3\n    """\n',
        "test": "def check(candidate):\n    assert candidate([1, 2]) == 3\n"
        "    assert candidate([]) == 0\n",
        "entry_point": "total",
    }
    path.write_text(json.dumps(line) + "\n")
    (task,) = load_suite(path).tasks
    assert task.id == "HumanEval-0" and "def total(xs: List[int])" in task.task
    # the answer forgot the import the prompt had: the checker puts it back, as harnesses do
    answer = "```python\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n```"
    assert check_answer(RUNS, task.check, answer, Limits(seconds=20)).passed
    wrong = answer.replace("sum(xs)", "xs[0] + xs[1]")
    assert not check_answer(RUNS, task.check, wrong, Limits(seconds=20)).passed
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"}\n')
    with pytest.raises(WorkflowError, match=r"bad\.jsonl:1"):
        load_suite(tmp_path / "bad.jsonl")


@pytest.mark.parametrize(
    ("line", "where"),
    [
        ('{"prompt": ["x"], "test": "t", "entry_point": "f"}', "prompt"),
        ('{"prompt": "p", "test": null, "entry_point": "f"}', "test"),
        ('{"prompt": "p", "test": "t", "entry_point": 3}', "entry_point"),
        ('{"prompt": "p", "test": "t", "entry_point": "f(); import os"}', "entry_point"),
        ("[1, 2]", "the line"),
        ("{not json", "the line"),
    ],
)
def test_a_humaneval_line_of_the_wrong_shape_says_which_field(
    tmp_path: Path, line: str, where: str
) -> None:
    """Wrong field types were exit 70 (an AttributeError deep in the loader)."""
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(WorkflowError, match=rf"bad\.jsonl:1: not a HumanEval-style line \({where}"):
        load_suite(path)


CATASTROPHIC = """
import json
from ai_stack.evals import check_answer
from ai_stack.evals.suite import Checker
from ai_stack.sandbox import Limits, Sandbox

limits = Limits(seconds=1)
sandbox = Sandbox(limits, isolation="none", allow_unisolated=True)
text = "a" * 64 + "!"
program = f"```python\\nprint({text!r})\\n```"
checks = [
    check_answer(sandbox, Checker(regex="^(a+)+$"), text, limits),
    check_answer(sandbox, Checker(regex="^(a|a)+$"), text, limits),
    check_answer(sandbox, Checker(regex="^(a|a)+$", on="stdout"), program, limits),
]
print(json.dumps([c.model_dump() for c in checks]))
"""


def test_a_regex_that_backtracks_without_end_fails_its_check_in_its_time() -> None:
    """On 64 a's and a '!', ``^(a+)+$`` and ``^(a|a)+$`` take 2**64 steps with ``re``, which
    holds the interpreter the whole time (no signal, no thread can stop it): the checks run in
    a child process, with a timeout as a hang guard. The ``regex`` engine sees through the
    first and gives up on the second at the time limit."""
    done = subprocess.run(
        [sys.executable, "-c", CATASTROPHIC], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    first, *timed_out = json.loads(done.stdout)
    assert (first["passed"], first["detail"]) == (False, "no match")
    for check in timed_out:
        assert check["passed"] is False
        assert check["detail"] == "the checker's regex gave up after 1 s on this text"


def test_wilson_intervals() -> None:
    assert wilson(0, 0) == (0.0, 0.0)
    low, high = wilson(12, 12)
    assert high == pytest.approx(1.0) and 0.75 < low < 0.76
    low, high = wilson(6, 12)
    assert low < 0.5 < high


# -- running ---------------------------------------------------------------------------------

TWO_TASKS = """
name: two
tasks:
  - id: double
    task: "Write a Python function double(x) that doubles x: double(2) -> 4."
    check: {asserts: "assert double(3) == 6"}
  - id: colour
    task: Name the colour of the sky on a clear day. One word.
    check: {regex: '(?i)blue'}
"""
GOOD = "```python\ndef double(x):\n    return 2 * x\n```"
BAD = "```python\ndef double(x):\n    return x * 3\n```"


def responder(messages: list[Any], schema: Any) -> str:
    """A team that writes a wrong double() first and fixes it when shown the failed example."""
    last = messages[-1]["content"]
    if schema is not None:  # the Critic's edge cases or review
        return (
            json.dumps({"calls": []})
            if "calls" in json.dumps(schema)
            else (json.dumps({"issues": [], "score": 9, "verdict": "approve"}))
        )
    if "FAIL: double(2) should return 4: returned 6" in last:
        return GOOD
    return BAD if "double" in messages[-1]["content"] else "Blue."


def eval_session(tmp_path: Path, backend: ScriptedBackend) -> Session:
    settings = Settings.model_validate(
        {"backend": "embedded", "history": {"enabled": False}, "evidence": {"exec": True}}
    )
    manager = MemoryManager(lambda name: backend, budget_bytes=10**9)
    return Session(settings, manager, backend="embedded")


def run_suite(
    tmp_path: Path, backend: ScriptedBackend, stop_after: int | None = None, resume: bool = False
):  # type: ignore[no-untyped-def]
    suite_path = tmp_path / "two.yaml"
    suite_path.write_text(TWO_TASKS)
    with eval_session(tmp_path, backend) as session, OutputDir.open(tmp_path / "out") as output:
        evaluation = session.eval_run(
            load_suite(suite_path), ["direct", "answer"], tmp_path / "out"
        )
        evaluation.runner.output = output
        evaluation.runner.store = HistoryStore.open(tmp_path / "journal.db")
        evaluation.runner.begin(resume=resume)
        if stop_after is not None:
            evaluation.runner.should_stop = lambda: len(backend.chats) >= stop_after
        return evaluation.run()


def test_modes_side_by_side_checked_as_they_finish(tmp_path: Path) -> None:
    backend = ScriptedBackend(responder=responder)
    report = run_suite(tmp_path, backend)
    summary = {s.mode: (s.passed, s.total) for s in report.summaries}
    assert summary == {"direct": (1, 2), "answer": (2, 2)}  # the review fixed double()
    outcome = {(o.task, o.mode): o for o in report.outcomes}
    assert not outcome[("double", "direct")].passed and outcome[("double", "answer")].passed
    assert outcome[("double", "answer")].calls == 3  # the answer, its fix, the fix's edge cases
    assert outcome[("colour", "answer")].calls == 1  # nothing to check, nothing to judge
    # direct is the review's first call, read off it (the same call), not sampled again
    assert outcome[("double", "direct")].calls == 1 and len(backend.chats) == 4
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["summaries"][1]["passed"] == 2
    assert json.loads((tmp_path / "out" / "checks" / "double.answer.json").read_text())["passed"]
    # each run's follow-up comes right after its first call, while its prompt is in the cache
    prompts = [chat.messages[-1]["content"] for chat in backend.chats]
    assert prompts[1].startswith("Your answer was checked:") and "Find the cause" in prompts[1]


def test_a_stopped_eval_resumes_without_redoing_finished_runs(tmp_path: Path) -> None:
    first = ScriptedBackend(responder=responder)
    stopped = run_suite(tmp_path, first, stop_after=1)  # double()'s first answer, then stop
    assert stopped.status == "interrupted"
    assert all(o.status != "ok" for o in stopped.outcomes)
    second = ScriptedBackend(responder=responder)
    resumed = run_suite(tmp_path, second, resume=True)
    assert resumed.status == "ok"
    assert {s.mode: s.passed for s in resumed.summaries} == {"direct": 1, "answer": 2}
    # only what was left: double()'s fix and edge cases (its first answer is kept), and colour
    assert len(second.chats) == 3
    assert json.loads((tmp_path / "out" / "checks" / "double.direct.json").read_text()) == {
        "kind": "user",
        "name": "checker",
        "passed": False,
        "detail": "assertion failed: assert double(3) == 6",
    }


TEAM = ("--planner", "ollama:mistral:7b", "--executor", "ollama:qwen2.5:14b", "--exec")


@pytest.mark.parametrize("planted", ["report.json", "checks", "."])
def test_eval_writes_nothing_through_a_planted_link(
    on_double: OllamaDouble, tmp_path: Path, planted: str
) -> None:
    """``<suite>-eval`` sits beside the suite, like a batch's results: a link in it (or it, a
    link) is refused before any load, and its target is untouched."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(TWO_TASKS)
    results, elsewhere, precious = tmp_path / "suite-eval", tmp_path / "elsewhere", tmp_path / "p"
    elsewhere.mkdir()
    precious.write_text("keep me\n")
    if planted == ".":
        results.symlink_to(elsewhere, target_is_directory=True)
    else:
        results.mkdir()
        (results / planted).symlink_to(elsewhere if planted == "checks" else precious)
    code, _, err = invoke("eval", str(suite), *TEAM)
    assert_clean_error(code, err, "is a symbolic link; results are never written through a link")
    assert on_double.loads == 0
    assert precious.read_text() == "keep me\n" and list(elsewhere.iterdir()) == []


def test_eval_refuses_a_device_or_a_directory_in_use_before_any_load(
    on_double: OllamaDouble, tmp_path: Path
) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(TWO_TASKS)
    code, _, err = invoke("eval", str(suite), *TEAM, "--out", "/dev/null")
    assert_clean_error(code, err, "/dev/null is not a directory")
    with held(tmp_path / "suite-eval") as first:
        code, _, err = invoke("eval", str(suite), *TEAM)
        assert_clean_error(code, err, f"is in use by another ai-stack run (pid {first.pid}")
    assert on_double.loads == 0


@pytest.mark.model
def test_eval_on_the_real_model(smollm2: Path, tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(TWO_TASKS)
    code, out, err = invoke(
        "eval",
        str(suite),
        "--modes",
        "direct,answer",
        "--json",
        "--exec",
        "--backend",
        "embedded",
        "--max-rounds",
        "2",
    )
    assert code == 0, err
    report = json.loads(out)
    assert [s["mode"] for s in report["summaries"]] == ["direct", "answer"]
    assert all(s["total"] == 2 for s in report["summaries"])
    assert {o["status"] for o in report["outcomes"]} == {"ok"}
    assert (tmp_path / "suite-eval" / "report.json").exists()
    code, out, _ = invoke("history", "list", "--json")
    assert {run["source"] for run in json.loads(out)} == {"eval"}


def test_eval_refuses_to_run_code_without_a_sandbox_or_opt_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ai_stack.sandbox.detect_isolation", lambda: "none")
    suite = tmp_path / "suite.yaml"
    suite.write_text(TWO_TASKS)
    code, _, err = invoke("eval", str(suite), "--backend", "embedded")
    assert code == 2 and "no isolating sandbox" in err and "--exec" in err
    code, _, err = invoke("eval", str(suite), "--modes", "direct,sideways")
    assert code == 2 and "Unknown mode 'sideways'" in err


def test_eval_compares_the_default_team_with_one_call_by_default() -> None:
    code, out, _ = invoke("eval", "--help")
    assert code == 0 and "[default: direct,team]" in " ".join(out.split())


def test_a_suite_over_the_task_limit_is_refused_quickly(tmp_path: Path) -> None:
    """Validation is linear: 20,000 tasks are refused by the limit, 1,000 load."""
    path = tmp_path / "big.jsonl"
    line = '{"task_id": "t%d", "prompt": "def f():\\n", "test": "pass", "entry_point": "f"}\n'
    path.write_text("".join(line % i for i in range(20_000)))
    limits = LimitsSettings(workflow_kb=100_000)
    with pytest.raises(WorkflowError, match="20,000 tasks, over the limit of 1,000"):
        load_suite(path, limits)
    path.write_text("".join(line % i for i in range(1_000)))
    assert len(load_suite(path, limits).tasks) == 1_000


WRONG_PROSE = (
    "Here Is My Answer, Written Without Care\n\nIt talks about many things, such as trees, "
    "cars, clouds and people, in long sentences that go on and on. It never ends the way it "
    "should. It has no title and no postscript, and it is not JSON. Then it stops."
)


@pytest.mark.parametrize(
    "file", ["prose.yaml", "instructions.yaml", "multistep.yaml", "docstrings.jsonl"]
)
def test_the_new_suites_checkers_accept_a_right_answer_and_refuse_a_wrong_one(file: str) -> None:
    """Written before any model ran; a checker that passed anything would make the team's
    numbers on them lie, one that refused right answers would hide its gains."""
    suite = load_suite(SUITE.with_name(file))
    name = file.split(".")[0]
    answers = yaml.safe_load((REFERENCE.parent / f"{name}-answers.yaml").read_text())
    assert {task.id for task in suite.tasks} <= set(answers)
    prose = name in ("prose", "instructions")
    wrong = WRONG_PROSE if prose else "```python\ndef unrelated():\n    return 0\n```"
    for task in suite.tasks:
        for key in (task.id, f"{task.id}-fenced"):
            if key in answers:
                verdict = check_answer(RUNS, task.check, answers[key], Limits(seconds=20))
                assert verdict.passed, (key, verdict.detail)
        assert not check_answer(RUNS, task.check, wrong, Limits(seconds=20)).passed, task.id
