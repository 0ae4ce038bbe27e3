"""One start-up wiring for every entry point.

settings → memory manager + thermal guard → backend choice (health check, optional ``ollama
serve``) → role specs (with defaults for roles left unset) → load options → a pipeline or a batch
runner. ``run``, the REPL, ``batch``, ``eval``, ``models``, ``system``, ``doctor`` and
``monitor`` all start here, so a new entry point wires nothing of its own.

A session loads nothing when opened; it contacts Ollama only to choose the backend (and not at
all with ``choose=False``, for commands that name their backend). Closing it unloads whatever it
loaded and stops a server it started.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from ai_stack.backends import (
    EMBEDDED_DEFAULT,
    Backend,
    ModelInfo,
    ModelSpec,
    choose_backend,
    create_backend,
    require_available,
)
from ai_stack.backends.base import LoadOptions, on_this_machine
from ai_stack.batch import BatchRunner
from ai_stack.config import Settings, user_dir
from ai_stack.context import typical_context
from ai_stack.controller import Pipeline
from ai_stack.errors import UsageError
from ai_stack.evals import EvalRun, Suite
from ai_stack.evals.runner import eval_workflow
from ai_stack.evidence import EvidenceCollector
from ai_stack.files import NotARegularFile, read_regular
from ai_stack.footprint import estimate_footprint
from ai_stack.lease import ResidencyLease
from ai_stack.machine import Machine
from ai_stack.memory import MemoryManager, load_options_for
from ai_stack.modes import ROLES_CALLED
from ai_stack.prompts import PromptLibrary
from ai_stack.recommend import default_roles, recommend
from ai_stack.sandbox import Limits, Sandbox
from ai_stack.thermal import make_guard
from ai_stack.thermal.policy import ThermalGuard
from ai_stack.tools import Toolbox, toolbox_for
from ai_stack.tools.mcp import McpServers
from ai_stack.types import ROLES, Mode, Role
from ai_stack.units import GIB
from ai_stack.workflow import Workflow


def resolve_roles(
    settings: Settings, backend: str, defaults: dict[Role, str] | None = None
) -> dict[Role, ModelSpec]:
    """Each role's model spec with its backend filled in (explicit prefixes win)."""
    specs: dict[Role, ModelSpec] = {}
    for role in ROLES:
        text = settings.role(role).model or (defaults or {}).get(role) or EMBEDDED_DEFAULT
        specs[role] = ModelSpec.parse(text, settings.backend_names).with_backend(backend)
    return specs


def build_manager(
    settings: Settings, *, machine: Machine | None = None
) -> tuple[MemoryManager, ThermalGuard | None]:
    """The memory manager the settings describe (backends from the registry), and the thermal
    guard when enabled, wired to check local loads under memory pressure."""
    budget = settings.memory.budget_gb
    guard = make_guard(settings.thermal) if settings.thermal.enabled else None

    def lease_for(name: str, backend: Backend, policy: str, budget: int) -> ResidencyLease:
        """One lease per server — by its URL, so every name for it (Ollama's own API, its
        OpenAI-compatible one, two endpoints) shares it — or this machine's for in-process
        models."""
        host = getattr(backend, "host", None)
        return ResidencyLease(
            user_dir() / "leases",
            f"server {host.rstrip('/').removesuffix('/v1')}" if host else name,
            policy=policy,
            budget=budget,
            timeout_s=settings.memory.wait_timeout_s,
        )

    manager = MemoryManager(
        lambda name: create_backend(name, settings),
        policy=settings.memory.policy,
        budget_bytes=int(budget * GIB) if budget else None,
        kv_cache_type=settings.memory.kv_cache_type,
        machine=machine,
        memory_check=guard.memory_check if guard is not None else None,
        lease_for=lease_for,
    )
    return manager, guard


CHECK_LIMIT = 1024 * 1024  # a check file is code; past this it is something else


