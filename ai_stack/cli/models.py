"""``ai-stack models ...``: Ollama-style model verbs across both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Column, Table

from ai_stack.backends import ModelSpec, ModelStore
from ai_stack.backends.base import LoadOptions, PullProgress
from ai_stack.backends.embedded import EmbeddedBackend
from ai_stack.cli.common import command, config_options, confirm_or_stop
from ai_stack.config import Settings, user_dir
from ai_stack.context import typical_context
from ai_stack.errors import UsageError
from ai_stack.footprint import cpu_layers
from ai_stack.lease import held
from ai_stack.probe import run_probe
from ai_stack.session import Session
from ai_stack.units import gib

BACKEND_OPTION = click.option(
    "--backend",
    default="auto",
    show_default=True,
    metavar="NAME",
    help="auto, ollama, embedded, openai, or an endpoint of the config.",
)


@click.group()
def models() -> None:
    """Manage models: list, ps, pull, add, rm, show, stop, probe."""


@models.command("list")
@BACKEND_OPTION
@click.option("--json", "as_json", is_flag=True, help="A JSON list on stdout.")
@config_options
def list_models(backend: str, as_json: bool, config_file: Path | None, debug: bool) -> None:
    """Installed models of every available backend (an OpenAI-compatible server's: those it
    serves)."""
    with (
        command(config_file, debug) as (console, settings),
        Session.open(settings, choose=False) as session,
    ):
        rows, notes = session.model_rows(backend)
        for note in notes:
            console.print(f"[dim]{escape(note)}; its models are not listed.[/]")
        if as_json:
            click.echo(json.dumps(rows))
            return
        # No borders, one space between columns: the name (what --executor and the model verbs
        # take) has the room the facts leave, folded onto more lines past it, never cut.
        name = Column("name", overflow="fold")
        table = Table(
            name,
            "backend",
            "size",
            "details",
            "context",
            box=box.SIMPLE_HEAD,
            padding=(0, 1, 0, 0),
            show_edge=False,
        )
        for row in rows:
            facts = (row["family"], row["parameters"], row["quantization"])
            table.add_row(
                escape(row["name"]),
                escape(row["backend"]),
                gib(row["size_bytes"]),
                escape(" ".join(fact for fact in facts if fact)),
                str(row["context_length"] or ""),
            )
        Console().print(table)


@models.command("ps")
@click.option("--json", "as_json", is_flag=True, help="A JSON list on stdout.")
@config_options
def ps(as_json: bool, config_file: Path | None, debug: bool) -> None:
    """What is loaded now, with its memory and the time until the server unloads it."""
    with (
        command(config_file, debug) as (console, settings),
        Session.open(settings, choose=False) as session,
    ):
        ollama = session.available("ollama", required=False)
        rows: list[dict[str, Any]] = []
        now = datetime.now(timezone.utc)
        servers = [(n, session.available(n, required=False)) for n in session.servers]
        resident = [*(ollama.resident() if ollama else [])]
        for _, server in servers:
            if server is not None and getattr(server, "controls_residency", True):
                resident += server.resident()
        for model in resident:
            seconds = (model.expires_at - now).total_seconds() if model.expires_at else None
            pinned = seconds is None or seconds > 10**8
            rows.append(
                {
                    "name": model.name,
                    "backend": model.backend,
                    "size_bytes": model.size_bytes,
                    "context_length": model.num_ctx,
                    "expires_in_s": None if pinned else round(seconds or 0),
                    "held_by": [],
                }
            )
        _add_claims(rows)
        if as_json:
            click.echo(json.dumps(rows))
            return
        if ollama is None:
            console.print("[dim]Ollama is not reachable.[/]")
        for name, server in servers:
            if server is None:
                console.print(f"[dim]{escape(name)} is not reachable.[/]")
            elif not getattr(server, "controls_residency", True):
                console.print(f"[dim]{escape(getattr(server, 'residency_note', name))}.[/]")
        table = Table("name", "backend", "memory", "context", "unloads in", "used by")
        for row in rows:
            until = "forever" if row["expires_in_s"] is None else f"{row['expires_in_s']} s"
            if row["backend"] == "embedded":
                until = "at its exit"
            table.add_row(
                escape(row["name"]),
                row["backend"],
                gib(row["size_bytes"]),
                str(row["context_length"] or ""),
                until,
                ", ".join(f"pid {pid}" for pid in row["held_by"]),
            )
        Console().print(table)


def _add_claims(rows: list[dict[str, Any]]) -> None:
    """What other ai-stack processes hold, from their residency leases: the process using a
    server's model, and the embedded models loaded inside them (no server knows of those)."""
    for endpoint, claim in held(user_dir() / "leases"):
        backend, _, name = claim.model.partition(":")
        row = next((r for r in rows if (r["backend"], r["name"]) == (backend, name)), None)
        if row is None and endpoint == "embedded":
            row = {
                "name": name,
                "backend": backend,
                "size_bytes": claim.bytes,
                "context_length": None,
                "expires_in_s": None,
                "held_by": [],
            }
            rows.append(row)
        if row is not None:
            row["held_by"].append(claim.pid)


