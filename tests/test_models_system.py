"""Model verbs across both backends, the system profile and its recommendations, and doctor —
against the Ollama test double, the real embedded backend, and a machine with no Ollama."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from ai_stack.backends.base import LoadOptions
from ai_stack.backends.ollama import OllamaBackend
from ai_stack.machine import Machine
from ai_stack.profile import parse_cpuinfo, parse_nvidia_inventory
from ai_stack.recommend import catalogue
from ai_stack.sandbox import detect_isolation
from ai_stack.units import GIB
from tests.conftest import invoke
from tests.ollama_double import OllamaDouble

FIXTURES = Path(__file__).parent / "fixtures" / "platform"


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return str(path)


# -- parsers on recorded outputs -------------------------------------------------------------------


def test_cpu_and_gpu_parsers() -> None:
    assert parse_cpuinfo((FIXTURES / "proc-cpuinfo-xeon.txt").read_text()) == (
        "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"
    )
    assert parse_cpuinfo((FIXTURES / "proc-cpuinfo-arm.txt").read_text()) == (
        "Raspberry Pi 4 Model B Rev 1.4"
    )
    gpus = parse_nvidia_inventory((FIXTURES / "nvidia-smi-inventory.csv").read_text())
    assert [(g["name"], g["memory_bytes"] // GIB) for g in gpus] == [
        ("NVIDIA GeForce RTX 3060", 12),
        ("NVIDIA A100-SXM4-40GB", 40),
    ]


def test_the_catalogue_loads_from_package_data() -> None:
    entries = catalogue()
    assert {"qwen2.5:14b", "mistral:7b", "embedded:smollm2"} <= {e.name for e in entries}
    assert all(e.roles and e.size_gb > 0 for e in entries)


# -- models ---------------------------------------------------------------------------------------


def test_models_list_both_backends(on_double: OllamaDouble, smollm2: Path) -> None:
    code, out, err = invoke("models", "list", "--json")
    assert code == 0, err
    rows = json.loads(out)
    keys = {
        "name",
        "backend",
        "size_bytes",
        "family",
        "parameters",
        "quantization",
        "context_length",
    }
    assert all(keys <= row.keys() for row in rows)
    by_name = {(r["backend"], r["name"]): r for r in rows}
    assert by_name[("ollama", "qwen2.5:14b")]["context_length"] == 32768
    assert by_name[("ollama", "qwen2.5:14b")]["parameters"] == "14.8B"
    assert by_name[("embedded", "smollm2")]["quantization"] == "Q4_1"
    code, out, _ = invoke("models", "list", "--backend", "embedded", "--json")
    assert {r["backend"] for r in json.loads(out)} == {"embedded"}


def test_models_list_asks_the_server_for_the_listing_once(on_double: OllamaDouble) -> None:
    code, _, err = invoke("models", "list", "--backend", "ollama", "--json")
    assert code == 0, err
    requests = [e["path"] for e in on_double.events("request")]
    assert requests.count("/api/tags") == 1  # not once more per model described
    assert requests.count("/api/show") == len(on_double.models)


def test_models_list_without_ollama(smollm2: Path) -> None:
    code, out, err = invoke("models", "list", "--json")
    assert code == 0 and "Ollama is not reachable" in err
    assert [r["name"] for r in json.loads(out)] == ["smollm2"]
    code, _, err = invoke("models", "list", "--backend", "ollama")
    assert code == 1 and "Ollama is not reachable" in err


def test_models_ps_and_stop(on_double: OllamaDouble) -> None:
    backend = OllamaBackend(on_double.host)
    backend.load("mistral:7b", LoadOptions())
    backend.load("qwen2.5:7b", LoadOptions())
    code, out, _ = invoke("models", "ps", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == {"mistral:7b", "qwen2.5:7b"}
    assert (
        rows["mistral:7b"]["size_bytes"] > 4 * GIB and 0 < rows["mistral:7b"]["expires_in_s"] <= 600
    )
    code, _, err = invoke("models", "stop", "mistral:7b")
    assert code == 0 and "Unloaded mistral:7b" in err
    assert [m.name for m in backend.resident()] == ["qwen2.5:7b"]
    code, _, err = invoke("models", "stop", "--all")
    assert code == 0 and backend.resident() == []
    code, _, err = invoke("models", "stop")
    assert code == 2 and "Give a model name or --all" in err


HOLDER = """
import sys
from ai_stack.config import user_dir
from ai_stack.lease import ResidencyLease
lease = ResidencyLease(user_dir() / "leases", "embedded", policy="one-at-a-time",
                       budget=2**34, timeout_s=5)
