"""Batches on a Ray cluster: a real local Ray cluster (``ray.init`` in this process) whose three
worker slots (custom resources ``ai-stack:a|b|c``) stand in for three machines, each worker
bound to its own Ollama test double and its own user directory.

What is shown: every task done with each model loaded once, on its own node; the placement a
dry run predicts; a node left out with its reason; a worker killed mid-call recovered with
nothing lost and no finished phase redone; ``--resume`` after the driver is killed; Ctrl-C
unloading what every node loaded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ai_stack.backends import ModelSpec
from ai_stack.backends.base import ChatOptions, LoadOptions
from ai_stack.cluster.placement import NodeOffer, Placement
from ai_stack.cluster.worker import NodeWorker
from ai_stack.roles import RoleCall, Served
from tests.conftest import ROOT, invoke
from tests.ollama_double import GIB, OllamaDouble
from tests.ray_local import local_ray as start_local_ray
from tests.test_batch import FOUR_TASKS, THREE, phase_keys, wait_for_phases
from tests.test_workflow import write

ray = pytest.importorskip("ray", reason="the cluster extra (ray) is not installed")

SLOTS = ("a", "b", "c")
PLANNER, CRITIC, EXECUTOR = "ollama:mistral:7b", "ollama:qwen2.5:7b", "ollama:qwen2.5:14b"
CHAIN = (
    "name: chain\n"
    + THREE
    + """
tasks:
  - {id: a, task: first}
  - {id: b, task: "second, after {{ outputs.a }}", depends_on: [a]}
  - {id: c, task: "third: log in with password: hunter2"}
  - {id: d, task: "fourth, after {{ outputs.b }}", depends_on: [b]}
"""
)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[str]:
    """A local Ray cluster with three worker slots; its address, for drivers in subprocesses."""
    with start_local_ray(SLOTS) as address:
        yield address


@dataclass
class Machines:
    """The three stand-in machines: a double each, and the driver's config naming them."""

    doubles: dict[str, OllamaDouble]
    config: Path

    def loads(self) -> dict[str, list[str]]:
        return {slot: [e["model"] for e in d.events("load")] for slot, d in self.doubles.items()}

    def generations(self) -> int:
        return sum(len(d.events("generate")) for d in self.doubles.values())

    def slow(self, seconds_per_token: float) -> None:
        for double in self.doubles.values():
            double.seconds_per_token = seconds_per_token

    def unloaded(self) -> bool:
        """Whether every machine has unloaded (or is unloading) what it had loaded."""
        return all(
            all(r.unloading_until for r in d.runners.values()) for d in self.doubles.values()
        )


@pytest.fixture
def machines(
    local_ray: str, isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Machines]:
    doubles = {slot: OllamaDouble(unload_delay_s=0.05) for slot in SLOTS}
    running = [double.start() for double in doubles.values()]
    lines = []
    for slot, double in doubles.items():
        home = tmp_path / f"machine-{slot}"
        lines += [
            f"[cluster.slots.{slot}.env]",
            f'OLLAMA_HOST = "{double.host}"',
            f'AI_STACK_HOME = "{home}"',
        ]
    isolated_home.mkdir(parents=True, exist_ok=True)
    config = isolated_home / "config.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        yield Machines(doubles, config)
    finally:
        for server in running:
            server.stop()


def summary_of(out: str) -> dict[str, Any]:
    return json.loads(out)


def node(summary: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in summary["nodes"] if n["name"] == name)


# -- placement -----------------------------------------------------------------------------------


def test_a_lost_node_s_models_move_and_a_refused_model_never_returns() -> None:
    offers = [NodeOffer(n, 16 * GIB, "one-at-a-time", {"p": 5, "c": 5, "e": 9}) for n in SLOTS]
    placement = Placement.plan(["p", "c", "e"], offers)
    assert placement.homes == {"p": "a", "c": "b", "e": "c"}
    assert placement.lose("b") == {"c": "a"}
    assert placement.candidates("c") == ["a", "c"]
    assert placement.refuse("c", "a") == "c"
    assert placement.lose("c") == {"e": "a", "c": None}, "nowhere left for c"
    assert placement.unplaced(["p", "c", "e"]) == ["c"]