def read_check(path: Path) -> str:
    """A ``--check`` file's text (the user named it; it is run, not shown to a model): a
    regular file, read up to a bound."""
    try:
        data = read_regular(path.expanduser(), CHECK_LIMIT)
        if data is None:
            raise UsageError(f"The check file {path} is over {CHECK_LIMIT // 1024:,} KiB.")
        return data.decode("utf-8")
    except NotARegularFile as exc:
        raise UsageError(f"The check file {path} {exc.strerror}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"Cannot read the check file {path}: {exc}") from None


@dataclass
class Session:
    """The wired core for one process: use as a context manager, or call :meth:`close`."""

    settings: Settings
    manager: MemoryManager
    guard: ThermalGuard | None = None
    backend: str | None = None  # for specs without a prefix, once chosen
    backend_note: str = ""
    _defaults: dict[Role, str] | None = None
    _evidence: EvidenceCollector | None = None
    _mcp: McpServers | None = None
    _prompts: dict[Path | None, PromptLibrary] = field(default_factory=dict)

    @classmethod
    def open(
        cls, settings: Settings, *, choose: bool = True, machine: Machine | None = None
    ) -> Session:
        """Wire the core. With ``choose``, pick the backend now (contacting Ollama)."""
        manager, guard = build_manager(settings, machine=machine)
        session = cls(settings, manager, guard)
        if choose:
            try:
                session.choose_backend()
            except BaseException:
                session.close()
                raise
        return session

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Unload every model this session loaded, release the backends, stop the MCP servers
        it started."""
        self.manager.close()
        if self._mcp is not None:
            self._mcp.close()

    def mcp_servers(self) -> McpServers:
        """The user's MCP servers (``[mcp_servers]``), each started when a toolbox first asks."""
        if self._mcp is None:
            self._mcp = McpServers(self.settings.mcp_servers)
        return self._mcp

    # -- backends ----------------------------------------------------------------------------

    def choose_backend(self) -> str:
        """The backend for specs without a prefix (``auto``: a reachable Ollama, else the first
        OpenAI-compatible server of :attr:`auto_servers` that answers, else embedded)."""
        if self.backend is None:
            self.backend, self.backend_note = choose_backend(
                self.settings.backend,
                self.manager.backend,
                autostart=self.settings.ollama.autostart,
                servers=self.auto_servers,
            )
        return self.backend

    @property
    def servers(self) -> list[str]:
        """The OpenAI-compatible servers known here: the configured endpoints, and
        ``openai`` when ``$OPENAI_BASE_URL`` names one."""
        names = list(self.settings.endpoints)
        if "openai" not in names and self.settings.endpoint("openai") is not None:
            names.append("openai")
        return names

    @property
    def auto_servers(self) -> list[str]:
        """The servers ``auto`` may find (choose, list, check): the configured endpoints, and
        ``openai`` only where ``$OPENAI_BASE_URL`` is this machine. Other tools read that
        variable too, often pointing at a hosted API: a server off this machine gets prompts
        only when named (``--backend openai``, ``openai:MODEL``, an ``[endpoints.NAME]``)."""
        names = list(self.settings.endpoints)
        from_environment = self.settings.endpoint("openai") if "openai" not in names else None
        if from_environment is not None and on_this_machine(from_environment.base_url):
            names.append("openai")
        return names

    def remote_note(self, *runs: Settings) -> str | None:
        """One line naming where prompts go when a role the runs' modes call (default: the
        session's) is on a server off this machine; None when every one is here."""
        away: dict[str, list[str]] = {}
        for settings in runs or (self.settings,):
            specs = self.role_specs(settings)
            for role in ROLES_CALLED[settings.mode]:
                backend = self.manager.backend(specs[role].backend_name)
                if getattr(backend, "local", True):  # in-process, or a loopback server
                    continue
                roles = away.setdefault(getattr(backend, "host", backend.name), [])
                if role not in roles:
                    roles.append(role)
        if not away:
            return None
        where = "; ".join(f"{', '.join(roles)} to {host}" for host, roles in away.items())
        return f"Prompts go off this machine: {where}"

    def available(self, name: str, *, required: bool) -> Backend | None:
        """The backend ``name`` if it answers; else None, or an error saying how to fix it."""
        backend = self.manager.backend(name)
        if required:
            return require_available(backend)
        return backend if backend.health().available else None

    def model_rows(self, backend: str = "auto") -> tuple[list[dict[str, Any]], list[str]]:
        """The models of every backend ``backend`` names (``auto``: all that answer), as
        listings show them, and a note for each that does not answer."""
        rows: list[dict[str, Any]] = []
        notes: list[str] = []
        servers = self.auto_servers if backend == "auto" else self.servers
        for name in ("ollama", *servers, "embedded"):
            if backend not in ("auto", name):
                continue
            found = self.available(name, required=backend == name)
            if found is None:
                where = getattr(self.manager.backend(name), "host", "")
                label = "Ollama" if name == "ollama" else name
                notes.append(f"{label} is not reachable{f' at {where}' if where else ''}")
                continue
            infos = found.list_models()
            # Ollama's listing leaves out what only /api/show says (family, context, ...)
            rows += [(found.describe(i.name) if name == "ollama" else i).row() for i in infos]
        return rows, notes

    def target(self, name: str, backend: str = "auto") -> tuple[Backend, ModelSpec]:
        """The backend a model name refers to: its prefix, else ``backend``, else the one
        ``auto`` finds (a reachable Ollama, else embedded). The backend must be usable."""
        spec = ModelSpec.parse(name, self.settings.backend_names)
        chosen = spec.backend or (None if backend == "auto" else backend)
        if chosen is None:
            chosen, _ = choose_backend("auto", self.manager.backend, servers=self.auto_servers)
        found = self.available(chosen, required=True)
        assert found is not None
        return found, spec.with_backend(chosen)

    # -- roles -------------------------------------------------------------------------------

    def role_specs(self, settings: Settings | None = None) -> dict[Role, ModelSpec]:
        """Each role's model for ``settings`` (default: the session's), defaults filled in."""
        settings = settings or self.settings
        return resolve_roles(settings, self.choose_backend(), self.default_models())

    def default_models(self) -> dict[Role, str]:
        """Models for roles the user left unset: SmolLM2 when embedded; on Ollama the original
        ai-stack's roles where installed, else picked from what is installed and fits."""
        if self._defaults is not None:
            return self._defaults
        backend = self.choose_backend()
        if backend == "embedded" or all(self.settings.role(role).model for role in ROLES):
            self._defaults = {role: EMBEDDED_DEFAULT for role in ROLES}
            return self._defaults
        executor = self.settings.executor
        num_ctx = typical_context(executor.num_ctx, executor.fixed_ctx)

        def fits(info: ModelInfo) -> bool:
            described = self.manager.describe(ModelSpec(backend, info.name))
            total = estimate_footprint(described, num_ctx, kv_cache_type=self.manager.kv_cache_type)
            return total.total <= self.manager.residency_budget

        installed = self.manager.backend(backend).list_models()
        self._defaults = default_roles(installed, fits)
        return self._defaults

    def demo_hint(self) -> str | None:
        """When the roles the mode calls run the packaged 135M demo model only because no
        model is configured: one line saying so, with what to pull for this machine."""
        specs = self.role_specs()
        called = ROLES_CALLED[self.settings.mode]
        if not any(
            specs[role] == ModelSpec("embedded", EMBEDDED_DEFAULT)
            and not self.settings.role(role).model
            for role in called
        ):
            return None
        embedded = self.manager.backend("embedded")
        installed = embedded.list_models() if embedded.health().available else []
        executor = self.settings.executor
        best = recommend(
            self.manager,
            installed,
            num_ctx=typical_context(executor.num_ctx, executor.fixed_ctx),
            backends=("embedded",),
        )["executor"]
        note = (
            "the roles run SmolLM2-135M, a tiny demo model: it shows how the team works, "
            "not useful answers."
        )
        model = best.get("model")
        if model is None or model == EMBEDDED_DEFAULT:
            return f"{note} Nothing larger fits this machine's memory budget."
        if best.get("action"):  # the command on a line of its own: it is typed whole
            command = best["action"]
            return f"{note} For this machine:\n  {command}\nthen run with --executor {model}."
        return (
            f"{note} {model} is installed: run with --executor {model} (or set it in the config)."
        )

    def load_options(
        self, runs: Iterable[tuple[Settings, dict[Role, ModelSpec]]]
    ) -> dict[ModelSpec, LoadOptions]:
        """One set of load-time options per model over every run it will serve."""
        return load_options_for(
            (spec, settings.role(role).num_ctx)
            for settings, specs in runs
            for role, spec in specs.items()
            if role in ROLES_CALLED[settings.mode]
        )

    def prompts(self, directory: Path | None = None) -> PromptLibrary:
        """The prompt library for a prompts directory (one per directory, reused)."""
        if directory not in self._prompts:
            self._prompts[directory] = PromptLibrary(directory)
        return self._prompts[directory]

    def config_snapshot(self, settings: Settings, specs: dict[Role, ModelSpec]) -> dict[str, Any]:
        """What the history keeps of a run's configuration."""
        library = self.prompts(settings.prompts_dir)
        return {
            "backend": self.backend_note,
            "roles": {
                role: {**settings.role(role).model_dump(mode="json"), "model": str(spec)}
                for role, spec in specs.items()
            },
            "max_rounds": settings.max_rounds,
            "approve_score": settings.approve_score,
            "prompts": library.sources(),
            "memory": {
                "policy": self.manager.policy,
                "budget_bytes": self.manager.budget,
                "kv_cache_type": self.manager.kv_cache_type,
            },
        }

    # -- what runs ---------------------------------------------------------------------------

    def evidence(self) -> EvidenceCollector:
        """What the answer review checks answers with: the sandbox (isolated where the machine
        allows, unisolated only with the user's opt-in), the user's checks and commands."""
        if self._evidence is None:
            wanted = self.settings.evidence
            limits = Limits(
                seconds=wanted.timeout_s, memory_mb=wanted.memory_mb, output_kb=wanted.output_kb
            )
            sandbox = Sandbox(limits, allow_unisolated=wanted.exec)
            checks = {
                f"check_{i}_{path.name}": read_check(path)
                for i, path in enumerate(wanted.checks, 1)
            }
            self._evidence = EvidenceCollector(sandbox, checks, list(wanted.check_cmds), limits)
        return self._evidence

    def pipeline(self, settings: Settings | None = None) -> Pipeline:
        """A pipeline for ``settings`` (default: the session's; one serves many tasks: the
        REPL), on the session's memory manager."""
        settings = settings or self.settings
        specs = self.role_specs(settings)
        return Pipeline(
            settings,
            self.manager,
            self.prompts(settings.prompts_dir),
            specs,
            self.load_options([(settings, specs)]),
            guard=self.guard,
            evidence=self.evidence(),
            toolbox=self.toolbox(settings),
        )

    def eval_run(self, suite: Suite, modes: list[Mode], out_dir: Path) -> EvalRun:
        """An eval of ``suite`` in each of ``modes``, side by side, on the session's models."""
        specs = self.role_specs()
        keep = {"history", "thermal", "ollama", "memory"}
        fingerprint = json.dumps(
            {
                "models": {r: str(s) for r, s in specs.items()},
                "settings": self.settings.model_dump(mode="json", exclude=keep),
            },
            sort_keys=True,
        )
        workflow = eval_workflow(suite, modes, self.settings, out_dir, fingerprint)
        runner = self.batch_runner(workflow, out_dir, source="eval")
        collector = self.evidence()
        return EvalRun(suite, modes, runner, collector.sandbox, collector.limits)

    def batch_runner(
        self,
        workflow: Workflow,
        out_dir: Path,
        source: str = "batch",
        runner: Callable[..., BatchRunner] = BatchRunner,
    ) -> BatchRunner:
        """A runner for a validated workflow, every task wired like a one-shot run (``runner``:
        another kind, e.g. a cluster's)."""
        specs = {task.id: self.role_specs(task.settings) for task in workflow.tasks}
        return runner(
            workflow,
            self.manager,
            specs=specs,
            load_options=self.load_options((t.settings, specs[t.id]) for t in workflow.tasks),
            prompts=self.prompts,
            snapshot=self.config_snapshot,
            out_dir=out_dir,
            evidence=self.evidence(),
            guard=self.guard,
            source=source,
            tools=self.toolbox,
        )

    def toolbox(self, settings: Settings) -> Toolbox | None:
        """The tools a run with ``settings`` offers the Executor: none unless they turn tools
        on; the built-in ones and the MCP servers' (started on first use)."""
        if not settings.tools.enabled:
            return None
        return toolbox_for(settings, self.evidence().sandbox, servers=self.mcp_servers())


__all__ = ["Session", "build_manager", "resolve_roles"]
