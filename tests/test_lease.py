"""One memory budget per machine: ai-stack processes take turns through the residency lease,
never load beside each other under one-at-a-time, never unload a model another is using, and a
killed holder blocks no one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ai_stack.errors import LeaseTimeoutError
from ai_stack.lease import ResidencyLease
from ai_stack.types import LeaseWaiting
from tests.ollama_double import OllamaDouble

ROOT = Path(__file__).resolve().parent.parent
HOLD = """
import sys, time
from pathlib import Path
from ai_stack.lease import ResidencyLease
lease = ResidencyLease(Path(sys.argv[1]), "ollama http://x", policy="one-at-a-time",
                       budget=10**10, timeout_s=5)
for _ in lease.claim(sys.argv[2], 100):
    pass
print("held", flush=True)
time.sleep(120)
"""


def lease(
    directory: Path, policy: str = "one-at-a-time", timeout_s: float = 0.6, budget: int = 10**10
) -> ResidencyLease:
    return ResidencyLease(
        directory, "ollama http://x", policy=policy, budget=budget, timeout_s=timeout_s
    )


def hold(directory: Path, model: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(directory), model],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_another_process_using_a_different_model_makes_this_one_wait(tmp_path: Path) -> None:
    child = hold(tmp_path, "ollama:mistral:7b")
    try:
        events = []
        with pytest.raises(LeaseTimeoutError, match=rf"pid {child.pid}\) using ollama:mistral:7b"):
            for event in lease(tmp_path).claim("ollama:qwen2.5:14b", 100):
                events.append(event)
        assert events == [LeaseWaiting("ollama:qwen2.5:14b", "ollama:mistral:7b", child.pid)]
        # the same model is shared: the server holds it once for both
        assert list(lease(tmp_path).claim("ollama:mistral:7b", 100)) == []
    finally:
        child.kill()
        child.wait()


def test_under_fit_models_that_fit_together_are_claimed_side_by_side(tmp_path: Path) -> None:
    child = hold(tmp_path, "ollama:mistral:7b")  # claims 100 bytes
    try:
        assert list(lease(tmp_path, "fit", budget=250).claim("ollama:qwen2.5:7b", 150)) == []
        with pytest.raises(LeaseTimeoutError):
            list(lease(tmp_path, "fit", budget=250).claim("ollama:qwen2.5:14b", 200))
    finally:
        child.kill()
        child.wait()


def test_a_holder_killed_with_sigkill_blocks_no_one(tmp_path: Path) -> None:
    child = hold(tmp_path, "ollama:mistral:7b")
    child.send_signal(signal.SIGKILL)
    child.wait()
    mine = lease(tmp_path)
    assert list(mine.claim("ollama:qwen2.5:14b", 100)) == []
    assert [c.model for c in mine.claims()] == ["ollama:qwen2.5:14b"]
    mine.release()
    assert mine.claims() == []


def two_task_batch(directory: Path) -> Path:
    """A workflow of two direct tasks on qwen2.5:14b (one phase group)."""
    workflow = directory / "flow.yaml"
    workflow.write_text(
        "name: two\ndefaults:\n  direct: true\n  executor: ollama:qwen2.5:14b\ntasks:\n"
        "  - id: a\n    task: first\n  - id: b\n    task: second\n"
    )
    return workflow


def run_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), *args],
        cwd=ROOT,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def started_together(tmp_path: Path, first: str, second: str) -> list[subprocess.Popen[str]]:
    """Two one-shots on different models and a batch on a third, started at once."""
    workflow = two_task_batch(tmp_path)
    return [
        run_cli("--direct", "--json", "--executor", "ollama:mistral:7b", first),
        run_cli("--direct", "--json", "--executor", "ollama:qwen2.5:7b", second),
        run_cli("batch", str(workflow), "--out", str(tmp_path / "out"), "--json"),
    ]


def finished(children: list[subprocess.Popen[str]]) -> list[tuple[str, str]]:
    """Each child's stdout and stderr, once every one has exited successfully."""
    outputs = [child.communicate(timeout=120) for child in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    return outputs


def test_processes_at_once_never_hold_two_models_or_unload_one_in_use(
    on_double: OllamaDouble, tmp_path: Path
) -> None:
    """Two one-shots on different models and a batch on a third, started together against one
    server: one model resident at a time, no model unloaded while a request used it, and every
    load counted by the process that caused it."""
    on_double.seconds_per_token = 0.01
    on_double.enqueue(*["word " * 40] * 10)
    outputs = finished(started_together(tmp_path, "one", "two"))
    loads = on_double.events("load")
    assert loads and all(load["others"] == [] for load in loads), loads
    assert not on_double.events("evicted")
    assert not [e for e in on_double.events("unload") if e["busy"]]
    counted = sum(json.loads(out)["metrics"]["loads"] for out, _ in outputs[:2])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    counted += summary["loads"]
    assert counted == len(loads)
    waited = [err for _, err in outputs if "Waiting for another ai-stack process" in err]
    assert waited, "the processes never had to take turns"


def test_a_process_waits_then_goes_on_when_the_holder_finishes(
    on_double: OllamaDouble,
) -> None:
    """The holder's generation is held open until the second process says it is waiting, so
    the order is the test's, not the machine's speed."""
    on_double.gate = threading.Event()
    on_double.enqueue("word " * 60, "short")
    first = run_cli("--direct", "--json", "--executor", "ollama:mistral:7b", "slow")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not on_double.events("generate"):
        time.sleep(0.02)
    assert on_double.events("generate"), "the first process never started generating"
    second = run_cli("--direct", "--json", "--executor", "ollama:qwen2.5:7b", "quick")
    assert second.stderr is not None
    seen: list[str] = []
    for line in second.stderr:  # blocks until the second process reaches the lease
        seen.append(line)
        if "Waiting for another ai-stack process" in line:
            break
    on_double.gate.set()
    _, first_err = first.communicate(timeout=60)
    out, err = second.communicate(timeout=60)
    err = "".join(seen) + err
    assert first.returncode == 0 and second.returncode == 0, first_err + err
    assert "Waiting for another ai-stack process using ollama:mistral:7b" in err
    assert json.loads(out)["metrics"]["loads"] == 1
