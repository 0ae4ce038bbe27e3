"""The error hierarchy: raised anywhere in the package, turned into messages only by the front
ends (the CLI, the REPL, the MCP server), through one formatter each."""

from __future__ import annotations

from typing import Literal


class AiStackError(Exception):
    """Root of every error a user can cause or fix.

    ``hint`` says what to do next; the CLI prints it under the message.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(AiStackError):
    """A configuration file or option is unreadable or invalid."""

    exit_code = 2


class UntrustedSettingError(ConfigError):
    """A source the user did not write (a project's config, a workflow file, an MCP client) sets
    what only the user's own settings may: ``keys`` are the settings it widens, in order."""

    def __init__(self, keys: list[tuple[str, ...]], message: str, *, hint: str | None) -> None:
        super().__init__(message, hint=hint)
        self.keys = keys


class UsageError(AiStackError):
    """The command line asks for something that cannot be done (e.g. an empty task)."""

    exit_code = 2


class ModelSpecError(AiStackError):
    """A model spec (``[backend:]name``) cannot be parsed or names an unknown backend."""

    exit_code = 2


class ModelNotFoundError(AiStackError):
    """The backend has no model by that name, or the GGUF file is missing or not GGUF."""

    def __init__(self, model: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.model = model


class BackendUnavailableError(AiStackError):
    """A backend cannot be used here (not installed, not reachable, not built yet)."""

    def __init__(self, backend: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.backend = backend


class BackendError(AiStackError):
    """A backend failed while loading a model or generating."""

    def __init__(self, backend: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.backend = backend


InvalidOutputKind = Literal["json", "schema", "empty"]


class InvalidOutputError(AiStackError):
    """A role's answer still failed validation after every re-ask.

    Keeps the last raw answer so history and ``--debug`` can show what the model wrote, and what
    was wrong with it: not JSON, JSON not in the schema, or empty.
    """

    def __init__(
        self,
        role: str,
        attempts: int,
        reason: str,
        last_raw: str,
        kind: InvalidOutputKind = "schema",
    ) -> None:
        super().__init__(
            f"The {role} model gave no valid answer in {attempts} attempt(s): {reason}",
            hint="Try a larger model for this role, or raise roles.<role>.max_tokens.",
        )
        self.role = role
        self.attempts = attempts
        self.reason = reason
        self.last_raw = last_raw
        self.kind = kind


class TransientBackendError(BackendError):
    """A failure worth retrying: server busy (503), connection reset, a stream cut mid-answer.

    ``partial`` is True when some of the answer had already been streamed, so the caller must
    discard what it showed before retrying.
    """

    def __init__(self, backend: str, message: str, *, partial: bool = False) -> None:
        super().__init__(backend, message)
        self.partial = partial


class ReplyLimitError(BackendError):
    """A server's reply went past a bound: no new piece of the answer for the stall timeout,
    longer than the request timeout, more bytes than the reply cap, or more pieces than
    ``max_tokens`` (a server that does not stop). Not retried: the next reply would do the
    same, and no run may hang for longer than its bounds."""


class BadReplyError(BackendError):
    """A server answered something that is not its API: an HTML page (a proxy, a login
    portal, another program on the port), invalid JSON, or JSON of the wrong shape."""


class MemoryBudgetError(AiStackError):
    """A model cannot be loaded inside the memory budget, or memory is too short right now."""

    def __init__(self, model: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.model = model


class LeaseTimeoutError(AiStackError):
    """Another ai-stack process kept the model memory longer than this one would wait."""

    def __init__(self, model: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.model = model


class ClusterError(AiStackError):
    """A Ray cluster cannot be reached or used for a batch (no node can serve a model, the
    ``cluster`` extra is missing); the message names the nodes concerned."""


class NodeError(AiStackError):
    """A cluster node failed a model call (its backend, its memory); ``refused`` when its memory
    manager would not load the model, so another node may."""

    def __init__(self, node: str, message: str, *, hint: str | None = None, refused: bool = False):
        super().__init__(f"{node}: {message}", hint=hint)
        self.node = node
        self.refused = refused


class WorkflowError(AiStackError):
    """A workflow (or eval suite) file is malformed; the message says where and what to fix."""

    exit_code = 2


class HistoryError(AiStackError):
    """The history database cannot be opened, read or written."""


class FileAccessError(AiStackError):
    """A file may not (or cannot) become model context: outside the allowed directories, a
    secret location, binary, or over a size limit."""

    exit_code = 2

    def __init__(self, path: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class InputLimitError(AiStackError):
    """An input is over a limit (file size, nesting, YAML aliases, tokens for the context);
    the message names the limit and how to raise it."""

    exit_code = 2


class GGUFError(AiStackError, ValueError):
    """A file is not GGUF, or its header is damaged."""


class KnowledgeError(AiStackError):
    """A knowledge index cannot be built, read or searched (damaged, too many files, a path
    that cannot be indexed); the hint names the command that fixes it."""
