"""Settings: one pydantic model, filled from defaults < TOML file < environment < CLI flags.

Everything the user owns (registered models, the history database, logs) lives under one
directory, :func:`user_dir`; the config file is in the platform's config directory
(:func:`user_config_file`). ``AI_STACK_HOME`` overrides both.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from ai_stack import trust
from ai_stack.access import FilePolicy
from ai_stack.errors import ConfigError
from ai_stack.files import NotARegularFile, read_regular
from ai_stack.redaction import without_password
from ai_stack.types import ROLES, Mode, Review, Role

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_NAME = "config.toml"
LOCAL_CONFIG_NAME = "ai-stack.toml"
BUILT_IN_BACKENDS = ("ollama", "embedded", "openai")
# The kinds of OpenAI-compatible server, each with its own model lifecycle (backends/lifecycles.py)
ServerKind = Literal[
    "llama-server-router",
    "llama-server",
    "llama-swap",
    "lmstudio",
    "vllm-sleep",
    "vllm",
    "llama-cpp-python",
    "generic",
]

# Environment variables that override single settings (CLI flags still win).
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "AI_STACK_BACKEND": ("backend",),
    "AI_STACK_PLANNER": ("planner", "model"),
    "AI_STACK_CRITIC": ("critic", "model"),
    "AI_STACK_EXECUTOR": ("executor", "model"),
    "AI_STACK_MAX_ROUNDS": ("max_rounds",),
    "AI_STACK_PROMPTS_DIR": ("prompts_dir",),
    "AI_STACK_MEMORY_BUDGET_GB": ("memory", "budget_gb"),
    "AI_STACK_POLICY": ("memory", "policy"),
    "AI_STACK_REVIEW": ("review",),
}


def user_dir() -> Path:
    """The one directory for the user's data: ``$AI_STACK_HOME``, else the platform's data dir."""
    home = os.environ.get("AI_STACK_HOME")
    if home:
        return Path(home).expanduser()
    return Path(platformdirs.user_data_dir("ai-stack", appauthor=False))


def user_config_file() -> Path:
    """The user's own config file: ``$AI_STACK_HOME/config.toml``, else the platform's config
    directory's (``~/.config/ai-stack`` on Linux, ``~/Library/Application Support/ai-stack`` on
    macOS), where users and dotfile managers look for it. The user data directory's, where it
    used to live, is still read while the new one does not exist."""
    home = os.environ.get("AI_STACK_HOME")
    if home:
        return Path(home).expanduser() / CONFIG_NAME
    config = Path(platformdirs.user_config_dir("ai-stack", appauthor=False)) / CONFIG_NAME
    legacy = user_dir() / CONFIG_NAME
    return legacy if legacy.is_file() and not config.is_file() else config


class RoleSettings(BaseModel):
    """How one role calls its model. ``model`` is a spec such as ``embedded:smollm2``;
    ``None`` lets the backend pick its default."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    max_tokens: int = Field(default=512, ge=16, le=32768)
    # The largest context the model is loaded with; each run loads it with what the run needs
    # (prompt and reply, rounded up), unless fixed_ctx pins it to num_ctx.
    num_ctx: int = Field(default=8192, ge=512, le=1_048_576)
    fixed_ctx: bool = False
    # How many of a conversation's latest turns this role's prompt shows (None: all that fit,
    # with a summary of older ones; 0: none).
    turns: int | None = Field(default=None, ge=0, le=1000)


class MemorySettings(BaseModel):
    """The memory manager: how much memory models may take, and how residency is decided."""

    model_config = ConfigDict(extra="forbid")

    budget_gb: float | None = Field(default=None, gt=0, le=4096, allow_inf_nan=False)
    policy: Literal["one-at-a-time", "fit"] = "one-at-a-time"
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] = "f16"
    # How long to wait for another ai-stack process to finish with the model memory
    wait_timeout_s: float = Field(default=1800.0, gt=0, le=86_400)


