"""Facts about this machine that several layers need, read in one place.

Memory (total and available, inside a cgroup limit when there is one), the GPU's share of unified
memory on Apple Silicon, and a safe way to run the platform's tools. Everything reads through a
:class:`Tools`, so tests inject recorded tool outputs, fake ``/proc`` trees and whole machines
(a 16 GB Mac on a Linux CI host). Facts: ../shared/reference/platform-signals.md.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ai_stack.units import GIB, MIB

Run = Callable[[list[str]], "str | None"]


def run_command(args: list[str]) -> str | None:
    """A tool's output, or None if it is missing, fails or hangs (2 s)."""
    if shutil.which(args[0]) is None:
        return None
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@dataclass
class Tools:
    """Where readings come from: injectable so tests use recorded outputs and fake /proc trees.

    ``temp_heavy_c`` and ``temp_critical_c`` are the limits temperature sensors are judged
    against when they report none of their own.
    """

    run: Run = run_command
    root: Path = Path("/")
    system: str = field(default_factory=platform.system)
    temp_heavy_c: float = 90.0
    temp_critical_c: float = 100.0
    temperatures: Callable[[], dict[str, Any]] | None = None  # psutil.sensors_temperatures

    def read_text(self, path: str) -> str | None:
        try:
            return (self.root / path.lstrip("/")).read_text()
        except OSError:
            return None

    def sysctl(self, name: str) -> str | None:
        text = self.run(["sysctl", "-n", name])
        return text.strip() if text else None


def apple_gpu_share(total_bytes: int, wired_limit_mb: int | None) -> int:
    """How much unified memory the GPU may wire: ``iogpu.wired_limit_mb`` when set, else about
    two-thirds of RAM (Metal's ``recommendedMaxWorkingSetSize`` on a 16 GB machine).

    >>> round(apple_gpu_share(16 * GIB, 0) / GIB, 2), apple_gpu_share(16 * GIB, 12288) / GIB
    (10.67, 12.0)
    """
    if wired_limit_mb:
        return wired_limit_mb * MIB
    return total_bytes * 2 // 3


def cgroup_limit(tools: Tools) -> dict[str, int] | None:
    """cgroup v2 ``memory.max`` / ``memory.current`` of this process, when a limit is set."""
    text = tools.read_text("/proc/self/cgroup") or ""
    path = next((line[3:] for line in text.splitlines() if line.startswith("0::")), None)
    if path is None:
        return None
    folder = f"/sys/fs/cgroup{path.rstrip('/')}"
    maximum = tools.read_text(f"{folder}/memory.max")
    current = tools.read_text(f"{folder}/memory.current")
    if not maximum or not current or maximum.strip() == "max":
        return None
    try:
        return {"max_bytes": int(maximum), "current_bytes": int(current)}
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Machine:
    """The memory facts the memory manager decides by.

    ``gpu_share_bytes`` is set on Apple Silicon only: there a model over it still runs, with
    some layers on the CPU; over ``total_bytes`` (less what the system needs) it does not fit.
    """

    system: str
    arch: str
    total_bytes: int
    available_bytes: int
    gpu_share_bytes: int | None = None
    cores: int = 0  # logical cores this process may use (0: unknown)
    discrete_gpu: bool = False  # an NVIDIA GPU (nvidia-smi) that models may run on

    @property
    def apple_silicon(self) -> bool:
        return self.gpu_share_bytes is not None

    @classmethod
    def apple(
        cls, total_gb: float, *, available_gb: float | None = None, wired_limit_mb: int = 0
    ) -> Machine:
        """A simulated Apple Silicon Mac (for tests and the docs' tables)."""
        total = int(total_gb * GIB)
        available = int((available_gb if available_gb is not None else total_gb / 2) * GIB)
        return cls("Darwin", "arm64", total, available, apple_gpu_share(total, wired_limit_mb))

    @classmethod
    def detect(cls, tools: Tools | None = None) -> Machine:
        """This machine, as the process sees it (a cgroup limit counts as the machine's size)."""
        tools = tools or Tools()
        memory = psutil.virtual_memory()
        total, available = int(memory.total), int(memory.available)
        limit = cgroup_limit(tools)
        if limit is not None:
            total = min(total, limit["max_bytes"])
            available = min(available, max(limit["max_bytes"] - limit["current_bytes"], 0))
        arch = platform.machine()
        share = None
        if tools.system == "Darwin" and arch == "arm64":
            wired = tools.sysctl("iogpu.wired_limit_mb")
            share = apple_gpu_share(total, int(wired) if wired and wired.isdigit() else None)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
        return cls(
            tools.system,
            arch,
            total,
            available,
            share,
            cores=cores or os.cpu_count() or 0,
            discrete_gpu=shutil.which("nvidia-smi") is not None,
        )


__all__ = ["Machine", "Tools", "apple_gpu_share", "cgroup_limit", "run_command"]
