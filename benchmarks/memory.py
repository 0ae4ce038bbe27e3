"""4. Memory: the footprint estimate against what was measured, and the run's peak against the
budget.

Embedded: a pipeline run in a fresh process; the estimate made before the load against the
process's memory growth over the load, and the process's peak resident memory (ru_maxrss)
against the budget. Ollama double: the estimate against the ``/api/ps`` size of each model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from ai_stack.backends.base import LoadOptions
from ai_stack.backends.ollama import OllamaBackend
from ai_stack.memory import MemoryManager
from ai_stack.units import GIB, gib
from benchmarks.common import ROOT, Context, fmt, repeat, show
from tests.ollama_double import OllamaDouble

CHILD = """
import json, resource, sys
from ai_stack.config import Settings
from ai_stack.session import Session
from ai_stack.types import RunFinished
settings = Settings.model_validate({"backend": "embedded", "max_rounds": 1,
    "executor": {"max_tokens": 64}, "thermal": {"enabled": False}})
with Session.open(settings) as session:
    result = next(e.result for e in session.pipeline().run("Name three sorting algorithms")
                  if isinstance(e, RunFinished))
(memory,) = result.metrics.memory
print(json.dumps({"estimate": memory.estimate_bytes, "measured": memory.resident_bytes,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "budget": result.metrics.budget_bytes}))
"""


def _embedded_run(_: int) -> dict[str, float]:
    env = {**os.environ, "OLLAMA_HOST": "127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=ROOT, env=env, check=True
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return {key: float(value) for key, value in data.items()}


def memory(ctx: Context) -> tuple[dict[str, Any], str]:
    stats = repeat(ctx.repeat, _embedded_run)
    mib = 1024**2
    rows = [
        [
            "embedded:smollm2",
            fmt(_scale(stats["estimate"], mib), " MiB", 0),
            fmt(_scale(stats["measured"], mib), " MiB", 0),
            "RSS growth over the load",
        ]
    ]
    double = OllamaDouble(unload_delay_s=0.01)
    doubles: dict[str, Any] = {}
    with double.start():
        backend = OllamaBackend(double.host)
        manager = MemoryManager(lambda name: backend, budget_bytes=64 * GIB)
        for name in ("mistral:7b", "qwen2.5:7b", "qwen2.5:14b"):
            from ai_stack.backends import ModelSpec

            spec = ModelSpec("ollama", name)
            estimate = manager.footprint(spec, LoadOptions(num_ctx=4096)).total
            backend.load(name, LoadOptions(num_ctx=4096))
            (resident,) = [m for m in backend.resident() if m.name == name]
            backend.unload(name)
            doubles[name] = {"estimate": estimate, "measured": resident.size_bytes}
            rows.append(
                [f"ollama:{name} (double)", gib(estimate), gib(resident.size_bytes), "/api/ps size"]
            )
        backend.close()
    peak = stats["peak_rss"]
    rows.append(
        [
            "whole embedded run: peak RSS",
            "",
            fmt(_scale(peak, mib), " MiB", 0),
            f"budget {gib(stats['budget']['median'])}",
        ]
    )
    table = show(
        f"4. Memory: estimate against measurement (median (min-max) of {ctx.repeat} runs)",
        ["model", "estimate", "measured", "measured as"],
        rows,
    )
    return {"embedded": stats, "ollama_double": doubles}, table


def _scale(stat: dict[str, float], unit: float) -> dict[str, float]:
    return {key: (value / unit if key != "runs" else value) for key, value in stat.items()}
