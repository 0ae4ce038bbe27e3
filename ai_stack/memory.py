"""The memory manager: the one place that decides which models are resident.

It keeps the resident set inside a budget under one of two policies:

- ``one-at-a-time`` (default): before a model loads, every other resident model is unloaded, and
  the backends are asked again to confirm that none is left.
- ``fit``: several models stay resident while their footprints fit the budget (and, on Apple
  Silicon, the GPU's share of memory); the least recently used is evicted first.

Two limits, two answers. The budget is what fits in memory at all: a model over it is refused
with a message naming models that would fit. On Apple Silicon the GPU's share of unified memory
is the second limit: a model over it still runs, with some layers on the CPU, so it loads with
one warning saying how many and what to change. Footprint = weights (size on disk) + KV cache
for the context + compute buffers (the server's own formula) + the runtime's reserve; once
loaded, the backend's own figure (``/api/ps`` size and GPU share, or RSS growth for the embedded
backend) is recorded beside the estimate, and tells which KV cache type a server really uses.

A model's context is chosen per run by the caller (see ``context.choose_contexts``); a resident
model is reused whenever its context covers the call, so its load-time options never change
while it is resident (an Ollama model would silently reload).

Acquiring a model is a generator of events that *returns* a :class:`ReadyModel`, so the controller
relays the events with ``yield from``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from ai_stack.backends import ModelSpec
from ai_stack.backends.base import Backend, LoadOptions, ModelInfo, ResidentModel
from ai_stack.errors import BackendError, MemoryBudgetError
from ai_stack.footprint import Footprint, cpu_layers, estimate_footprint, learnt_kv_cache
from ai_stack.lease import ResidencyLease
from ai_stack.machine import Machine
from ai_stack.tokens import TokenRates
from ai_stack.types import (
    Event,
    ModelLoaded,
    ModelLoading,
    ModelMemory,
    ModelUnloaded,
    Notice,
    ThermalNote,
    UnloadCause,
)
from ai_stack.units import GIB, MIB, gib

K = TypeVar("K")
POLICIES = ("one-at-a-time", "fit")
SAFETY_MARGIN = 1 * GIB  # of available RAM, where models share it with everything else
SYSTEM_SHARE = 5  # on Apple Silicon the system keeps a fifth of RAM for itself ...
SYSTEM_MINIMUM = int(2.5 * GIB)  # ... and at least this much
SHARED_POLL_S = 0.1  # how often to look for a model another process is loading


def default_budget(machine: Machine) -> int:
    """What resident models may take together when no budget is configured: over it, a model
    does not fit in memory at all.

    On Apple Silicon memory is unified: RAM less what the system keeps for itself (a fifth, at
    least 2.5 GiB). The GPU's share of it is a second, softer limit (:attr:`Machine.gpu_share_
    bytes`): over it a model runs partly on the CPU. Elsewhere models live in RAM, so the RAM
    available now (inside a cgroup limit, if any), less a margin, is the limit.

    >>> gib(default_budget(Machine.apple(16))), gib(default_budget(Machine.apple(8)))
    ('12.8 GiB', '5.5 GiB')
    >>> gib(default_budget(Machine("Linux", "x86_64", 24 * GIB, 20 * GIB)))
    '19.0 GiB'
    """
    if machine.apple_silicon:
        return machine.total_bytes - max(SYSTEM_MINIMUM, machine.total_bytes // SYSTEM_SHARE)
    return max(machine.available_bytes - SAFETY_MARGIN, 512 * MIB)


def covers(resident: LoadOptions, wanted: LoadOptions) -> bool:
    """Whether a model loaded with ``resident`` serves a call that wants ``wanted``: the same
    options, with at least the context.

    >>> covers(LoadOptions(num_ctx=4096), LoadOptions(num_ctx=2048))
    True
    >>> covers(LoadOptions(num_ctx=2048), LoadOptions(num_ctx=4096))
    False
    """
    return (
        resident.num_ctx >= wanted.num_ctx and replace(resident, num_ctx=wanted.num_ctx) == wanted
    )


def load_options_for(requests: Iterable[tuple[ModelSpec, int]]) -> dict[ModelSpec, LoadOptions]:
    """One set of load-time options per model, shared by its roles (and by the tasks of a
    batch): its context is the largest any of its uses allows (each run then loads it with what
    it needs, up to that).

    >>> a, b = ModelSpec("ollama", "a"), ModelSpec("ollama", "b")
    >>> load_options_for([(a, 2048), (b, 4096), (a, 8192)])[a].num_ctx
    8192
    """
    contexts: dict[ModelSpec, int] = {}
    for spec, num_ctx in requests:
        contexts[spec] = max(contexts.get(spec, 0), num_ctx)
    return {spec: LoadOptions(num_ctx=num_ctx) for spec, num_ctx in contexts.items()}


def evictions(policy: str, resident: Sequence[tuple[K, int]], needed: int, budget: int) -> list[K]:
    """Which resident models (given least recently used first, with their sizes) must go before a
    model of ``needed`` bytes loads. The one residency rule: the manager acts on it, and batch
    predictions simulate it.

    >>> evictions("one-at-a-time", [("a", 4), ("b", 4)], 4, 100)
    ['a', 'b']
    >>> evictions("fit", [("a", 4), ("b", 4)], 4, 10), evictions("fit", [("a", 4)], 4, 10)
    (['a'], [])
    """
    if policy == "one-at-a-time":
        return [key for key, _ in resident]
    used = sum(size for _, size in resident)
    victims = []
    for key, size in resident:
        if used + needed <= budget:
            break
        victims.append(key)
        used -= size
    return victims


@dataclass(frozen=True, slots=True)
class ReadyModel:
    """A model made ready for a call; ``load_s`` is what this acquisition spent loading. (The
    machine-wide claim on a backend's memory is :class:`~ai_stack.lease.ResidencyLease`.)"""

    backend: Backend
    spec: ModelSpec
    load_s: float


@dataclass(slots=True)
class _Resident:
    options: LoadOptions
    footprint: int
    measured: int | None = None

    @property
    def size(self) -> int:
        return max(self.footprint, self.measured or 0)


def controls_residency(backend: Backend) -> bool:
    """Whether loading and unloading on ``backend`` does what it says (an OpenAI-compatible
    server without a lifecycle API decides for itself what it keeps in memory)."""
    return bool(getattr(backend, "controls_residency", True))


def in_process(spec: ModelSpec) -> bool:
    """Whether ``spec`` lives in this process's memory (the embedded backend) rather than in a
    server's, where other processes may use it too."""
    return spec.backend == "embedded"


@dataclass
class MemoryManager:
    """Keeps the resident set inside the budget and policy, across every backend in use.

    It counts nothing: every load and unload is an event (``ModelLoaded``, ``ModelUnloaded``
    with its cause), and totals are derived from the events by whoever relays them.
    """

    backend_factory: Callable[[str], Backend]
    policy: str = "one-at-a-time"
    budget_bytes: int | None = None  # default: what fits on this machine (default_budget)
    kv_cache_type: str = "f16"  # learnt from a server's resident sizes when they tell
    machine: Machine | None = None  # default: this machine
    gpu_limit_bytes: int | None = None  # default: the machine's GPU share (Apple Silicon)
    clock: Callable[[], float] = time.perf_counter
    memory_check: Callable[[str, int], ThermalNote | None] | None = None  # local loads
    records: dict[ModelSpec, ModelMemory] = field(default_factory=dict)
    _backends: dict[str, Backend] = field(default_factory=dict)
    _resident: dict[ModelSpec, _Resident] = field(default_factory=dict)  # LRU first
    _infos: dict[ModelSpec, ModelInfo] = field(default_factory=dict)
    _loading: ModelSpec | None = None
    _reserved: dict[str, int] = field(default_factory=dict)  # model -> context for its next load
    _warned: set[ModelSpec] = field(default_factory=set)  # partial offload, said once
    _said: set[str] = field(default_factory=set)  # backends that do not control residency
    tokens: TokenRates = field(default_factory=TokenRates)
    # The machine-wide residency lease of a backend, given its name, the backend, the policy
    # and the residency budget (None: this process is alone; tests)
    lease_for: Callable[[str, Backend, str, int], ResidencyLease | None] | None = None
    _leases: dict[str, ResidencyLease | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; choose from {', '.join(POLICIES)}")
        self.machine = self.machine or Machine.detect()
        if self.budget_bytes is None:
            self.budget_bytes = default_budget(self.machine)
        if self.gpu_limit_bytes is None:
            self.gpu_limit_bytes = self.machine.gpu_share_bytes

    @property
    def budget(self) -> int:
        """Over this, a model does not fit: it is refused."""
        assert self.budget_bytes is not None
        return self.budget_bytes

    @property
    def residency_budget(self) -> int:
        """What models resident together may take: the budget, and on Apple Silicon the GPU's
        share too (together over it, they would run partly on the CPU)."""
        if self.gpu_limit_bytes is None:
            return self.budget
        return min(self.budget, self.gpu_limit_bytes)

    def backend(self, name: str) -> Backend:
        """The backend called ``name``, created on first use."""
        if name not in self._backends:
            self._backends[name] = self.backend_factory(name)
        return self._backends[name]

    @property
    def resident(self) -> list[ModelSpec]:
        return list(self._resident)

    def describe(self, spec: ModelSpec) -> ModelInfo:
        """The backend's description of ``spec`` (cached; raises ModelNotFoundError)."""
        if spec not in self._infos:
            self._infos[spec] = self.backend(spec.backend_name).describe(spec.name)
        return self._infos[spec]

    def footprint(self, spec: ModelSpec, options: LoadOptions) -> Footprint:
        """The estimate for ``spec`` loaded with ``options``: the KV cache type is the Ollama
        server's (configured or learnt); llama.cpp in-process keeps it at f16."""
        kind = self.kv_cache_type if spec.backend == "ollama" else "f16"
        return estimate_footprint(self.describe(spec), options.num_ctx, kv_cache_type=kind)

    def check_fits(self, spec: ModelSpec, options: LoadOptions) -> Footprint:
        """The footprint of ``spec``, or a MemoryBudgetError if it alone exceeds the budget."""
        footprint = self.footprint(spec, options)
        if footprint.total > self.budget:
            raise MemoryBudgetError(
                str(spec),
                f"{spec} needs about {footprint.describe()} with a context of {options.num_ctx:,} "
                f"tokens, more than the memory budget of {gib(self.budget)}.",
                hint=self._alternatives(spec, options),
            )
        return footprint

    def count_tokens(self, spec: ModelSpec, text: str) -> int:
        """Tokens ``text`` takes for ``spec`` (:class:`~ai_stack.tokens.TokenRates`)."""
        return self.tokens.count(self.backend(spec.backend_name), spec, text)

    def learn_tokens(self, spec: ModelSpec, text: str, tokens: int) -> None:
        """The server counted ``tokens`` for a prompt of ``text``."""
        self.tokens.learn(self.backend(spec.backend_name), spec, text, tokens)

    def reserve_context(self, model: str, num_ctx: int) -> None:
        """Load ``model`` with at least ``num_ctx`` next time, so a batch's phase group, whose
        tasks need different contexts, loads it once with the largest."""
        self._reserved[model] = num_ctx

    def check_all(self, options: dict[ModelSpec, LoadOptions]) -> None:
        """Fail before any work if a model is missing or alone exceeds the budget."""
        for spec, load in options.items():
            self.check_fits(spec, load)

    def acquire(self, spec: ModelSpec, options: LoadOptions) -> Generator[Event, None, ReadyModel]:
        """Make ``spec`` resident with ``options``, evicting others as the policy says: reuse
        it where this process has it with room enough, adopt it where another process (or
        ``ollama run``) has it loaded on the server, else load it."""
        backend = self.backend(spec.backend_name)
        floor = self._reserved.get(str(spec), 0)
        if floor > options.num_ctx:
            options = replace(options, num_ctx=floor)
        current, shared = yield from self._claim(spec, options, backend)
        if current is not None and covers(current.options, options):
            self._resident[spec] = self._resident.pop(spec)  # most recently used last
            return ReadyModel(backend, spec, 0.0)
        self._reserved.pop(str(spec), None)
        footprint = self.check_fits(spec, options)
        if current is None and not in_process(spec):
            adopted = yield from self._adopt(spec, options, backend, footprint, shared)
            if adopted is not None:
                return adopted
        return (yield from self._load(spec, options, backend, footprint, current))

    def _claim(
        self, spec: ModelSpec, options: LoadOptions, backend: Backend
    ) -> Generator[Event, None, tuple[_Resident | None, bool]]:
        """This process's residency of ``spec`` once the machine-wide lease is claimed for it
        (None if another process unloaded it meanwhile), and whether another process holds a
        claim on the same model."""
        current = self._resident.get(spec)
        lease = self.lease(spec.backend_name)
        if lease is None:
            return current, False
        size = current.size if current is not None else self.footprint(spec, options).total
        shared = yield from lease.claim(str(spec), size)
        gone = current is not None and not in_process(spec) and controls_residency(backend)
        if gone and self._measured(backend, spec) is None:
            del self._resident[spec]  # another ai-stack process needed the room
            current = None
            yield Notice("reload", f"{spec} was unloaded by another ai-stack process")
        return current, shared

    def _adopt(
        self,
        spec: ModelSpec,
        options: LoadOptions,
        backend: Backend,
        footprint: Footprint,
        shared: bool,
    ) -> Generator[Event, None, ReadyModel | None]:
        """``spec`` already on the server (another ai-stack process, whose load is awaited, or
        ``ollama run``) with room enough: used as it is, at its context, so the server does
        not reload it. None when it is not there."""
        present = self._measured(backend, spec)
        lease = self.lease(spec.backend_name)
        if present is None and shared and lease is not None:
            present = self._await_load(backend, spec, lease)
        if present is None or (present.num_ctx or 0) < options.num_ctx:
            return None
        yield from self._make_room(spec, 0)
        options = replace(options, num_ctx=present.num_ctx or options.num_ctx)
        backend.load(spec.name, options)
        self._resident[spec] = _Resident(options, footprint.total, present.size_bytes)
        self._record(spec, options, footprint, present)
        yield Notice("shared", f"{spec} was already loaded; using it as it is")
        return ReadyModel(backend, spec, 0.0)

    def _load(
        self,
        spec: ModelSpec,
        options: LoadOptions,
        backend: Backend,
        footprint: Footprint,
        current: _Resident | None,
    ) -> Generator[Event, None, ReadyModel]:
        """Load ``spec``: first unload it where its options changed, then make room as the
        policy says, refuse under memory pressure, warn of a partial offload."""
        if current is not None:
            reason = (
                f"a context of {options.num_ctx:,} tokens is needed"
                if current.options.num_ctx < options.num_ctx
                else "load-time options changed"
            )
            yield from self._unload(spec, reason, "options")
        yield from self._make_room(spec, footprint.total)
        if self.memory_check is not None and getattr(backend, "local", False):
            refusal = self.memory_check(str(spec), footprint.total)
            if refusal is not None:
                yield refusal
                raise MemoryBudgetError(
                    str(spec),
                    f"Not loading {spec} now: {refusal.reason}.",
                    hint="Close memory-hungry programs, or use a smaller model or num_ctx.",
                )
        offload = self._offload(spec, options, footprint)
        if offload is not None:
            yield offload
        if not controls_residency(backend) and spec.backend_name not in self._said:
            self._said.add(spec.backend_name)
            yield Notice("residency", getattr(backend, "residency_note", f"{spec.backend}"))
        yield ModelLoading(str(spec), footprint.total)
        started = self.clock()
        self._loading = spec  # until load returns: a Ctrl-C here may leave it loaded on a server
        backend.load(spec.name, options)
        self._loading = None
        seconds = self.clock() - started
        found = self._measured(backend, spec)
        measured = found.size_bytes if found else None
        self._resident[spec] = _Resident(options, footprint.total, measured)
        self._record(spec, options, footprint, found)
        yield ModelLoaded(str(spec), seconds, footprint.total, measured)
        if measured and spec.backend == "ollama":
            learnt = self._learn_kv_cache(spec, options, measured)
            if learnt is not None:
                yield learnt
        return ReadyModel(backend, spec, seconds)

    def _record(
        self,
        spec: ModelSpec,
        options: LoadOptions,
        footprint: Footprint,
        found: ResidentModel | None,
    ) -> None:
        """What the run's metrics say of ``spec``'s memory: estimated beside measured."""
        self.records[spec] = ModelMemory(
            model=str(spec),
            estimate_bytes=footprint.total,
            resident_bytes=found.size_bytes if found else None,
            num_ctx=options.num_ctx,
            kv_cache_type=self.kv_cache_type if spec.backend == "ollama" else "f16",
            cpu_layers=(
                None
                if self.gpu_limit_bytes is None
                else cpu_layers(self.describe(spec), footprint, self.gpu_limit_bytes)
            ),
            gpu_bytes=found.vram_bytes if found else None,
        )

    def lease(self, backend: str) -> ResidencyLease | None:
        """The machine-wide lease of ``backend``'s endpoint, if this manager takes leases."""
        if self.lease_for is None:
            return None
        if backend not in self._leases:
            self._leases[backend] = self.lease_for(
                backend, self.backend(backend), self.policy, self.residency_budget
            )
        return self._leases[backend]

    def _await_load(
        self, backend: Backend, spec: ModelSpec, lease: ResidencyLease
    ) -> ResidentModel | None:
        """Another process claims the model this one wants and may be loading it: wait for it
        on the server rather than load it too (two loads of one model, each counted), while
        that process still claims it, up to the lease's timeout."""
        deadline = self.clock() + lease.timeout_s
        while self.clock() < deadline and lease.others_using(str(spec)):
            present = self._measured(backend, spec)
            if present is not None:
                return present
            time.sleep(SHARED_POLL_S)
        return self._measured(backend, spec)

    def finished(self, spec: ModelSpec) -> None:
        """A call on ``spec`` ended: a server's model is left loaded but no longer claimed, so
        another ai-stack process may take the room (an in-process model stays claimed until it
        is unloaded)."""
        lease = self.lease(spec.backend_name)
        if lease is not None and not in_process(spec):
            lease.release(str(spec))

    def release_all(
        self, reason: str = "shutting down", cause: UnloadCause = "shutdown"
    ) -> Iterator[Event]:
        """Unload every model this manager loaded."""
        for spec in list(self._resident):
            yield from self._unload(spec, reason, cause)

    def close(self) -> None:
        """Unload everything — a model whose load was cut short too, since a server may finish
        it anyway — and close the backends; safe to call twice."""
        try:
            if self._loading is not None:
                spec, self._loading = self._loading, None
                self.backend(spec.backend_name).unload(spec.name)
            for _ in self.release_all():
                pass
            for lease in self._leases.values():
                if lease is not None:
                    lease.release()
        finally:
            for backend in self._backends.values():
                backend.close()
            self._backends.clear()

    # -- policy ------------------------------------------------------------------------------

    def _make_room(self, spec: ModelSpec, needed: int) -> Iterator[Event]:
        ours = [(other, resident.size) for other, resident in self._resident.items()]
        if self.policy == "one-at-a-time":
            in_use = self._backends_in_use(spec)
            for other in evictions(self.policy, ours, needed, self.budget):
                yield from self._unload(other, "one model at a time", "policy")
            yield from self._unload_foreign(exclude=spec)
            self._verify_alone(spec, in_use)
            return
        # fit: models loaded by someone else go first, then ours, least recently used first
        budget = self.residency_budget
        yield from self._unload_foreign(exclude=spec, until_fits=needed)
        for victim in evictions(self.policy, ours, needed, budget):
            yield from self._unload(victim, f"making room within {gib(budget)}", "policy")

    def _used(self) -> int:
        return sum(resident.size for resident in self._resident.values())

    def _unload_foreign(
        self, *, exclude: ModelSpec, until_fits: int | None = None
    ) -> Iterator[Event]:
        """Unload models resident in a backend we use that this manager did not load (another
        client's). With ``until_fits``, only as many as needed for that many more bytes."""
        claimed = {
            claim.model
            for name, _ in self._backends_in_use(exclude)
            if (lease := self.lease(name)) is not None
            for claim in lease.claims()
            if claim.pid != lease.pid
        }  # in use by another ai-stack process right now: never unloaded under it
        foreign = [
            (ModelSpec(name, model.name), model.size_bytes)
            for name, backend in self._backends_in_use(exclude)
            for model in backend.resident()
            if ModelSpec(name, model.name) not in self._resident
            and ModelSpec(name, model.name) != exclude
            and str(ModelSpec(name, model.name)) not in claimed
        ]
        remaining = sum(size for _, size in foreign)
        for spec, size in foreign:
            room = self.residency_budget - self._used() - remaining
            if until_fits is not None and until_fits <= room:
                return
            self.backend(spec.backend_name).unload(spec.name)
            remaining -= size
            yield ModelUnloaded(str(spec), "loaded outside this run; freeing its memory", "foreign")

    def _backends_in_use(self, spec: ModelSpec) -> list[tuple[str, Backend]]:
        """Backends holding our models or about to hold ``spec`` (not ones only probed)."""
        names = {s.backend for s in self._resident} | {spec.backend}
        return [(name, self.backend(name)) for name in sorted(n for n in names if n)]

    def _verify_alone(self, spec: ModelSpec, backends: list[tuple[str, Backend]]) -> None:
        """Ask the backends again: under one-at-a-time nothing else may be resident now."""
        for name, backend in backends:
            left = [m.name for m in backend.resident() if ModelSpec(name, m.name) != spec]
            if left:
                raise BackendError(
                    name,
                    f"{', '.join(left)} still resident after unloading; refusing to load {spec} "
                    "beside it under the one-at-a-time policy.",
                )

    def _measured(self, backend: Backend, spec: ModelSpec) -> ResidentModel | None:
        for model in backend.resident():
            if model.name == spec.name:
                return model
        return None

    def _offload(
        self, spec: ModelSpec, options: LoadOptions, footprint: Footprint
    ) -> Notice | None:
        """Over the GPU's share but inside the budget: it runs, slower. Said once per model."""
        gpu = self.gpu_limit_bytes
        if gpu is None or footprint.total <= gpu or spec in self._warned:
            return None
        self._warned.add(spec)
        info = self.describe(spec)
        layers = cpu_layers(info, footprint, gpu)
        of = f" of its {info.block_count}" if info.block_count else ""
        return Notice(
            "offload",
            f"{spec} needs about {gib(footprint.total)} with a context of {options.num_ctx:,} "
            f"tokens, more than the GPU's share of memory ({gib(gpu)}): about {layers}{of} "
            "layers will run on the CPU, which is slower. To keep it all on the GPU: a smaller "
            "context (num_ctx), a quantized KV cache (OLLAMA_KV_CACHE_TYPE=q8_0 with "
            'memory.kv_cache_type = "q8_0"), or a smaller quantization of the model',
        )

    def _learn_kv_cache(
        self, spec: ModelSpec, options: LoadOptions, measured: int
    ) -> Notice | None:
        """Once a server's resident size shows another KV cache type than the configured one,
        estimates use it from then on (:func:`~ai_stack.footprint.learnt_kv_cache`)."""
        info = self.describe(spec)
        best = learnt_kv_cache(info, options.num_ctx, measured, self.kv_cache_type)
        if best is None:
            return None
        previous, self.kv_cache_type = self.kv_cache_type, best
        estimate = estimate_footprint(info, options.num_ctx, kv_cache_type=best).total
        configured = estimate_footprint(info, options.num_ctx, kv_cache_type=previous).total
        return Notice(
            "kv-cache",
            f"{spec} takes {gib(measured)} resident, as with a {best} KV cache "
            f"({gib(estimate)}; {previous} would be {gib(configured)}): the server "
            f"runs with OLLAMA_KV_CACHE_TYPE={best}, so estimates use it from now on (set "
            f'memory.kv_cache_type = "{best}" to start with it)',
        )

    def _unload(self, spec: ModelSpec, reason: str, cause: UnloadCause) -> Iterator[Event]:
        backend = self.backend(spec.backend_name)
        lease = self.lease(spec.backend_name)
        shared = (
            lease is not None
            and not in_process(spec)
            and any(c.model == str(spec) and c.pid != lease.pid for c in lease.claims())
        )
        if not shared:
            backend.unload(spec.name)
        del self._resident[spec]
        if lease is not None:
            lease.release(str(spec))
        if shared:  # the server holds it once for both: unloading it would cut the other off
            yield Notice("shared", f"{spec} is left loaded: another ai-stack process is using it")
            return
        if controls_residency(backend):  # else nothing was unloaded, and nothing is claimed
            yield ModelUnloaded(str(spec), reason, cause)

    def _alternatives(self, spec: ModelSpec, options: LoadOptions) -> str:
        fitting: list[tuple[int, str]] = []
        try:
            installed = self.backend(spec.backend_name).list_models()
        except Exception:  # the refusal matters more than the suggestions
            installed = []
        for listed in installed:
            if listed.name == spec.name:
                continue
            other = ModelSpec(spec.backend, listed.name)
            try:
                total = self.footprint(other, options).total
            except Exception:  # not describable: judge it by its listing
                total = estimate_footprint(listed, options.num_ctx).total
            if total <= self.budget:
                fitting.append((total, listed.name))
        advice = (
            "Or lower num_ctx for this role, quantize the KV cache (OLLAMA_KV_CACHE_TYPE=q8_0 "
            'and memory.kv_cache_type = "q8_0"), or raise the budget with --memory-budget GB.'
        )
        if not fitting:
            return f"No installed {spec.backend} model fits either. {advice}"
        names = ", ".join(f"{name} (~{gib(total)})" for total, name in sorted(fitting)[-4:])
        return f"Installed models that fit: {names}. {advice}"
