"""Thermal and memory-pressure monitoring (sensors) and the policy that protects long runs."""

from __future__ import annotations

from ai_stack.config import ThermalSettings
from ai_stack.thermal.policy import ThermalGuard
from ai_stack.thermal.sensors import Probe, Snapshot, take_snapshot


def make_guard(settings: ThermalSettings) -> ThermalGuard:
    """The policy reading this machine's real sensors."""
    probe = Probe(temp_heavy_c=settings.temp_heavy_c, temp_critical_c=settings.temp_critical_c)
    return ThermalGuard(settings, sense=lambda: take_snapshot(probe))


__all__ = ["Probe", "Snapshot", "ThermalGuard", "make_guard", "take_snapshot"]
