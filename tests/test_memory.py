"""The memory manager on a scripted backend: its residency rule, the causes it gives for every
unload, refusals before any load, and a budget derived from the machine (a cgroup limit included).
The same manager against real HTTP is in test_ollama.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai_stack.backends import ModelSpec
from ai_stack.backends.base import LoadOptions
from ai_stack.errors import MemoryBudgetError
from ai_stack.machine import Machine, Tools
from ai_stack.memory import MemoryManager, default_budget, evictions, load_options_for
from ai_stack.types import Event, ModelLoaded, ModelUnloaded, Notice
from ai_stack.units import GIB, MIB
from tests.scripted import ScriptedBackend


def spec(name: str) -> ModelSpec:
    return ModelSpec("embedded", name)


def acquire(manager: MemoryManager, name: str, num_ctx: int = 4096) -> list[Event]:
    return list(manager.acquire(spec(name), LoadOptions(num_ctx=num_ctx)))


def test_one_at_a_time_unloads_every_other_model_first(scripted: ScriptedBackend) -> None:
    manager = MemoryManager(lambda name: scripted, budget_bytes=10**9)
    acquire(manager, "a")
    events = acquire(manager, "b")
    assert [(type(e).__name__, getattr(e, "cause", None)) for e in events] == [
        ("ModelUnloaded", "policy"),
        ("ModelLoading", None),
        ("ModelLoaded", None),
    ]
    assert manager.resident == [spec("b")]
    assert acquire(manager, "b") == [], "a resident model with the same options is reused"


def test_fit_evicts_the_least_recently_used_and_only_as_needed(scripted: ScriptedBackend) -> None:
    # each scripted model is 1000 bytes on disk; the estimate adds the compute-buffer margin
    one = MemoryManager(lambda name: scripted, budget_bytes=10**9).footprint(
        spec("a"), LoadOptions()
    )
    manager = MemoryManager(lambda name: scripted, policy="fit", budget_bytes=2 * one.total)
    acquire(manager, "a")
    acquire(manager, "b")
    acquire(manager, "a")  # a is now the most recently used
    events = acquire(manager, "c")
    assert [e.model for e in events if isinstance(e, ModelUnloaded)] == ["embedded:b"]
    assert manager.resident == [spec("a"), spec("c")]


def test_changed_load_options_reload_with_that_cause(scripted: ScriptedBackend) -> None:
    manager = MemoryManager(lambda name: scripted, budget_bytes=10**9)
    acquire(manager, "a", 2048)
    events = acquire(manager, "a", 8192)
    unloads = [e for e in events if isinstance(e, ModelUnloaded)]
    assert [(u.model, u.cause) for u in unloads] == [("embedded:a", "options")]
    assert scripted.loaded["a"].num_ctx == 8192


def test_a_model_another_client_left_loaded_is_freed_with_that_cause(
    scripted: ScriptedBackend,
) -> None:
    scripted.load("c", LoadOptions())  # loaded outside this manager
    manager = MemoryManager(lambda name: scripted, budget_bytes=10**9)
    events = acquire(manager, "a")
    unloads = [(e.model, e.cause) for e in events if isinstance(e, ModelUnloaded)]
    assert unloads == [("embedded:c", "foreign")]
    assert list(scripted.loaded) == ["a"]


def test_a_model_over_the_budget_is_refused_before_any_load(scripted: ScriptedBackend) -> None:
    manager = MemoryManager(lambda name: scripted, budget_bytes=100 * MIB)
    with pytest.raises(MemoryBudgetError, match=r"more than the memory budget of 0\.1 GiB"):
        manager.check_all({spec("a"): LoadOptions()})
    with pytest.raises(MemoryBudgetError):
        acquire(manager, "a")
    assert scripted.log == []


def test_close_unloads_everything_as_shutdown(scripted: ScriptedBackend) -> None:
    manager = MemoryManager(lambda name: scripted, budget_bytes=10**9)
    acquire(manager, "a")
    assert [(e.model, e.cause) for e in manager.release_all()] == [("embedded:a", "shutdown")]  # type: ignore[union-attr]
    manager.close()
    assert scripted.loaded == {}


def test_loads_carry_the_estimate_and_the_measured_size(scripted: ScriptedBackend) -> None:
    manager = MemoryManager(lambda name: scripted, budget_bytes=10**9)
    (loaded,) = [e for e in acquire(manager, "a") if isinstance(e, ModelLoaded)]
    assert loaded.resident_bytes == 1000  # what the scripted backend reports
    assert loaded.estimate_bytes == manager.footprint(spec("a"), LoadOptions()).total
    assert manager.records[spec("a")].resident_bytes == 1000


def test_the_residency_rule() -> None:
    assert evictions("one-at-a-time", [], 5, 10) == []
    assert evictions("fit", [("a", 4), ("b", 4)], 2, 10) == []
    assert evictions("fit", [("a", 4), ("b", 4)], 9, 10) == ["a", "b"]


def test_one_set_of_load_options_per_model() -> None:
    options = load_options_for([(spec("a"), 2048), (spec("b"), 1024), (spec("a"), 4096)])
    assert options == {spec("a"): LoadOptions(num_ctx=4096), spec("b"): LoadOptions(num_ctx=1024)}


def test_the_default_budget_honours_a_cgroup_limit(tmp_path: Path) -> None:
    cgroup = tmp_path / "sys/fs/cgroup/ci.slice"
    cgroup.mkdir(parents=True)
    (cgroup / "memory.max").write_text(str(6 * GIB))
    (cgroup / "memory.current").write_text(str(1 * GIB))
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text("0::/ci.slice\n")
    machine = Machine.detect(Tools(run=lambda args: None, root=tmp_path, system="Linux"))
    assert machine.total_bytes <= 6 * GIB and machine.available_bytes <= 5 * GIB
    assert default_budget(machine) <= 4 * GIB  # the limit less the safety margin


def test_apple_silicon_has_two_limits_what_fits_and_what_runs_on_the_gpu(
    scripted: ScriptedBackend,
) -> None:
    """The budget is RAM less the system's share; the GPU's share is the second, softer limit."""
    assert default_budget(Machine.apple(16)) == 16 * GIB - 16 * GIB // 5  # 12.8 GiB
    assert default_budget(Machine.apple(8)) == 8 * GIB - int(2.5 * GIB)
    manager = MemoryManager(lambda name: scripted, machine=Machine.apple(16))
    assert manager.gpu_limit_bytes == 16 * GIB * 2 // 3  # about 10.7 GiB
    assert manager.residency_budget == manager.gpu_limit_bytes < manager.budget
    wired = MemoryManager(lambda name: scripted, machine=Machine.apple(16, wired_limit_mb=12288))
    assert wired.gpu_limit_bytes == 12 * GIB
    linux = MemoryManager(
        lambda name: scripted, machine=Machine("Linux", "x86_64", 24 * GIB, 20 * GIB)
    )
    assert linux.gpu_limit_bytes is None and linux.budget == 19 * GIB == linux.residency_budget


def test_over_the_gpu_share_but_inside_the_budget_loads_with_one_warning(
    scripted: ScriptedBackend,
) -> None:
    manager = MemoryManager(lambda name: scripted, budget_bytes=10**9, gpu_limit_bytes=1 * MIB)
    first = acquire(manager, "a")
    (warning,) = [e for e in first if isinstance(e, Notice)]
    assert warning.kind == "offload" and "more than the GPU's share of memory" in warning.message
    assert "OLLAMA_KV_CACHE_TYPE=q8_0" in warning.message
    assert isinstance(first[-1], ModelLoaded), "it loads all the same"
    assert manager.records[spec("a")].cpu_layers == 1
    acquire(manager, "b")
    again = acquire(manager, "a")  # loaded again under one-at-a-time: not said twice
    assert not [e for e in again if isinstance(e, Notice)]


def test_a_resident_context_that_covers_the_call_is_reused(scripted: ScriptedBackend) -> None:
    manager = MemoryManager(lambda name: scripted, budget_bytes=10**9)
    acquire(manager, "a", 4096)
    assert acquire(manager, "a", 2048) == [], "a smaller call uses the resident model as it is"
    assert scripted.loaded["a"].num_ctx == 4096
    events = acquire(manager, "a", 6144)  # a longer one reloads it, saying why
    (unload,) = [e for e in events if isinstance(e, ModelUnloaded)]
    assert unload.cause == "options" and "context of 6,144 tokens is needed" in unload.reason


def test_a_reserved_context_is_what_the_next_load_uses(scripted: ScriptedBackend) -> None:
    manager = MemoryManager(lambda name: scripted, budget_bytes=10**9)
    manager.reserve_context("embedded:a", 6144)
    acquire(manager, "a", 2048)
    assert scripted.loaded["a"].num_ctx == 6144
    assert acquire(manager, "a", 4096) == [], "the group's larger calls need no reload"
    acquire(manager, "b", 2048)
    acquire(manager, "a", 2048)
    assert scripted.loaded["a"].num_ctx == 2048, "a reservation serves one load"