for _ in lease.claim("embedded:smollm2", 150_000_000):
    pass
print("held", flush=True)
sys.stdin.readline()
"""


def test_models_ps_and_monitor_see_a_model_another_ai_stack_process_holds() -> None:
    """An embedded model lives inside another ai-stack process: no server knows of it, but
    its residency lease does."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        code, out, err = invoke("models", "ps", "--json")
        assert code == 0, err
        (row,) = [r for r in json.loads(out) if r["backend"] == "embedded"]
        assert (row["name"], row["held_by"]) == ("smollm2", [holder.pid])
        code, out, err = invoke("models", "ps")
        assert "smollm2" in out and f"pid {holder.pid}" in out
        code, out, _ = invoke("monitor", "--once", "--json")
        assert {"endpoint": "embedded", "model": "embedded:smollm2", "pid": holder.pid,
                "size_bytes": 150_000_000} in json.loads(out)["held"]
        code, out, _ = invoke("monitor", "--once")
        assert "embedded:smollm2" in out and f"pid {holder.pid}" in out
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    code, out, _ = invoke("models", "ps", "--json")
    assert [r for r in json.loads(out) if r["backend"] == "embedded"] == []  # its holder is gone


def test_models_rm_unloads_first_then_deletes(on_double: OllamaDouble) -> None:
    OllamaBackend(on_double.host).load("mistral:7b", LoadOptions())
    code, _, err = invoke("models", "rm", "mistral:7b", input="n\n")  # declined: nothing done
    assert (code, err.count("Nothing deleted.")) == (1, 1), err
    assert "mistral:7b" in on_double.models
    code, _, err = invoke("models", "rm", "mistral:7b", "-y")
    assert code == 0, err
    assert "mistral:7b" not in on_double.models
    events = [e["event"] for e in on_double.log if e["event"] in ("unload", "request")]
    assert "unload" in events
    code, _, err = invoke("models", "rm", "ollama:nothing:1b", "-y")
    assert code == 1 and "not installed" in err


