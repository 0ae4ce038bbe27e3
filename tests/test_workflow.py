"""Workflow files: every error is found before any load, with the file, the line and the fix;
settings are layered; context files are read; tasks are put in dependency order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ai_stack.config import load_settings
from ai_stack.errors import ConfigError, InputLimitError, WorkflowError
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
            "name: x\ntasks:\n  - id: a\n    task: t\n    memory: {policy: one-at-a-time}\n",
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


# -- files, limits, templates: all found before anything loads --------------------------------


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ("[../../../etc/passwd]", "outside the allowed directories"),
        ("[/etc/hostname]", "outside the allowed directories"),
        ("[.env]", "files named .env hold secrets"),
        ("[keys/server.pem]", r"files named \*\.pem hold secrets"),
    ],
)
def test_context_files_go_through_the_file_access_policy(
    tmp_path: Path, files: str, message: str
) -> None:
    (tmp_path / ".env").write_text("API_TOKEN=hunter2\n")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "server.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    path = write(tmp_path, f"name: x\ntasks:\n  - id: a\n    task: t\n    context_files: {files}\n")
    with pytest.raises(WorkflowError, match=message) as info:
        load_workflow(path, {})
    assert f"{path}:5" in info.value.message  # the line of the offending entry


def test_allowed_paths_and_named_secrets(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.md").write_text("shared notes\n")
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / ".env").write_text("MODE=dev\n")
    task = "  - {id: a, task: t, context_files: [../shared/notes.md, .env]}\n"
    path = write(tmp_path / "flows", "name: x\ntasks:\n" + task)
    with pytest.raises(WorkflowError, match="outside the allowed"):
        load_workflow(path, {})
    with pytest.raises(WorkflowError, match=r"\.env hold secrets"):
        load_workflow(path, {}, {"files": {"allow_paths": [str(shared)]}})
    allowed = {
        "files": {
            "allow_paths": [str(shared)],
            "allow_sensitive": [str(tmp_path / "flows" / ".env")],
        }
    }
    (task,) = load_workflow(path, {}, allowed).tasks
    assert "shared notes" in (task.context or "") and "MODE=dev" in (task.context or "")


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"  # noqa: E501
    path = write(tmp_path, "name: x\n" + bomb + "tasks:\n  - {id: a, task: t}\n")
    with pytest.raises(InputLimitError, match="expands to more than 200,000 values") as info:
        load_workflow(path, {})
    assert "limits.yaml_nodes" in (info.value.hint or "")


@pytest.mark.parametrize("name", ["deep.yaml", "deep.json"])
def test_deep_nesting_is_refused_not_a_crash(tmp_path: Path, name: str) -> None:
    depth = 50_000
    nested = "[" * depth + "]" * depth
    text = nested if name.endswith(".json") else "a: " + nested
    path = write(tmp_path, text, name)
    deep = r"nested (more than 1,000|50,000) levels deep, more than the limit of 64"
    with pytest.raises(InputLimitError, match=deep):
        load_workflow(path, {})


def test_nesting_is_reported_with_its_depth_and_the_limit_in_force(tmp_path: Path) -> None:
    """800 levels, with the limit raised as far as it goes: it was reported as "more than
    10000 levels" (the reader's own recursion had failed, not the limit)."""
    path = write(tmp_path, "name: x\ntasks: [{id: a, task: t}]\nx: " + "[" * 800 + "]" * 800)
    with pytest.raises(InputLimitError) as info:
        load_workflow(path, {"limits": {"depth": 256}})
    assert "is nested 801 levels deep, more than the limit of 256." in info.value.message
    with pytest.raises(ConfigError, match=r"limits\.depth"):
        load_settings(overrides={"limits": {"depth": 10_000}})


