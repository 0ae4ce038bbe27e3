"""``ai-stack models ...``: model management.

Only ``pull`` so far (the Ollama backend's error for a missing model points here); listing,
removal, details and the structured-output probe belong to the model-management work.
"""

from __future__ import annotations

import json

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ai_stack.backends import create_backend
from ai_stack.backends.ollama import START_HINT, OllamaBackend
from ai_stack.cli.common import configure_logging, error_console, reported_errors
from ai_stack.config import load_settings
from ai_stack.errors import BackendUnavailableError


@click.group()
def models() -> None:
    """Manage models."""


@models.command("pull")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON on stdout.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def pull(name: str, as_json: bool, debug: bool) -> None:
    """Download an Ollama model, with progress. An interrupted pull resumes when run again."""
    console = error_console()
    configure_logging(debug)
    with reported_errors(console, debug):
        backend = create_backend("ollama", load_settings())
        assert isinstance(backend, OllamaBackend)
        try:
            health = backend.health()
            if not health.available:
                raise BackendUnavailableError(
                    "ollama", f"Ollama is not reachable: {health.detail}.", hint=START_HINT
                )
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
            layers: dict[str, TaskID] = {}
            last_status = ""
            with Progress(*columns, console=console, transient=False) as progress:
                for step in backend.pull(name):
                    if step.digest and step.total:
                        if step.digest not in layers:
                            label = f"layer {step.digest.removeprefix('sha256:')[:12]}"
                            layers[step.digest] = progress.add_task(label, total=step.total)
                        progress.update(layers[step.digest], completed=step.completed or 0)
                    elif step.status != last_status:
                        progress.console.print(f"[dim]{step.status}[/]")
                    last_status = step.status
        finally:
            backend.close()
        if as_json:
            click.echo(json.dumps({"model": name, "status": last_status or "success"}))
        else:
            console.print(f"[green]Pulled {name}.[/]")
