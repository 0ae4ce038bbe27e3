"""``ai-stack monitor``: thermal level, memory and pressure, and resident models, live."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ai_stack.backends import Backend
from ai_stack.cli.common import command, config_options
from ai_stack.config import user_dir
from ai_stack.lease import held
from ai_stack.session import Session
from ai_stack.thermal import Tools, take_snapshot, thermal_tools
from ai_stack.units import gib

LEVEL_STYLE = {"nominal": "green", "moderate": "yellow", "heavy": "red", "critical": "bold red"}


def snapshot_dict(tools: Tools, ollama: Backend) -> dict[str, Any]:
    """One reading of everything, as ``monitor --once --json`` prints it."""
    data = take_snapshot(tools).as_dict()
    health = ollama.health()
    data["ollama"] = {"available": health.available, "detail": health.detail}
    data["resident"] = (
        [
            {
                "backend": m.backend,
                "model": m.name,
                "size_bytes": m.size_bytes,
                "context_length": m.num_ctx,
            }
            for m in ollama.resident()
        ]
        if health.available
        else []
    )
    data["held"] = [
        {"endpoint": endpoint, "model": claim.model, "pid": claim.pid, "size_bytes": claim.bytes}
        for endpoint, claim in held(user_dir() / "leases")
    ]
    return data


def render(data: dict[str, Any]) -> Group:
    thermal, memory = data["thermal"], data["memory"]
    level = thermal["level"]
    head = Table.grid(padding=(0, 2))
    head.add_row(
        "[bold]Thermal[/]",
        f"[{LEVEL_STYLE.get(level, 'dim')}]{level}[/] [dim]({escape(thermal['source'])})[/]",
    )
    head.add_row(
        "[bold]Memory[/]",
        f"{gib(memory['available_bytes'])} available of {gib(memory['total_bytes'])}, "
        f"pressure {memory['pressure']}",
    )
    head.add_row("[bold]Ollama[/]", escape(data["ollama"]["detail"]))
    readings = Table("source", "level", "values", title="Readings", title_justify="left")
    for source, values in thermal["readings"].items():
        rest = {k: v for k, v in values.items() if k != "level"}
        readings.add_row(escape(source), values["level"], escape(json.dumps(rest)))
    for source, values in memory["readings"].items():
        readings.add_row(escape(source), "", escape(json.dumps(values)))
    resident = Table("model", "memory", "context", title="Resident models", title_justify="left")
    for model in data["resident"]:
        resident.add_row(
            escape(model["model"]), gib(model["size_bytes"]), str(model["context_length"] or "")
        )
    for claim in data.get("held", []):
        if claim["endpoint"] == "embedded":  # inside another ai-stack process: no server knows
            resident.add_row(
                f"{escape(claim['model'])} [dim](pid {claim['pid']})[/]",
                gib(claim["size_bytes"]),
                "",
            )
    if resident.row_count == 0:
        resident.add_row("[dim]none[/]", "", "")
    return Group(head, readings, resident)


@click.command("monitor")
@click.option("--once", is_flag=True, help="One reading, then exit.")
@click.option("--json", "as_json", is_flag=True, help="JSON (one object per reading).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    help="Seconds between readings.",
)
@config_options
def monitor(
    once: bool, as_json: bool, interval: float, config_file: Path | None, debug: bool
) -> None:
    """Watch the thermal level, memory pressure and resident models (no sudo needed)."""
    with (
        command(config_file, debug) as (_, settings),
        Session.open(settings, choose=False) as session,
    ):
        tools, ollama = thermal_tools(settings.thermal), session.manager.backend("ollama")

        def reading() -> dict[str, Any]:
            return snapshot_dict(tools, ollama)

        if once:
            data = reading()
            if as_json:
                click.echo(json.dumps(data))
            else:
                Console().print(render(data))
            return
        try:
            if as_json:
                while True:
                    click.echo(json.dumps(reading()))
                    time.sleep(interval)
            with Live(render(reading()), console=Console(), auto_refresh=False) as live:
                while True:
                    time.sleep(interval)
                    live.update(render(reading()), refresh=True)
        except KeyboardInterrupt:
            return
