"""2. Swap scheduling: a batch of N tasks with three distinct role models, run in the naive
task-by-task order, phase-major (one model at a time), and phase-major under the ``fit`` policy.

(a) The embedded backend with three distinct GGUF files (copies of the packaged SmolLM2 under
    different names), so every load is a real llama.cpp load. Generation is replaced by canned
    valid replies (:class:`LoadOnlyBackend`): model loads are the only thing the three orders do
    differently, and on this 2-core machine the variance of real generation drowns them (the
    overhead and latency benchmarks measure generation).
(b) The Ollama test double, with load latency proportional to model size (mistral:7b,
    qwen2.5:7b, qwen2.5:14b at ``LOAD_GIB_PER_S``).

"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from ai_stack.backends import create_backend
from ai_stack.backends.base import Backend, ChatOptions, ChatResult, ChatStream, Message
from ai_stack.backends.embedded import EmbeddedBackend
from ai_stack.config import raw_settings
from ai_stack.controller import Pipeline, Tally
from ai_stack.files import OutputDir
from ai_stack.history import HistoryStore
from ai_stack.memory import MemoryManager
from ai_stack.session import Session, resolve_roles
from ai_stack.units import GIB
from ai_stack.workflow import load_workflow
from benchmarks.common import Context, fmt, repeat, show
from tests.ollama_double import OllamaDouble

LOAD_GIB_PER_S = 20.0
MODES = ("naive", "phase-major", "fit")
EMBEDDED_ROLES = {
    "planner": {"model": "embedded:planner", "max_tokens": 320},
    "critic": {"model": "embedded:critic", "max_tokens": 64},
    "executor": {"model": "embedded:executor", "max_tokens": 32},
}
OLLAMA_ROLES = {
    "planner": "ollama:mistral:7b",
    "critic": "ollama:qwen2.5:7b",
    "executor": "ollama:qwen2.5:14b",
}


class LoadOnlyBackend(EmbeddedBackend):
    """The embedded backend with real llama.cpp loads and unloads, but canned replies."""

    def chat(
        self,
        model: str,
        messages: list[Message],
        *,
        options: ChatOptions,
        schema: dict[str, Any] | None = None,
    ) -> ChatStream:
        if model not in self._loaded:
            raise RuntimeError(f"{model} is not loaded")
        text = json.dumps(_instance(schema)) if schema else "A canned answer."
        return ChatStream(_reply(text))


def _reply(text: str) -> Generator[str, None, ChatResult]:
    yield text
    return ChatResult(text=text, prompt_tokens=1, output_tokens=max(len(text) // 4, 1))


def _instance(schema: dict[str, Any]) -> Any:
    """A small valid instance of a generation schema (enums: the last integer, the first word)."""
    if "enum" in schema:
        values = schema["enum"]
        return values[-1] if schema.get("type") == "integer" else values[0]
    kind = schema.get("type")
    if kind == "object":
        return {key: _instance(value) for key, value in schema["properties"].items()}
    if kind == "array":
        return [_instance(schema["items"]) for _ in range(max(schema.get("minItems", 0), 1))]
    return "a step" if kind == "string" else 0


def _workflow_file(
    folder: Path, tasks: int, roles: dict[str, Any], models_dir: Path | None
) -> Path:
    defaults: dict[str, Any] = {"max_rounds": 1, **roles, "thermal": {"enabled": False}}
    if models_dir is not None:
        defaults["models_dir"] = str(models_dir)
    lines = ["name: swap benchmark", f"defaults: {_yaml(defaults)}", "tasks:"]
    lines += [f"  - {{id: t{i}, task: 'Name {i + 1} uses of a hash map'}}" for i in range(tasks)]
    path = folder / f"swap-{tasks}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _yaml(value: Any) -> str:
    return json.dumps(value)  # JSON is YAML


def run_mode(mode: str, path: Path, folder: Path, backend: str) -> dict[str, float]:
    """One batch in one mode; returns loads, seconds loading and wall seconds."""
    base, _ = raw_settings(None)
    workflow = load_workflow(path, base)
    settings = workflow.tasks[0].settings

    def backend_for(name: str) -> Backend:
        if name == "embedded":
            return LoadOnlyBackend(models_dir=settings.resolved_models_dir())
        return create_backend(name, settings)

    manager = MemoryManager(
        backend_for,
        policy="fit" if mode == "fit" else "one-at-a-time",
        budget_bytes=64 * GIB,
    )
    started = time.perf_counter()
    tally = Tally()  # loads counted from the events, as everywhere
    with Session(settings, manager, backend=backend) as session:
        if mode == "naive":
            for planned in workflow.tasks:
                pipeline = Pipeline(
                    planned.settings,
                    manager,
                    session.prompts(),
                    resolve_roles(planned.settings, backend),
                )
                for event in pipeline.run(planned.task):
                    tally.observe(event)
        else:
            out = folder / f"out-{mode}-{time.monotonic_ns()}"
            runner = session.batch_runner(workflow, out)
            with OutputDir.open(out) as runner.output:
                runner.store = HistoryStore.open(out / "journal.db")
                runner.begin(resume=False)
                summary = runner.run()
            assert summary.status == "ok", summary.tasks
            tally = runner.tally
    return {"loads": tally.loads, "load_s": tally.load_s, "wall_s": time.perf_counter() - started}


def swap(ctx: Context) -> tuple[dict[str, Any], str]:
    results: dict[str, Any] = {}
    rows: list[list[str]] = []
    models_dir = ctx.work / "swap-models"
    models_dir.mkdir(exist_ok=True)
    for role in ("planner", "critic", "executor"):
        shutil.copyfile(ctx.model, models_dir / f"{role}.gguf")  # distinct files: real loads
    sizes = (4, 10) if ctx.quick else (4, 10, 20)
    setups = [
        ("embedded", "embedded", EMBEDDED_ROLES, models_dir, nullcontext()),
        ("ollama-double", "ollama", OLLAMA_ROLES, None, _ollama_double()),
    ]
    for key, backend, roles, folder, server in setups:
        with server:
            for tasks in sizes:
                path = _workflow_file(ctx.work, tasks, roles, folder)
                for mode in MODES:
                    stats = repeat(
                        ctx.repeat, lambda _, m=mode, p=path, b=backend: run_mode(m, p, ctx.work, b)
                    )
                    results[f"{key}:{tasks}:{mode}"] = stats
                    naive = results[f"{key}:{tasks}:naive"]
                    rows.append(_row(key, tasks, mode, stats, naive))
    table = show(
        f"2. Swap scheduling, 3 role models, max_rounds 1 (median (min-max) of {ctx.repeat} runs)",
        ["backend", "tasks", "order", "loads", "seconds loading", "wall seconds", "wall vs naive"],
        rows,
    )
    return {"stats": results, "load_gib_per_s_double": LOAD_GIB_PER_S}, table


@contextmanager
def _ollama_double() -> Iterator[None]:
    """The Ollama double with size-proportional loads, as OLLAMA_HOST while it runs."""
    double = OllamaDouble(
        load_bytes_per_s=LOAD_GIB_PER_S * GIB, unload_delay_s=0.05, memory_bytes=64 * GIB
    )
    previous = os.environ.get("OLLAMA_HOST")
    with double.start():
        os.environ["OLLAMA_HOST"] = double.host
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("OLLAMA_HOST", None)
            else:
                os.environ["OLLAMA_HOST"] = previous


def _row(
    key: str, tasks: int, mode: str, stats: dict[str, Any], naive: dict[str, Any]
) -> list[str]:
    label = "embedded" if key == "embedded" else "Ollama double"
    ratio = stats["wall_s"]["median"] / naive["wall_s"]["median"]
    return [
        label,
        str(tasks),
        mode,
        fmt(stats["loads"], "", 0),
        fmt(stats["load_s"], "", 2),
        fmt(stats["wall_s"], "", 1),
        f"{ratio:.2f}x",
    ]
