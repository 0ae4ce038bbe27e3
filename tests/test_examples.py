"""Every example runs as examples/README.md says (on the real embedded model where it needs one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ai_stack.config import load_settings
from ai_stack.prompts import PromptLibrary
from ai_stack.types import Plan, PlanStep

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable, **kwargs.pop("env", {})}  # type: ignore[dict-item]
    if "input" not in kwargs:
        kwargs.setdefault("stdin", subprocess.DEVNULL)  # nothing piped: no context to read
    done = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600, check=False, **kwargs
    )  # type: ignore[call-overload]
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


def test_every_example_is_indexed() -> None:
    index = (EXAMPLES / "README.md").read_text()
    for path in EXAMPLES.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}" in index, f"{path.name} is not listed in examples/README.md"


def test_example_config_is_valid() -> None:
    settings = load_settings(EXAMPLES / "ai-stack.toml")
    assert settings.backend == "embedded"
    assert settings.planner.model == "embedded:smollm2"
    assert settings.executor.max_tokens == 400


def test_custom_prompt_overrides_only_the_executor() -> None:
    library = PromptLibrary(EXAMPLES / "custom-prompts")
    plan = Plan(goal="g", steps=[PlanStep(title="t", detail="d")])
    shared = {"conversation": None, "files": []}
    executor = library.render("executor", task="x", context=None, plan=plan, **shared)
    assert "bulleted list" in executor[0]["content"]
    assert "1. t: d" in executor[1]["content"]  # the shared macro still comes from the defaults
    assert "Planner" in library.render("planner", task="x", context=None, **shared)[0]["content"]


def last_run() -> dict:  # type: ignore[type-arg]
    """The most recent run in the (test's own) history, as ``history show --json`` has it."""
    listed = run([sys.executable, "main.py", "history", "list", "--json", "--limit", "1"])
    (latest,) = json.loads(listed.stdout)
    shown = run([sys.executable, "main.py", "history", "show", latest["id"], "--json"])
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


@pytest.mark.model
def test_config_example(smollm2: Path) -> None:
    done = run(
        [
            sys.executable,
            "main.py",
            "--config",
            "examples/ai-stack.toml",
            "Explain what a Makefile is",
        ]
    )
    recorded = last_run()
    assert done.stdout.strip() == recorded["output"]  # stdout carries the answer, only it
    roles = recorded["config"]["roles"]
    assert recorded["config"]["backend"] == "embedded (as configured)"
    assert (roles["critic"]["temperature"], roles["critic"]["max_tokens"]) == (0.1, 256)
    assert roles["executor"]["max_tokens"] == 400
    assert recorded["metrics"]["phases"][-1]["output_tokens"] <= 400
    assert recorded["rounds"] <= 2


@pytest.mark.model
def test_json_pipeline_script(smollm2: Path) -> None:
    done = run(["bash", "examples/json-pipeline.sh", "Name three sorting algorithms"])
    assert "mode: team" in done.stdout and "answer review:" in done.stdout
    assert "the task asks for:" in done.stdout
    assert "answer v1:" in done.stdout and "executor execute" in done.stdout
    assert "--- answer (v" in done.stdout


@pytest.mark.model
def test_session_file(smollm2: Path) -> None:
    with (EXAMPLES / "session.txt").open() as session:
        done = run([sys.executable, "main.py", "--interactive", "--json"], stdin=session)
    tasks = [json.loads(line)["task"] for line in done.stdout.splitlines()]
    assert tasks == ["List three primary colours", "Name two planets of the solar system"]


@pytest.mark.model
def test_custom_prompts_example(smollm2: Path) -> None:
    done = run(
        [sys.executable, "main.py", "--max-rounds", "1", "Give tips for writing tests"],
        env={"AI_STACK_PROMPTS_DIR": "examples/custom-prompts"},
    )
    recorded = last_run()
    assert done.stdout.strip() == recorded["output"]
    prompts = recorded["config"]["prompts"]
    assert prompts["executor"] == str(EXAMPLES / "custom-prompts" / "executor.j2")
    assert "custom-prompts" not in prompts["planner"]  # the others keep the defaults


def test_footprints_script_matches_the_table_in_the_docs() -> None:
    done = run([sys.executable, "examples/footprints.py"])
    assert done.stdout.strip() in (ROOT / "docs" / "memory.md").read_text()
