"""``ai-stack tools list``: every tool the Executor can be offered, its source and schema."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape

from ai_stack.cli.common import command, config_options
from ai_stack.sandbox import Limits, Sandbox, SandboxReport
from ai_stack.tools import builtin_tools
from ai_stack.tools.mcp import McpServers


@click.group("tools")
def tools() -> None:
    """The Executor's tools (--tools): files through the policy, a sandboxed interpreter."""


@tools.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the tools as JSON on stdout.")
@config_options
def list_tools(as_json: bool, config_file: Path | None, debug: bool) -> None:
    """Show every tool: its name, source (built-in, or mcp:SERVER), description and argument
    schema. Starts each configured MCP server to ask it for its tools."""
    with command(config_file, debug) as (console, settings):
        wanted = settings.evidence
        sandbox = Sandbox(
            Limits(
                seconds=wanted.timeout_s, memory_mb=wanted.memory_mb, output_kb=wanted.output_kb
            ),
            allow_unisolated=wanted.exec,
        )
        root = Path.cwd().resolve()
        servers = McpServers(settings.mcp_servers)
        try:
            remote = servers.tools()  # starts each server, as a run's first use would
        finally:
            servers.close()
        rows = [
            {
                "name": tool.name,
                "source": tool.source,
                "description": tool.description,
                "parameters": tool.parameters,
            }
            for tool in [*builtin_tools(settings.file_policy(root), root, sandbox), *remote]
        ]
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        for row in rows:
            click.echo(f"{row['name']}  ({row['source']})  {row['description']}")
            click.echo(f"    {json.dumps(row['parameters'])}")
        for note in [*servers.notes, *SandboxReport.of(sandbox).notes]:
            console.print(f"[yellow]{escape(note)}[/]")