@pytest.mark.model
def test_models_add_refuses_a_file_cut_short_and_an_overlong_name(
    smollm2: Path, tmp_path: Path, isolated_home: Path
) -> None:
    """A download cut short passed (and failed at the first load); a 300-character name was
    exit 70 (the file system refused the link)."""
    whole = smollm2.read_bytes()
    for keep in (len(whole) // 3, len(whole) - 100):  # the header intact, the tensors not
        short = tmp_path / "short.gguf"
        short.write_bytes(whole[:keep])
        code, _, err = invoke("models", "add", str(short))
        assert code == 1 and "is cut short" in err and f"{keep:,} bytes" in err, err
    code, _, err = invoke("models", "add", str(smollm2), "--name", "n" * 300)
    assert code == 1 and "cannot be a model name" in err and "at most 100" in err, err
    code, _, err = invoke("models", "add", str(smollm2), "--name", "n" * 100)
    assert code == 0, err


def test_models_add_show_and_rm_embedded(
    smollm2: Path, tmp_path: Path, isolated_home: Path
) -> None:
    code, out, err = invoke("models", "add", str(smollm2), "--name", "tiny", "--json")
    assert code == 0, err
    assert json.loads(out)["model"] == "embedded:tiny"
    assert (isolated_home / "models" / "tiny.gguf").resolve() == smollm2
    code, _, err = invoke("models", "add", str(smollm2), "--name", "tiny")
    assert code == 1 and "already registered" in err
    fake = tmp_path / "fake.gguf"
    fake.write_text("nope")
    code, _, err = invoke("models", "add", str(fake))
    assert code == 1 and "not a GGUF model file" in err

    code, out, _ = invoke("models", "show", "embedded:tiny", "--json")
    shown = json.loads(out)
    assert shown["layers"] == 30 and shown["fits_budget"] is True
    footprint = shown["footprint"]
    assert footprint["total_bytes"] == sum(
        footprint[k] for k in ("weights_bytes", "kv_cache_bytes", "buffers_bytes")
    )
    code, out, _ = invoke("models", "show", "embedded:tiny", "--num-ctx", "8192", "--json")  # 2x
    assert json.loads(out)["footprint"]["kv_cache_bytes"] == 2 * footprint["kv_cache_bytes"]

    code, _, err = invoke("models", "rm", "embedded:smollm2", "-y")
    assert code == 1 and "cannot be removed" in err
    assert invoke("models", "rm", "embedded:tiny", "-y")[0] == 0
    assert smollm2.exists(), "removing a linked model never deletes the original file"


def test_models_show_against_the_budget(on_double: OllamaDouble, tmp_path: Path) -> None:
    small = config(tmp_path, "[memory]\nbudget_gb = 8\n")
    code, out, _ = invoke("models", "show", "qwen2.5:14b", "--json", "--config", small)
    data = json.loads(out)
    assert code == 0 and data["fits_budget"] is False and data["model"] == "ollama:qwen2.5:14b"
    code, out, _ = invoke("models", "show", "qwen2.5:14b", "--config", small)
    assert "does not fit" in out


@pytest.mark.model
def test_models_pull_embedded_is_explained(smollm2: Path) -> None:
    code, _, err = invoke("models", "pull", "embedded:x")
    assert code == 2 and "models add" in err


def test_models_probe_against_the_double(on_double: OllamaDouble) -> None:
    code, out, err = invoke("models", "probe", "qwen2.5:7b", "--trials", "2", "--json")
    assert code == 0, err
    report = json.loads(out)
    for role in ("planner", "critic"):
        assert report["roles"][role]["trials"] == 2
        assert report["roles"][role]["schema_valid_rate"] == 1.0
    assert report["fit_roles"] == ["planner", "critic"]
    on_double.enqueue("not json at all", "{}", "{}", "{}", model="mistral:7b")
    code, out, _ = invoke("models", "probe", "mistral:7b", "--trials", "2", "--json")
    report = json.loads(out)
    assert report["roles"]["planner"]["valid_json_rate"] == 0.5
    assert report["fit_roles"] == [] and "not fit" in report["verdict"]


@pytest.mark.model
def test_models_probe_on_the_embedded_model(smollm2: Path) -> None:
    code, out, err = invoke("models", "probe", "embedded:smollm2", "--trials", "1", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["roles"]["planner"]["valid_json_rate"] == 1.0  # the grammar guarantees JSON
    assert report["roles"]["critic"]["median_tokens_per_s"] > 0
    # one verdict with doctor's: valid JSON from a 135M model is not fitness for a role
    assert report["fit_roles"] == [] and "demo model" in report["verdict"]
    assert "fit for the planner" not in report["verdict"]


# -- system and doctor -----------------------------------------------------------------------------


def test_system_without_ollama(smollm2: Path) -> None:
    code, out, err = invoke("system", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert {"cpu", "memory", "gpu", "backends", "budget_bytes", "recommendations"} <= data.keys()
    assert data["memory"]["total_bytes"] >= data["memory"]["available_bytes"] > 0
    assert data["cpu"]["logical_cores"] >= 1 and data["gpu"]["kind"] in ("none", "nvidia", "apple")
    assert data["backends"]["ollama"]["available"] is False
    assert data["backends"]["embedded"]["available"] is True
    for pick in data["recommendations"].values():
        assert pick["model"] and pick["estimate_bytes"] <= data["budget_bytes"]


def test_system_recommendations_fit_the_budget_and_prefer_installed(
    on_double: OllamaDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu_box = Machine("Linux", "x86_64", 64 * GIB, 60 * GIB, cores=16, discrete_gpu=True)
    monkeypatch.setattr(Machine, "detect", classmethod(lambda cls, tools=None: gpu_box))
    code, out, _ = invoke(
        "system", "--json", "--config", config(tmp_path, "[memory]\nbudget_gb = 64\n")
    )
    picks = json.loads(out)["recommendations"]
    assert picks["executor"]["model"] == "ollama:qwen2.5:14b" and picks["executor"]["installed"]
    assert picks["planner"]["installed"] and picks["planner"]["model"] in (
        "ollama:qwen2.5:7b",
        "ollama:mistral:7b",
    )
    code, out, _ = invoke(
        "system", "--json", "--config", config(tmp_path, "[memory]\nbudget_gb = 8\n")
    )
    data = json.loads(out)
    for pick in data["recommendations"].values():
        assert pick["estimate_bytes"] <= data["budget_bytes"] == 8 * GIB
    assert data["recommendations"]["executor"]["model"] != "ollama:qwen2.5:14b"
    code, out, _ = invoke("system", "--config", config(tmp_path, "[memory]\nbudget_gb = 8\n"))
    assert code == 0 and "Recommendations" in out


def test_doctor_on_this_machine_and_with_a_missing_model(
    on_double: OllamaDouble, tmp_path: Path
) -> None:
    code, out, err = invoke("doctor", "--json")
    assert code == 0, err
    checks = {c["check"]: c for c in json.loads(out)}
    assert checks["ollama"]["status"] == "ok"
    assert checks["executor model"]["status"] == "ok"
    assert checks["history"]["status"] == "ok"
    assert checks["thermal sensors"]["status"] in ("ok", "warn")
    isolated = detect_isolation() != "none"
    assert checks["sandbox"]["status"] == ("ok" if isolated else "warn")
    assert ("isolated" if isolated else "never run") in checks["sandbox"]["detail"]
    missing = config(tmp_path, 'executor = "ollama:gone:70b"\n')
    code, out, _ = invoke("doctor", "--json", "--config", missing)
    assert code == 1
    executor = next(c for c in json.loads(out) if c["check"] == "executor model")
    assert executor["status"] == "fail" and "ai-stack models pull gone:70b" in executor["fix"]
    code, out, _ = invoke("doctor")
    assert code == 0 and "history" in out


def test_doctor_says_when_answer_code_cannot_be_run() -> None:
    """Without bubblewrap (not on PATH), answers are never run: doctor says so and how to fix
    it, instead of leaving a user to find out from 'static checks only' notes."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(
        [sys.executable, "-m", "ai_stack", "doctor", "--json"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    sandbox = next(c for c in json.loads(done.stdout) if c["check"] == "sandbox")
    if platform.system() == "Linux":
        assert sandbox["status"] == "warn" and "never run" in sandbox["detail"]
        assert sandbox["fix"] == "apt install bubblewrap"


def test_a_cpu_only_machine_is_not_recommended_a_model_it_decodes_at_a_token_a_second(
    on_double: OllamaDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 cores and no GPU: a 14B model fits 24 GB but decodes at about 1.3 tok/s there."""
    two_cores = Machine("Linux", "x86_64", 24 * GIB, 20 * GIB, cores=2)
    monkeypatch.setattr(Machine, "detect", classmethod(lambda cls, tools=None: two_cores))
    code, out, _ = invoke(
        "system", "--json", "--config", config(tmp_path, "[memory]\nbudget_gb = 20\n")
    )
    picks = json.loads(out)["recommendations"]
    assert code == 0 and picks["executor"]["model"] not in (
        "ollama:qwen2.5:14b",
        "ollama:qwen2.5:7b",
    )
    assert picks["executor"]["model"] is not None
