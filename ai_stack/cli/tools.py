"""``ai-stack tools list``: every tool the Executor can be offered, its source and schema."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape

from ai_stack.cli.common import command, config_options
from ai_stack.sandbox import Limits, Sandbox, SandboxReport
from ai_stack.tools import builtin_tools


@click.group("tools")
def tools() -> None:
    """The Executor's tools (--tools): files through the policy, a sandboxed interpreter."""


@tools.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the tools as JSON on stdout.")
@config_options
def list_tools(as_json: bool, config_file: Path | None, debug: bool) -> None:
    """Show every tool: its name, source, description and argument schema."""
    with command(config_file, debug) as (console, settings):
        wanted = settings.evidence
        sandbox = Sandbox(
            Limits(
                seconds=wanted.timeout_s, memory_mb=wanted.memory_mb, output_kb=wanted.output_kb
            ),
            allow_unisolated=wanted.exec,
        )
        root = Path.cwd().resolve()
        rows = [
            {
                "name": tool.name,
                "source": tool.source,
                "description": tool.description,
                "parameters": tool.parameters,
            }
            for tool in builtin_tools(settings.file_policy(root), root, sandbox)
        ]
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        for row in rows:
            click.echo(f"{row['name']}  ({row['source']})  {row['description']}")
            click.echo(f"    {json.dumps(row['parameters'])}")
        for note in SandboxReport.of(sandbox).notes:
            console.print(f"[yellow]{escape(note)}[/]")
