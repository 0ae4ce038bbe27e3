"""The thermal policy: what the controller does when the machine is hot or short of memory.

Between model calls:
- ``moderate``: a note, and work goes on;
- ``heavy``: the call that was running has finished; pause until the level is back to moderate
  or better, at most ``thermal.max_pause_s``, with a countdown;
- ``critical``: unload the resident models, then pause the same way.

During a call the level is polled every ``thermal.poll_s``; a change is noted, and the call
finishes first. After a call, a decode speed more than ``thermal.slowdown_fraction`` below the
first call on the same model is reported: as likely throttling where a thermal sensor answers (it
happens while the pressure level stays nominal), and only as slower where none does — a busy
machine slows decoding just as much, and nothing here can tell the two apart. Before a load,
under memory pressure, a model that would not fit the memory really available is refused.

The sensor, clock and sleep are injected, so tests drive the policy with scripted readings and
no real waiting. Every decision is an event; the run's ``metrics.thermal`` is derived from them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field

from ai_stack.config import ThermalSettings
from ai_stack.memory import MemoryManager
from ai_stack.thermal.sensors import Level, Snapshot
from ai_stack.types import Event, PhaseMetrics, ThermalNote, ThermalPause, ThermalResumed
from ai_stack.units import gib

HOT: tuple[Level, ...] = ("heavy", "critical")


@dataclass
class ThermalGuard:
    settings: ThermalSettings
    sense: Callable[[], Snapshot]
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    level: Level = "unknown"
    _polled_at: float = -math.inf
    _noted: Level = "unknown"
    _sensed: bool = False  # whether any thermal sensor gave a level
    _first_speed: dict[str, float] = field(default_factory=dict)

    def poll(self, *, force: bool = False) -> Snapshot | None:
        """A fresh snapshot if one is due (or forced), else None."""
        now = self.clock()
        if not force and now - self._polled_at < self.settings.poll_s:
            return None
        self._polled_at = now
        snapshot = self.sense()
        self.level = snapshot.thermal.level
        self._sensed = self._sensed or any(r.level != "unknown" for r in snapshot.thermal.readings)
        return snapshot

    def before_call(self, manager: MemoryManager) -> Generator[Event, None, Level]:
        """Run between calls: note, pause, or unload and pause. Returns the level seen."""
        self.poll(force=True)
        level = self.level
        if level == "moderate" and self._noted != "moderate":
            yield self._note("moderate thermal pressure; carrying on")
        self._noted = level
        if level == "critical":
            yield from manager.release_all("thermal level critical", "thermal")
        if level in HOT:
            yield from self._pause(level)
        return level

    def during_call(self) -> Iterator[Event]:
        """Poll while a model generates; a change is noted (the call finishes regardless)."""
        before = self.level
        if self.poll() is not None and self.level != before and self.level != "unknown":
            verb = "rose" if _rank(self.level) > _rank(before) else "fell"
            yield self._note(
                f"thermal level {verb} to {self.level} during the call; it finishes first"
            )

    def after_call(self, metrics: PhaseMetrics) -> Iterator[Event]:
        """Report a decode-speed drop against the first call on the same model."""
        speed = metrics.tokens_per_s
        if metrics.output_tokens < 16 or speed <= 0:
            return
        first = self._first_speed.setdefault(metrics.model, speed)
        if speed < first * (1 - self.settings.slowdown_fraction):
            drop = 1 - speed / first
            why = (
                "likely throttling"
                if self._sensed
                else "slower — other work on the machine or heat; no thermal sensor here tells "
                "which"
            )
            yield self._note(
                f"decode speed {speed:.1f} tok/s is {drop:.0%} below the first call on "
                f"{metrics.model} ({first:.1f} tok/s): {why}"
            )

    def memory_check(self, model: str, estimate_bytes: int) -> ThermalNote | None:
        """A refusal if loading ``model`` now would not fit, else None. Only under memory
        pressure: without it, the available figure understates what the system can free."""
        snapshot = self.sense()
        memory = snapshot.memory
        if memory.pressure in ("warn", "critical") and estimate_bytes > memory.available_bytes:
            reason = (
                f"memory pressure is {memory.pressure} and {model} needs about "
                f"{gib(estimate_bytes)}, but only {gib(memory.available_bytes)} is available"
            )
            return ThermalNote(self.level, reason, kind="refuse")
        return None

    def _pause(self, level: Level) -> Iterator[Event]:
        limit = self.settings.max_pause_s
        started = self.clock()
        reason = f"thermal level {level}: pausing until it eases (at most {limit:.0f} s)"
        yield ThermalPause(level, reason, 0.0, limit)
        next_poll = started + self.settings.poll_s
        while True:
            waited = self.clock() - started
            if waited >= limit:
                end = f"the maximum pause of {limit:.0f} s was reached; carrying on at {self.level}"
                break
            self.sleep(min(1.0, limit - waited, max(next_poll - self.clock(), 0.0)) or 0.0)
            if self.clock() >= next_poll:
                next_poll = self.clock() + self.settings.poll_s
                self.poll(force=True)
                if self.level not in HOT:
                    end = f"cooled to {self.level}"
                    break
            yield ThermalPause(self.level, reason, self.clock() - started, limit)
        paused = self.clock() - started
        yield ThermalResumed(self.level, end, paused)

    def _note(self, reason: str) -> ThermalNote:
        return ThermalNote(self.level, reason)


def _rank(level: Level) -> int:
    return ("unknown", "nominal", "moderate", "heavy", "critical").index(level)
