"""Thermal and memory signals, without sudo, from whatever this machine offers.

Every source is optional and never raises: it returns a :class:`Reading`, or ``None`` when its
signal does not exist here. Parsers take the text the real tools print, so tests run them on
recorded outputs. Facts: ../shared/reference/platform-signals.md.

Levels, worst last: ``nominal``, ``moderate``, ``heavy``, ``critical``; ``unknown`` when no
source says anything.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import psutil

from ai_stack.machine import Tools, cgroup_limit

Level = Literal["nominal", "moderate", "heavy", "critical", "unknown"]
Pressure = Literal["normal", "warn", "critical", "unknown"]
LEVELS: tuple[Level, ...] = ("nominal", "moderate", "heavy", "critical")
PRESSURES: tuple[Pressure, ...] = ("normal", "warn", "critical")


def worst(levels: list[Level]) -> Level:
    """The most severe known level.

    >>> worst(["nominal", "heavy", "unknown"]), worst(["unknown"])
    ('heavy', 'unknown')
    """
    known = [level for level in levels if level in LEVELS]
    return max(known, key=LEVELS.index) if known else "unknown"


@dataclass
class Reading:
    """One source's view: a level (or unknown) and the raw values behind it."""

    source: str
    level: Level
    values: dict[str, Any] = field(default_factory=dict)


# -- parsers (pure: text in, values out) ---------------------------------------------------


def parse_notifyutil(text: str) -> Level | None:
    """``notifyutil -g com.apple.system.thermalpressurelevel`` → level.

    0 Nominal, 1 Moderate, 2 Heavy, 3 Trapping, 4 Sleeping.

    >>> parse_notifyutil("com.apple.system.thermalpressurelevel 2\\n")
    'heavy'
    >>> parse_notifyutil("garbage") is None
    True
    """
    fields = text.split()
    if not fields or not fields[-1].isdigit():
        return None
    value = int(fields[-1])
    return ("nominal", "moderate", "heavy", "critical", "critical")[min(value, 4)]


def parse_pmset_therm(text: str) -> int | None:
    """``pmset -g therm`` → CPU_Speed_Limit (percent), or None when it reports no data.

    On Apple Silicon it prints only "No thermal warning level has been recorded"-style notes:
    that is no data, not throttling.

    >>> parse_pmset_therm("CPU_Scheduler_Limit \\t= 100\\nCPU_Speed_Limit \\t= 73\\n")
    73
    >>> parse_pmset_therm("Note: No thermal warning level has been recorded\\n") is None
    True
    """
    match = re.search(r"CPU_Speed_Limit\s*=\s*(\d+)", text)
    return int(match.group(1)) if match else None


def speed_limit_level(limit: int) -> Level:
    if limit >= 100:
        return "nominal"
    if limit >= 80:
        return "moderate"
    return "heavy" if limit >= 50 else "critical"


def parse_psi(text: str) -> dict[str, float]:
    """``/proc/pressure/memory`` → {'some_avg10': ..., 'full_avg10': ..., ...}.

    >>> psi = parse_psi("some avg10=12.50 avg60=3.00 avg300=1.00 total=99\\n"
    ...                 "full avg10=1.00 avg60=0.00 avg300=0.00 total=5\\n")
    >>> psi["some_avg10"], psi["full_avg10"]
    (12.5, 1.0)
    """
    values: dict[str, float] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        for item in rest.split():
            key, _, number = item.partition("=")
            if key.startswith("avg"):
                values[f"{kind}_{key}"] = float(number)
    return values


def psi_pressure(values: dict[str, float]) -> Pressure:
    some = values.get("some_avg10")
    if some is None:
        return "unknown"
    if some > 30 or values.get("full_avg10", 0) > 10:
        return "critical"
    return "warn" if some > 10 else "normal"


def parse_sysctl_pressure(text: str) -> Pressure:
    """``sysctl -n kern.memorystatus_vm_pressure_level``: 1 normal, 2 warn, 4 critical.

    >>> parse_sysctl_pressure("4\\n"), parse_sysctl_pressure("1")
    ('critical', 'normal')
    """
    return {"1": "normal", "2": "warn", "4": "critical"}.get(text.strip(), "unknown")  # type: ignore[return-value]


