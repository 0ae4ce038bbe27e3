"""5. Start-up: how long a command takes before it does anything, against the cost of importing
the command-line toolkit itself (``python -c "import click, rich.console"``), side by side in
one run: ``--help``, ``--version``, ``models list`` against a server that is down, and the time
to the first streamed token of a one-shot on the packaged SmolLM2 (``--direct``).

Each is a fresh process, measured from its start to its exit (or to its first byte on stdout
for the one-shot); the ratio is to the baseline's median.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import ROOT, Context, fmt, show, spread

MAIN = str(ROOT / "main.py")


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _wall(argv: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, env=env, capture_output=True, check=False, stdin=subprocess.DEVNULL)
    return time.perf_counter() - began


def _first_byte(argv: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    with subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    ) as child:
        assert child.stdout is not None
        child.stdout.read(1)
        seconds = time.perf_counter() - began
        child.stdout.read()
    return seconds


def startup(ctx: Context) -> tuple[dict[str, Any], str]:
    env = {**os.environ, "OLLAMA_HOST": f"http://127.0.0.1:{_closed_port()}"}
    python = sys.executable
    cases = {
        'python -c "import click, rich.console"': (
            _wall,
            [python, "-c", "import click, rich.console"],
        ),
        "ai-stack --help": (_wall, [python, MAIN, "--help"]),
        "ai-stack --version": (_wall, [python, MAIN, "--version"]),
        "ai-stack models list (server down)": (_wall, [python, MAIN, "models", "list"]),
        "ai-stack --direct TASK: first token (SmolLM2)": (
            _first_byte,
            [
                python,
                MAIN,
                "--direct",
                "--no-history",
                "-q",
                "--executor",
                "embedded:smollm2",
                "Say hello.",
            ],
        ),
    }
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(max(ctx.repeat, 3)):  # interleaved, so load on the machine hits all alike
        for name, (measure, argv) in cases.items():
            runs[name].append(measure(argv, env))
    stats = {name: spread(values) for name, values in runs.items()}
    base = stats['python -c "import click, rich.console"']["median"]
    rows = [
        [name, fmt(stat, " s", 3), f"{stat['median'] / base:.1f}x"] for name, stat in stats.items()
    ]
    table = show(
        "Start-up, each a fresh process",
        ["command", "seconds, median (range)", "x import click, rich"],
        rows,
    )
    return {"cases": stats, "baseline_s": base}, table