class EndpointSettings(BaseModel):
    """An OpenAI-compatible server, named so that specs stay short: with
    ``[endpoints.lmstudio]``, ``lmstudio:qwen2.5-7b-instruct`` is a model there."""

    model_config = ConfigDict(extra="forbid")

    base_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]  # e.g. .../v1
    api_key_env: str | None = None  # the environment variable holding its key, if it wants one
    kind: ServerKind | Literal["auto"] = "auto"  # auto: told from what the server answers
    request_timeout_s: float = Field(default=600.0, gt=0)
    stall_timeout_s: float = Field(default=120.0, gt=0)  # no new piece of a reply for this long
    reply_max_bytes: int = Field(default=16 * 1024**2, ge=64 * 1024)  # one reply, on the wire

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    @classmethod
    def from_environment(cls) -> EndpointSettings | None:
        """``openai:`` without a config: ``$OPENAI_BASE_URL`` (and ``$OPENAI_API_KEY``), as the
        official client reads them."""
        url = os.environ.get("OPENAI_BASE_URL", "").strip()
        if not url:
            return None
        try:
            return cls(base_url=url, api_key_env="OPENAI_API_KEY")
        except ValidationError:
            raise ConfigError(
                f"OPENAI_BASE_URL={without_password(url)!r} is not an http:// or https:// URL",
                hint="e.g. http://127.0.0.1:1234/v1",
            ) from None


DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"


def resolve_host(value: str | None) -> str:
    """The server URL for an ``OLLAMA_HOST``-style value, as the server and client read it.

    >>> resolve_host(None)
    'http://127.0.0.1:11434'
    >>> resolve_host("0.0.0.0")
    'http://0.0.0.0:11434'
    >>> resolve_host(":8080")
    'http://127.0.0.1:8080'
    >>> resolve_host("https://ollama.example.com")
    'https://ollama.example.com:443'
    >>> resolve_host("http://[::1]:11500/")
    'http://[::1]:11500'
    >>> resolve_host("file:///x")
    Traceback (most recent call last):
    ai_stack.errors.ConfigError: The Ollama host 'file:///x' is not an http:// or https:// URL
    >>> resolve_host("not a url")
    Traceback (most recent call last):
    ai_stack.errors.ConfigError: The Ollama host 'not a url' is not an http:// or https:// URL
    """
    value = (value or "").strip()
    if not value:
        return DEFAULT_OLLAMA_HOST
    scheme, rest = ("http", value) if "://" not in value else value.split("://", 1)
    ports = {"http": 80, "https": 443}
    try:
        if scheme.lower() not in ports:
            raise ValueError(scheme)
        parts = urlsplit(f"{scheme}://{rest}")
        port = parts.port
        if not re.fullmatch(r"[a-z0-9._-]*|[0-9a-f:.]*:[0-9a-f:.]*", parts.hostname or ""):
            raise ValueError(parts.hostname)  # a space or another character no host name has
    except ValueError:
        raise ConfigError(
            f"The Ollama host {value!r} is not an http:// or https:// URL",
            hint="Set ollama.host or OLLAMA_HOST to e.g. http://127.0.0.1:11434",
        ) from None
    scheme = scheme.lower()
    default_port = ports[scheme] if "://" in value else 11434
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    path = parts.path.rstrip("/")
    return f"{scheme}://{host}:{port or default_port}{path}"


# A Go duration, as Ollama reads keep_alive: numbers with units ("10m", "1h30m", "-1m": keep for
# ever), or "0" (unload at once); a bare number in a string is refused by the server.
_DURATION = re.compile(r"[-+]?(0|((\d+\.?\d*|\.\d+)(ns|us|µs|ms|s|m|h))+)")


