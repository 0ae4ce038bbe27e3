"""``ai-stack mcp``: the command; the server itself (and the MCP SDK) loads only when it runs."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("mcp")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="TOML config file.")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs (on stderr).")
def mcp(config_file: Path | None, debug: bool) -> None:
    """Serve the local team to another agent over MCP (stdio): see docs/mcp.md."""
    from ai_stack.cli.serve_mcp import serve

    serve(config_file, debug)
