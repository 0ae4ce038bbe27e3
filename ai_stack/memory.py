"""The memory manager: the one place that decides which models are resident.

This is the foundation's policy only, ``one-at-a-time``: before a model loads, every other
resident model is unloaded and the backend confirms it. Budgets, footprint estimates and the
``fit`` policy build on this class (see DESIGN.md, "Memory manager").

Acquiring a model is a generator of events (unloads, loading, loaded) that *returns* a
:class:`Lease`, so the controller can relay the events with ``yield from``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

from ai_stack.backends import ModelSpec
from ai_stack.backends.base import Backend, LoadOptions
from ai_stack.types import Event, ModelLoaded, ModelLoading, ModelUnloaded

POLICIES = ("one-at-a-time",)


@dataclass(frozen=True, slots=True)
class Lease:
    """A model made ready for a call; ``load_s`` is what this acquisition spent loading."""

    backend: Backend
    spec: ModelSpec
    load_s: float


@dataclass(frozen=True, slots=True)
class Counters:
    """Running totals; subtract two snapshots to get one run's share."""

    loads: int = 0
    unloads: int = 0
    load_s: float = 0.0

    def __sub__(self, other: Counters) -> Counters:
        return Counters(
            self.loads - other.loads, self.unloads - other.unloads, self.load_s - other.load_s
        )


class MemoryManager:
    """Keeps the resident set inside the policy, across every backend in use."""

    def __init__(
        self,
        backend_factory: Callable[[str], Backend],
        *,
        policy: str = "one-at-a-time",
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}")
        self.policy = policy
        self._factory = backend_factory
        self._clock = clock
        self._backends: dict[str, Backend] = {}
        self._resident: dict[ModelSpec, LoadOptions] = {}
        self._counters = Counters()

    def backend(self, name: str) -> Backend:
        """The backend called ``name``, created on first use."""
        if name not in self._backends:
            self._backends[name] = self._factory(name)
        return self._backends[name]

    @property
    def counters(self) -> Counters:
        return self._counters

    @property
    def resident(self) -> list[ModelSpec]:
        return list(self._resident)

    def acquire(self, spec: ModelSpec, options: LoadOptions) -> Generator[Event, None, Lease]:
        """Make ``spec`` resident with ``options``, unloading others first as the policy says."""
        if spec.backend is None:
            raise ValueError(f"model spec {spec} has no backend; resolve it first")
        backend = self.backend(spec.backend)
        if self._resident.get(spec) == options:
            self._resident[spec] = self._resident.pop(spec)  # most recently used last
            return Lease(backend, spec, 0.0)
        for other in list(self._resident):
            reason = "load-time options changed" if other == spec else "one model at a time"
            yield from self._unload(other, reason)
        yield ModelLoading(str(spec))
        started = self._clock()
        backend.load(spec.name, options)
        seconds = self._clock() - started
        self._resident[spec] = options
        self._counters = Counters(
            self._counters.loads + 1, self._counters.unloads, self._counters.load_s + seconds
        )
        yield ModelLoaded(str(spec), seconds)
        return Lease(backend, spec, seconds)

    def release_all(self, reason: str = "shutting down") -> Iterator[Event]:
        """Unload every resident model."""
        for spec in list(self._resident):
            yield from self._unload(spec, reason)

    def close(self) -> None:
        """Unload everything and close the backends; safe to call twice."""
        for _ in self.release_all():
            pass
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()

    def _unload(self, spec: ModelSpec, reason: str) -> Iterator[Event]:
        assert spec.backend is not None
        self.backend(spec.backend).unload(spec.name)
        del self._resident[spec]
        self._counters = Counters(
            self._counters.loads, self._counters.unloads + 1, self._counters.load_s
        )
        yield ModelUnloaded(str(spec), reason)
