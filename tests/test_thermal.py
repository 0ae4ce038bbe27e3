"""Thermal and memory signals parsed from recorded tool outputs, and the policy driven by a
scripted sensor with an injected clock (no real waiting)."""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

import pytest

from ai_stack.backends import ModelSpec
from ai_stack.backends.base import LoadOptions
from ai_stack.config import Settings, ThermalSettings
from ai_stack.controller import Pipeline, Tally
from ai_stack.errors import MemoryBudgetError
from ai_stack.machine import Tools
from ai_stack.memory import MemoryManager
from ai_stack.prompts import PromptLibrary
from ai_stack.session import resolve_roles
from ai_stack.thermal.policy import ThermalGuard
from ai_stack.thermal.sensors import (
    MemoryState,
    Reading,
    Snapshot,
    ThermalState,
    memory_state,
    parse_nvidia_smi,
    parse_pmset_therm,
    take_snapshot,
)
from ai_stack.types import (
    ModelUnloaded,
    PhaseMetrics,
    RunFinished,
    ThermalNote,
    ThermalPause,
    ThermalResumed,
)
from ai_stack.units import GIB
from tests.conftest import invoke
from tests.scripted import ScriptedBackend

FIXTURES = Path(__file__).parent / "fixtures" / "platform"
Temp = namedtuple("Temp", "label current high critical")


def recorded(name: str) -> str:
    return (FIXTURES / name).read_text()


def tool_outputs(outputs: dict[str, str]):  # type: ignore[no-untyped-def]
    """A command runner that answers from recorded outputs (None: tool not installed)."""
    return lambda args: outputs.get(args[0])


# -- parsers on recorded outputs ------------------------------------------------------------------


def test_macos_thermal_pressure_levels() -> None:
    for name, level in [
        ("notifyutil-nominal.txt", "nominal"),
        ("notifyutil-heavy.txt", "heavy"),
        ("notifyutil-sleeping.txt", "critical"),
    ]:
        tools = Tools(
            run=tool_outputs({"notifyutil": recorded(name)}),
            system="Darwin",
            temperatures=lambda: {},
        )
        snapshot = take_snapshot(tools)
        assert (snapshot.thermal.level, snapshot.thermal.source) == (
            level,
            "macos-thermal-pressure",
        )


def test_apple_silicon_pmset_note_means_no_data_not_throttling() -> None:
    assert parse_pmset_therm(recorded("pmset-therm-apple-silicon.txt")) is None
    tools = Tools(
        run=tool_outputs({"pmset": recorded("pmset-therm-apple-silicon.txt")}),
        system="Darwin",
        temperatures=lambda: {},
    )
    assert take_snapshot(tools).thermal.level == "unknown"


def test_intel_mac_speed_limit() -> None:
    assert parse_pmset_therm(recorded("pmset-therm-intel-throttled.txt")) == 66
    tools = Tools(
        run=tool_outputs({"pmset": recorded("pmset-therm-intel-throttled.txt")}),
        system="Darwin",
        temperatures=lambda: {},
    )
    snapshot = take_snapshot(tools)
    assert snapshot.thermal.level == "heavy"
    assert snapshot.as_dict()["thermal"]["readings"]["pmset"]["cpu_speed_limit"] == 66


def test_nvidia_thermal_slowdown_is_heavy() -> None:
    gpus = parse_nvidia_smi(recorded("nvidia-smi.csv"))
    assert [(g["index"], g["thermal_slowdown"]) for g in gpus] == [(0, True), (1, False)]
    tools = Tools(
        run=tool_outputs({"nvidia-smi": recorded("nvidia-smi.csv")}),
        system="Linux",
        temperatures=lambda: {},
    )
    snapshot = take_snapshot(tools)
    assert snapshot.thermal.level == "heavy" and snapshot.thermal.source == "nvidia-gpu0"


