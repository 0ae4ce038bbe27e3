"""The memory manager: the one place that decides which models are resident.

It keeps the resident set inside a budget under one of two policies:

- ``one-at-a-time`` (default): before a model loads, every other resident model is unloaded, and
  the backends are asked again to confirm that none is left.
- ``fit``: several models stay resident while their footprints fit the budget; the least recently
  used is evicted first.

A model whose estimated footprint alone exceeds the budget is refused with a message naming
models that would fit. Footprint = weights (size on disk) + KV cache for the context + a margin
for compute buffers; once loaded, the backend's own figure (``/api/ps`` size, or RSS growth for
the embedded backend) is recorded beside the estimate.

Acquiring a model is a generator of events that *returns* a :class:`Lease`, so the controller
relays the events with ``yield from``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from ai_stack.backends import ModelSpec
from ai_stack.backends.base import Backend, LoadOptions, ModelInfo
from ai_stack.errors import BackendError, MemoryBudgetError
from ai_stack.machine import GIB, MIB, Machine
from ai_stack.types import (
    Event,
    ModelLoaded,
    ModelLoading,
    ModelMemory,
    ModelUnloaded,
    ThermalNote,
    UnloadCause,
)

K = TypeVar("K")
POLICIES = ("one-at-a-time", "fit")
SAFETY_MARGIN = 1 * GIB  # of available RAM, where models share it with everything else
GPU_SHARE_MARGIN = 512 * MIB  # of Apple Silicon's GPU share, which already leaves 1/3 to the OS
KV_BYTES = {"f16": 2.0, "q8_0": 1.0, "q4_0": 0.5}


def gib(n_bytes: float) -> str:
    """Bytes as GiB for messages.

    >>> gib(3 * 1024**3 // 2)
    '1.5 GiB'
    """
    return f"{n_bytes / GIB:.1f} GiB"


@dataclass(frozen=True, slots=True)
class Footprint:
    """Estimated memory of a loaded model."""

    weights: int
    kv_cache: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead

    def describe(self) -> str:
        return (
            f"{gib(self.total)} (weights {gib(self.weights)} + KV cache {gib(self.kv_cache)} "
            f"+ buffers {gib(self.overhead)})"
        )


def estimate_footprint(
    info: ModelInfo, num_ctx: int, *, kv_cache_type: str = "f16", parallel: int = 1
) -> Footprint:
    """Weights + KV cache (Ollama's own formula) + a compute-buffer margin.

    KV per layer = num_ctx * parallel * (key_length + value_length) * kv_heads * bytes; without
    key/value lengths, embedding_length / head_count is the head size.

    >>> info = ModelInfo("qwen2.5:14b", "ollama", 9 * 1024**3, block_count=48, head_count=40,
    ...                  head_count_kv=8, embedding_length=5120)
    >>> estimate_footprint(info, 4096).kv_cache // 1024**2   # 192 KiB per token at f16
    768
    """
    kv = 0
    if info.block_count and info.head_count_kv:
        head = (info.embedding_length or 0) // (info.head_count or 1)
        key_length = info.key_length or head
        value_length = info.value_length or head
        per_layer = num_ctx * parallel * (key_length + value_length) * info.head_count_kv
        kv = int(per_layer * info.block_count * KV_BYTES.get(kv_cache_type, 2.0))
    else:  # unknown architecture: assume a KV cache of a tenth of the weights
        kv = info.size_bytes // 10
    overhead = 256 * MIB + info.size_bytes * 3 // 100
    return Footprint(info.size_bytes, kv, overhead)


def default_budget(machine: Machine) -> int:
    """The budget when none is configured.

    On Apple Silicon the GPU may wire about two-thirds of unified memory (or
    ``iogpu.wired_limit_mb`` when set); elsewhere models live in RAM, so the RAM available now
    (inside a cgroup limit, if any) is the limit. A safety margin is kept either way.

    >>> gib(default_budget(Machine.apple(16)))
    '10.2 GiB'
    >>> gib(default_budget(Machine("Linux", "x86_64", 24 * GIB, 20 * GIB)))
    '19.0 GiB'
    """
    if machine.gpu_share_bytes is not None:
        return max(machine.gpu_share_bytes - GPU_SHARE_MARGIN, 512 * MIB)
    return max(machine.available_bytes - SAFETY_MARGIN, 512 * MIB)


def load_options_for(requests: Iterable[tuple[ModelSpec, int]]) -> dict[ModelSpec, LoadOptions]:
    """One set of load-time options per model, so a model shared by roles (or by the tasks of a
    batch) is never reloaded: its context is the largest any of its uses asks for.

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
class Lease:
    """A model made ready for a call; ``load_s`` is what this acquisition spent loading."""

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


@dataclass
class MemoryManager:
    """Keeps the resident set inside the budget and policy, across every backend in use.

    It counts nothing: every load and unload is an event (``ModelLoaded``, ``ModelUnloaded``
    with its cause), and totals are derived from the events by whoever relays them.
    """

    backend_factory: Callable[[str], Backend]
    policy: str = "one-at-a-time"
    budget_bytes: int | None = None
    kv_cache_type: str = "f16"
    machine: Machine | None = None  # default: this machine, read when the budget is needed
    clock: Callable[[], float] = time.perf_counter
    memory_check: Callable[[str, int], ThermalNote | None] | None = None  # local loads
    records: dict[ModelSpec, ModelMemory] = field(default_factory=dict)
    _backends: dict[str, Backend] = field(default_factory=dict)
    _resident: dict[ModelSpec, _Resident] = field(default_factory=dict)  # LRU first
    _infos: dict[ModelSpec, ModelInfo] = field(default_factory=dict)
    _loading: ModelSpec | None = None

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; choose from {', '.join(POLICIES)}")
        if self.budget_bytes is None:
            self.machine = self.machine or Machine.detect()
            self.budget_bytes = default_budget(self.machine)

    @property
    def budget(self) -> int:
        assert self.budget_bytes is not None
        return self.budget_bytes

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
            assert spec.backend is not None, f"model spec {spec} has no backend; resolve it first"
            self._infos[spec] = self.backend(spec.backend).describe(spec.name)
        return self._infos[spec]

    def footprint(self, spec: ModelSpec, options: LoadOptions) -> Footprint:
        return estimate_footprint(
            self.describe(spec), options.num_ctx, kv_cache_type=self.kv_cache_type
        )

    def check_fits(self, spec: ModelSpec, options: LoadOptions) -> Footprint:
        """The footprint of ``spec``, or a MemoryBudgetError if it alone exceeds the budget."""
        footprint = self.footprint(spec, options)
        if footprint.total > self.budget:
            raise MemoryBudgetError(
                str(spec),
                f"{spec} needs about {footprint.describe()}, more than the memory budget of "
                f"{gib(self.budget)}.",
                hint=self._alternatives(spec, options),
            )
        return footprint

    def check_all(self, options: dict[ModelSpec, LoadOptions]) -> None:
        """Fail before any work if a model is missing or alone exceeds the budget."""
        for spec, load in options.items():
            self.check_fits(spec, load)

    def acquire(self, spec: ModelSpec, options: LoadOptions) -> Generator[Event, None, Lease]:
        """Make ``spec`` resident with ``options``, evicting others as the policy says."""
        if spec.backend is None:
            raise ValueError(f"model spec {spec} has no backend; resolve it first")
        backend = self.backend(spec.backend)
        current = self._resident.get(spec)
        if current is not None and current.options == options:
            self._resident[spec] = self._resident.pop(spec)  # most recently used last
            return Lease(backend, spec, 0.0)
        footprint = self.check_fits(spec, options)
        if current is not None:
            yield from self._unload(spec, "load-time options changed", "options")
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
        yield ModelLoading(str(spec), footprint.total)
        started = self.clock()
        self._loading = spec  # until load returns: a Ctrl-C here may leave it loaded on a server
        backend.load(spec.name, options)
        self._loading = None
        seconds = self.clock() - started
        measured = self._measured(backend, spec)
        self._resident[spec] = _Resident(options, footprint.total, measured)
        self.records[spec] = ModelMemory(
            model=str(spec), estimate_bytes=footprint.total, resident_bytes=measured
        )
        yield ModelLoaded(str(spec), seconds, footprint.total, measured)
        return Lease(backend, spec, seconds)

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
                assert spec.backend is not None
                self.backend(spec.backend).unload(spec.name)
            for _ in self.release_all():
                pass
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
        yield from self._unload_foreign(exclude=spec, until_fits=needed)
        for victim in evictions(self.policy, ours, needed, self.budget):
            yield from self._unload(victim, f"making room within {gib(self.budget)}", "policy")

    def _used(self) -> int:
        return sum(resident.size for resident in self._resident.values())

    def _unload_foreign(
        self, *, exclude: ModelSpec, until_fits: int | None = None
    ) -> Iterator[Event]:
        """Unload models resident in a backend we use that this manager did not load (another
        client's). With ``until_fits``, only as many as needed for that many more bytes."""
        foreign = [
            (ModelSpec(name, model.name), model.size_bytes)
            for name, backend in self._backends_in_use(exclude)
            for model in backend.resident()
            if ModelSpec(name, model.name) not in self._resident
            and ModelSpec(name, model.name) != exclude
        ]
        remaining = sum(size for _, size in foreign)
        for spec, size in foreign:
            if until_fits is not None and self._used() + remaining + until_fits <= self.budget:
                return
            assert spec.backend is not None
            self.backend(spec.backend).unload(spec.name)
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

    def _measured(self, backend: Backend, spec: ModelSpec) -> int | None:
        for model in backend.resident():
            if model.name == spec.name:
                return model.size_bytes
        return None

    def _unload(self, spec: ModelSpec, reason: str, cause: UnloadCause) -> Iterator[Event]:
        assert spec.backend is not None
        self.backend(spec.backend).unload(spec.name)
        del self._resident[spec]
        yield ModelUnloaded(str(spec), reason, cause)

    def _alternatives(self, spec: ModelSpec, options: LoadOptions) -> str:
        assert spec.backend is not None
        fitting = []
        try:
            installed = self.backend(spec.backend).list_models()
        except Exception:  # the refusal matters more than the suggestions
            installed = []
        for listed in installed:
            if listed.name == spec.name:
                continue
            try:
                info = self.describe(ModelSpec(spec.backend, listed.name))
            except Exception:
                info = listed
            total = estimate_footprint(
                info, options.num_ctx, kv_cache_type=self.kv_cache_type
            ).total
            if total <= self.budget:
                fitting.append((total, info.name))
        advice = (
            "Or lower num_ctx for this role, quantize the KV cache (OLLAMA_KV_CACHE_TYPE=q8_0 "
            'and memory.kv_cache_type = "q8_0"), or raise the budget with --memory-budget GB.'
        )
        if not fitting:
            return f"No installed {spec.backend} model fits either. {advice}"
        names = ", ".join(f"{name} (~{gib(total)})" for total, name in sorted(fitting)[-4:])
        return f"Installed models that fit: {names}. {advice}"