class OllamaSettings(BaseModel):
    """How to reach (and optionally start) an Ollama server."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = None  # default: $OLLAMA_HOST, else http://127.0.0.1:11434
    keep_alive: str = "10m"
    autostart: bool = False
    request_timeout_s: float = Field(default=600.0, gt=0)
    stall_timeout_s: float = Field(default=120.0, gt=0)  # no new piece of a reply for this long
    reply_max_bytes: int = Field(default=16 * 1024**2, ge=64 * 1024)  # one reply, on the wire

    @field_validator("host")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        """Refused when read, not when a run hangs trying to reach it."""
        try:
            resolve_host(value)
        except ConfigError as error:
            raise ValueError(f"{error.message} (e.g. {DEFAULT_OLLAMA_HOST})") from None
        return value

    @field_validator("keep_alive")
    @classmethod
    def _duration(cls, value: str) -> str:
        """Refused when read, not by the server once a model is asked to load."""
        if not _DURATION.fullmatch(value.strip()):
            raise ValueError(
                f"{value!r} is not a duration such as 10m, 1h30m, -1m (keep for ever) or 0 "
                "(unload at once)"
            )
        return value.strip()


class ThermalSettings(BaseModel):
    """The thermal and memory-pressure policy (docs/thermal.md)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    poll_s: float = Field(default=5.0, gt=0, le=600)
    max_pause_s: float = Field(default=120.0, ge=0, le=3600)
    slowdown_fraction: float = Field(default=0.4, gt=0, lt=1)
    temp_heavy_c: float = Field(default=90.0, gt=0, lt=200)
    temp_critical_c: float = Field(default=100.0, gt=0, lt=200)


class EvidenceSettings(BaseModel):
    """What the answer review may check, and how answer code runs (docs/sandbox.md)."""

    model_config = ConfigDict(extra="forbid")

    exec: bool = False  # run answer code even where no isolating sandbox exists (opt-in)
    # edge-case calls the Critic may propose in the answer review (--review answer, both)
    probes: int = Field(default=3, ge=0, le=5)
    # Deprecated (read for one more release): the team's answers written afresh of each kind
    # are bounded by max_rounds, like every mode's extra work; where a config still sets this,
    # the lower of the two bounds holds (Settings.repair_attempts)
    attempts: int | None = Field(default=None, ge=0, le=8)
    # fresh answers after a failing one are sampled from the second on at this temperature
    attempt_temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    # before the first fresh answer to code that fails its checks, the Planner says what went
    # wrong and another approach (planning after trial). Off by default: within the default
    # budget it leaves room for one fresh answer instead of several, and measured worse
    # (docs/eval.md); worth it with a larger Planner and a larger budget
    rethink: bool = False
    # After the first answer, the review and the repair may cost at most this many times the
    # first answer's own call (in decode-token equivalents; 0: no bound): work proportionate to
    # the task, and a task the model keeps failing costs a bounded multiple of one call
    budget: float = Field(default=1.0, ge=0.0, le=50.0)
    timeout_s: float = Field(default=15.0, gt=0, le=600)
    memory_mb: int = Field(default=512, ge=64, le=65536)
    output_kb: int = Field(default=64, ge=1, le=65536)
    checks: list[Path] = Field(default_factory=list)  # --check FILE: asserts / test_* functions
    check_cmds: list[str] = Field(default_factory=list)  # --check-cmd CMD


class FilesSettings(BaseModel):
    """Which files may become model context (docs/files.md)."""

    model_config = ConfigDict(extra="forbid")

    allow_paths: list[Path] = Field(default_factory=list)  # directories beyond the defaults
    allow_sensitive: list[Path] = Field(default_factory=list)  # secret locations, named one by one
    max_file_kb: int = Field(default=512, ge=1, le=1_048_576)
    max_total_kb: int = Field(default=2048, ge=1, le=4_194_304)


class LimitsSettings(BaseModel):
    """Bounds on inputs, so a malformed or hostile file cannot exhaust the machine."""

    model_config = ConfigDict(extra="forbid")

    workflow_kb: int = Field(default=1024, ge=1, le=1_048_576)  # workflow and suite files
    tasks: int = Field(default=1000, ge=1, le=1_000_000)  # tasks in one workflow
    yaml_nodes: int = Field(default=200_000, ge=100, le=100_000_000)  # after aliases expand
    # nesting of mappings and lists; the YAML reader recurses twice a level, so past a few
    # hundred levels it would exhaust Python's stack whatever this says
    depth: int = Field(default=64, ge=4, le=256)
    truncate_context: bool = False  # cut a context too big for num_ctx (never the task)


