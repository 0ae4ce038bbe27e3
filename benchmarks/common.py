"""Shared helpers: repetition statistics, tables, result files, the machine's description."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from ai_stack.backends.embedded import packaged_model_path
from ai_stack.files import write_atomically

ROOT = Path(__file__).resolve().parent.parent
console = Console(stderr=True, highlight=False)


@dataclass
class Context:
    """What every benchmark gets: how hard to try, and where to put files."""

    quick: bool
    repeat: int
    work: Path
    model: Path = field(default_factory=lambda: _packaged())


def _packaged() -> Path:
    path = packaged_model_path("smollm2")
    if path is None:
        sys.exit("The embedded extra is needed: pip install -e '.[embedded]'")
    return path


def spread(values: list[float]) -> dict[str, float]:
    """Median and range of repeated measurements."""
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "runs": len(values),
    }


def fmt(stat: dict[str, float], unit: str = "", digits: int = 2) -> str:
    """``median (min-max)``."""
    return f"{stat['median']:.{digits}f}{unit} ({stat['min']:.{digits}f}-{stat['max']:.{digits}f})"


def repeat(times: int, measure: Callable[[int], dict[str, float]]) -> dict[str, dict[str, float]]:
    """Run ``measure`` ``times`` times; every key it returns gets a spread."""
    runs = [measure(i) for i in range(times)]
    return {key: spread([run[key] for run in runs]) for key in runs[0]}


def show(title: str, columns: list[str], rows: list[list[str]]) -> str:
    """Print a table and return it as Markdown (for docs/benchmarks.md)."""
    table = Table(*columns, title=title, title_justify="left")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    lines = [f"**{title}**", "", f"| {' | '.join(columns)} |", f"|{'---|' * len(columns)}"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "logical_cores": psutil.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
    }


def save(out: Path, name: str, data: dict[str, Any]) -> None:
    write_atomically(out / f"{name}.json", json.dumps(data, indent=2) + "\n")


@contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ai-stack-bench-") as folder:
        previous = os.environ.get("AI_STACK_HOME")
        os.environ["AI_STACK_HOME"] = str(Path(folder) / "home")
        try:
            yield Path(folder)
        finally:
            if previous is None:
                os.environ.pop("AI_STACK_HOME", None)
            else:
                os.environ["AI_STACK_HOME"] = previous
