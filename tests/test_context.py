"""A task that cannot fit a model's context window is refused before any load; its context is
cut to fit only with consent; progress never echoes a huge task."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai_stack.backends import ModelSpec, create_backend
from ai_stack.config import Settings
from ai_stack.context import ContextChoice, estimate_tokens, role_needs
from ai_stack.controller import Pipeline
from ai_stack.errors import InputLimitError
from ai_stack.memory import MemoryManager
from ai_stack.modes import ROLES_CALLED
from ai_stack.prompts import PromptLibrary
from ai_stack.session import resolve_roles
from ai_stack.types import Notice, RunFinished
from tests.conftest import invoke
from tests.scripted import ScriptedBackend

HUGE = "Summarise this: " + "lorem ipsum dolor sit amet " * 8000  # ~200 KB


def pipeline(backend: ScriptedBackend, **settings: object) -> Pipeline:
    config = Settings.model_validate({"direct": True, **settings})  # type: ignore[arg-type]
    manager = MemoryManager(lambda name: backend, budget_bytes=10**9)
    return Pipeline(config, manager, PromptLibrary(), resolve_roles(config, "embedded"))


def test_a_task_too_big_for_the_context_is_refused_before_any_load(
    scripted: ScriptedBackend,
) -> None:
    with pytest.raises(InputLimitError, match="takes about 72,00") as info:
        list(pipeline(scripted).run(HUGE))
    assert "8,192 tokens" in info.value.message and "num_ctx" in (info.value.hint or "")
    assert scripted.log == [], "nothing was loaded"


def test_a_big_context_is_cut_to_fit_only_with_consent(scripted: ScriptedBackend) -> None:
    context = "log line\n" * 20000
    with pytest.raises(InputLimitError, match="The task and its context") as info:
        list(pipeline(scripted).run("Why does this fail?", context))
    assert "--truncate-context" in (info.value.hint or "")
    scripted.enqueue("an answer")
    events = list(pipeline(scripted, limits={"truncate_context": True}).run("Why?", context))
    cut, chosen = [e for e in events if isinstance(e, Notice)]
    assert cut.kind == "context" and "was cut from about 60,000" in cut.message
    assert chosen.kind == "context"
    assert "a context of 8,192 tokens, the most num_ctx allows" in chosen.message
    sent = scripted.chats[0].messages[-1]["content"]
    assert sent.startswith("Why?") and "[... cut to fit the context window]" in sent
    assert isinstance(events[-1], RunFinished)


@pytest.mark.model
def test_the_cli_refuses_a_huge_task_in_one_line(smollm2: Path, tmp_path: Path) -> None:
    code, out, err = invoke("--backend", "embedded", HUGE)
    assert code == 2 and out == ""
    assert "takes about" in err and "Traceback" not in err
    assert len(err) < 2000, "the task is not echoed back"


def test_a_workflow_task_too_big_is_refused_at_validation(tmp_path: Path) -> None:
    (tmp_path / "big.log").write_text("x" * 300_000)
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: x\ntasks:\n  - {id: a, task: explain, context_files: [big.log]}\n")
    code, _, err = invoke("batch", str(flow), "--backend", "embedded")
    assert code == 2 and f"{flow}:3" in err and "take about 100,0" in err


# -- the context a run loads each model with ------------------------------------------------------


def contexts(backend: ScriptedBackend, task: str, **settings: object) -> dict[str, ContextChoice]:
    chosen = pipeline(backend, **{"direct": False, **settings}).choose_contexts(task, None)
    return {str(spec): choice for spec, choice in chosen.items()}


def test_each_model_gets_the_context_its_longest_call_needs(scripted: ScriptedBackend) -> None:
    """One shared model (every role on it): the longest call of the mode decides, rounded up to
    a step, never past num_ctx; a longer task or more review takes more."""
    direct = contexts(scripted, "Reverse a string", direct=True)["embedded:smollm2"]
    assert direct.num_ctx == 2048 and direct.need and direct.need.call == "the answer"
    answer = contexts(scripted, "Reverse a string", review="answer")["embedded:smollm2"]
    assert answer.need and answer.need.call == "a fix of the answer"
    assert answer.num_ctx == 4096 and answer.roles == ("critic", "executor")
    assert "a context of 4,096 tokens; its longest call, a fix of the answer" in answer.describe()
    longer = contexts(scripted, "Summarise: " + "word " * 3000, review="answer")
    assert longer["embedded:smollm2"].num_ctx == 8192
    assert "the most num_ctx allows" in longer["embedded:smollm2"].describe()
    no_review = contexts(scripted, "Reverse a string", review="answer", max_rounds=0)
    assert no_review["embedded:smollm2"].roles == ("executor",)
    assert no_review["embedded:smollm2"].num_ctx == 2048
    team = contexts(scripted, "Reverse a string")["embedded:smollm2"]  # the default
    assert team.roles == ("planner", "executor") and team.need
    assert team.need.call == "a program computing the result"  # it holds the answer
    rethinking = contexts(scripted, "Reverse a string", evidence={"rethink": True})
    assert rethinking["embedded:smollm2"].need
    assert rethinking["embedded:smollm2"].need.call == "another approach"  # with the evidence


def test_a_pinned_context_is_used_as_it_is(scripted: ScriptedBackend) -> None:
    pinned = {"num_ctx": 6144, "fixed_ctx": True}
    choice = contexts(scripted, "Reverse a string", direct=True, executor=pinned)[
        "embedded:smollm2"
    ]
    assert choice.num_ctx == 6144 and choice.need is None and "as pinned" in choice.describe()


def test_every_mode_sizes_every_role_it_calls() -> None:
    for mode in ("none", "plan", "both", "answer", "team"):
        needs = role_needs(Settings.model_validate({"review": mode}), 200, 5)
        assert set(needs) == set(ROLES_CALLED[mode]), mode
        assert all(need.prompt > 200 and need.reply > 0 for need in needs.values())
    plan = role_needs(Settings.model_validate({"review": "plan"}), 200, 5)
    assert plan["planner"].call == "a revision of the plan"
    assert plan["executor"].prompt > role_needs(Settings(direct=True), 200, 5)["executor"].prompt


@pytest.mark.model
def test_the_embedded_backend_counts_with_the_models_own_tokenizer(smollm2: Path) -> None:
    """English takes about 4 bytes a token: the tokenizer's count is well under the estimate."""
    manager = MemoryManager(lambda name: create_backend(name, Settings()), budget_bytes=10**9)
    text = "Write a Python function that counts the lines in every file under a folder. " * 20
    counted = manager.count_tokens(ModelSpec("embedded", "smollm2"), text)
    assert 200 < counted < estimate_tokens(text) * 0.8
    assert manager.resident == [], "counting loads no weights"
    manager.close()