def parse_swapusage(text: str) -> dict[str, int]:
    """``sysctl -n vm.swapusage`` → bytes.

    >>> swap = parse_swapusage("total = 2048.00M  used = 512.00M  free = 1536.00M  (encrypted)")
    >>> swap["used_bytes"]
    536870912
    """
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3}
    return {
        f"{name}_bytes": int(float(number) * scale[unit])
        for name, number, unit in re.findall(r"(\w+) = ([\d.]+)([KMG])", text)
    }


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """CSV of ``nvidia-smi --query-gpu=index,temperature.gpu,utilization.gpu,memory.used,
    memory.total,clocks_event_reasons.hw_thermal_slowdown,clocks_event_reasons.sw_thermal_slowdown
    --format=csv,noheader,nounits``.

    >>> parse_nvidia_smi("0, 83, 97, 20000, 24576, Not Active, Active\\n")[0]["thermal_slowdown"]
    True
    """
    gpus = []
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 7:
            continue
        try:
            gpus.append(
                {
                    "index": int(cells[0]),
                    "temperature_c": float(cells[1]),
                    "utilization_pct": float(cells[2]),
                    "memory_used_mib": float(cells[3]),
                    "memory_total_mib": float(cells[4]),
                    "thermal_slowdown": "Active" in (cells[5], cells[6]),
                }
            )
        except ValueError:
            continue
    return gpus


def temperature_level(
    current: float,
    high: float | None,
    critical: float | None,
    fallback_heavy: float,
    fallback_critical: float,
) -> Level:
    """Against the sensor's own limits when it has plausible ones, else the configured ones.

    >>> temperature_level(95, 100, 105, 90, 100), temperature_level(60, None, None, 90, 100)
    ('moderate', 'nominal')
    """
    heavy = high if high and 40 < high < 150 else fallback_heavy
    crit = critical if critical and 40 < critical < 150 else fallback_critical
    if current >= crit:
        return "critical"
    if current >= heavy:
        return "heavy"
    return "moderate" if current >= heavy - 10 else "nominal"


# -- sources --------------------------------------------------------------------------------


NVIDIA_QUERY = [
    "nvidia-smi",
    "--query-gpu=index,temperature.gpu,utilization.gpu,memory.used,memory.total,"
    "clocks_event_reasons.hw_thermal_slowdown,clocks_event_reasons.sw_thermal_slowdown",
    "--format=csv,noheader,nounits",
]


def thermal_readings(tools: Tools) -> list[Reading]:
    """Every thermal source that has something to say here."""
    readings: list[Reading] = []
    if tools.system == "Darwin":
        text = tools.run(["notifyutil", "-g", "com.apple.system.thermalpressurelevel"])
        pressure_level = parse_notifyutil(text) if text else None
        if text and pressure_level:
            values = {"raw": text.strip()}
            readings.append(Reading("macos-thermal-pressure", pressure_level, values))
        state = _ns_thermal_state()
        if state is not None:
            state_level = LEVELS[min(state, 3)]
            readings.append(Reading("nsprocessinfo", state_level, {"thermal_state": state}))
        text = tools.run(["pmset", "-g", "therm"])
        limit = parse_pmset_therm(text) if text else None
        if limit is not None:
            readings.append(Reading("pmset", speed_limit_level(limit), {"cpu_speed_limit": limit}))
    readings += _hwmon(tools)
    readings += _cpufreq(tools)
    text = tools.run(NVIDIA_QUERY)
    for gpu in parse_nvidia_smi(text) if text else []:
        gpu_level: Level = (
            "heavy"
            if gpu["thermal_slowdown"]
            else temperature_level(
                gpu["temperature_c"], None, None, tools.temp_heavy_c, tools.temp_critical_c
            )
        )
        readings.append(Reading(f"nvidia-gpu{gpu['index']}", gpu_level, gpu))
    return readings


def _ns_thermal_state() -> int | None:
    try:
        from Foundation import NSProcessInfo  # optional: pyobjc-framework-Cocoa
    except Exception:
        return None
    try:
        return int(NSProcessInfo.processInfo().thermalState())
    except Exception:
        return None


