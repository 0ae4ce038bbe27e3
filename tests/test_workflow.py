"""Workflow files: every error is found before any load, with the file, the line and the fix;
settings are layered; context files are read; tasks are put in dependency order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ai_stack.errors import WorkflowError
from ai_stack.workflow import load_workflow


def write(folder: Path, text: str, name: str = "flow.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


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
    early = next(t for t in workflow.tasks if t.id == "early")
    assert early.context == "intro\n\n--- notes.txt ---\nline one"
    assert [t.depends_on for t in workflow.tasks] == [[], ["early"]]