def test_a_hot_node_keeps_its_model_when_no_other_node_has_it() -> None:
    offers = [
        NodeOffer("a", 16 * GIB, "fit", {"p": 5}),
        NodeOffer("b", 16 * GIB, "fit", {"p": 5, "e": 9}),
    ]
    placement = Placement.plan(["e", "p"], offers)
    assert placement.homes == {"e": "b", "p": "a"}
    assert placement.move("e", away_from="b") == "b"
    assert placement.move("p", away_from="a") == "b"


def test_no_cluster_at_the_address_is_one_clear_message(
    isolated_home: Path, tmp_path: Path
) -> None:
    """At once: Ray itself would retry an address nothing answers at for minutes."""
    path = write(tmp_path, FOUR_TASKS)
    command = [
        sys.executable,
        str(ROOT / "main.py"),
        "batch",
        str(path),
        "--cluster",
        "127.0.0.1:9",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Nothing answers at 127.0.0.1:9" in done.stderr, done.stderr
    assert "ray start --head" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener accepts connections (the kernel does, from its backlog) and never
    says a word: a hung head, or another program on the port."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def batch_on(cluster: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    path = write(tmp_path, FOUR_TASKS)
    config = tmp_path / "connect.toml"
    config.write_text("[cluster]\nconnect_timeout_s = 2\n", encoding="utf-8")
    command = [sys.executable, str(ROOT / "main.py"), "batch", str(path), "--cluster", cluster]
    return subprocess.run(
        [*command, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,  # a hang guard: Ray's own connect retried for minutes
        env={**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **env},
    )


def test_a_listener_that_never_answers_is_one_clear_message(
    isolated_home: Path, tmp_path: Path, silent_port: int
) -> None:
    done = batch_on(f"127.0.0.1:{silent_port}", tmp_path, {})
    assert done.returncode == 1, done.stderr
    assert f"Nothing answers at 127.0.0.1:{silent_port} (no answer in 2 s)" in done.stderr
    assert "Traceback" not in done.stderr


def test_auto_with_the_record_of_a_stopped_cluster_is_one_clear_message(
    isolated_home: Path, tmp_path: Path, silent_port: int
) -> None:
    """`ray start` records its address in Ray's temporary directory; a head that died without
    `ray stop` leaves the record behind, and Ray's `auto` kept trying it."""
    record = tmp_path / "ray-tmp" / "ray" / "ray_current_cluster"
    record.parent.mkdir(parents=True)
    record.write_text(f"127.0.0.1:{silent_port}", encoding="utf-8")
    done = batch_on("auto", tmp_path, {"RAY_TMPDIR": str(record.parent.parent)})
    assert done.returncode == 1, done.stderr
    assert f"Nothing answers at 127.0.0.1:{silent_port} (recorded in {record}" in done.stderr
    assert "ray start --head" in done.stderr and "Traceback" not in done.stderr


def test_a_ray_head_passes_the_check_before_joining(local_ray: str) -> None:
    from ai_stack.cluster.driver import _reachable

    assert _reachable(local_ray, timeout_s=30) == local_ray


# -- a node's worker, in this process -----------------------------------------------------------


def request_for(model: str) -> Served:
    spec = ModelSpec.parse(model)
    call = RoleCall("executor", "execute", spec, LoadOptions(num_ctx=2048), ChatOptions())
    return Served(call, call.load, [{"role": "user", "content": "hello"}], None, 1)


def test_a_hot_node_defers_when_another_could_serve_and_waits_when_none(
    on_double: OllamaDouble, isolated_home: Path
) -> None:
    from tests.test_thermal import guard_for

    node_worker = NodeWorker("hot")
    hot = guard_for("heavy", "heavy", "nominal", max_pause_s=1)
    node_worker.session.guard = node_worker.runner.guard = hot
    reply = node_worker.serve(request_for(EXECUTOR), may_defer=True)
    assert reply.deferred == "thermal level heavy" and reply.reply is None
    assert on_double.loads == 0, "a deferred call loads nothing"
    reply = node_worker.serve(request_for(EXECUTOR), may_defer=False)
    assert reply.reply is not None and reply.error is None
    kinds = [type(event).__name__ for event in reply.events]
    assert "ThermalPause" in kinds and "ModelLoaded" in kinds and "Token" not in kinds
    assert [type(e).__name__ for e in node_worker.release()] == ["ModelUnloaded"]


def test_a_node_over_its_budget_refuses_and_says_why(
    on_double: OllamaDouble, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AI_STACK_MEMORY_BUDGET_GB", "6")
    node_worker = NodeWorker("small")
    offer = node_worker.offer({ModelSpec.parse(m): LoadOptions(2048) for m in (PLANNER, EXECUTOR)})
    assert list(offer.serves) == [PLANNER]
    assert "more than the memory budget" in offer.lacks[EXECUTOR]
    reply = node_worker.serve(request_for(EXECUTOR))
    assert reply.refused and "memory budget" in (reply.error or "") and on_double.loads == 0
    assert node_worker.describe(ModelSpec.parse("ollama:absent:1b"))[0] is None


# -- runs ----------------------------------------------------------------------------------------


def test_each_model_loads_once_on_its_own_node(machines: Machines, tmp_path: Path) -> None:
    path = write(tmp_path, CHAIN)
    config = ("--config", str(machines.config))
    code, out, err = invoke("batch", str(path), "--cluster", "auto", "--dry-run", "--json", *config)
    assert code == 0, err
    schedule = json.loads(out)
    assert {n: p["models"] for n, p in schedule["nodes"].items()} == {
        "a": [PLANNER],
        "b": [CRITIC],
        "c": [EXECUTOR],
    }
    assert {n: p["predicted_loads"] for n, p in schedule["nodes"].items()} == dict.fromkeys(
        SLOTS, 1
    )
    assert schedule["predicted_loads"] == 3 and schedule["naive_loads"] == 12
    assert all(g["node"] for g in schedule["groups"])
    assert machines.generations() == 0 and not any(machines.loads().values()), "nothing loaded"

    code, out, err = invoke("batch", str(path), "--cluster", "auto", "--json", *config)
    assert code == 0, err
    summary = summary_of(out)
    assert summary["status"] == "ok" and summary["loads"] == 3
    assert machines.loads() == {"a": ["mistral:7b"], "b": ["qwen2.5:7b"], "c": ["qwen2.5:14b"]}
    assert {n["name"]: n["calls"] for n in summary["nodes"]} == dict.fromkeys(SLOTS, 4)
    results = tmp_path / "flow-results"
    first = (results / "a.md").read_text().strip()
    second = json.loads((results / "b.json").read_text())
    assert second["task"] == f"second, after {first}", "outputs flow into dependent tasks"
    assert json.loads((results / "summary.json").read_text()) == summary
    sent = [e["messages"] for d in machines.doubles.values() for e in d.events("generate")]
    assert "password: [redacted]" in json.dumps(sent) and "hunter2" not in json.dumps(sent), (
        "credentials are redacted before a call leaves the driver"
    )
    assert machines.unloaded(), "each node unloads what it loaded once the batch ends"


def test_a_node_that_lacks_the_models_is_left_out_by_name(
    machines: Machines, tmp_path: Path
) -> None:
    machines.doubles["c"].models.clear()
    # a's plans are slow, so executions wait on a while plans still do: a keeps its resident
    # model for those, and swaps once
    machines.doubles["a"].seconds_per_token = 0.02
    path = write(tmp_path, FOUR_TASKS)
    code, out, err = invoke(
        "batch", str(path), "--cluster", "auto", "--json", "--config", str(machines.config)
    )
    assert code == 0, err
    assert "Left out: c: ollama:mistral:7b:" in err and "Traceback" not in err
    summary = summary_of(out)
    assert summary["status"] == "ok"
    assert node(summary, "c")["calls"] == 0 and node(summary, "c")["models"] == []
    assert sorted(m for loads in machines.loads().values() for m in loads) == sorted(
        ["mistral:7b", "qwen2.5:7b", "qwen2.5:14b"]
    )
    assert machines.loads()["a"] == ["mistral:7b", "qwen2.5:14b"], "a holds two models"


def test_no_node_with_the_model_is_one_clear_message(machines: Machines, tmp_path: Path) -> None:
    path = write(tmp_path, FOUR_TASKS.replace("qwen2.5:14b", "absent:1b"))
    code, _, err = invoke("batch", str(path), "--cluster", "auto", "--config", str(machines.config))
    assert code == 1 and "Traceback" not in err
    assert "No node can serve ollama:absent:1b: a:" in err and "b:" in err and "c:" in err


# -- faults, in real driver processes ------------------------------------------------------------


def start_driver(path: Path, address: str, config: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, str(ROOT / "main.py"), "batch", str(path), "--cluster", address]
    return subprocess.Popen(
        [*command, "--config", str(config), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )


def worker(slot: str) -> Any:
    """The running worker actor of ``slot`` (named ``SLOT/BATCH`` in the ai-stack namespace)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for entry in ray.util.list_named_actors(all_namespaces=True):
            if entry["namespace"] == "ai-stack" and entry["name"].startswith(f"{slot}/"):
                return ray.get_actor(entry["name"], namespace="ai-stack")
        time.sleep(0.1)
    raise AssertionError(f"no worker for {slot}")


def wait_until(condition: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_worker_killed_mid_call_is_recovered_with_no_phase_redone(
    machines: Machines, local_ray: str, isolated_home: Path, tmp_path: Path
) -> None:
    import threading

    gate = threading.Event()
    machines.doubles["b"].gate = gate  # the critic's first call on b streams, then waits
    path = write(tmp_path, FOUR_TASKS)
    driver = start_driver(path, local_ray, machines.config, "--json")
    try:
        wait_until(lambda: machines.doubles["b"].events("generate"), "a call on node b")
        ray.kill(worker("b"), no_restart=True)
    finally:
        gate.set()
    out, err = driver.communicate(timeout=240)
    assert driver.returncode == 0, err
    summary = summary_of(out)
    assert summary["status"] == "ok"
    assert node(summary, "b")["lost"] and "Node b was lost" in err
    keys = phase_keys(isolated_home / "history.db")
    assert len(keys) == len(set(keys)) == 12, "every phase exactly once"
    assert machines.generations() == 12 + 1, "only the call cut by the kill ran again"
    for task in "abcd":
        assert (tmp_path / "flow-results" / f"{task}.md").exists()


def test_resume_after_the_driver_is_killed(
    machines: Machines, local_ray: str, isolated_home: Path, tmp_path: Path
) -> None:
    machines.slow(0.05)
    path = write(tmp_path, FOUR_TASKS)
    database = isolated_home / "history.db"
    driver = start_driver(path, local_ray, machines.config)
    assert wait_for_phases(database, 4, timeout=180) >= 4, "the batch never got going"
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    before = phase_keys(database)
    calls_before = machines.generations()

    again = start_driver(path, local_ray, machines.config, "--resume", "--json")
    out, err = again.communicate(timeout=240)
    assert again.returncode == 0, err
    summary = summary_of(out)
    assert summary["status"] == "ok" and summary["resumed"]
    keys = phase_keys(database)
    assert len(keys) == len(set(keys)) == 12 and set(before) <= set(keys)
    # what the second driver asked for is exactly what was not finished (a call in flight on
    # each of the three nodes at the kill may have been made and lost)
    assert machines.generations() - calls_before == 12 - len(before)
    assert machines.generations() <= 12 + 3


def test_ctrl_c_stops_the_nodes_and_unloads_what_they_loaded(
    machines: Machines, local_ray: str, isolated_home: Path, tmp_path: Path
) -> None:
    machines.slow(0.05)
    path = write(tmp_path, FOUR_TASKS)
    driver = start_driver(path, local_ray, machines.config)
    assert wait_for_phases(isolated_home / "history.db", 2, timeout=180) >= 2
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    wait_until(machines.unloaded, "every node to unload", timeout=10)
    assert sum(len(d.events("unload")) for d in machines.doubles.values()) >= 1
