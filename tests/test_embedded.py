"""The embedded backend on the real SmolLM2 GGUF: resolution, description, load, streamed and
schema-constrained chat, metrics, unload. No stand-in for the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ai_stack.backends.base import ChatOptions, LoadOptions
from ai_stack.backends.embedded import EmbeddedBackend, check_gguf
from ai_stack.errors import BackendError, ModelNotFoundError
from ai_stack.roles import generation_schema
from ai_stack.types import Plan, Verdict


@pytest.fixture
def backend(tmp_path: Path) -> EmbeddedBackend:
    return EmbeddedBackend(models_dir=tmp_path / "models")


def test_missing_file_and_non_gguf_file_are_refused(
    tmp_path: Path, backend: EmbeddedBackend
) -> None:
    with pytest.raises(ModelNotFoundError, match="not found"):
        backend.model_path(str(tmp_path / "absent.gguf"))
    fake = tmp_path / "fake.gguf"
    fake.write_text("this is not a model")
    with pytest.raises(ModelNotFoundError, match="not a GGUF model file"):
        check_gguf(fake, "fake")
    with pytest.raises(ModelNotFoundError, match="No embedded model named 'nothing'"):
        backend.model_path("nothing")


def test_registered_models_are_found_by_name(
    tmp_path: Path, backend: EmbeddedBackend, smollm2: Path
) -> None:
    backend.models_dir.mkdir(parents=True)
    (backend.models_dir / "tiny.gguf").symlink_to(smollm2)
    assert backend.model_path("tiny") == backend.models_dir / "tiny.gguf"
    assert {m.name for m in backend.list_models()} == {"smollm2", "tiny"}


def test_describe_reads_the_gguf_header(backend: EmbeddedBackend, smollm2: Path) -> None:
    info = backend.describe("smollm2")
    assert info.path == str(smollm2)
    assert info.size_bytes == smollm2.stat().st_size
    assert info.family == "llama"
    assert info.quantization == "Q4_1"
    assert info.block_count and info.block_count > 0
    assert info.head_count_kv and info.context_length and info.context_length >= 2048


def test_chat_requires_a_loaded_model(backend: EmbeddedBackend, smollm2: Path) -> None:
    with pytest.raises(BackendError, match="not loaded"):
        backend.chat("smollm2", [{"role": "user", "content": "hi"}], options=ChatOptions())


@pytest.mark.model
def test_load_stream_constrained_chat_and_unload(backend: EmbeddedBackend, smollm2: Path) -> None:
    backend.load("smollm2", LoadOptions(num_ctx=2048))
    (resident,) = backend.resident()
    assert resident.name == "smollm2" and resident.num_ctx == 2048

    messages = [
        {"role": "system", "content": "You review plans. Reply with JSON only."},
        {"role": "user", "content": "Plan: 1. run `find . -name '*.py' | xargs wc -l`. Review it."},
    ]
    stream = backend.chat(
        "smollm2",
        messages,
        options=ChatOptions(temperature=0.1, max_tokens=200, repeat_penalty=1.15, seed=1),
        schema=generation_schema(Verdict),
    )
    pieces = list(stream)
    result = stream.result
    assert len(pieces) > 1, "the reply should arrive in pieces, streamed"
    assert "".join(pieces) == result.text
    data = json.loads(
        result.text, strict=False
    )  # the grammar guarantees the shape and the enum'd score
    assert data["verdict"] in ("approve", "revise")
    assert 0 <= data["score"] <= 10
    assert result.prompt_tokens > 10
    assert result.output_tokens > 0
    assert 0 < result.ttft_s <= result.wall_s
    assert result.tokens_per_s > 0

    backend.unload("smollm2")
    assert backend.resident() == []


@pytest.mark.model
def test_plan_schema_terminates_within_bounds(backend: EmbeddedBackend, smollm2: Path) -> None:
    """Bounded strings and lists keep constrained decoding from running away on a tiny model."""
    backend.load("smollm2", LoadOptions(num_ctx=2048))
    stream = backend.chat(
        "smollm2",
        [{"role": "user", "content": "Make a plan to count lines in all .py files. JSON only."}],
        options=ChatOptions(temperature=0.2, max_tokens=500, repeat_penalty=1.15, seed=3),
        schema=generation_schema(Plan),
    )
    result = stream.collect()
    assert result.finish_reason == "stop"
    plan = json.loads(result.text, strict=False)  # raw newlines pass llama.cpp's grammar
    assert 1 <= len(plan["steps"]) <= 6
    assert all(len(step["title"]) <= 80 for step in plan["steps"])
    backend.close()
    assert backend.resident() == []
