"""The Ollama backend and the memory manager over real HTTP against the Ollama test double.

The double follows the documented API (asynchronous unloads, silent reloads on changed load-time
options, its own eviction, errors); these tests assert the invariants the issue promises at every
step: never two models resident under one-at-a-time, every load preceded by a verified unload,
no reloads, schemas sent for planner and critic, the budget never exceeded under fit.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ai_stack.backends import ModelSpec, choose_backend
from ai_stack.backends.base import ChatOptions, LoadOptions
from ai_stack.backends.ollama import OllamaBackend
from ai_stack.config import Settings
from ai_stack.controller import Pipeline
from ai_stack.errors import (
    BackendError,
    BackendUnavailableError,
    MemoryBudgetError,
    ModelNotFoundError,
    TransientBackendError,
)
from ai_stack.footprint import estimate_footprint
from ai_stack.machine import Machine
from ai_stack.memory import MemoryManager
from ai_stack.prompts import PromptLibrary
from ai_stack.recommend import default_roles
from ai_stack.roles import generation_schema
from ai_stack.session import Session, resolve_roles
from ai_stack.types import CallRetried, Notice, RunFinished, RunResult, Verdict
from ai_stack.units import GIB
from tests.conftest import ROOT, invoke, plan, verdict
from tests.ollama_double import GIB as DOUBLE_GIB
from tests.ollama_double import FakeModel, Fault, OllamaDouble, parse_keep_alive

THREE = {
    "planner": "ollama:mistral:7b",
    "critic": "ollama:qwen2.5:7b",
    "executor": "ollama:qwen2.5:14b",
}
THREE_NAMES = ("mistral:7b", "qwen2.5:7b", "qwen2.5:14b")


@pytest.fixture
def backend(double: OllamaDouble) -> Iterator[OllamaBackend]:
    ollama = OllamaBackend(double.host, backoff=lambda attempt: 0.0, unload_timeout_s=3)
    yield ollama
    ollama.close()


def pipeline_for(double: OllamaDouble, **settings: object) -> Pipeline:
    config = Settings.model_validate({"backend": "ollama", "review": "plan", **THREE, **settings})
    memory = config.memory
    manager = MemoryManager(
        lambda name: OllamaBackend(double.host, backoff=lambda attempt: 0.0, unload_timeout_s=3),
        policy=memory.policy,
        budget_bytes=int((memory.budget_gb or 64) * GIB),
    )
    return Pipeline(config, manager, PromptLibrary(), resolve_roles(config, "ollama"))


def run(pipeline: Pipeline, task: str = "count lines") -> tuple[RunResult, list[object]]:
    events = list(pipeline.run(task))
    assert isinstance(events[-1], RunFinished)
    return events[-1].result, events


def assert_one_at_a_time(double: OllamaDouble) -> None:
    for load in double.events("load"):
        assert load["others"] == [], f"{load['model']} loaded beside {load['others']}"
    assert double.reloads == 0, double.events("reload")


# -- the protocol --------------------------------------------------------------------------------


def test_keep_alive_forms_follow_the_server() -> None:
    assert parse_keep_alive(0) == 0.0 and parse_keep_alive("0") == 0.0
    assert parse_keep_alive("5m") == 300 and parse_keep_alive("1h30m") == 5400
    assert parse_keep_alive(-1) is None and parse_keep_alive("-1m") is None
    with pytest.raises(Exception, match="missing unit"):
        parse_keep_alive("300")


def test_health_version_and_a_dead_host(backend: OllamaBackend) -> None:
    health = backend.health()
    assert health.available and health.version == "0.12.6"
    dead = OllamaBackend("127.0.0.1:9").health()
    assert not dead.available and "127.0.0.1:9" in dead.detail


def test_describe_reads_model_info_and_the_estimate_is_close(
    backend: OllamaBackend, double: OllamaDouble
) -> None:
    info = backend.describe("qwen2.5:14b")
    assert (info.block_count, info.head_count_kv, info.size_bytes) == (48, 8, 8_988_124_069)
    assert info.parameters == "14.8B" and info.quantization == "Q4_K_M"
    backend.load("qwen2.5:14b", LoadOptions(num_ctx=4096))
    (resident,) = backend.resident()
    estimate = estimate_footprint(info, 4096).total
    assert resident.size_bytes == double.models["qwen2.5:14b"].memory(4096)
    assert abs(estimate - resident.size_bytes) / resident.size_bytes < 0.1


def test_unload_waits_until_ps_no_longer_lists_the_model(
    backend: OllamaBackend, double: OllamaDouble
) -> None:
    backend.load("mistral:7b", LoadOptions())
    backend.unload("mistral:7b")
    assert backend.resident() == []
    assert "mistral:7b" not in double.runners  # really gone, not just "unloading"
    polls = [e for e in double.events("ps") if "mistral:7b" in e["models"]]
    assert polls, "the unload was asynchronous, so at least one poll saw it still listed"


def test_the_same_load_time_options_go_with_every_request(
    backend: OllamaBackend, double: OllamaDouble
) -> None:
    backend.load("mistral:7b", LoadOptions(num_ctx=8192, num_thread=4))
    stream = backend.chat(
        "mistral:7b",
        [{"role": "user", "content": "hi"}],
        options=ChatOptions(temperature=0.1, max_tokens=50, seed=1),
        schema=generation_schema(Verdict),
    )
    pieces = list(stream)
    result = stream.result
    assert len(pieces) > 1 and "".join(pieces) == result.text
    Verdict.model_validate_json(result.text)
    assert result.output_tokens == len(pieces) and result.prompt_tokens > 0
    assert result.tokens_per_s > 0 and result.ttft_s > 0
    (generate,) = double.events("generate")
    assert generate["options"]["num_ctx"] == 8192 and generate["options"]["num_thread"] == 4
    assert generate["options"]["num_predict"] == 50
    assert generate["format"] == generation_schema(Verdict)
    assert generate["keep_alive"] == "10m"
    assert double.reloads == 0 and double.loads == 1


def test_changed_load_options_give_an_explicit_reload_not_a_silent_one(
    backend: OllamaBackend, double: OllamaDouble
) -> None:
    backend.load("mistral:7b", LoadOptions(num_ctx=2048))
    backend.load("mistral:7b", LoadOptions(num_ctx=4096))
    assert double.reloads == 0
    assert [e["event"] for e in double.log if e["event"] in ("load", "unload")] == [
        "load",
        "unload",
        "load",
    ]


# -- errors --------------------------------------------------------------------------------------


def test_unknown_model_names_the_pull_command(backend: OllamaBackend) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        backend.describe("llama9:400b")
    assert "not installed" in info.value.message
    assert info.value.hint and "ai-stack models pull llama9:400b" in info.value.hint


def test_out_of_memory_suggests_a_smaller_model(
    backend: OllamaBackend, double: OllamaDouble
) -> None:
    double.memory_bytes = 6 * DOUBLE_GIB
    with pytest.raises(BackendError) as info:
        backend.load("qwen2.5:14b", LoadOptions())
    assert "requires more system memory" in info.value.message
    assert info.value.hint and "smaller model" in info.value.hint


def test_server_down_is_one_clear_error() -> None:
    with pytest.raises(BackendUnavailableError) as info:
        OllamaBackend("127.0.0.1:9", backoff=lambda attempt: 0.0).load("mistral:7b", LoadOptions())
    assert "Cannot reach the Ollama server at http://127.0.0.1:9" in info.value.message
    assert info.value.hint and "ollama serve" in info.value.hint


def test_busy_server_is_retried_with_backoff(double: OllamaDouble) -> None:
    slept: list[float] = []
    backend = OllamaBackend(double.host, sleep=slept.append, unload_timeout_s=3)
    for _ in range(2):
        double.fail_next("/api/generate", Fault(503, "server busy, please try again."))
    backend.load("mistral:7b", LoadOptions())
    assert double.loads == 1
    assert slept == [0.5, 1.0]  # exponential backoff between the attempts, not a tight loop
    for _ in range(backend.attempts):
        double.fail_next("/api/chat", Fault(503, "server busy, please try again."))
    with pytest.raises(TransientBackendError, match="busy"):
        backend.chat(
            "mistral:7b", [{"role": "user", "content": "x"}], options=ChatOptions()
        ).collect()
    assert slept[2:] == [0.5, 1.0, 2.0]  # the fourth failure is not followed by a wait
    backend.close()


@pytest.mark.parametrize(
    "fault",
    [Fault(cut_after=3), Fault(in_stream=True, message="runner process has terminated")],
    ids=["cut-connection", "error-line"],
)
def test_a_broken_stream_is_retried_and_never_passed_off_as_complete(
    double: OllamaDouble, fault: Fault
) -> None:
    double.enqueue(
        plan("a"), verdict("approve", 9), "The first answer is cut", "A complete answer."
    )
    double.fail_next("/api/chat", fault, model="qwen2.5:14b")
    result, events = run(pipeline_for(double))
    retried = [e for e in events if isinstance(e, CallRetried)]
    assert len(retried) == 1 and retried[0].role == "executor"
    assert result.output == "A complete answer."


def test_a_stream_broken_every_time_fails_clearly(
    backend: OllamaBackend, double: OllamaDouble
) -> None:
    backend.load("mistral:7b", LoadOptions())
    double.fail_next("/api/chat", Fault(cut_after=2))
    with pytest.raises(TransientBackendError) as info:
        backend.chat(
            "mistral:7b", [{"role": "user", "content": "x"}], options=ChatOptions()
        ).collect()
    assert info.value.partial


# -- the memory manager ------------------------------------------------------------------------


def test_three_models_two_rounds_one_at_a_time(double: OllamaDouble) -> None:
    double.enqueue(plan("a"), model="mistral:7b")
    double.enqueue(verdict("revise", 3), verdict("revise", 4), model="qwen2.5:7b")
    double.enqueue(plan("a", "b"), model="mistral:7b")
    result, _ = run(pipeline_for(double, max_rounds=2))

    assert result.stop_reason == "max_rounds" and result.rounds == 2
    assert_one_at_a_time(double)
    assert [e["model"] for e in double.events("load")] == [
        "mistral:7b",
        "qwen2.5:7b",
        "mistral:7b",
        "qwen2.5:7b",
        "qwen2.5:14b",
    ]
    metrics = result.metrics
    assert metrics.loads == 5 and metrics.unloads == 4 and metrics.load_s > 0
    assert metrics.policy == "one-at-a-time"
    assert sum(p.load_s > 0 for p in metrics.phases) == 5
    assert {m.model: m.resident_bytes for m in metrics.memory} == {
        f"ollama:{m.model.split(':', 1)[1]}": double.models[m.model.split(":", 1)[1]].memory(
            m.num_ctx or 0
        )
        for m in metrics.memory
    }
    assert {m.model for m in metrics.memory} == {
        f"ollama:{name}" for name in ("mistral:7b", "qwen2.5:7b", "qwen2.5:14b")
    }
    contexts = {e["model"]: e["options"]["num_ctx"] for e in double.events("load")}
    assert contexts == {m.model.split(":", 1)[1]: m.num_ctx for m in metrics.memory}
    assert all(2048 <= n < 8192 for n in contexts.values()), "sized to the run, not num_ctx"
    formats = [e["format"] for e in double.events("generate")]
    assert all(isinstance(f, dict) for f in formats[:4]) and formats[4] is None


def test_every_unload_is_verified_before_the_next_load(double: OllamaDouble) -> None:
    double.unload_delay_s = 0.3
    run(pipeline_for(double, max_rounds=1))
    for load in double.events("load")[1:]:
        earlier = [e for e in double.log if e["t"] < load["t"]]
        last_unload = max(i for i, e in enumerate(earlier) if e["event"] == "unload")
        unloaded = earlier[last_unload]["model"]
        assert any(
            e["event"] == "unloaded" and e["model"] == unloaded for e in earlier[last_unload:]
        )
        assert any(
            e["event"] == "ps" and unloaded not in e["models"] for e in earlier[last_unload:]
        )


def test_fit_with_a_large_budget_loads_each_model_once(double: OllamaDouble) -> None:
    double.enqueue(plan("a"), verdict("revise", 3), plan("b"), verdict("revise", 4), "done")
    result, _ = run(pipeline_for(double, max_rounds=2, memory={"policy": "fit", "budget_gb": 64}))
    assert [e["model"] for e in double.events("load")] == [
        "mistral:7b",
        "qwen2.5:7b",
        "qwen2.5:14b",
    ]
    assert result.metrics.loads == 3 and result.metrics.unloads == 0
    assert double.reloads == 0


def test_fit_evicts_least_recently_used_and_never_exceeds_the_budget(double: OllamaDouble) -> None:
    double.enqueue(plan("a"), verdict("revise", 3), plan("b"), verdict("approve", 9), "done")
    budget_gb = 16.0  # both 7Bs fit together; the 14B needs one of them gone
    pipeline = pipeline_for(double, max_rounds=2, memory={"policy": "fit", "budget_gb": budget_gb})
    result, _ = run(pipeline)
    for load in double.events("load"):
        assert load["used"] <= budget_gb * GIB, load
    loads = [e["model"] for e in double.events("load")]
    assert loads == ["mistral:7b", "qwen2.5:7b", "qwen2.5:14b"]
    # the planner model was used least recently when the executor needed room
    assert [e["model"] for e in double.events("unload")] == ["mistral:7b"]
    assert result.metrics.unloads == 1


def test_a_model_over_the_budget_is_refused_naming_what_fits(double: OllamaDouble) -> None:
    pipeline = pipeline_for(double, memory={"budget_gb": 8})
    with pytest.raises(MemoryBudgetError) as info:
        pipeline.manager.check_all(pipeline.load_options)
    assert "ollama:qwen2.5:14b needs about" in info.value.message
    assert "memory budget of 8.0 GiB" in info.value.message
    assert info.value.hint and "mistral:7b" in info.value.hint and "qwen2.5:7b" in info.value.hint
    assert double.loads == 0


def test_a_model_loaded_by_another_client_is_unloaded_first(
    double: OllamaDouble, backend: OllamaBackend
) -> None:
    backend.load("qwen2.5:14b", LoadOptions(num_ctx=2048))  # "someone else"
    double.enqueue(plan("a"), verdict("approve", 9), "done")
    result, _ = run(pipeline_for(double, max_rounds=1))
    assert_one_at_a_time(double)
    assert result.metrics.unloads >= 2


def test_default_roles_follow_the_original_ai_stack_then_what_is_installed(
    backend: OllamaBackend, double: OllamaDouble
) -> None:
    installed = backend.list_models()
    assert default_roles(installed, lambda m: True) == {
        "planner": "mistral:7b",
        "critic": "qwen2.5:7b",
        "executor": "qwen2.5:14b",
    }
    double.models = {
        m.name: m
        for m in (
            FakeModel("llama3.1:8b", int(4.9 * GIB), parameter_size="8.0B"),
            FakeModel("phi3:3.8b", int(2.2 * GIB), parameter_size="3.8B"),
            FakeModel("mixtral:8x7b", int(26 * GIB), parameter_size="46.7B"),
        )
    }
    roles = default_roles(backend.list_models(), lambda m: m.size_bytes < 10 * GIB)
    assert roles == {"planner": "llama3.1:8b", "critic": "llama3.1:8b", "executor": "llama3.1:8b"}


# -- choosing the backend, auto-start, the CLI ------------------------------------------------


def test_auto_prefers_a_reachable_ollama_and_says_which(double: OllamaDouble) -> None:
    backends = {"ollama": OllamaBackend(double.host)}
    name, note = choose_backend("auto", backends.__getitem__)
    assert name == "ollama" and double.host in note
    backends = {"ollama": OllamaBackend("127.0.0.1:9")}
    name, note = choose_backend("auto", backends.__getitem__)
    assert name == "embedded" and "no Ollama server at http://127.0.0.1:9" in note


def test_cli_run_against_the_server(double: OllamaDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", double.host)
    double.enqueue(plan("a"), model="mistral:7b")
    double.enqueue(verdict("revise", 2), verdict("revise", 3), model="qwen2.5:7b")
    double.enqueue(plan("b"), model="mistral:7b")
    code, out, err = invoke(
        "--max-rounds", "2", "--review", "plan", "--json", "--memory-budget", "14", "task"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["models"] == THREE  # the defaults on Ollama are the original ai-stack's roles
    assert data["metrics"]["loads"] == 5 and data["metrics"]["load_s"] > 0
    assert data["metrics"]["budget_bytes"] == 14 * GIB
    assert f"Ollama 0.12.6 at {double.host}" in err
    assert_one_at_a_time(double)


def test_cli_refuses_an_oversized_model_with_alternatives(
    double: OllamaDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", double.host)
    code, _, err = invoke("--memory-budget", "6", "task")
    assert code == 1
    assert "more than the memory budget of 6.0 GiB" in err
    assert "Traceback" not in err


def test_cli_unknown_model_names_the_pull_command(
    double: OllamaDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", double.host)
    code, _, err = invoke("--executor", "ollama:gemma9:1t", "task")
    assert code == 1
    assert "ai-stack models pull gemma9:1t" in err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_autostart_starts_ollama_serve_and_stops_only_what_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin" / "ollama"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\ncd {ROOT}\nexec {sys.executable} -m tests.ollama_double "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    host = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("OLLAMA_HOST", host)

    settings = Settings.model_validate({"ollama": {"autostart": True}})
    with Session.open(settings) as session:
        assert "started `ollama serve`" in session.backend_note
        assert session.pipeline().specs["executor"] == ModelSpec("ollama", "qwen2.5:14b")
        assert OllamaBackend(host).health().available
    assert not OllamaBackend(host).health().available, "the server it started was stopped"


def test_models_pull_shows_progress_and_the_outcome(
    double: OllamaDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", double.host)
    code, out, err = invoke("models", "pull", "qwen2.5:7b", "--json")
    assert code == 0, err
    assert json.loads(out) == {"model": "qwen2.5:7b", "status": "success"}
    assert "pulling manifest" in err and "layer " in err
    assert "writing manifest" in err


def test_models_pull_of_an_unknown_name(
    double: OllamaDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", double.host)
    code, _, err = invoke("models", "pull", "nonsense:1b")
    assert code == 1
    assert "There is no model 'nonsense:1b' in the Ollama library" in err
    assert "Traceback" not in err


def test_models_pull_without_a_server() -> None:
    code, _, err = invoke("models", "pull", "qwen2.5:7b")
    assert code == 1 and "Ollama is not reachable" in err


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_ctrl_c_during_a_load_unloads_the_model_before_exiting(
    on_double: OllamaDouble, name: str
) -> None:
    """Otherwise the server finishes the load and keeps a 9 GB model for ten minutes. SIGTERM
    (`timeout`, an MCP client stopping the server) and SIGHUP (a closed terminal) alike."""
    import signal
    import subprocess
    import time

    on_double.load_bytes_per_s = DOUBLE_GIB  # qwen2.5:14b takes 8 s to load
    # As at a terminal: a test run started in the background (CI) ignores SIGINT, and a child
    # inherits that, so Python would never turn the signal into KeyboardInterrupt.
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--direct", "--quiet", "a task"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not on_double.events("load") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert on_double.events("load"), "the load never started"
    child.send_signal(getattr(signal, name))
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130 and "Interrupted" in err and "Traceback" not in err, (
        child.returncode,
        err,
        on_double.log,
    )
    assert [e["model"] for e in on_double.events("unload")] == ["qwen2.5:14b"]
    assert on_double.events("generate") == [], "the task itself never ran"


# -- a 16 GB Apple Silicon Mac -------------------------------------------------------------------


@pytest.fixture
def mac16(on_double: OllamaDouble, monkeypatch: pytest.MonkeyPatch) -> OllamaDouble:
    """The design card's machine: 16 GB of unified memory, Ollama with its defaults (f16 KV
    cache), the GPU taking about two-thirds of it; ai-stack sees the same machine."""
    machine = Machine.apple(16)
    monkeypatch.setattr(Machine, "detect", classmethod(lambda cls, tools=None: machine))
    on_double.memory_bytes = machine.total_bytes
    on_double.vram_bytes = machine.gpu_share_bytes
    return on_double


@pytest.mark.parametrize("review", ["team", "answer", "both"])
def test_the_design_cards_models_run_by_default_on_a_16_gb_mac(
    mac16: OllamaDouble, review: str
) -> None:
    """No configuration: the original roles (mistral:7b, qwen2.5:7b, qwen2.5:14b) are installed,
    so they are used; one is resident at a time; each loads with the context the run needs,
    which the progress names with the reason, and the 14B fits on the GPU."""
    args = [] if review == "team" else ["--review", review]
    mac16.enqueue("```python\ndef reverse(s):\n    return s[::-1]\n```", model="qwen2.5:14b")
    code, out, err = invoke(*args, "--json", "Write a Python function that reverses a string")
    assert code == 0, err
    result = json.loads(out)
    assert_one_at_a_time(mac16)
    loads = mac16.events("load")
    allowed = {
        "team": {"mistral:7b", "qwen2.5:14b"},
        "answer": {"qwen2.5:7b", "qwen2.5:14b"},
        "both": set(THREE_NAMES),
    }[review]
    assert "qwen2.5:14b" in {load["model"] for load in loads} <= allowed
    executor_loads = [load for load in loads if load["model"] == "qwen2.5:14b"]
    contexts = {load["options"]["num_ctx"] for load in executor_loads}
    (record,) = [m for m in result["metrics"]["memory"] if m["model"] == "ollama:qwen2.5:14b"]
    assert contexts == {record["num_ctx"]} and record["num_ctx"] < 8192, "sized, and never changed"
    assert record["cpu_layers"] == 0 and record["gpu_bytes"] == record["resident_bytes"]
    assert result["metrics"]["gpu_limit_bytes"] == Machine.apple(16).gpu_share_bytes
    said = (
        f"Note: executor ollama:qwen2.5:14b: a context of {record['num_ctx']:,} tokens; its longest"
    )
    flat = " ".join(err.split())  # notes wrap at 80 columns
    assert said in flat and "num_ctx allows up to 8,192" in flat
    assert "GPU's share" not in err and "Traceback" not in err
    # the team makes versions, the answer review rounds: the end of each says which it counts
    ended = "Answer review ended with 1 version(s)" if review == "team" else "after 1 round(s)"
    assert ended in err


def test_a_model_that_cannot_fit_in_memory_is_refused_before_any_load(
    on_double: OllamaDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = Machine.apple(8)  # 5.5 GiB for models: the 14B needs about 9.4 even at 2,048
    monkeypatch.setattr(Machine, "detect", classmethod(lambda cls, tools=None: machine))
    code, _, err = invoke("--executor", "ollama:qwen2.5:14b", "--direct", "task")
    assert code == 1 and "more than the memory budget of 5.5 GiB" in err
    assert "Installed models that fit: mistral:7b" in err and "qwen2.5:7b" in err
    assert on_double.loads == 0


def test_over_the_gpu_share_it_runs_with_one_warning_and_json_says_so(
    mac16: OllamaDouble, tmp_path: Path
) -> None:
    """A pinned 12k context takes the 14B to about 12 GiB: inside the 12.8 GiB budget, over the
    GPU's 10.7: some layers go to the CPU. It runs, warned once although two tasks load it."""
    config = tmp_path / "big.toml"
    config.write_text(
        "review = 'plan'\nmax_rounds = 1\n[executor]\nnum_ctx = 12288\nfixed_ctx = true\n"
    )
    code, out, err = invoke(
        "--config", str(config), "--interactive", "--json", input="first task\nsecond task\n"
    )
    assert code == 0, err
    assert len([e for e in mac16.events("load") if e["model"] == "qwen2.5:14b"]) == 2
    assert err.count("more than the GPU's share of memory (10.7 GiB)") == 1
    assert "layers will run on the CPU" in " ".join(err.split())  # notes wrap at 80 columns
    assert_one_at_a_time(mac16)
    for line in out.splitlines():
        (record,) = [
            m for m in json.loads(line)["metrics"]["memory"] if m["model"] == "ollama:qwen2.5:14b"
        ]
        assert record["num_ctx"] == 12288 and 0 < record["cpu_layers"] < 48
        assert record["gpu_bytes"] == mac16.vram_bytes < record["resident_bytes"]