def test_hwmon_uses_sensor_limits_and_skips_nvme() -> None:
    sensors = {
        "coretemp": [Temp("Package id 0", 101.0, 100.0, 110.0), Temp("Core 0", 70.0, 100.0, 110.0)],
        "k10temp": [Temp("Tctl", 85.0, None, None)],  # no limits: the configured ones apply
        "nvme": [Temp("Composite", 50.0, 20.0, 30.0)],  # bogus limits
    }
    tools = Tools(run=lambda args: None, system="Linux", temperatures=lambda: sensors)
    snapshot = take_snapshot(tools)
    readings = snapshot.as_dict()["thermal"]["readings"]
    assert readings["hwmon:coretemp:Package id 0"]["level"] == "heavy"
    assert readings["hwmon:k10temp:Tctl"]["level"] == "moderate"
    assert not any(name.startswith("hwmon:nvme") for name in readings)
    assert snapshot.thermal.level == "heavy"


def fake_root(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_linux_memory_psi_and_cgroup_limit(tmp_path: Path) -> None:
    root = fake_root(
        tmp_path,
        {
            "/proc/pressure/memory": recorded("psi-memory-critical.txt"),
            "/proc/self/cgroup": "0::/user.slice/ai\n",
            "/sys/fs/cgroup/user.slice/ai/memory.max": str(2 * GIB),
            "/sys/fs/cgroup/user.slice/ai/memory.current": str(GIB + GIB // 2),
            "/sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq": "1200000",
            "/sys/devices/system/cpu/cpufreq/policy0/cpuinfo_max_freq": "3000000",
        },
    )
    tools = Tools(run=lambda args: None, root=root, system="Linux", temperatures=lambda: {})
    memory = memory_state(tools)
    assert memory.pressure == "critical"
    assert memory.readings["psi"]["some_avg10"] == 34.21
    assert memory.available_bytes <= GIB // 2 and memory.total_bytes == 2 * GIB
    snapshot = take_snapshot(tools)
    assert snapshot.as_dict()["thermal"]["readings"]["cpufreq"]["min_ratio"] == 0.4
    assert snapshot.thermal.level == "unknown"  # a low clock alone is not throttling


def test_linux_idle_psi_and_no_cgroup_limit(tmp_path: Path) -> None:
    root = fake_root(
        tmp_path,
        {
            "/proc/pressure/memory": recorded("psi-memory-idle.txt"),
            "/proc/self/cgroup": "0::/\n",
            "/sys/fs/cgroup/memory.max": "max\n",
            "/sys/fs/cgroup/memory.current": "123\n",
        },
    )
    memory = memory_state(Tools(run=lambda args: None, root=root, system="Linux"))
    assert memory.pressure in ("normal", "warn")  # psutil's share of free RAM decides the rest
    assert "cgroup" not in memory.readings


def test_macos_memory_pressure_and_swap() -> None:
    outputs = {"sysctl": None}

    def run(args: list[str]) -> str | None:
        if args[-1] == "kern.memorystatus_vm_pressure_level":
            return recorded("sysctl-vm-pressure-warn.txt")
        if args[-1] == "vm.swapusage":
            return recorded("sysctl-swapusage.txt")
        return outputs.get(args[0])

    memory = memory_state(Tools(run=run, root=Path("/nonexistent"), system="Darwin"))
    assert memory.pressure in ("warn", "critical")
    assert memory.readings["swap"]["used_bytes"] == int(1536.25 * 1024**2)


def test_nothing_available_reads_unknown_not_an_error(tmp_path: Path) -> None:
    tools = Tools(run=lambda args: None, root=tmp_path, system="Linux", temperatures=None)
    snapshot = take_snapshot(tools)
    assert snapshot.thermal.level == "unknown"
    assert snapshot.memory.total_bytes > 0


# -- the policy -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def snapshot(level: str, pressure: str = "normal", available: int = 16 * GIB) -> Snapshot:
    readings = [Reading("scripted", level)] if level != "unknown" else []  # type: ignore[arg-type]
    return Snapshot(
        ThermalState(level, "scripted", readings),  # type: ignore[arg-type]
        MemoryState(32 * GIB, available, pressure),  # type: ignore[arg-type]
    )


def scripted_sensor(*levels: str) -> Iterator[Snapshot]:
    sequence = [snapshot(level) for level in levels]
    while True:
        yield sequence.pop(0) if len(sequence) > 1 else sequence[0]


def guard_for(*levels: str, max_pause_s: float = 120.0, clock: Clock | None = None) -> ThermalGuard:
    clock = clock or Clock()
    readings = scripted_sensor(*levels)
    settings = ThermalSettings(poll_s=5, max_pause_s=max_pause_s)
    return ThermalGuard(settings, sense=lambda: next(readings), clock=clock, sleep=clock.sleep)


def drain(generator):  # type: ignore[no-untyped-def]
    events = []
    while True:
        try:
            events.append(next(generator))
        except StopIteration as stop:
            return events, stop.value


def decisions(events: list[object]) -> list[tuple[str, float]]:
    """The thermal decisions a run's metrics would report, derived from the events."""
    tally = Tally()
    for event in events:
        tally.observe(event)  # type: ignore[arg-type]
    return [(d.kind, d.seconds) for d in tally.thermal]


def manager_for(backend: ScriptedBackend, **options: object) -> MemoryManager:
    return MemoryManager(lambda name: backend, budget_bytes=10**9, **options)  # type: ignore[arg-type]


def test_heavy_pauses_until_nominal_with_a_countdown(scripted: ScriptedBackend) -> None:
    clock = Clock()
    guard = guard_for("heavy", "heavy", "nominal", clock=clock)
    manager = manager_for(scripted)
    events, level = drain(guard.before_call(manager))
    assert level == "heavy"
    pauses = [e for e in events if isinstance(e, ThermalPause)]
    assert pauses[0].waited_s == 0 and "heavy" in pauses[0].reason
    assert [round(p.waited_s) for p in pauses[1:4]] == [1, 2, 3]  # the live countdown ticks
    (resumed,) = [e for e in events if isinstance(e, ThermalResumed)]
    assert resumed.paused_s == 10 and resumed.reason == "cooled to nominal"
    assert clock.now == 10 and max(clock.slept) <= 1
    assert decisions(events) == [("pause", 10)]


def test_the_pause_is_bounded() -> None:
    clock = Clock()
    guard = guard_for("heavy", max_pause_s=30, clock=clock)
    events, _ = drain(guard.before_call(manager_for(ScriptedBackend())))
    (resumed,) = [e for e in events if isinstance(e, ThermalResumed)]
    assert resumed.paused_s == 30 and "maximum pause of 30 s" in resumed.reason
    assert clock.now == 30


def test_critical_unloads_the_resident_model_then_pauses(scripted: ScriptedBackend) -> None:
    manager = manager_for(scripted)
    drain(manager.acquire(ModelSpec("embedded", "a"), LoadOptions()))
    guard = guard_for("critical", "nominal")
    events, _ = drain(guard.before_call(manager))
    unloads = [e for e in events if isinstance(e, ModelUnloaded)]
    assert [(u.model, u.reason, u.cause) for u in unloads] == [
        ("embedded:a", "thermal level critical", "thermal")
    ]
    assert scripted.log == [("load", "a"), ("unload", "a")]
    assert events.index(unloads[0]) < next(
        i for i, e in enumerate(events) if isinstance(e, ThermalPause)
    )
    assert [kind for kind, _ in decisions(events)] == ["unload", "pause"]


def test_moderate_is_noted_once_and_nominal_is_silent() -> None:
    guard = guard_for("moderate", "moderate", "nominal")
    manager = manager_for(ScriptedBackend())
    first, _ = drain(guard.before_call(manager))
    second, _ = drain(guard.before_call(manager))
    third, _ = drain(guard.before_call(manager))
    assert [type(e) for e in first] == [ThermalNote] and second == [] and third == []


def test_a_change_during_a_call_is_noted_when_a_poll_is_due() -> None:
    clock = Clock()
    guard = guard_for("nominal", "heavy", clock=clock)
    drain(guard.before_call(manager_for(ScriptedBackend())))
    assert list(guard.during_call()) == []  # not due yet
    clock.now += 6
    (note,) = list(guard.during_call())
    assert "rose to heavy during the call; it finishes first" in note.reason


def test_a_decode_speed_drop_is_reported_as_likely_throttling() -> None:
    guard = guard_for("nominal")
    drain(guard.before_call(manager_for(ScriptedBackend())))  # a sensor answered

    def metrics(speed: float, tokens: int = 100) -> PhaseMetrics:
        return PhaseMetrics(
            role="executor", phase="execute", model="m", output_tokens=tokens, tokens_per_s=speed
        )

    assert list(guard.after_call(metrics(40))) == []
    assert list(guard.after_call(metrics(10, tokens=5))) == []  # too short to judge
    assert list(guard.after_call(metrics(30))) == []  # a 25 % drop is within the default 40 %
    (note,) = list(guard.after_call(metrics(20)))
    assert "50% below the first call on m (40.0 tok/s): likely throttling" in note.reason


def test_without_a_sensor_a_slower_decode_is_never_called_throttling() -> None:
    guard = guard_for("unknown")  # no thermal sensor on this machine (a busy Linux box)
    drain(guard.before_call(manager_for(ScriptedBackend())))
    fast, slow = (
        PhaseMetrics(role="executor", phase="execute", model="m", output_tokens=100,
                     tokens_per_s=speed)
        for speed in (40, 5)
    )
    assert list(guard.after_call(fast)) == []
    (note,) = list(guard.after_call(slow))
    assert "throttling" not in note.reason
    assert "88% below the first call on m (40.0 tok/s): slower" in note.reason
    assert "no thermal sensor" in note.reason


def test_memory_pressure_refuses_a_local_load_that_would_not_fit(scripted: ScriptedBackend) -> None:
    tight = snapshot("nominal", pressure="warn", available=1000)
    guard = ThermalGuard(ThermalSettings(), sense=lambda: tight)
    assert guard.memory_check("m", 500) is None
    refusal = guard.memory_check("m", 2000)
    assert refusal is not None and refusal.kind == "refuse"
    assert "memory pressure is warn" in refusal.reason
    scripted.local = True  # type: ignore[attr-defined]
    manager = manager_for(scripted, memory_check=guard.memory_check)
    seen: list[object] = []
    with pytest.raises(MemoryBudgetError, match="Not loading embedded:a now: memory pressure"):
        for event in manager.acquire(ModelSpec("embedded", "a"), LoadOptions()):
            seen.append(event)
    assert scripted.log == []
    assert [kind for kind, _ in decisions(seen)] == ["refuse"]  # an event, so history sees it
    relaxed = ThermalGuard(ThermalSettings(), sense=lambda: snapshot("nominal", available=1000))
    assert relaxed.memory_check("m", 2000) is None  # no pressure: the figure understates


def test_a_run_records_the_level_of_each_phase_and_the_decisions(scripted: ScriptedBackend) -> None:
    plan = json.dumps({"goal": "g", "steps": [{"title": "t", "detail": "d"}]})
    scripted.enqueue(plan, json.dumps({"issues": [], "score": 9, "verdict": "approve"}), "done")
    clock = Clock()
    guard = guard_for("nominal", "moderate", "heavy", "nominal", clock=clock)
    config = Settings.model_validate({"review": "plan"})
    manager = manager_for(scripted)
    pipeline = Pipeline(
        config, manager, PromptLibrary(), resolve_roles(config, "embedded"), guard=guard
    )
    events = list(pipeline.run("task"))
    result = next(e.result for e in events if isinstance(e, RunFinished))
    assert [p.thermal for p in result.metrics.phases] == ["nominal", "moderate", "heavy"]
    kinds = [(d.kind, d.level) for d in result.metrics.thermal]
    assert kinds == [("note", "moderate"), ("pause", "heavy")]
    assert result.metrics.thermal[1].seconds == 5


# -- the command -----------------------------------------------------------------------------------


def test_monitor_once_json_on_this_machine() -> None:
    code, out, err = invoke("monitor", "--once", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert {"level", "source", "readings"} <= data["thermal"].keys()
    assert data["thermal"]["level"] in ("nominal", "moderate", "heavy", "critical", "unknown")
    memory = data["memory"]
    assert memory["total_bytes"] > 0 and 0 < memory["available_bytes"] <= memory["total_bytes"]
    assert memory["pressure"] in ("normal", "warn", "critical", "unknown")
    assert data["resident"] == [] and data["ollama"]["available"] is False


def test_monitor_once_shows_resident_ollama_models(on_double) -> None:  # type: ignore[no-untyped-def]
    from ai_stack.backends.ollama import OllamaBackend

    OllamaBackend(on_double.host).load("qwen2.5:7b", LoadOptions())
    code, out, _ = invoke("monitor", "--once", "--json")
    assert [m["model"] for m in json.loads(out)["resident"]] == ["qwen2.5:7b"]
    code, out, _ = invoke("monitor", "--once")
    assert code == 0 and "qwen2.5:7b" in out
