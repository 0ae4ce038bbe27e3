"""Settings: one pydantic model, filled from defaults < TOML file < environment < CLI flags.

Everything the user owns (registered models, the history database, logs) lives under one
directory, :func:`user_dir`; the config file is in the platform's config directory
(:func:`user_config_file`). ``AI_STACK_HOME`` overrides both.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

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

from ai_stack.access import FilePolicy
from ai_stack.errors import ConfigError
from ai_stack.files import NotARegularFile, read_regular
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
                f"OPENAI_BASE_URL={url!r} is not an http:// or https:// URL",
                hint="e.g. http://127.0.0.1:1234/v1",
            ) from None


class OllamaSettings(BaseModel):
    """How to reach (and optionally start) an Ollama server."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = None  # default: $OLLAMA_HOST, else http://127.0.0.1:11434
    keep_alive: str = "10m"
    autostart: bool = False
    request_timeout_s: float = Field(default=600.0, gt=0)


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
    # When the answer fails its checks (team mode): up to this many answers written afresh of
    # each kind — in the shape a task's stated requirements give, and fresh answers that never
    # see the failed one, sampled from the second on at attempt_temperature
    attempts: int = Field(default=4, ge=0, le=8)
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
    depth: int = Field(default=64, ge=4, le=10_000)  # nesting of mappings and lists
    truncate_context: bool = False  # cut a context too big for num_ctx (never the task)


class ConversationSettings(BaseModel):
    """How much of a conversation goes with each task (docs/cli.md, "Conversations")."""

    model_config = ConfigDict(extra="forbid")

    # The most tokens of earlier turns (and their summary) a prompt carries; older turns are
    # summarised past this, or past what the roles' num_ctx leaves free, whichever is less.
    max_tokens: int = Field(default=3072, ge=0, le=1_048_576)


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
    seed: int | None = 42
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
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    endpoints: dict[
        Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")], EndpointSettings
    ] = Field(default_factory=dict)

    _source: Path | None = PrivateAttr(default=None)  # the config file these came from

    @property
    def source(self) -> Path | None:
        """The config file read for these settings (None: defaults and flags only)."""
        return self._source

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


def find_config_file(explicit: Path | None = None) -> Path | None:
    """The config file in force: an explicit one, else ``./ai-stack.toml``, else the user's."""
    if explicit is not None:
        return explicit
    for candidate in (Path.cwd() / LOCAL_CONFIG_NAME, user_config_file()):
        if candidate.is_file():
            return candidate
    return None


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


# What a project's ./ai-stack.toml, read only because it is in the working directory, may not set:
# what widens file access, changes where prompts go, turns on unsandboxed execution or stops the
# record. A cloned repository must not send your keys to someone else's server. The user's own
# config (the user directory's, or any file named with --config) may set them.
PROJECT_REFUSED: tuple[tuple[str, ...], ...] = (
    ("files", "allow_sensitive"),
    ("files", "allow_paths"),
    ("files", "max_file_kb"),
    ("files", "max_total_kb"),
    ("ollama", "host"),
    ("endpoints",),
    ("cluster",),  # a worker's environment on every node
    ("evidence", "exec"),
    ("evidence", "checks"),
    ("evidence", "check_cmds"),
    ("history", "enabled"),
    ("history", "path"),
    ("prompts_dir",),
    ("models_dir",),
)


def refuse_widening(path: Path, data: Mapping[str, Any]) -> None:
    """Refuse a project config that sets any of :data:`PROJECT_REFUSED` (as git refuses a
    repository it does not trust, until the user says otherwise).

    >>> refuse_widening(Path("ai-stack.toml"), {"max_rounds": 1, "executor": {"model": "x"}})
    >>> refuse_widening(Path("ai-stack.toml"), {"ollama": {"host": "http://evil:80"}})
    Traceback (most recent call last):
    ...
    ai_stack.errors.ConfigError: ai-stack.toml sets ollama.host, which only your own config may set.
    """
    found = []
    for keys in PROJECT_REFUSED:
        node: Any = data
        for key in keys:
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is not None:
            found.append(".".join(keys))
    if found:
        raise ConfigError(
            f"{path} sets {', '.join(found)}, which only your own config may set.",
            hint=f"It was read because it is in this directory. If you trust it, use it as your "
            f"own: --config {path}; otherwise remove those keys (docs/configuration.md).",
        )


def raw_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], Path | None]:
    """The settings data of the config file and environment, not yet validated."""
    path = find_config_file(config_file)
    data: dict[str, Any] = read_config_file(path) if path else {}
    if path is not None and config_file is None and path.name == LOCAL_CONFIG_NAME:
        refuse_widening(path, data)
    environ = os.environ if environ is None else environ
    for variable, keys in ENV_OVERRIDES.items():
        if environ.get(variable):
            _set_path(data, keys, environ[variable])
    return data, path


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
    data = layer(data, overrides or {})
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
    "find_config_file",
    "layer",
    "load_settings",
    "raw_settings",
    "read_config_file",
    "user_config_file",
    "user_dir",
]
