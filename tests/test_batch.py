"""Batch workflows: validation before any load, phase-major scheduling with exact load counts on
the Ollama test double, failure isolation, Ctrl-C, and kill -9 then --resume in a real subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ai_stack.batch import Waiting, choose_model, predict
from ai_stack.files import OutputDir
from ai_stack.history import HistoryStore
from ai_stack.memory import MemoryManager
from ai_stack.session import Session, resolve_roles
from ai_stack.workflow import load_workflow
from tests.conftest import ROOT, invoke
from tests.ollama_double import OllamaDouble
from tests.scripted import ScriptedBackend
from tests.test_cli import assert_clean_error
from tests.test_workflow import write

THREE = """
defaults:
  review: plan
  max_rounds: 1
  planner: ollama:mistral:7b
  critic: ollama:qwen2.5:7b
  executor: ollama:qwen2.5:14b
"""
FOUR_TASKS = (
    "name: four\n"
    + THREE
    + """
tasks:
  - {id: a, task: first}
  - {id: b, task: second}
  - {id: c, task: third}
  - {id: d, task: fourth}
"""
)


# -- validation ----------------------------------------------------------------------------------


def test_malformed_file_from_the_cli_loads_nothing(on_double: OllamaDouble, tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ntasks:\n  - {id: a}\n")
    code, _, err = invoke("batch", str(path))
    assert code == 2 and f"{path}:3" in err and "missing 'task'" in err
    assert "Traceback" not in err and on_double.loads == 0
    code, _, err = invoke("batch", str(tmp_path / "absent.yaml"))
    assert code == 2 and "Workflow file not found" in err


def test_a_bug_stops_the_batch_instead_of_failing_a_task(tmp_path: Path) -> None:
    """Only AiStackErrors fail a task; anything else is a bug, and must reach the CLI (exit 70,
    or a traceback with --debug) rather than hide in summary.json as a failed task."""

    class Buggy(ScriptedBackend):
        def chat(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
            raise ZeroDivisionError("a bug")

    workflow = load_workflow(write(tmp_path, "name: x\ntasks:\n  - {id: a, task: t}\n"), {})
    settings = workflow.tasks[0].settings
    backend = Buggy()
    with Session(
        settings, MemoryManager(lambda name: backend, budget_bytes=10**9), backend="embedded"
    ) as session:
        runner = session.batch_runner(workflow, tmp_path / "out")
        runner.store = HistoryStore.open(tmp_path / "journal.db")
        with OutputDir.open(tmp_path / "out") as runner.output:
            runner.begin(resume=False)
            with pytest.raises(ZeroDivisionError):
                runner.run()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert [t["status"] for t in summary["tasks"]] == ["interrupted"]
    assert runner.store.run(runner.runs[0].run_id or "").status == "failed"


# -- scheduling ------------------------------------------------------------------------------------


def test_resident_model_first_then_the_earliest_phase() -> None:
    parked = [Waiting("a", 0, 10000, "E"), Waiting("b", 1, 0, "P")]
    assert choose_model(parked, resident={"E"}) == "E"
    assert choose_model(parked, resident=set()) == "P"


def specs_for(workflow, backend: str = "ollama"):  # type: ignore[no-untyped-def]
    return {t.id: resolve_roles(t.settings, backend) for t in workflow.tasks}


SIZES = {"ollama:mistral:7b": 5, "ollama:qwen2.5:7b": 5, "ollama:qwen2.5:14b": 10}


def test_prediction_four_tasks_three_models(tmp_path: Path) -> None:
    workflow = load_workflow(write(tmp_path, FOUR_TASKS), {})
    one = predict(workflow, specs_for(workflow), policy="one-at-a-time", budget=100, sizes=SIZES)
    assert (one.loads, one.naive_loads, one.exact) == (3, 12, True)
    assert [(label, tasks) for label, _, tasks in one.groups] == [
        ("plan", ["a", "b", "c", "d"]),
        ("critique round 1", ["a", "b", "c", "d"]),
        ("execute", ["a", "b", "c", "d"]),
    ]
    fit = predict(workflow, specs_for(workflow), policy="fit", budget=20, sizes=SIZES)
    assert (fit.loads, fit.naive_loads) == (3, 3)
    # room for two: in the naive order least-recently-used evicts just the model needed next
    tight = predict(workflow, specs_for(workflow), policy="fit", budget=15, sizes=SIZES)
    assert (tight.loads, tight.naive_loads) == (3, 12)


def test_prediction_with_rounds_and_dependencies(tmp_path: Path) -> None:
    text = FOUR_TASKS.replace("max_rounds: 1", "max_rounds: 2").replace(
        "{id: c, task: third}", "{id: c, task: third, depends_on: [a]}"
    )
    workflow = load_workflow(write(tmp_path, text), {})
    prediction = predict(
        workflow, specs_for(workflow), policy="one-at-a-time", budget=100, sizes=SIZES
    )
    assert not prediction.exact
    # a, b, d: plan, critique, revise, critique, execute = 5 loads; then c the same: 10
    assert prediction.loads == 10
    assert prediction.naive_loads == 20


REPAIRS = ("probe", "review", "fix", "shape", "rethink", "attempt", "critique", "revise")


def _example_schedule(*flags: str) -> list[str]:
    """The phases ``batch examples/workflow.yaml --dry-run`` lists, with ``flags``."""
    roles = ("--planner", "ollama:mistral:7b", "--critic", "ollama:qwen2.5:7b")
    roles += ("--executor", "ollama:qwen2.5:14b")
    example = str(ROOT / "examples/workflow.yaml")
    code, out, err = invoke("batch", example, "--dry-run", "--json", *roles, *flags)
    assert code == 0, err
    return [group["phase"] for group in json.loads(out)["groups"]]


@pytest.mark.parametrize("review", ["team", "answer", "both"])
def test_max_rounds_bounds_the_extra_calls_of_every_mode(
    on_double: OllamaDouble, review: str
) -> None:
    """One flag bounds every mode's extra work: 0 leaves no repeated call (a review round, a
    repair's new version), 1 at most one of each, and the dry run shows it."""
    none = _example_schedule("--review", review, "--max-rounds", "0")
    assert not [p for p in none if p.split()[0] in REPAIRS], none
    one = _example_schedule("--review", review, "--max-rounds", "1")
    repeated = [p for p in one if p.split()[0] in REPAIRS]
    assert repeated and all(p.endswith(("round 1", *REPAIRS)) for p in repeated), one
    assert on_double.loads == 0