class ConversationSettings(BaseModel):
    """How much of a conversation goes with each task (docs/cli.md, "Conversations")."""

    model_config = ConfigDict(extra="forbid")

    # The most tokens of earlier turns (and their summary) a prompt carries; older turns are
    # summarised past this, or past what the roles' num_ctx leaves free, whichever is less.
    max_tokens: int = Field(default=3072, ge=0, le=1_048_576)


class ToolsSettings(BaseModel):
    """The Executor's tools (docs/tools.md): off unless asked for (``--tools``); the loop's
    bounds. The file tools use ``files``' policy, the code tools ``evidence``' sandbox limits."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    names: list[str] = Field(default_factory=list)  # the tools offered; empty: every one
    max_steps: int = Field(default=6, ge=1, le=50)  # tool calls before the answer is required
    timeout_s: float = Field(default=60.0, gt=0, le=3600)  # one call, past the sandbox's own
    output_kb: int = Field(default=16, ge=1, le=1024)  # of one result the model is shown


class McpServerSettings(BaseModel):
    """An MCP server whose tools the Executor may use (``[mcp_servers.NAME]``, docs/tools.md):
    a command started over stdio, or a streamable-HTTP ``url``. Only the user's own config may
    name one: a server runs a command."""

    model_config = ConfigDict(extra="forbid")

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)  # added to a minimal environment
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] | None = None
    timeout_s: float = Field(default=30.0, gt=0, le=3600)  # starting it; one call

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (a stdio server) or url (streamable HTTP)")
        return self


class HistorySettings(BaseModel):
    """The run history database (docs/history.md)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    path: Path | None = None  # default: history.db in the user directory


class ClusterSlotSettings(BaseModel):
    """One cluster worker's own settings (docs/cluster.md)."""

    model_config = ConfigDict(extra="forbid")

    # the worker's environment on its node: e.g. OLLAMA_HOST for the server it should use
    env: dict[str, str] = Field(default_factory=dict)


class ClusterSettings(BaseModel):
    """Batches on a Ray cluster (``ai-stack batch --cluster``; docs/cluster.md)."""

    model_config = ConfigDict(extra="forbid")

    connect_timeout_s: float = Field(default=10.0, gt=0, le=600)  # for the head to answer
    start_timeout_s: float = Field(default=120.0, gt=0, le=3600)  # a slower worker is left out
    release_timeout_s: float = Field(default=60.0, gt=0, le=3600)  # unloading at the end
    slots: dict[str, ClusterSlotSettings] = Field(default_factory=dict)  # by worker name

    def slot(self, name: str) -> ClusterSlotSettings:
        return self.slots.get(name) or ClusterSlotSettings()


def _role(**defaults: Any) -> Any:
    return Field(default_factory=lambda: RoleSettings(**defaults))


