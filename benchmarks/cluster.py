"""6. A batch on a Ray cluster against one machine.

A local Ray cluster (``ray.init`` in this process) with three worker slots, each bound to its
own Ollama test double — three stand-in machines of 16 GiB — against a single machine: one such
double, one model resident at a time, phase-major. The doubles load at ``LOAD_GIB_PER_S`` (an
SSD-backed Mac: 2-5 s per model here) and stream at ``SECONDS_PER_TOKEN``; the three role models
are distinct (mistral:7b, qwen2.5:7b, qwen2.5:14b). Workloads: N independent tasks, and N tasks
where every second one depends on the one before (its output is in the task).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ai_stack.config import ClusterSettings, ClusterSlotSettings, raw_settings
from ai_stack.files import OutputDir
from ai_stack.history import HistoryStore
from ai_stack.session import Session
from ai_stack.units import GIB
from ai_stack.workflow import load_workflow
from benchmarks.common import Context, fmt, repeat, show
from tests.ollama_double import OllamaDouble
from tests.ray_local import local_ray

LOAD_GIB_PER_S = 2.0
SECONDS_PER_TOKEN = 0.02
SLOTS = ("a", "b", "c")
ROLES = {
    "planner": "ollama:mistral:7b",
    "critic": "ollama:qwen2.5:7b",
    "executor": "ollama:qwen2.5:14b",
}


def _double() -> OllamaDouble:
    return OllamaDouble(
        load_bytes_per_s=LOAD_GIB_PER_S * GIB,
        unload_delay_s=0.05,
        memory_bytes=16 * GIB,
        seconds_per_token=SECONDS_PER_TOKEN,
    )


def _workflow_file(folder: Path, tasks: int, chained: bool) -> Path:
    defaults = {"review": "plan", "max_rounds": 1, **ROLES, "thermal": {"enabled": False}}
    lines = ["name: cluster benchmark", f"defaults: {json.dumps(defaults)}", "tasks:"]
    for i in range(tasks):
        if chained and i % 2:
            task = f"'Check {{{{ outputs.t{i - 1} }}}} and name {i} uses of a hash map'"
            lines.append(f"  - {{id: t{i}, task: {task}, depends_on: [t{i - 1}]}}")
        else:
            lines.append(f"  - {{id: t{i}, task: 'Name {i + 1} uses of a hash map'}}")
    path = folder / f"cluster-{tasks}-{'chained' if chained else 'independent'}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_batch(path: Path, folder: Path, cluster: Any | None) -> dict[str, float]:
    """One batch, here (``cluster`` None: on the Ollama double in OLLAMA_HOST) or on the
    cluster; loads, seconds loading and wall seconds."""
    from ai_stack.cluster import ClusterBatchRunner

    base, _ = raw_settings(None)
    workflow = load_workflow(path, base)
    settings = workflow.tasks[0].settings
    out = folder / f"out-{time.monotonic_ns()}"
    started = time.perf_counter()
    if cluster is None:
        session = Session.open(settings)
        runner = session.batch_runner(workflow, out)
    else:
        session = cluster.session(settings)
        runner = session.batch_runner(
            workflow, out, runner=functools.partial(ClusterBatchRunner, cluster=cluster)
        )
    with session, OutputDir.open(out) as runner.output:
        runner.preflight()
        runner.store = HistoryStore.open(out / "journal.db")
        runner.begin(resume=False)
        summary = runner.run()
    assert summary.status == "ok", summary.tasks
    wall_s = time.perf_counter() - started
    return {"loads": summary.loads, "load_s": summary.load_s, "wall_s": wall_s}


@contextmanager
def _machine() -> Iterator[None]:
    """One stand-in machine: a double as OLLAMA_HOST, one model at a time."""
    double = _double()
    previous = {k: os.environ.get(k) for k in ("OLLAMA_HOST", "AI_STACK_POLICY")}
    with double.start():
        os.environ["OLLAMA_HOST"], os.environ["AI_STACK_POLICY"] = double.host, "one-at-a-time"
        try:
            yield
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextmanager
def _cluster(work: Path) -> Iterator[Any]:
    """A local Ray cluster of three slots, each worker on its own double and user dir; a
    connection to it (the workers start once, as a long batch's would)."""
    from ai_stack.cluster import Cluster

    doubles = {slot: _double() for slot in SLOTS}
    servers = [double.start() for double in doubles.values()]
    env = {
        slot: {"OLLAMA_HOST": d.host, "AI_STACK_HOME": str(work / f"home-{slot}")}
        for slot, d in doubles.items()
    }
    slots = {slot: ClusterSlotSettings(env=env[slot]) for slot in SLOTS}
    try:
        with local_ray(SLOTS):
            yield lambda: Cluster.connect("auto", ClusterSettings(slots=slots))
    finally:
        for server in servers:
            server.stop()


def cluster(ctx: Context) -> tuple[dict[str, Any], str]:
    try:
        import ray  # noqa: F401
    except ImportError:
        return {"skipped": "ray is not installed"}, (
            "**6. Cluster batch**: skipped, Ray is not installed (pip install 'ai-stack[cluster]')"
        )
    results: dict[str, Any] = {}
    rows: list[list[str]] = []
    sizes = (4, 10) if ctx.quick else (4, 10, 30)
    shapes = [(tasks, chained) for chained in (False, True) for tasks in sizes]
    paths = {shape: _workflow_file(ctx.work, *shape) for shape in shapes}
    with _machine():
        for shape in shapes:
            results[f"one:{shape}"] = repeat(
                ctx.repeat, lambda _, s=shape: run_batch(paths[s], ctx.work, None)
            )
    with _cluster(ctx.work) as connect:

        def on_cluster(shape: tuple[int, bool]) -> dict[str, float]:
            joined = connect()
            try:
                return run_batch(paths[shape], ctx.work, joined)
            finally:
                joined.close()

        for shape in shapes:
            results[f"three:{shape}"] = repeat(ctx.repeat, lambda _, s=shape: on_cluster(s))
    for tasks, chained in shapes:
        one, three = results[f"one:{(tasks, chained)}"], results[f"three:{(tasks, chained)}"]
        ratio = three["wall_s"]["median"] / one["wall_s"]["median"]
        for label, stats in (("one machine", one), ("3-node cluster", three)):
            rows.append(
                [
                    str(tasks),
                    "every 2nd depends" if chained else "independent",
                    label,
                    fmt(stats["loads"], "", 0),
                    fmt(stats["load_s"], "", 1),
                    fmt(stats["wall_s"], "", 1),
                    f"{ratio:.2f}x" if label != "one machine" else "1.00x",
                ]
            )
    table = show(
        f"6. Cluster batch: 3 role models, review plan, 1 round; Ollama doubles at "
        f"{LOAD_GIB_PER_S:g} GiB/s, {SECONDS_PER_TOKEN * 1000:g} ms/token "
        f"(median (min-max) of {ctx.repeat} runs)",
        ["tasks", "dependencies", "where", "loads", "seconds loading", "wall seconds", "wall"],
        rows,
    )
    data = {
        "stats": results,
        "load_gib_per_s": LOAD_GIB_PER_S,
        "seconds_per_token": SECONDS_PER_TOKEN,
    }
    return data, table