def test_the_servers_kv_cache_type_is_learnt_from_its_resident_size(mac16: OllamaDouble) -> None:
    mac16.kv_cache_type = "q8_0"  # OLLAMA_KV_CACHE_TYPE=q8_0, not told to ai-stack
    manager = MemoryManager(
        lambda name: OllamaBackend(mac16.host, backoff=lambda attempt: 0.0),
        machine=Machine.apple(16),
    )
    qwen7, qwen14 = ModelSpec("ollama", "qwen2.5:7b"), ModelSpec("ollama", "qwen2.5:14b")
    small = list(manager.acquire(qwen7, LoadOptions(num_ctx=2048)))  # KV 112 MiB: cannot tell
    assert manager.kv_cache_type == "f16" and not [e for e in small if isinstance(e, Notice)]
    events = list(manager.acquire(qwen14, LoadOptions(num_ctx=6144)))
    (learnt,) = [e for e in events if isinstance(e, Notice)]
    assert learnt.kind == "kv-cache" and "OLLAMA_KV_CACHE_TYPE=q8_0" in learnt.message
    assert manager.kv_cache_type == "q8_0"
    later = manager.footprint(qwen7, LoadOptions(num_ctx=8192)).total
    assert later == mac16.models["qwen2.5:7b"].memory(8192, "q8_0")
    manager.close()
