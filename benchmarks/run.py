"""Run the benchmarks: ``python -m benchmarks [--quick] [--repeat N] [--only NAME,...]``.

Each benchmark prints a table and writes ``benchmarks/results/NAME.json``; the tables also go to
``benchmarks/results/summary.md``, and with ``--update-docs`` into docs/benchmarks.md, so the
numbers in the docs are the ones this command produced.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ai_stack.files import write_atomically
from benchmarks.cluster import cluster
from benchmarks.common import ROOT, Context, console, machine, save, workdir
from benchmarks.knowledge import knowledge
from benchmarks.memory import memory
from benchmarks.overhead import latency, overhead
from benchmarks.startup import startup
from benchmarks.swap import swap

BENCHMARKS: dict[str, Callable[[Context], tuple[dict[str, Any], str]]] = {
    "overhead": overhead,
    "swap": swap,
    "latency": latency,
    "memory": memory,
    "startup": startup,
    "cluster": cluster,
    "knowledge": knowledge,
}
START, END = "<!-- results:start -->", "<!-- results:end -->"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 runs per measurement and batches of 4 and 10 (under 10 minutes)",
    )
    parser.add_argument("--repeat", type=int, help="runs per measurement (default 3, 5 in full)")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated names")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--update-docs", action="store_true", help="rewrite docs/benchmarks.md")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    args.repeat = args.repeat or (3 if args.quick else 5)
    unknown = set(names) - set(BENCHMARKS)
    if unknown or args.repeat < 1:
        parser.error(
            f"unknown benchmark(s): {', '.join(sorted(unknown))}"
            if unknown
            else "--repeat must be at least 1"
        )
    started = time.perf_counter()
    sections = []
    with workdir() as folder:
        ctx = Context(quick=args.quick, repeat=args.repeat, work=folder)
        for name in names:
            console.print(f"[bold]Running {name}…[/]")
            began = time.perf_counter()
            data, table = BENCHMARKS[name](ctx)
            seconds = time.perf_counter() - began
            save(
                args.out,
                name,
                {
                    "benchmark": name,
                    "seconds": round(seconds, 1),
                    "quick": args.quick,
                    "repeat": args.repeat,
                    "machine": machine(),
                    **data,
                },
            )
            sections.append(table)
    total = time.perf_counter() - started
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    facts = machine()
    header = (
        f"Produced by `{command}` on {when} in {total / 60:.1f} minutes; "
        f"{facts['platform']}, {facts['logical_cores']} logical cores, "
        f"{facts['memory_bytes'] / 1024**3:.0f} GiB, Python {facts['python']}."
    )
    summary = header + "\n\n" + "\n\n".join(sections) + "\n"
    write_atomically(args.out / "summary.md", summary)
    write_atomically(
        args.out / "summary.json",
        json.dumps(
            {"command": command, "when": when, "seconds": round(total, 1), "machine": facts},
            indent=2,
        )
        + "\n",
    )
    console.print(f"Done in {total / 60:.1f} minutes; results in {args.out}")
    if args.update_docs:
        docs = ROOT / "docs" / "benchmarks.md"
        text = docs.read_text()
        before, _, rest = text.partition(START)
        _, _, after = rest.partition(END)
        write_atomically(docs, f"{before}{START}\n{summary}{END}{after}")
        console.print(f"Updated {docs}")


if __name__ == "__main__":
    main()
