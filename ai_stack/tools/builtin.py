"""The built-in tools, and the toolbox a run gets from its settings."""

from __future__ import annotations

from pathlib import Path

from ai_stack.access import FilePolicy
from ai_stack.config import Settings
from ai_stack.sandbox import Sandbox
from ai_stack.tools.base import Tool, Toolbox
from ai_stack.tools.files import file_tools
from ai_stack.tools.mcp import McpServers
from ai_stack.tools.sandboxed import sandbox_tools


def builtin_tools(policy: FilePolicy, root: Path, sandbox: Sandbox) -> list[Tool]:
    """Every built-in tool: the file tools over ``policy`` (paths relative to ``root``) and the
    code tools in ``sandbox``."""
    return [*file_tools(policy, root), *sandbox_tools(sandbox)]


def toolbox_for(
    settings: Settings,
    sandbox: Sandbox,
    root: Path | None = None,
    servers: McpServers | None = None,
) -> Toolbox:
    """The tools a run offers: the built-in ones over the working directory (``root``) and the
    user's allowed paths, and the MCP ``servers``' (started here, on first use), narrowed to
    ``tools.names`` where it names some."""
    root = (root or Path.cwd()).resolve()
    remote = servers.tools() if servers is not None else []
    every = Toolbox([*builtin_tools(settings.file_policy(root), root, sandbox), *remote])
    return every.only(settings.tools.names) if settings.tools.names else every


__all__ = ["builtin_tools", "toolbox_for"]