@models.command("pull")
@click.argument("name")
@click.option("--name", "as_name", metavar="NAME", help="hf: pulls: register as embedded:NAME.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON on stdout.")
@config_options
def pull(
    name: str, as_name: str | None, as_json: bool, config_file: Path | None, debug: bool
) -> None:
    """Download a model, with progress: an Ollama model by name, or a GGUF file from Hugging
    Face for the embedded backend (hf:OWNER/REPO:QUANT). An interrupted pull resumes when run
    again."""
    with (
        command(config_file, debug) as (console, settings),
        Session.open(settings, choose=False) as session,
    ):
        if name.startswith("hf:"):
            embedded = session.manager.backend("embedded")
            assert isinstance(embedded, EmbeddedBackend)
            status = _pull_with_progress(console, embedded.pull(name, as_name))
            model = status.removeprefix("registered ")
            if as_json:
                click.echo(json.dumps({"model": model, "status": "success", "source": name}))
            else:
                console.print(f"[green]Pulled {escape(name)} as {model}.[/]")
            return
        spec = ModelSpec.parse(name, settings.backend_names)
        store, spec = session.target(name, spec.backend or "ollama")
        assert isinstance(store, ModelStore), f"the {spec.backend} backend cannot pull"
        status = _pull_with_progress(console, store.pull(spec.name))
        if as_json:
            click.echo(json.dumps({"model": spec.name, "status": status}))
        else:
            console.print(f"[green]Pulled {spec.name}.[/]")


def _pull_with_progress(console: Console, steps: Iterator[PullProgress]) -> str:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    layers: dict[str, TaskID] = {}
    last_status = ""
    with Progress(*columns, console=console) as progress:
        for step in steps:
            if step.digest and step.total:
                if step.digest not in layers:
                    label = f"layer {step.digest.removeprefix('sha256:')[:12]}"
                    layers[step.digest] = progress.add_task(label, total=step.total)
                progress.update(layers[step.digest], completed=step.completed or 0)
            elif step.status != last_status:
                progress.console.print(f"[dim]{escape(step.status)}[/]")
            last_status = step.status
    return last_status or "success"


@models.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", help="Name to use as embedded:NAME (default: the file name).")
@click.option("--copy", is_flag=True, help="Copy the file into the models directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON on stdout.")
@config_options
def add(
    path: Path, name: str | None, copy: bool, as_json: bool, config_file: Path | None, debug: bool
) -> None:
    """Register a local GGUF file for the embedded backend (checked by its header)."""
    with (
        command(config_file, debug) as (console, settings),
        Session.open(settings, choose=False) as session,
    ):
        embedded = session.manager.backend("embedded")
        assert isinstance(embedded, EmbeddedBackend)
        target = embedded.register(path, name, copy=copy)
        model = f"embedded:{target.stem}"
        if as_json:
            click.echo(json.dumps({"model": model, "path": str(target), "copied": copy}))
        else:
            console.print(
                f"[green]Registered {model}[/] ({'copied to' if copy else 'linked at'} {target})."
            )


@models.command("rm")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@BACKEND_OPTION
@config_options
def rm(name: str, yes: bool, backend: str, config_file: Path | None, debug: bool) -> None:
    """Delete a model (unloading it first)."""
    with (
        command(config_file, debug) as (console, settings),
        Session.open(settings, choose=False) as session,
    ):
        target, spec = session.target(name, backend)
        target.describe(spec.name)  # a clear error if it does not exist
        if not yes:
            confirm_or_stop(console, f"Delete {spec}?")
        assert isinstance(target, ModelStore), f"the {spec.backend} backend cannot delete"
        target.remove(spec.name)
        console.print(f"Deleted {spec}.")


@models.command("show")
@click.argument("name")
@click.option(
    "--num-ctx",
    type=click.IntRange(min=256),
    help="Context to estimate for (default: a typical run's, 4096, within the executor's num_ctx).",
)
@BACKEND_OPTION
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@config_options
def show(
    name: str,
    num_ctx: int | None,
    backend: str,
    as_json: bool,
    config_file: Path | None,
    debug: bool,
) -> None:
    """Details, the estimated footprint at a typical run's context, and whether it fits."""
    with (
        command(config_file, debug) as (_, settings),
        Session.open(settings, choose=False) as session,
    ):
        _, spec = session.target(name, backend)
        manager = session.manager
        executor = settings.executor
        num_ctx = num_ctx or typical_context(executor.num_ctx, executor.fixed_ctx)
        info = manager.describe(spec)
        footprint = manager.footprint(spec, LoadOptions(num_ctx=num_ctx))
        data = {
            **info.row(),
            "model": str(spec),
            "num_ctx": num_ctx,
            "footprint": {
                "weights_bytes": footprint.weights,
                "kv_cache_bytes": footprint.kv_cache,
                "buffers_bytes": footprint.overhead,
                "total_bytes": footprint.total,
            },
            "budget_bytes": manager.budget,
            "fits_budget": footprint.total <= manager.budget,
            "gpu_limit_bytes": manager.gpu_limit_bytes,
            "cpu_layers": (
                None
                if manager.gpu_limit_bytes is None
                else cpu_layers(info, footprint, manager.gpu_limit_bytes)
            ),
            "layers": info.block_count,
            "kv_heads": info.head_count_kv,
        }
        if as_json:
            click.echo(json.dumps(data))
            return
        out = Console()
        out.print(
            f"[bold]{escape(str(spec))}[/] {info.family or ''} {info.parameters or ''} "
            f"{info.quantization or ''}"
        )
        out.print(
            f"Size on disk {gib(info.size_bytes)}; context {info.context_length or '?'}; "
            f"{info.block_count or '?'} layers, {info.head_count_kv or '?'} KV heads"
        )
        fits = "[green]fits[/]" if data["fits_budget"] else "[red]does not fit[/]"
        out.print(
            f"At num_ctx {num_ctx}: about {footprint.describe()}; {fits} the budget of "
            f"{gib(manager.budget)}."
        )
        if data["cpu_layers"]:
            out.print(
                f"[yellow]Over the GPU's share ({gib(manager.gpu_limit_bytes or 0)}): about "
                f"{data['cpu_layers']} layers would run on the CPU, slower.[/]"
            )