def test_many_tasks_are_not_blamed_on_aliases(tmp_path: Path) -> None:
    tasks = "".join(f"  - {{id: t{i}, task: task number {i}}}\n" for i in range(400))
    path = write(tmp_path, "name: x\ntasks:\n" + tasks)
    with pytest.raises(InputLimitError) as info:
        load_workflow(path, {"limits": {"yaml_nodes": 1000, "tasks": 100}})
    assert info.value.message == f"{path} has 400 tasks, over the limit of 100."
    with pytest.raises(InputLimitError) as info:
        load_workflow(path, {"limits": {"yaml_nodes": 1000}})
    assert info.value.message == f"{path} holds more than 1,000 values."
    assert "anchors" not in (info.value.hint or "")


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"), ("just text\n", "a string")])
def test_a_workflow_that_is_not_a_mapping_says_so(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(WorkflowError) as info:
        load_workflow(path, {})
    assert info.value.message == (
        f"{path}:1: a workflow is a mapping (name, tasks, ...), not {kind}"
    )


def test_big_files_and_too_many_tasks_are_refused_naming_the_limit(tmp_path: Path) -> None:
    tasks = "".join(f"  - {{id: t{i}, task: task number {i}}}\n" for i in range(1500))
    path = write(tmp_path, "name: x\ntasks:\n" + tasks)
    with pytest.raises(InputLimitError, match="1,500 tasks, over the limit of 1,000") as info:
        load_workflow(path, {})
    assert "limits.tasks" in (info.value.hint or "")
    big = write(tmp_path, "name: x\n# " + "x" * (2 * 1024 * 1024) + "\ntasks: []\n", "big.yaml")
    with pytest.raises(InputLimitError, match="over the 1,024 KiB limit") as info:
        load_workflow(big, {})
    assert "limits.workflow_kb" in (info.value.hint or "")
    raised = load_workflow(path, {"limits": {"tasks": 2000}})
    assert len(raised.tasks) == 1500


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ outputs.a.__class__.__init__.__globals__ }}",
        "{{ outputs.a | attr('__class__') }}",
    ],
)
def test_template_escapes_are_found_at_validation(tmp_path: Path, template: str) -> None:
    """Before, they surfaced when the task ran — in a dependent task, after its models loaded."""
    text = (
        "name: x\ntasks:\n  - {id: a, task: first}\n"
        f'  - id: b\n    depends_on: [a]\n    task: "{template}"\n'
    )
    path = write(tmp_path, text)
    with pytest.raises(WorkflowError, match="unsafe") as info:
        load_workflow(path, {})
    assert f"{path}:6" in info.value.message


@pytest.mark.parametrize(
    ("template", "keyword"),
    [
        ("{% include '/etc/passwd' %}", "include"),
        ("{% import 'x' as y %}", "import"),
        ("{% from 'x' import y %}", "from"),
        ("{% extends 'x' %}", "extends"),
    ],
)
def test_a_tasks_template_stands_alone(tmp_path: Path, template: str, keyword: str) -> None:
    """Another template, or a file named as one, is not a task's to pull in (it was exit 70)."""
    path = write(tmp_path, f'name: x\ntasks:\n  - id: a\n    task: "{template} hi"\n')
    with pytest.raises(WorkflowError, match=f"cannot use {{% {keyword} %}}"):
        load_workflow(path, {})


def test_a_tasks_template_cannot_build_a_huge_text(tmp_path: Path) -> None:
    text = "name: x\ntasks:\n  - {id: a, task: first}\n"
    text += '  - id: b\n    depends_on: [a]\n    task: "{{ outputs.a * 10**9 }}"\n'
    with pytest.raises(WorkflowError, match="would make"):
        load_workflow(write(tmp_path, text), {})


@pytest.mark.parametrize("where", ["/tmp/elsewhere", "../outside"])
def test_a_workflows_outputs_stay_under_its_directory(tmp_path: Path, where: str) -> None:
    """Its reads are confined there; a file from someone else must not write (and overwrite a
    summary.json) anywhere else. --out on the command line is the user's own choice."""
    flow = tmp_path / "flows" / "w.yaml"
    flow.parent.mkdir()
    flow.write_text(f"name: w\noutput_dir: {where}\ntasks:\n  - {{id: a, task: t}}\n")
    with pytest.raises(WorkflowError, match="is outside the workflow's directory"):
        load_workflow(flow, {})
    flow.write_text("name: w\noutput_dir: results/here\ntasks:\n  - {id: a, task: t}\n")
    assert load_workflow(flow, {}).output_dir == (flow.parent / "results/here").resolve()