class Settings(BaseModel):
    """Every run option. The TOML file uses the same keys (see docs/configuration.md)."""

    model_config = ConfigDict(extra="forbid")

    backend: str = "auto"  # auto, ollama, embedded, openai or an endpoint's name
    review: Review = "team"
    direct: bool = False
    raw: bool = False  # the task as the only message, no template (an eval baseline)
    planner: RoleSettings = _role(temperature=0.2, max_tokens=512)
    critic: RoleSettings = _role(temperature=0.1, max_tokens=256, turns=1)
    executor: RoleSettings = _role(temperature=0.3, max_tokens=512)
    max_rounds: int = Field(default=2, ge=0, le=20)
    approve_score: int = Field(default=8, ge=0, le=10)
    max_reasks: int = Field(default=2, ge=0, le=5)
    repeat_penalty: float = Field(default=1.15, ge=1.0, le=2.0)
    # the sampling seed: a number makes runs repeatable; "random" draws a fresh one per run
    # (recorded with the run, so --seed N reproduces it); null (JSON) is read as "random"
    seed: int | Literal["random"] = 42
    prompts_dir: Path | None = None
    models_dir: Path | None = None
    memory: MemorySettings = Field(default_factory=MemorySettings)
    ollama: OllamaSettings = Field(default_factory=OllamaSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    thermal: ThermalSettings = Field(default_factory=ThermalSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
    files: FilesSettings = Field(default_factory=FilesSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    conversation: ConversationSettings = Field(default_factory=ConversationSettings)
    tools: ToolsSettings = Field(default_factory=ToolsSettings)
    mcp_servers: dict[str, McpServerSettings] = Field(default_factory=dict)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    endpoints: dict[
        Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")], EndpointSettings
    ] = Field(default_factory=dict)

    _source: Path | None = PrivateAttr(default=None)  # the config file these came from

    @property
    def source(self) -> Path | None:
        """The config file read for these settings (None: defaults and flags only)."""
        return self._source

    @field_validator("seed", mode="before")
    @classmethod
    def _random_seed(cls, value: Any) -> Any:
        """``None`` (from JSON, or an older caller) meant unseeded: a fresh seed per run."""
        return "random" if value is None else value

    @field_validator("planner", "critic", "executor", mode="before")
    @classmethod
    def _role_from_spec(cls, value: Any) -> Any:
        """Allow ``planner = "embedded:smollm2"`` as shorthand for ``[planner] model = ...``."""
        return {"model": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _known_backend(self) -> Settings:
        taken = sorted(set(self.endpoints) & {"ollama", "embedded", "auto", "hf"})
        if taken:
            raise ValueError(f"endpoints.{taken[0]}: that name is a backend's own")
        if self.backend not in ("auto", *self.backend_names):
            raise ValueError(
                f"backend {self.backend!r} is not auto, {', '.join(self.backend_names)}"
            )
        return self

    @property
    def backend_names(self) -> tuple[str, ...]:
        """The prefixes a model spec may have: the built-in backends and the endpoints."""
        return (*BUILT_IN_BACKENDS, *(n for n in self.endpoints if n not in BUILT_IN_BACKENDS))

    def endpoint(self, name: str) -> EndpointSettings | None:
        """The OpenAI-compatible server called ``name`` (``openai``: the configured one, else
        the environment's)."""
        if name in self.endpoints:
            return self.endpoints[name]
        return EndpointSettings.from_environment() if name == "openai" else None

    def role(self, role: Role) -> RoleSettings:
        settings: RoleSettings = getattr(self, role)
        return settings

    @property
    def repair_attempts(self) -> int:
        """How many answers of each kind the team's repair may write (in the requirements'
        shape; fresh): ``max_rounds``, the one bound on every mode's extra work, and no more
        than the deprecated ``evidence.attempts`` where a config still sets it.

        >>> Settings(max_rounds=1).repair_attempts
        1
        >>> Settings(evidence={"attempts": 0}).repair_attempts
        0
        """
        legacy = self.evidence.attempts
        return self.max_rounds if legacy is None else min(self.max_rounds, legacy)

    def resolved_models_dir(self) -> Path:
        return self.models_dir or user_dir() / "models"

    def resolved_history_path(self) -> Path:
        return self.history.path or user_dir() / "history.db"

    def file_policy(self, *roots: Path) -> FilePolicy:
        """The file-access policy: ``roots`` (none: files allowed by being named) and the
        directories the user allowed; secret locations only as named one by one."""
        files = self.files
        return FilePolicy.create(
            [*roots, *files.allow_paths] if roots else [],
            files.allow_sensitive,
            max_file_kb=files.max_file_kb,
            max_total_kb=files.max_total_kb,
        )

    @property
    def mode(self) -> Mode:
        """``raw``, ``direct``, or the review in force."""
        return "raw" if self.raw else "direct" if self.direct else self.review


CONFIG_LIMIT = 1024 * 1024  # a config file is a few KiB; past this it is something else


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a TOML config file, turning every failure into one ConfigError."""
    try:
        data = read_regular(path, CONFIG_LIMIT)
        if data is None:
            raise ConfigError(f"Config file {path} is over {CONFIG_LIMIT // 1024:,} KiB.")
        return tomllib.loads(data.decode("utf-8"))
    except NotARegularFile as exc:
        raise ConfigError(f"Config path {path} {exc.strerror}.") from None
    except FileNotFoundError:
        raise ConfigError(f"Config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"Config path is a directory, not a file: {path}") from None
    except PermissionError:
        raise ConfigError(f"Config file is not readable (permission denied): {path}") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Config file is not UTF-8 text: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}") from None


def _set_path(target: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    for key in keys[:-1]:
        node = target.get(key)
        if isinstance(node, str):  # role shorthand "planner = 'spec'"
            node = {"model": node}
        target[key] = node = dict(node or {})
        target = node
    target[keys[-1]] = value


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), str):
            merged[key] = _merge({"model": merged[key]}, value)
        else:
            merged[key] = value
    return merged


def _own_config() -> tuple[dict[str, Any], Path | None]:
    path = user_config_file()
    return (read_config_file(path), path) if path.is_file() else ({}, None)


def _with_environment(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    for variable, keys in ENV_OVERRIDES.items():
        if environ.get(variable):
            _set_path(data, keys, environ[variable])
    return data


def raw_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], Path | None]:
    """The settings data of the config files and environment, not yet validated.

    ``--config FILE`` is the user's own choice and the only file read. Otherwise the user
    directory's config is read, then a project's ``./ai-stack.toml`` on top of it, which — read
    only because it is in the working directory — may only narrow (:mod:`ai_stack.trust`)."""
    environ = os.environ if environ is None else environ
    if config_file is not None:
        return _with_environment(read_config_file(config_file), environ), config_file
    data, path = _own_config()
    project = Path.cwd() / LOCAL_CONFIG_NAME
    if project.is_file():
        data, path = _with_project(data, path, project, environ), project
    return _with_environment(data, environ), path


def _with_project(
    own: dict[str, Any], own_path: Path | None, project: Path, environ: Mapping[str, str]
) -> dict[str, Any]:
    """The user's config with a project's on top, refused by name where it widens them."""
    base_data = _with_environment(dict(own), environ)
    base = validated(base_data, own_path)
    data = read_config_file(project)
    source = trust.Untrusted(
        str(project),
        "a project config",
        hint=f"It was read because it is in this directory. If you trust it, use it as your own: "
        f"--config {project}; otherwise remove those keys (docs/configuration.md).",
    )
    trust.check(base, validated(layer(base_data, data), project), data, source)
    return layer(own, data)


def narrowed(
    base: Mapping[str, Any], data: Mapping[str, Any], source: trust.Untrusted
) -> dict[str, Any]:
    """``base`` with ``data``, from a source the user did not write, on top: what it widens is
    refused by name (an ``UntrustedSettingError``). Invalid data raises ``ValidationError``."""
    merged = layer(base, data)
    trust.check(Settings.model_validate(base), Settings.model_validate(merged), data, source)
    return merged


def layer(base: Mapping[str, Any], *overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Settings data with ``overrides`` on top, in order (``None`` values leave keys unset)."""
    data = dict(base)
    for override in overrides:
        data = _merge(data, _drop_none(override))
    return data


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings in force. ``overrides`` are CLI flags (nested dicts, ``None`` = unset)."""
    data, path = raw_settings(config_file, environ)
    return validated(layer(data, overrides or {}), path)


def validated(data: Mapping[str, Any], path: Path | None) -> Settings:
    """Settings from ``data`` read from ``path``, or one ConfigError naming every problem."""
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        where = f"config file {path}" if path else "options"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(
            f"Invalid {where}: {problems}", hint="See docs/configuration.md for the keys."
        ) from None
    settings._source = path
    return settings


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            value = _drop_none(value)
            if not value:
                continue
        if value is not None:
            cleaned[key] = value
    return cleaned


__all__ = [
    "ROLES",
    "ClusterSettings",
    "ConversationSettings",
    "EvidenceSettings",
    "HistorySettings",
    "MemorySettings",
    "OllamaSettings",
    "RoleSettings",
    "Settings",
    "ThermalSettings",
    "layer",
    "load_settings",
    "narrowed",
    "raw_settings",
    "read_config_file",
    "user_config_file",
    "user_dir",
]