@models.command("stop")
@click.argument("name", required=False)
@click.option("--all", "stop_all", is_flag=True, help="Unload every loaded Ollama model.")
@config_options
def stop(name: str | None, stop_all: bool, config_file: Path | None, debug: bool) -> None:
    """Unload a model now (Ollama; embedded models live only inside a running ai-stack)."""
    with (
        command(config_file, debug) as (console, settings),
        Session.open(settings, choose=False) as session,
    ):
        if bool(name) == stop_all:
            raise UsageError("Give a model name or --all.")
        if name and ModelSpec.parse(name, settings.backend_names).backend == "embedded":
            console.print(
                "Embedded models are loaded only inside a running ai-stack; nothing to stop."
            )
            return
        spec = ModelSpec.parse(name or "", settings.backend_names) if name else None
        server = spec.backend if spec is not None and spec.backend else "ollama"
        found = session.available(server, required=True)
        assert found is not None
        if not getattr(found, "controls_residency", True):
            raise UsageError(f"{getattr(found, 'residency_note', server)}; nothing to stop.")
        loaded = [m.name for m in found.resident()]
        names = loaded if stop_all else [spec.name if spec else ""]
        for model in names:
            if model not in loaded:
                console.print(f"{model} is not loaded.")
                continue
            found.unload(model)
            console.print(f"Unloaded {model}.")


def _probe_tools(
    session: Session,
    spec: ModelSpec,
    settings: Settings,
    trials: int,
    as_json: bool,
    console: Console,
) -> None:
    """``probe --tools``: one tool step per trial on each case, under the step schema."""
    from ai_stack.tools.probe import run_tool_probe

    report = run_tool_probe(
        session.manager,
        spec,
        settings,
        session.prompts(settings.prompts_dir),
        trials,
        lambda case, trial: console.print(f"[dim]{case} trial {trial}/{trials}…[/]"),
    )
    if as_json:
        click.echo(json.dumps(report))
        return
    table = Table("case", "valid JSON", "valid step", "right choice", "median latency")
    for case, r in report["cases"].items():
        latency = "-" if r["median_latency_s"] is None else f"{r['median_latency_s']:.2f} s"
        table.add_row(
            case.replace("_", " "),
            f"{r['valid_json_rate']:.0%}",
            f"{r['valid_step_rate']:.0%}",
            f"{r['right_choice_rate']:.0%}",
            latency,
        )
    Console().print(table)
    console.print(report["verdict"])


@models.command("probe")
@click.argument("name")
@click.option("--trials", type=click.IntRange(1, 50), default=3, show_default=True)
@click.option(
    "--tools",
    "tools",
    is_flag=True,
    help="Probe tool calls instead: valid steps, and the right choice (docs/tools.md).",
)
@BACKEND_OPTION
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@config_options
def probe(
    name: str,
    trials: int,
    tools: bool,
    backend: str,
    as_json: bool,
    config_file: Path | None,
    debug: bool,
) -> None:
    """Ask for the planner's and critic's JSON N times each; report how often it is valid."""
    with (
        command(config_file, debug) as (console, settings),
        Session.open(settings, choose=False) as session,
    ):
        _, spec = session.target(name, backend)
        if tools:
            _probe_tools(session, spec, settings, trials, as_json, console)
            return
        report = run_probe(
            session.manager,
            spec,
            settings,
            session.prompts(settings.prompts_dir),
            trials,
            lambda role, trial: console.print(f"[dim]{role} trial {trial}/{trials}…[/]"),
        )
        if as_json:
            click.echo(json.dumps(report))
            return
        table = Table("role", "valid JSON", "schema-valid", "median latency", "tok/s")
        for role in ("planner", "critic"):
            r = report["roles"][role]
            table.add_row(
                role,
                f"{r['valid_json_rate']:.0%}",
                f"{r['schema_valid_rate']:.0%}",
                f"{r['median_latency_s']:.2f} s",
                f"{r['median_tokens_per_s']:.1f}",
            )
        Console().print(table)
        console.print(report["verdict"])
