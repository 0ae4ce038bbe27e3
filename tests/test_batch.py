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
from pathlib import Path

import pytest
from click.testing import CliRunner

from ai_stack.batch import Waiting, choose_model, predict
from ai_stack.cli import cli
from ai_stack.workflow import WorkflowError, load_workflow
from tests.ollama_double import OllamaDouble

ROOT = Path(__file__).resolve().parent.parent
THREE = """
defaults:
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


def write(folder: Path, text: str, name: str = "flow.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def on_double(double: OllamaDouble, monkeypatch: pytest.MonkeyPatch) -> OllamaDouble:
    monkeypatch.setenv("OLLAMA_HOST", double.host)
    return double


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\ntasks:\n  - id: a\n    task: t: u\n", ":4: YAML syntax error: mapping values"),
        ("name: x\ncolour: red\ntasks:\n  - {id: a, task: t}\n", ":2: colour: unknown key"),
        (
            "name: x\ntasks:\n  - {id: a, task: t}\n  - {id: a, task: u}\n",
            ":4: tasks.1.id: duplicate task id 'a'",
        ),
        ("name: x\ntasks:\n  - id: a\n", ":3: tasks.0.task: missing 'task'"),
        ("name: x\ntasks:\n  - {id: a, task: '  '}\n", "tasks.0.task"),
        (
            "name: x\ntasks:\n  - id: a\n    task: t\n    context_files: [nope.txt]\n",
            ":5: tasks.0.context_files.0: context file not found",
        ),
        (
            "name: x\ntasks:\n  - {id: a, task: t, depends_on: [zz]}\n",
            "depends on unknown task 'zz'",
        ),
        (
            "name: x\ntasks:\n  - {id: a, task: t, depends_on: [b]}\n"
            "  - {id: b, task: u, depends_on: [a]}\n",
            "dependency cycle: a -> b -> a",
        ),
        (
            "name: x\ntasks:\n  - {id: a, task: t}\n  - {id: b, task: 'use {{ outputs.a }}'}\n",
            "uses outputs.a but does not depend on 'a'",
        ),
        (
            "name: x\ntasks:\n  - {id: a, task: 'use {{ secrets }}'}\n",
            "unknown template variable 'secrets'",
        ),
        ("name: x\ntasks:\n  - {id: a, task: 'bad {% if %}'}\n", "template error"),
        (
            "name: x\ntasks:\n  - id: a\n    task: t\n    memory: {policy: fit}\n",
            ":5: tasks.0.memory: 'memory' applies to the whole batch",
        ),
        ("name: x\ntasks:\n  - {id: a, task: t, colour: red}\n", "unknown task key 'colour'"),
        (
            "name: x\ndefaults: {max_rounds: 99}\ntasks:\n  - {id: a, task: t}\n",
            ":2: defaults.max_rounds",
        ),
        ("name: x\ntasks:\n  - {id: 'a/../b', task: t}\n", "tasks.0.id"),
        ("name: x\nname: y\ntasks: []\n", ":2: duplicate key 'name'"),
        ("", "is empty"),
        ("name: x\ntasks: []\n", "tasks"),
    ],
)
def test_malformed_workflows_are_rejected_with_file_line_and_fix(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(WorkflowError) as info:
        load_workflow(path, {})
    assert str(path) in info.value.message
    assert expected in info.value.message


def test_malformed_file_from_the_cli_loads_nothing(on_double: OllamaDouble, tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ntasks:\n  - {id: a}\n")
    code, _, err = invoke("batch", str(path))
    assert code == 2 and f"{path}:3" in err and "missing 'task'" in err
    assert "Traceback" not in err and on_double.loads == 0
    code, _, err = invoke("batch", str(tmp_path / "absent.yaml"))
    assert code == 2 and "Workflow file not found" in err


def test_json_workflows_and_settings_precedence(tmp_path: Path) -> None:
    flow = {
        "name": "j",
        "defaults": {"max_rounds": 1, "critic": {"temperature": 0.5}},
        "tasks": [
            {"id": "a", "task": "t", "max_rounds": 3},
            {"id": "b", "task": "u", "executor": "embedded:tiny"},
        ],
    }
    path = write(tmp_path, json.dumps(flow), "flow.json")
    workflow = load_workflow(path, {"approve_score": 6}, {"critic": {"model": "embedded:x"}})
    a, b = workflow.tasks
    assert (a.settings.max_rounds, b.settings.max_rounds) == (3, 1)
    assert a.settings.approve_score == 6  # from the config file
    assert a.settings.critic.temperature == 0.5 and a.settings.critic.model == "embedded:x"
    assert b.settings.executor.model == "embedded:tiny"
    assert workflow.output_dir == tmp_path.resolve() / "flow-results"


def test_context_files_and_dependency_order(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("line one\n")
    path = write(
        tmp_path,
        """name: x