def _hwmon(tools: Tools) -> list[Reading]:
    read = tools.temperatures or getattr(psutil, "sensors_temperatures", None)  # absent on macOS
    if read is None:
        return []
    try:
        sensors = read() or {}
    except Exception:
        return []
    readings = []
    for chip, entries in sensors.items():
        if chip.startswith("nvme"):  # drives report bogus limits and say nothing of the CPU
            continue
        for entry in entries:
            level = temperature_level(
                entry.current, entry.high, entry.critical, tools.temp_heavy_c, tools.temp_critical_c
            )
            values = {
                "current_c": entry.current,
                "high_c": entry.high,
                "critical_c": entry.critical,
            }
            readings.append(Reading(f"hwmon:{chip}:{entry.label or 'temp'}", level, values))
    return readings


def _cpufreq(tools: Tools) -> list[Reading]:
    """Clock against maximum, reported but not judged: idle cores clock down too, so a low
    ratio alone is not throttling (decode speed is watched for that)."""
    base = tools.root / "sys/devices/system/cpu/cpufreq"
    ratios = []
    for policy in sorted(base.glob("policy*")) if base.is_dir() else []:
        try:
            current = int((policy / "scaling_cur_freq").read_text())
            maximum = int((policy / "cpuinfo_max_freq").read_text())
        except (OSError, ValueError):
            continue
        if maximum > 0:
            ratios.append(current / maximum)
    if not ratios:
        return []
    return [
        Reading("cpufreq", "unknown", {"min_ratio": round(min(ratios), 3), "policies": len(ratios)})
    ]


# -- memory ---------------------------------------------------------------------------------


@dataclass
class MemoryState:
    total_bytes: int
    available_bytes: int
    pressure: Pressure
    readings: dict[str, Any] = field(default_factory=dict)


def memory_state(tools: Tools) -> MemoryState:
    memory = psutil.virtual_memory()
    total, available = int(memory.total), int(memory.available)
    readings: dict[str, Any] = {"psutil_available_bytes": available}
    pressures: list[Pressure] = []
    text = tools.read_text("/proc/pressure/memory")
    if text:
        psi = parse_psi(text)
        readings["psi"] = psi
        pressures.append(psi_pressure(psi))
    limit = cgroup_limit(tools)
    if limit is not None:
        readings["cgroup"] = limit
        available = min(available, max(limit["max_bytes"] - limit["current_bytes"], 0))
        total = min(total, limit["max_bytes"])
    if tools.system == "Darwin":
        text = tools.run(["sysctl", "-n", "kern.memorystatus_vm_pressure_level"])
        if text:
            pressures.append(parse_sysctl_pressure(text))
            readings["vm_pressure_level"] = text.strip()
        text = tools.run(["sysctl", "-n", "vm.swapusage"])
        if text:
            readings["swap"] = parse_swapusage(text)
    share = available / total if total else 1.0
    pressures.append("critical" if share < 0.05 else "warn" if share < 0.15 else "normal")
    known = [p for p in pressures if p in PRESSURES]
    pressure: Pressure = max(known, key=PRESSURES.index) if known else "unknown"
    return MemoryState(total, available, pressure, readings)


# -- the snapshot ---------------------------------------------------------------------------


@dataclass
class ThermalState:
    level: Level
    source: str
    readings: list[Reading]


@dataclass
class Snapshot:
    thermal: ThermalState
    memory: MemoryState
    taken_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "thermal": {
                "level": self.thermal.level,
                "source": self.thermal.source,
                "readings": {
                    r.source: {"level": r.level, **r.values} for r in self.thermal.readings
                },
            },
            "memory": {
                "total_bytes": self.memory.total_bytes,
                "available_bytes": self.memory.available_bytes,
                "pressure": self.memory.pressure,
                "readings": self.memory.readings,
            },
            "taken_at": self.taken_at,
        }


def take_snapshot(tools: Tools | None = None) -> Snapshot:
    tools = tools or Tools()
    readings = thermal_readings(tools)
    level = worst([r.level for r in readings])
    sources = [r.source for r in readings if r.level == level and level != "unknown"]
    source = ", ".join(sources) if sources else ("none" if not readings else "no level")
    return Snapshot(ThermalState(level, source, readings), memory_state(tools))
