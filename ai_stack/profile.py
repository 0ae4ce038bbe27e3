"""The machine's profile as ``ai-stack system`` shows it: CPU, memory, GPU, OS, the backends,
the budget, and what to run (from :mod:`ai_stack.recommend`). The facts themselves are read in
:mod:`ai_stack.machine` and :mod:`ai_stack.thermal.sensors`.
"""

from __future__ import annotations

import contextlib
import platform
import re
from collections.abc import Mapping
from typing import Any

import psutil

from ai_stack.backends.base import Backend, ModelInfo
from ai_stack.machine import Tools, apple_gpu_share
from ai_stack.memory import MemoryManager
from ai_stack.recommend import recommend
from ai_stack.thermal.sensors import memory_state
from ai_stack.units import MIB


def parse_cpuinfo(text: str) -> str | None:
    """The CPU model from ``/proc/cpuinfo``.

    >>> parse_cpuinfo("processor\\t: 0\\nmodel name\\t: Intel(R) Xeon(R) CPU @ 2.20GHz\\n")
    'Intel(R) Xeon(R) CPU @ 2.20GHz'
    """
    match = None
    for key in ("model name", "Model", "Hardware"):  # x86, then ARM boards
        match = match or re.search(rf"^{key}\s*:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else None


def parse_nvidia_inventory(text: str) -> list[dict[str, Any]]:
    """``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits``.

    >>> parse_nvidia_inventory("NVIDIA GeForce RTX 4090, 24564\\n")
    [{'name': 'NVIDIA GeForce RTX 4090', 'memory_bytes': 25757220864}]
    """
    gpus = []
    for line in text.strip().splitlines():
        name, _, memory = line.rpartition(",")
        try:
            gpus.append({"name": name.strip(), "memory_bytes": int(float(memory) * MIB)})
        except ValueError:
            continue
    return gpus


# -- the profile --------------------------------------------------------------------------


def cpu_profile(tools: Tools) -> dict[str, Any]:
    model = None
    if tools.system == "Darwin":
        model = tools.sysctl("machdep.cpu.brand_string")
    else:
        model = parse_cpuinfo(tools.read_text("/proc/cpuinfo") or "")
    return {
        "model": model or platform.processor() or "unknown",
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "architecture": platform.machine(),
    }


def gpu_profile(tools: Tools, total_memory: int) -> dict[str, Any]:
    if tools.system == "Darwin" and platform.machine() == "arm64":
        chip = tools.sysctl("machdep.cpu.brand_string") or "Apple Silicon"
        wired = tools.sysctl("iogpu.wired_limit_mb") or ""
        limit = apple_gpu_share(total_memory, int(wired) if wired.isdigit() else None)
        return {
            "kind": "apple",
            "name": chip,
            "unified_memory_bytes": total_memory,
            "gpu_share_bytes": limit,
        }
    text = tools.run(
        ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"]
    )
    gpus = parse_nvidia_inventory(text) if text else []
    if gpus:
        return {"kind": "nvidia", "devices": gpus}
    return {"kind": "none"}


def server_profile(server: Backend) -> dict[str, Any]:
    """An OpenAI-compatible server as ``system`` shows it: where, whether it answers, and
    whether ai-stack can load and unload its models."""
    health = server.health()
    return {
        "available": health.available,
        "host": getattr(server, "host", None),
        "detail": getattr(server, "residency_note", health.detail)
        if health.available
        else health.detail,
        "controls_residency": getattr(server, "controls_residency", None)
        if health.available
        else None,
    }


def profile(
    manager: MemoryManager,
    *,
    ollama: Backend,
    embedded: Backend,
    servers: Mapping[str, Backend] | None = None,
    num_ctx: int = 4096,
    tools: Tools | None = None,
) -> dict[str, Any]:
    """Everything ``ai-stack system --json`` prints; ``servers``: the OpenAI-compatible
    endpoints, by name."""
    tools = tools or Tools()
    memory = memory_state(tools)
    ollama_health, embedded_health = ollama.health(), embedded.health()
    installed: list[ModelInfo] = []
    for backend, health in ((ollama, ollama_health), (embedded, embedded_health)):
        if health.available:
            with contextlib.suppress(Exception):  # answers health but not list: skip its models
                installed += backend.list_models()
    return {
        "cpu": cpu_profile(tools),
        "memory": {
            "total_bytes": memory.total_bytes,
            "available_bytes": memory.available_bytes,
            "pressure": memory.pressure,
        },
        "gpu": gpu_profile(tools, memory.total_bytes),
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "platform": platform.platform(),
        },
        "backends": {
            "ollama": {
                "available": ollama_health.available,
                "version": ollama_health.version,
                "host": getattr(ollama, "host", None),
                "detail": ollama_health.detail,
            },
            "embedded": {"available": embedded_health.available, "detail": embedded_health.detail},
            **{name: server_profile(server) for name, server in (servers or {}).items()},
        },
        "budget_bytes": manager.budget,
        "gpu_limit_bytes": manager.gpu_limit_bytes,
        "policy": manager.policy,
        "recommendations": recommend(
            manager,
            installed,
            num_ctx=num_ctx,
            backends=("ollama",) if ollama_health.available else ("embedded",),
        ),
    }
