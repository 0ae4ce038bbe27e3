"""Thermal and memory-pressure monitoring (sensors) and the policy that protects long runs."""

from __future__ import annotations

from ai_stack.config import ThermalSettings
from ai_stack.machine import Tools
from ai_stack.thermal.policy import ThermalGuard
from ai_stack.thermal.sensors import Snapshot, take_snapshot


def thermal_tools(settings: ThermalSettings) -> Tools:
    """The tools every reader of this machine's sensors uses, with the configured limits."""
    return Tools(temp_heavy_c=settings.temp_heavy_c, temp_critical_c=settings.temp_critical_c)


def make_guard(settings: ThermalSettings) -> ThermalGuard:
    """The policy reading this machine's real sensors."""
    tools = thermal_tools(settings)
    return ThermalGuard(settings, sense=lambda: take_snapshot(tools))


__all__ = ["Snapshot", "ThermalGuard", "Tools", "make_guard", "take_snapshot", "thermal_tools"]
