"""A task that cannot fit a model's context window is refused before any load; its context is
cut to fit only with consent; progress never echoes a huge task."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai_stack.config import Settings
from ai_stack.controller import Pipeline
from ai_stack.errors import InputLimitError
from ai_stack.memory import MemoryManager
from ai_stack.prompts import PromptLibrary
from ai_stack.session import resolve_roles
from ai_stack.types import Notice, RunFinished
from tests.conftest import invoke
from tests.scripted import ScriptedBackend

HUGE = "Summarise this: " + "lorem ipsum dolor sit amet " * 8000  # ~200 KB


def pipeline(backend: ScriptedBackend, **settings: object) -> Pipeline:
    config = Settings.model_validate({"direct": True, **settings})
    manager = MemoryManager(lambda name: backend, budget_bytes=10**9)
    return Pipeline(config, manager, PromptLibrary(), resolve_roles(config, "embedded"))


def test_a_task_too_big_for_the_context_is_refused_before_any_load(
    scripted: ScriptedBackend,
) -> None:
    with pytest.raises(InputLimitError, match="take about 72,00") as info:
        list(pipeline(scripted).run(HUGE))
    assert "4,096-token context" in info.value.message and "num_ctx" in (info.value.hint or "")
    assert scripted.log == [], "nothing was loaded"


def test_a_big_context_is_cut_to_fit_only_with_consent(scripted: ScriptedBackend) -> None:
    context = "log line\n" * 20000
    with pytest.raises(InputLimitError, match="The task and its context") as info:
        list(pipeline(scripted).run("Why does this fail?", context))
    assert "--truncate-context" in (info.value.hint or "")
    scripted.enqueue("an answer")
    events = list(pipeline(scripted, limits={"truncate_context": True}).run("Why?", context))
    (notice,) = [e for e in events if isinstance(e, Notice)]
    assert notice.kind == "context" and "was cut from about 60,000" in notice.message
    sent = scripted.chats[0].messages[1]["content"]
    assert sent.startswith("Task: Why?") and "[... cut to fit the context window]" in sent
    assert isinstance(events[-1], RunFinished)


def test_the_cli_refuses_a_huge_task_in_one_line(tmp_path: Path) -> None:
    code, out, err = invoke("--backend", "embedded", HUGE)
    assert code == 2 and out == ""
    assert "take about" in err and "Traceback" not in err
    assert len(err) < 2000, "the task is not echoed back"


def test_a_workflow_task_too_big_is_refused_at_validation(tmp_path: Path) -> None:
    (tmp_path / "big.log").write_text("x" * 300_000)
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: x\ntasks:\n  - {id: a, task: explain, context_files: [big.log]}\n")
    code, _, err = invoke("batch", str(flow), "--backend", "embedded")
    assert code == 2 and f"{flow}:3" in err and "take about 100,0" in err
