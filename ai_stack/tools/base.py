"""The Tool type and the set of tools one run offers.

A tool is a name, a one-line description, the JSON schema of its arguments and a function from
validated arguments to text. A failure the model can act on (a file it may not read, a program
that failed) is a :class:`ToolError`: its message goes back to the model as the call's result,
never up to the user as a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ai_stack.errors import UsageError

# Step names of the loop itself, which no tool may take.
RESERVED = frozenset({"answer"})


class ToolError(Exception):
    """A tool call that failed in a way the model can correct; the message is what it sees."""


@dataclass(frozen=True)
class Tool:
    """One tool: ``run`` takes arguments already valid for ``parameters`` and returns text."""

    name: str
    description: str  # one line, shown to the model and by ``ai-stack tools list``
    parameters: dict[str, Any]  # JSON schema of the arguments (an object)
    run: Callable[[Mapping[str, Any]], str] = field(compare=False, repr=False)
    source: str = "built-in"  # where it comes from: built-in, or an MCP server's name


class Toolbox:
    """The tools of one run, by name, in the order they are offered."""

    def __init__(self, tools: Iterable[Tool]) -> None:
        self.tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.name in RESERVED:
                raise UsageError(f"A tool may not be named {tool.name!r}: the loop uses it.")
            self.tools[tool.name] = tool

    def __iter__(self) -> Any:
        return iter(self.tools.values())

    def __len__(self) -> int:
        return len(self.tools)

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def __getitem__(self, name: str) -> Tool:
        return self.tools[name]

    def only(self, names: Iterable[str]) -> Toolbox:
        """The tools named (``--tools NAME,NAME``), in the order given; an unknown name is a
        usage error naming the ones there are."""
        wanted = list(dict.fromkeys(name.strip() for name in names if name.strip()))
        unknown = [name for name in wanted if name not in self.tools]
        if unknown:
            raise UsageError(
                f"No tool named {', '.join(unknown)}.",
                hint=f"The tools are: {', '.join(self.tools)} (ai-stack tools list).",
            )
        return Toolbox(self.tools[name] for name in wanted)


__all__ = ["RESERVED", "Tool", "ToolError", "Toolbox"]