tasks:
  - {id: late, task: 'after {{ outputs.early }}', depends_on: [early]}
  - {id: early, task: first, context: intro, context_files: [notes.txt]}
""",
    )
    workflow = load_workflow(path, {})
    assert [t.id for t in workflow.tasks] == ["early", "late"]
    assert workflow.task("early").context == "intro\n\n--- notes.txt ---\nline one"
    assert workflow.waves() == [["early"], ["late"]]


# -- scheduling ------------------------------------------------------------------------------------


def test_resident_model_first_then_the_earliest_phase() -> None:
    parked = [Waiting("a", 0, 10000, "E"), Waiting("b", 1, 0, "P")]
    assert choose_model(parked, resident={"E"}) == "E"
    assert choose_model(parked, resident=set()) == "P"


def specs_for(workflow, backend: str = "ollama"):  # type: ignore[no-untyped-def]
    from ai_stack.controller import resolve_roles

    return {t.id: resolve_roles(t.settings, backend) for t in workflow.tasks}


def test_prediction_four_tasks_three_models(tmp_path: Path) -> None:
    workflow = load_workflow(write(tmp_path, FOUR_TASKS), {})
    one = predict(workflow, specs_for(workflow), lambda models: len(models) <= 1)
    assert (one.loads, one.naive_loads, one.exact) == (3, 12, True)
    assert [(label, tasks) for label, _, tasks in one.groups] == [
        ("plan", ["a", "b", "c", "d"]),
        ("critique round 1", ["a", "b", "c", "d"]),
        ("execute", ["a", "b", "c", "d"]),
    ]
    fit = predict(workflow, specs_for(workflow), lambda models: True)
    assert (fit.loads, fit.naive_loads) == (3, 3)


def test_prediction_with_rounds_and_dependencies(tmp_path: Path) -> None:
    text = FOUR_TASKS.replace("max_rounds: 1", "max_rounds: 2").replace(
        "{id: c, task: third}", "{id: c, task: third, depends_on: [a]}"
    )
    workflow = load_workflow(write(tmp_path, text), {})
    prediction = predict(workflow, specs_for(workflow), lambda models: len(models) <= 1)
    assert not prediction.exact
    # a, b, d: plan, critique, revise, critique, execute = 5 loads; then c the same: 10
    assert prediction.loads == 10
    assert prediction.naive_loads == 20


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
    path = write(
        tmp_path, FOUR_TASKS.replace("defaults:", "defaults:\n  history: {enabled: false}")
    )
    code, _, err = invoke("batch", str(path))
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


# -- interruption and resume in a real subprocess -----------------------------------------------


def start_batch(path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "batch", str(path), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )  # fmt: skip


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
        assert result["output"].strip() and result["plan"]["steps"]
    fix = json.loads((out / "fix.json").read_text())
    diagnose = json.loads((out / "diagnose.json").read_text())
    assert diagnose["output"] in fix["context"]
    assert "KeyError: 'amount'" in diagnose["context"]
