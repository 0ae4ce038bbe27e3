"""The MCP client: the tools of the servers in the user's ``[mcp_servers.NAME]``, offered to the
Executor as ``NAME.tool``.

Each server is started on first use (the toolbox of the first run with ``--tools``) with the
official SDK — a command over stdio, or a streamable-HTTP URL — and stopped when the session
closes. The SDK is asynchronous and the tool loop is not, so each connection has a thread of its
own running an event loop, and one task there that holds the connection open for its whole life
(the SDK's transports must be entered and left in one task). A call is a coroutine handed to
that loop, waited for at most ``timeout_s``.

A server is someone else's program: what it sends is checked. A tool whose input schema is not
valid JSON Schema is left out (with a note); a call that fails, times out, or finds the server
gone is a :class:`ToolError` the model sees, and the run goes on. Its replies are bounded by the
tool loop like any tool's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import jsonschema

from ai_stack.config import McpServerSettings
from ai_stack.errors import ConfigError
from ai_stack.tools.base import Tool, ToolError

T = TypeVar("T")
STOP_S = 10.0  # how long closing waits for a server to stop
ENVIRONMENT = ("PATH", "HOME", "LANG", "TMPDIR", "USER", "SYSTEMROOT")  # passed on to a server


class McpConnection:
    """One configured server: started by :meth:`start`, its tools by :meth:`tools`, stopped by
    :meth:`close`."""

    def __init__(self, name: str, settings: McpServerSettings) -> None:
        self.name = name
        self.settings = settings
        self.failure: str | None = None  # why the connection ended, once it has
        self.notes: list[str] = []  # tools left out, and why
        self._client: Any = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"mcp-{name}", daemon=True
        )
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._holder: concurrent.futures.Future[None] | None = None

    def start(self) -> None:
        """Start the server and connect; a :class:`ConfigError` saying why it cannot be."""
        self._thread.start()
        self._holder = asyncio.run_coroutine_threadsafe(self._hold(), self._loop)
        self._ready.wait(self.settings.timeout_s + 5)
        if self._client is None:
            reason = self.failure or f"no answer within {self.settings.timeout_s:g} seconds"
            self.close()
            where = self.settings.url or " ".join(
                [self.settings.command or "", *self.settings.args]
            )
            raise ConfigError(
                f"The MCP server {self.name!r} ({where}) could not be started: {reason}",
                hint=f"Check [mcp_servers.{self.name}] in your config, or run it by hand.",
            )

    async def _hold(self) -> None:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters

        self._stop = asyncio.Event()
        settings = self.settings
        server: Any = settings.url
        if settings.command is not None:
            base = {k: os.environ[k] for k in ENVIRONMENT if k in os.environ}
            server = StdioServerParameters(
                command=settings.command, args=settings.args, env={**base, **settings.env}
            )
        try:
            client = Client(server, mode="legacy", read_timeout_seconds=settings.timeout_s)
            async with client:
                self._client = client
                self._ready.set()
                await self._stop.wait()
        except BaseException as error:  # the server's own failure, whatever it was
            self.failure = _describe(error)
        finally:
            self._client = None
            self._ready.set()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._client is None or self._holder is None or self._holder.done():
            coroutine.close()
            raise ToolError(
                f"the MCP server {self.name} is not running: {self.failure or 'stopped'}"
            )
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:  # the SDK's own read timeout (timeout_s) comes first; this is the guard behind it
            return future.result(self.settings.timeout_s + 5)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ToolError(
                f"the MCP server {self.name} did not answer within {self.settings.timeout_s:g} s"
            ) from None
        except Exception as error:
            if self._holder.done():
                raise ToolError(
                    f"the MCP server {self.name} stopped: {self.failure or _describe(error)}"
                ) from None
            raise ToolError(f"the MCP server {self.name} failed: {_describe(error)}") from None

    def tools(self) -> list[Tool]:
        """The server's tools as ``NAME.tool``; those with an invalid schema left out."""
        listed = self._call(self._client.list_tools())
        offered = []
        for tool in listed.tools:
            schema = tool.input_schema if isinstance(tool.input_schema, dict) else None
            problem = _schema_problem(schema)
            if problem is not None:
                self.notes.append(f"{self.name}.{tool.name} left out: {problem}")
                continue
            assert schema is not None
            offered.append(
                Tool(
                    f"{self.name}.{tool.name}",
                    " ".join((tool.description or tool.name).split())[:200],
                    schema,
                    self._runner(tool.name),
                    source=f"mcp:{self.name}",
                )
            )
        return offered

    def _runner(self, tool: str) -> Any:
        def run(arguments: Mapping[str, Any]) -> str:
            result = self._call(self._client.call_tool(tool, dict(arguments)))
            text = _content_text(result.content)
            if result.is_error:
                raise ToolError(text or f"{self.name}.{tool} failed")
            return text

        return run

    def close(self) -> None:
        """Stop the server (the transport ends its process) and the connection's thread."""
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._holder is not None:
            with contextlib.suppress(Exception):
                self._holder.result(STOP_S)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(STOP_S)


def _schema_problem(schema: dict[str, Any] | None) -> str | None:
    """Why ``schema`` cannot be a tool's argument schema, or None.

    >>> _schema_problem({"type": "object", "properties": {"n": {"type": "integer"}}}) is None
    True
    >>> _schema_problem({"type": "object", "properties": {"n": {"type": "intgr"}}})
    "its input schema is not valid JSON Schema: 'intgr' is not valid under any of the given schemas"
    """
    if schema is None or schema.get("type") != "object":
        return "its input schema is not an object schema"
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as error:
        return f"its input schema is not valid JSON Schema: {error.message[:120]}"
    return None


def _content_text(content: list[Any]) -> str:
    """A tool result's content as text: its text parts; other parts named by their type."""
    parts = []
    for item in content:
        text = getattr(item, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(item, 'type', 'content')}]")
    return "\n".join(parts)


def _describe(error: BaseException) -> str:
    """One line for an error out of the SDK (exception groups: their first leaf)."""
    while getattr(error, "exceptions", None):  # an exception group (anyio's task groups)
        error = error.exceptions[0]  # type: ignore[attr-defined]
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class McpServers:
    """The user's servers, each started the first time a run asks for tools, all stopped at
    :meth:`close` (the session's)."""

    def __init__(self, settings: Mapping[str, McpServerSettings]) -> None:
        # The SDK logs a server's garbage with a traceback; the model hears of it as an error,
        # and --debug (handlers on the root logger) still shows it.
        logging.getLogger("mcp").addHandler(logging.NullHandler())
        self.settings = dict(settings)
        self.connections: dict[str, McpConnection] = {}
        self.offered: list[Tool] = []

    def tools(self) -> list[Tool]:
        if self.settings and not self.connections:
            for name, settings in self.settings.items():
                connection = McpConnection(name, settings)
                self.connections[name] = connection
                connection.start()
                self.offered += connection.tools()
        return list(self.offered)

    @property
    def notes(self) -> list[str]:
        return [note for c in self.connections.values() for note in c.notes]

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()


__all__ = ["McpConnection", "McpServers"]
