"""GGUF pulls from Hugging Face: ``huggingface_hub`` itself, against a local server that speaks
the Hub's download API (no test touches the internet), serving the packaged SmolLM2 file."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ai_stack.backends.hub import HubFile, HubRef, choose
from tests.conftest import ROOT, invoke
from tests.hub_double import HubDouble
from tests.test_cli import assert_clean_error

REPO = "test/SmolLM2-135M-Instruct-GGUF"
GATED = "test/Gated-GGUF"


@pytest.fixture
def hub(smollm2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubDouble]:
    served = tmp_path / "served"
    served.mkdir()
    files = {}
    for quant in ("Q4_K_M", "Q8_0"):
        file = served / f"SmolLM2-135M-Instruct-{quant}.gguf"
        file.symlink_to(smollm2)
        files[file.name] = file
    double = HubDouble(files={REPO: files, GATED: dict(files)}, gated={GATED})
    with double.start() as running:
        monkeypatch.setenv("HF_ENDPOINT", running.host)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield running


def registered(home: Path) -> list[str]:
    return (
        sorted(p.name for p in (home / "models").glob("*.gguf"))
        if (home / "models").exists()
        else []
    )


@pytest.mark.model
def test_pull_by_quantization_registers_a_model_that_runs(
    hub: HubDouble, isolated_home: Path
) -> None:
    code, out, err = invoke("models", "pull", f"hf:{REPO}:Q4_K_M", "--json")
    assert code == 0, err
    assert json.loads(out)["model"] == "embedded:smollm2-135m"
    assert registered(isolated_home) == ["smollm2-135m.gguf"]
    gets = [r for r in hub.requests if r["method"] == "GET" and "/resolve/" in r["path"]]
    assert [r["path"].rsplit("/", 1)[-1] for r in gets] == ["SmolLM2-135M-Instruct-Q4_K_M.gguf"]
    code, out, _ = invoke("models", "list", "--backend", "embedded", "--json")
    assert "smollm2-135m" in {row["name"] for row in json.loads(out)}

    code, out, err = invoke(
        "--direct",
        "--json",
        "--executor",
        "embedded:smollm2-135m",
        "--backend",
        "embedded",
        "Name a colour",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["models"]["executor"] == "embedded:smollm2-135m" and result["output"].strip()

    code, _, err = invoke("models", "pull", f"hf:{REPO}:Q4_K_M")
    assert code != 0 and "already registered" in err


@pytest.mark.model
def test_a_cut_download_resumes(hub: HubDouble, isolated_home: Path) -> None:
    hub.cut_after = 40_000_000
    code, _, err = invoke("models", "pull", f"hf:{REPO}:Q8_0", "--json")
    if code != 0:  # the client gave up on this attempt: the next pull resumes
        assert "Traceback" not in err
        code, _, err = invoke("models", "pull", f"hf:{REPO}:Q8_0", "--json")
    assert code == 0, err
    ranges = [r["range"] for r in hub.requests if r["method"] == "GET" and r["range"]]
    assert ranges and int(ranges[-1].split("=")[1].split("-")[0]) > 0, hub.requests
    assert registered(isolated_home) == ["smollm2-135m-q8_0.gguf"]


@pytest.mark.model
def test_a_checksum_mismatch_registers_nothing(hub: HubDouble, isolated_home: Path) -> None:
    hub.wrong_sha.add("SmolLM2-135M-Instruct-Q4_K_M.gguf")
    code, out, err = invoke("models", "pull", f"hf:{REPO}:Q4_K_M")
    assert code == 1 and out == ""
    assert "does not match the Hub's checksum" in err and "nothing was registered" in err
    assert registered(isolated_home) == []
    blobs = list((Path(hub_home(isolated_home)) / "hub").rglob("blobs/*"))
    assert not [b for b in blobs if b.stat().st_size > 1_000_000], "the bad file was kept"


def hub_home(isolated_home: Path) -> Path:
    return isolated_home.parent / "hf-home"


@pytest.mark.model
@pytest.mark.parametrize(
    ("ref", "code", "message"),
    [
        ("hf:test/Absent-GGUF:Q4_K_M", 1, "No model repo test/Absent-GGUF"),
        (f"hf:{GATED}:Q4_K_M", 1, "is gated"),
        (f"hf:{REPO}:Q5_K_M", 1, "has no Q5_K_M file"),
        (f"hf:{REPO}", 2, "several GGUF files; say which quantization"),
        ("hf:nonsense", 2, "is not a Hugging Face model reference"),
    ],
)
def test_failures_are_one_clear_message(
    hub: HubDouble, isolated_home: Path, ref: str, code: int, message: str
) -> None:
    exit_code, out, err = invoke("models", "pull", ref)
    assert exit_code == code and out == "" and message in err and "Traceback" not in err
    assert registered(isolated_home) == []


def test_an_endpoint_that_answers_with_a_web_page_is_one_clear_message(
    hub: HubDouble, isolated_home: Path
) -> None:
    """A login portal, a proxy or a mistyped HF_ENDPOINT answers 200 with HTML: that was exit
    70 (the client's JSONDecodeError)."""
    hub.html = True
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "models", "pull", f"hf:{REPO}:Q4_K_M"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_clean_error(done.returncode, done.stderr, "does not answer like the Hugging Face Hub")
    assert f"The server at {hub.host}" in done.stderr and "HF_ENDPOINT" in done.stderr
    assert registered(isolated_home) == []


def test_offline_is_one_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    code, _, err = invoke("models", "pull", "hf:someone/Some-GGUF:Q4_K_M")
    assert code == 1 and "Cannot reach the Hugging Face Hub at http://127.0.0.1:9" in err


def test_the_quantization_picks_the_file_and_lists_the_choices() -> None:
    files = [
        HubFile("o/r", name, 1, None, None)
        for name in (
            "m-Q4_K_M.gguf",
            "m-Q8_0.gguf",
            "m-Q6_K-00001-of-00002.gguf",
            "m-Q6_K-00002-of-00002.gguf",
            "README.md",
        )
    ]
    assert choose(HubRef.parse("hf:o/r:q4_k_m"), files).filename == "m-Q4_K_M.gguf"
    with pytest.raises(Exception, match="split in parts"):
        choose(HubRef.parse("hf:o/r:Q6_K"), files)
    with pytest.raises(Exception, match="several GGUF files") as info:
        choose(HubRef.parse("hf:o/r"), files)
    assert "Q4_K_M" in str(info.value.hint) and "Q8_0" in str(info.value.hint)  # type: ignore[attr-defined]


def test_system_without_ollama_recommends_embedded_models_that_fit_with_pull_commands() -> None:
    code, out, err = invoke("system", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert not data["backends"]["ollama"]["available"]
    for role, pick in data["recommendations"].items():
        assert pick["model"].startswith("embedded:"), role
        assert pick["estimate_bytes"] <= data["budget_bytes"]
        if not pick["installed"]:
            assert pick["action"].startswith("ai-stack models pull hf:"), pick
    code, out, _ = invoke("system")
    assert "ai-stack models pull hf:" in out  # whole, on a line of its own


@pytest.mark.model
def test_the_demo_model_hint_shows_once_per_run(smollm2: Path, tmp_path: Path) -> None:
    code, out, err = invoke("--direct", "--backend", "embedded", "Name a colour")
    assert code == 0 and err.count("tiny demo model") == 1
    assert "ai-stack models pull hf:" in err and "tiny demo model" not in out
    code, out, err = invoke("--direct", "-q", "--json", "--backend", "embedded", "Name a colour")
    assert code == 0 and "tiny demo model" not in err + out
    code, _, err = invoke(
        "--direct", "--interactive", "--backend", "embedded", input="Name a colour\nName a planet\n"
    )
    assert code == 0 and err.count("tiny demo model") == 1
    code, _, err = invoke(
        "--direct", "--executor", "embedded:smollm2", "--backend", "embedded", "Name a colour"
    )
    assert code == 0 and "tiny demo model" not in err  # chosen, not defaulted
    code, out, _ = invoke("doctor", "--json")
    (check,) = [c for c in json.loads(out) if c["check"] == "embedded models"]
    assert check["status"] == "warn" and check["fix"].startswith("ai-stack models pull hf:")