def test_the_example_workflows_max_rounds_keeps_it_quick(on_double: OllamaDouble) -> None:
    """examples/workflow.yaml's ``max_rounds: 1`` bounds the team's repair too."""
    phases = _example_schedule()
    assert "attempt round 1" in phases and "shape round 1" in phases, phases
    assert not [p for p in phases if p.endswith("round 2")], phases


def test_four_tasks_three_models_load_three_times(on_double: OllamaDouble, tmp_path: Path) -> None:
    path = write(tmp_path, FOUR_TASKS)
    code, out, err = invoke("batch", str(path), "--dry-run", "--json")
    assert code == 0, err
    schedule = json.loads(out)
    assert (schedule["predicted_loads"], schedule["naive_loads"]) == (3, 12)
    assert on_double.loads == 0, "a dry run loads nothing"

    code, out, err = invoke("batch", str(path), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["status"] == "ok"
    assert summary["loads"] == summary["predicted_loads"] == on_double.loads == 3
    assert summary["naive_loads"] == 12
    assert [e["model"] for e in on_double.events("load")] == [
        "mistral:7b",
        "qwen2.5:7b",
        "qwen2.5:14b",
    ]
    assert on_double.reloads == 0
    results = tmp_path / "flow-results"
    for task in "abcd":
        result = json.loads((results / f"{task}.json").read_text())
        assert (results / f"{task}.md").read_text().strip() == result["output"]
        assert {r for r in result["models"].values()} == {
            "ollama:mistral:7b",
            "ollama:qwen2.5:7b",
            "ollama:qwen2.5:14b",
        }
    assert json.loads((results / "summary.json").read_text()) == summary
    code, out, _ = invoke("history", "list", "--json")
    assert sorted(run["task"] for run in json.loads(out)) == ["first", "fourth", "second", "third"]
    assert {run["source"] for run in json.loads(out)} == {"batch"}


def test_outputs_flow_into_dependent_tasks(on_double: OllamaDouble, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: chain\n"
        + THREE
        + """
tasks:
  - {id: diagnose, task: find the bug}
  - id: fix
    depends_on: [diagnose]
    task: 'fix it'
    context: 'Diagnosis: {{ outputs.diagnose }}'
""",
    )
    on_double.enqueue("THE-DIAGNOSIS", model="qwen2.5:14b")
    code, _, err = invoke("batch", str(path))
    assert code == 0, err
    fix = json.loads((tmp_path / "flow-results" / "fix.json").read_text())
    assert fix["context"] == "Diagnosis: THE-DIAGNOSIS"
    prompts = [e for e in on_double.log if e["event"] == "generate"]
    assert prompts  # the planner of "fix" saw the diagnosis (it was in its context)


KEY_BLOCK = "\n".join(
    [
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "b3BlbnNzaC1rZXktdjEAAAAA",
        "-----END OPENSSH PRIVATE KEY-----",
    ]
)
TOKEN = "sk-proj-abcdefghijklmnopqrstuvwx"


def test_the_result_file_is_redacted_and_the_answer_file_is_verbatim(
    on_double: OllamaDouble, tmp_path: Path
) -> None:
    """Task and context may hold credentials: ``<id>.json`` keeps none of them; ``<id>.md`` is the
    answer exactly as the model gave it, because that is the file the user asked for."""
    (tmp_path / "notes.txt").write_text(f"deploy key:\n{KEY_BLOCK}\n")
    path = write(
        tmp_path,
        "name: secrets\ndefaults: {direct: true, executor: ollama:qwen2.5:7b}\ntasks:\n"
        f"  - {{id: a, task: 'rotate {TOKEN}', context_files: [notes.txt]}}\n",
    )
    on_double.enqueue(f"Replace {TOKEN} in CI.")
    code, _, err = invoke("batch", str(path))
    assert code == 0, err
    results = tmp_path / "flow-results"
    stored = (results / "a.json").read_text()
    for secret in (TOKEN, "b3BlbnNzaC1rZXktdjEAAAAA"):
        assert secret not in stored
    assert json.loads(stored)["task"] == "rotate [redacted]"
    assert (results / "a.md").read_text() == f"Replace {TOKEN} in CI.\n"
    assert TOKEN not in (results / "summary.json").read_text()


def test_a_failed_task_does_not_stop_the_others(on_double: OllamaDouble, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: f\n"
        + THREE
        + """
tasks:
  - {id: good, task: fine}
  - {id: bad, task: broken, max_reasks: 0}
  - {id: after, task: 'uses {{ outputs.bad }}', depends_on: [bad]}
""",
    )
    valid = json.dumps({"goal": "g", "steps": [{"title": "t", "detail": "d"}]})
    on_double.enqueue(valid, "this is not json", model="mistral:7b")
    code, out, _ = invoke("batch", str(path), "--json")
    assert code == 1
    summary = json.loads(out)
    status = {t["id"]: (t["status"], t["error"]) for t in summary["tasks"]}
    assert status["good"] == ("ok", None)
    assert status["bad"][0] == "failed" and "planner" in status["bad"][1]
    assert status["after"] == ("skipped", "dependency 'bad' did not finish")
    assert (tmp_path / "flow-results" / "good.md").exists()


def test_journal_in_the_output_dir_when_history_is_off(
    on_double: OllamaDouble, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"  # the user's own: a workflow may not turn the history off
    config.write_text("[history]\nenabled = false\n")
    path = write(tmp_path, FOUR_TASKS)
    code, _, err = invoke("batch", str(path), "--config", str(config))
    assert code == 0, err
    assert (tmp_path / "flow-results" / "journal.db").exists()
    assert not (Path(os.environ["AI_STACK_HOME"]) / "history.db").exists()


def test_resume_without_an_earlier_run_and_after_the_file_changed(
    on_double: OllamaDouble, tmp_path: Path
) -> None:
    path = write(tmp_path, FOUR_TASKS)
    code, _, err = invoke("batch", str(path), "--resume")
    assert code == 2 and "Nothing to resume" in err
    assert invoke("batch", str(path))[0] == 0
    write(tmp_path, FOUR_TASKS.replace("fourth", "4th"))
    code, _, err = invoke("batch", str(path), "--resume")
    assert code == 2 and "changed since the run being resumed" in err


# -- the results directory ------------------------------------------------------------------------

ONE_TASK = """
name: one
defaults: {direct: true, executor: ollama:qwen2.5:7b}
tasks:
  - {id: a, task: hi}
"""


@pytest.mark.parametrize("planted", ["a.md", "a.json", "summary.json", "journal.db", "."])
def test_no_result_is_written_through_a_planted_link(
    on_double: OllamaDouble, tmp_path: Path, planted: str
) -> None:
    """A workflow's results directory sits beside it, where whoever wrote the workflow may plant
    links: ``a.md -> ~/.bashrc`` had the answer overwrite the target, and a results directory
    that is a link sent every file where it points. Each is refused before any load."""
    journal = planted == "journal.db"
    path = write(tmp_path, ONE_TASK)
    config = tmp_path / "c.toml"  # the user's own: with the history off, the journal is a file
    config.write_text("[history]\nenabled = false\n")
    results, elsewhere = tmp_path / "flow-results", tmp_path / "elsewhere"
    elsewhere.mkdir()
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    target = tmp_path / "made.db" if journal else precious  # SQLite would make a missing one
    if planted == ".":
        results.symlink_to(elsewhere, target_is_directory=True)
    else:
        results.mkdir()
        (results / planted).symlink_to(target)
    code, _, err = invoke("batch", str(path), "--config", str(config))
    assert_clean_error(code, err, "is a symbolic link; results are never written through a link")
    assert on_double.loads == 0
    assert precious.read_text() == "keep me\n" and not (tmp_path / "made.db").exists()
    assert list(elsewhere.iterdir()) == []


def test_an_output_path_that_is_not_a_directory_is_refused_before_any_load(
    on_double: OllamaDouble, tmp_path: Path
) -> None:
    """``--out /dev/null`` ran every model call, then failed writing the first result."""
    path = write(tmp_path, ONE_TASK)
    code, _, err = invoke("batch", str(path), "--out", "/dev/null")
    assert_clean_error(code, err, "/dev/null is not a directory")
    assert code == 2 and on_double.loads == 0


def test_a_link_planted_while_the_batch_runs_is_refused_at_the_write(tmp_path: Path) -> None:
    """Checked before any load, and again at each write: a link planted during the model call
    fails its task with the reason, and its target is untouched."""
    precious, out = tmp_path / "precious", tmp_path / "out"
    precious.write_text("keep me\n")
    out.mkdir()

    def plant(messages: object, schema: object) -> str:
        (out / "a.md").symlink_to(precious)
        return "the answer"

    backend = ScriptedBackend(responder=plant)
    path = write(tmp_path, "name: x\ndefaults: {direct: true}\ntasks:\n  - {id: a, task: t}\n")
    workflow = load_workflow(path, {})
    manager = MemoryManager(lambda name: backend, budget_bytes=10**9)
    with (
        Session(workflow.tasks[0].settings, manager, backend="embedded") as session,
        OutputDir.open(out) as output,
    ):
        runner = session.batch_runner(workflow, out)
        runner.output, runner.store = output, HistoryStore.open(tmp_path / "journal.db")
        runner.begin(resume=False)
        summary = runner.run()
    assert summary.status == "failed" and len(backend.chats) == 1
    assert "a.md is a symbolic link" in summary.tasks[0]["error"]
    assert precious.read_text() == "keep me\n"


@contextmanager
def held(results: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``results`` open as a running batch does, until the block ends
    (it says when it holds it: nothing depends on timing)."""
    code = (
        "import sys; from pathlib import Path; from ai_stack.files import OutputDir; "
        "held = OutputDir.open(Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, str(results)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        yield holder
        holder.stdin.close()
        holder.wait(timeout=120)


def test_a_second_batch_into_the_same_results_directory_is_refused(
    on_double: OllamaDouble, tmp_path: Path
) -> None:
    """Two runs of one workflow both exited 0 with their files mixed in one directory (the
    summary's run ids differed from the task files'). The second is refused, naming the first."""
    path = write(tmp_path, ONE_TASK)
    with held(tmp_path / "flow-results") as first:
        code, _, err = invoke("batch", str(path))
        assert_clean_error(code, err, f"is in use by another ai-stack run (pid {first.pid}")
        assert on_double.loads == 0 and not (tmp_path / "flow-results" / "summary.json").exists()
    code, _, err = invoke("batch", str(path))  # the first run over: its lock went with it
    assert code == 0, err


# -- interruption and resume in a real subprocess -----------------------------------------------


def start_batch(path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "batch", str(path), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )


def wait_for_phases(database: Path, count: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline and seen < count:
        time.sleep(0.05)
        if database.exists():
            try:
                with sqlite3.connect(database) as db:
                    seen = db.execute("SELECT COUNT(*) FROM phases").fetchone()[0]
            except sqlite3.OperationalError:
                pass  # tables not created yet
    return seen


def phase_keys(database: Path) -> list[tuple[str, str, int, int]]:
    with sqlite3.connect(database) as db:
        return db.execute(
            "SELECT runs.batch_task, phase, round, attempt FROM phases"
            " JOIN runs ON runs.id = phases.run_id"
        ).fetchall()


def test_kill_9_then_resume_finishes_without_repeating_finished_phases(
    on_double: OllamaDouble, tmp_path: Path, isolated_home: Path
) -> None:
    on_double.seconds_per_token = 0.02
    path = write(tmp_path, FOUR_TASKS)
    database = isolated_home / "history.db"
    child = start_batch(path)
    assert wait_for_phases(database, 6) >= 6, "the batch never got going"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    finished_before = phase_keys(database)
    calls_before = len(on_double.events("generate"))

    done = start_batch(path, "--resume", "--json")
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    summary = json.loads(out)
    assert summary["status"] == "ok" and summary["resumed"]
    keys = phase_keys(database)
    assert len(keys) == len(set(keys)) == 12, "every phase exactly once across both runs"
    assert set(finished_before) <= set(keys)
    calls = len(on_double.events("generate"))
    # every call of the second run was for a phase not finished before the kill (at most one
    # call was in flight when it died and is made again)
    assert calls - calls_before == 12 - len(finished_before)
    assert calls <= 12 + 1
    for task in "abcd":
        assert (tmp_path / "flow-results" / f"{task}.md").exists()
    resumed = {t["id"]: t["resumed_phases"] for t in summary["tasks"]}
    assert sum(resumed.values()) > 0


def test_ctrl_c_stops_after_the_current_call_and_says_how_to_resume(
    on_double: OllamaDouble, tmp_path: Path, isolated_home: Path
) -> None:
    on_double.seconds_per_token = 0.02
    path = write(tmp_path, FOUR_TASKS)
    child = start_batch(path)
    assert wait_for_phases(isolated_home / "history.db", 2) >= 2
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "Resume with: ai-stack batch" in err and "--resume" in err
    assert "Traceback" not in err
    code, out, _ = invoke("history", "list", "--json")
    assert code == 0
    statuses = {run["status"] for run in json.loads(out)}
    assert "running" not in statuses
    summary = json.loads((tmp_path / "flow-results" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    tasks = {task["status"] for task in summary["tasks"]}
    assert "interrupted" in tasks and tasks <= {"ok", "interrupted", "pending"}, tasks
    done = start_batch(path, "--resume")
    _, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert len(phase_keys(isolated_home / "history.db")) == 12


# -- the real model ------------------------------------------------------------------------------


@pytest.mark.model
def test_the_example_workflow_on_the_embedded_model(smollm2: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    code, stdout, err = invoke(
        "batch", str(ROOT / "examples" / "workflow.yaml"), "--out", str(out), "--json"
    )
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["status"] == "ok"
    assert summary["loads"] == summary["predicted_loads"] == 1  # one model serves every role
    for task in ("oneliner", "diagnose", "fix"):
        result = json.loads((out / f"{task}.json").read_text())
        assert result["output"].strip() and result["mode"] == "team"  # the default
        assert result["answers"][0]["evidence"] is not None
    fix = json.loads((out / "fix.json").read_text())
    diagnose = json.loads((out / "diagnose.json").read_text())
    assert diagnose["output"] in fix["context"]
    assert "KeyError: 'amount'" in diagnose["context"]


def test_a_phase_group_loads_its_model_once_with_the_largest_context_it_needs(
    on_double: OllamaDouble, tmp_path: Path
) -> None:
    """Tasks of one group need different contexts; the model loads once, with the largest,
    instead of loading small and reloading larger when the long task's turn comes."""
    long_context = "log line with some detail\n" * 600  # about 5,000 tokens by the estimate
    path = write(
        tmp_path,
        "name: contexts\ndefaults: {direct: true, executor: ollama:qwen2.5:7b}\ntasks:\n"
        "  - {id: short, task: explain the error}\n"
        f"  - id: long\n    task: explain this log\n    context: {json.dumps(long_context)}\n",
    )
    code, _, err = invoke("batch", str(path), "--json")
    assert code == 0, err
    (load,) = on_double.events("load")  # the short task ran first, on the long one's context
    assert load["options"]["num_ctx"] == 6144 and on_double.reloads == 0


LONG_TASKS = """
name: long
tasks:
  - {id: one, task: "Write a long story about a dragon, in many chapters."}
  - {id: two, task: "Write a long story about a knight, in many chapters."}
"""


@pytest.mark.model
def test_a_second_ctrl_c_stops_an_embedded_batch_at_once(
    smollm2: Path, tmp_path: Path, isolated_home: Path
) -> None:
    """The first Ctrl-C waits for the model call in flight; a second one cuts it: llama.cpp's
    calls back into Python (its log) must not swallow the interrupt."""
    path = write(tmp_path, LONG_TASKS)
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "batch", str(path), "--backend", "embedded"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as at a terminal: a test run started in the background may ignore SIGINT
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert child.stderr is not None
    seen: list[str] = []

    def read_until(text: str) -> None:
        for line in child.stderr:  # type: ignore[union-attr]
            seen.append(line)
            if text in line:
                return

    read_until("Loaded ")  # the first call is under way once the model is loaded
    child.send_signal(signal.SIGINT)
    read_until("Ctrl-C again to stop at once")  # the first press was taken: the second now
    child.send_signal(signal.SIGINT)
    _, rest = child.communicate(timeout=120)
    err = "".join(seen) + rest
    assert child.returncode == 130, err
    assert "Traceback" not in err and "Resume with" in err
    summary = json.loads((tmp_path / "flow-results" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert {task["status"] for task in summary["tasks"]} == {"interrupted"}
    assert phase_keys(isolated_home / "history.db") == [], "the call in flight was cut"
