"""1. Orchestration overhead, and 3. latency: ai-stack against llama-cpp-python called directly.

Overhead: the full pipeline runs on the embedded backend while every model call it makes is
recorded (messages, schema, sampling options). The same calls are then made directly with
llama-cpp-python on a fresh ``Llama`` of the same file and context, in the same order, so the
tokens generated are the same (same seed, same grammar). Overhead = pipeline call time - direct
call time, per phase, and as a fraction of the direct (model) time.

Latency: time to first token and decode speed per role, cold (the first call after a load) and
warm (after another call), through ai-stack and directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from ai_stack.backends.base import ChatOptions, ChatStream, LoadOptions, Message
from ai_stack.backends.embedded import EmbeddedBackend
from ai_stack.config import Settings
from ai_stack.controller import Pipeline
from ai_stack.memory import MemoryManager
from ai_stack.prompts import PromptLibrary
from ai_stack.session import resolve_roles
from ai_stack.types import RunFinished
from benchmarks.common import Context, fmt, repeat, show

TASK = "Write a shell one-liner that counts lines in all .py files"
SETTINGS = {
    "max_rounds": 1,
    "executor": {"max_tokens": 96},
    "planner": {"max_tokens": 200},
    "critic": {"max_tokens": 96},
    "thermal": {"enabled": False},
}
NUM_CTX = 4096


@dataclass
class Call:
    role: str
    messages: list[Message]
    schema: dict[str, Any] | None
    options: ChatOptions
    stream: ChatStream | None = None
    direct_text: str = ""

    @property
    def text(self) -> str:
        return self.stream.result.text if self.stream is not None else ""


class RecordingBackend(EmbeddedBackend):
    """The real embedded backend, noting every call it serves."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[Call] = []

    def chat(
        self,
        model: str,
        messages: list[Message],
        *,
        options: ChatOptions,
        schema: dict[str, Any] | None = None,
    ) -> ChatStream:
        call = Call("", [dict(m) for m in messages], schema, options)
        call.stream = super().chat(model, messages, options=options, schema=schema)
        self.calls.append(call)
        return call.stream


def pipeline_run(ctx: Context) -> tuple[list[Call], list[Any]]:
    """One real pipeline run; returns the calls it made and its phase metrics."""
    settings = Settings.model_validate({"backend": "embedded", **SETTINGS})
    backend = RecordingBackend(models_dir=ctx.work / "models")
    manager = MemoryManager(lambda name: backend)
    pipeline = Pipeline(settings, manager, PromptLibrary(), resolve_roles(settings, "embedded"))
    result = None
    for event in pipeline.run(TASK):
        if isinstance(event, RunFinished):
            result = event.result
    assert result is not None
    manager.close()
    for call, phase in zip(backend.calls, result.metrics.phases, strict=True):
        call.role = phase.role
    return backend.calls, result.metrics.phases


def direct(ctx: Context, calls: list[Call]) -> list[dict[str, float]]:
    """The same calls straight through llama-cpp-python: wall, TTFT and decode tok/s each."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(ctx.model), n_ctx=NUM_CTX, verbose=False)
    timings = []
    for call in calls:
        kwargs: dict[str, Any] = {
            "messages": call.messages,
            "stream": True,
            "temperature": call.options.temperature,
            "max_tokens": call.options.max_tokens,
            "repeat_penalty": call.options.repeat_penalty,
            "seed": call.options.seed,
        }
        if call.schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": call.schema}
        started = time.perf_counter()
        first = None
        pieces = []
        for chunk in llm.create_chat_completion(**kwargs):
            piece = chunk["choices"][0].get("delta", {}).get("content")
            if piece:
                first = first or time.perf_counter()
                pieces.append(piece)
        ended = time.perf_counter()
        call.direct_text = "".join(pieces)
        decode = ended - (first or ended)
        timings.append(
            {
                "wall_s": ended - started,
                "ttft_s": (first or ended) - started,
                "chunks": len(pieces),
                "decode_s": decode,
            }
        )
    llm.close()
    return timings


def overhead(ctx: Context) -> tuple[dict[str, Any], str]:
    matched: list[bool] = []

    def measure(_: int) -> dict[str, float]:
        calls, phases = pipeline_run(ctx)
        timings = direct(ctx, calls)
        matched.append(all(c.text == c.direct_text for c in calls))
        values: dict[str, float] = {}
        total_ours = total_direct = 0.0
        for phase, timing in zip(phases, timings, strict=True):
            ours = phase.wall_s - phase.load_s
            key = f"{phase.role}:{phase.phase}"
            values[f"{key}:ours_ms"] = ours * 1000
            values[f"{key}:direct_ms"] = timing["wall_s"] * 1000
            values[f"{key}:overhead_ms"] = (ours - timing["wall_s"]) * 1000
            total_ours += ours
            total_direct += timing["wall_s"]
        values["total:overhead_fraction"] = (total_ours - total_direct) / total_direct
        return values

    stats = repeat(ctx.repeat, measure)
    rows = []
    for key in [k[: -len(":ours_ms")] for k in stats if k.endswith(":ours_ms")]:
        rows.append(
            [
                key,
                fmt(stats[f"{key}:direct_ms"], " ms", 0),
                fmt(stats[f"{key}:ours_ms"], " ms", 0),
                fmt(stats[f"{key}:overhead_ms"], " ms", 0),
            ]
        )
    fraction = stats["total:overhead_fraction"]
    rows.append(["all calls", "", "", f"{fmt(fraction, '', 3)} of model time"])
    table = show(
        f"1. Orchestration overhead (embedded, SmolLM2; median (min-max) of {ctx.repeat} runs)",
        ["call", "llama-cpp-python direct", "ai-stack", "overhead"],
        rows,
    )
    return {"stats": stats, "same_output_every_run": all(matched)}, table


LATENCY_TOKENS = 48  # enough to measure decode speed; TTFT does not depend on it


def latency(ctx: Context) -> tuple[dict[str, Any], str]:
    calls, _ = pipeline_run(ctx)
    by_role: dict[str, Call] = {}
    for call in calls:
        if call.role not in by_role:  # the first call of each role, with a shorter reply
            call.options = replace(call.options, max_tokens=LATENCY_TOKENS)
            by_role[call.role] = call

    def measure(_: int) -> dict[str, float]:
        values: dict[str, float] = {}
        roles = list(by_role)
        for index, role in enumerate(roles):
            call = by_role[role]
            other = by_role[roles[index - 1]]
            # through ai-stack's backend: cold = first call after load, warm = after another call
            backend = EmbeddedBackend(models_dir=ctx.work / "models")
            backend.load("smollm2", LoadOptions(num_ctx=NUM_CTX))
            cold = backend.chat(
                "smollm2", call.messages, options=call.options, schema=call.schema
            ).collect()
            backend.chat(
                "smollm2", other.messages, options=other.options, schema=other.schema
            ).collect()
            warm = backend.chat(
                "smollm2", call.messages, options=call.options, schema=call.schema
            ).collect()
            backend.close()
            raw_cold, _, raw_warm = direct(ctx, [call, other, call])
            values[f"{role}:cold:ttft_ours"] = cold.ttft_s * 1000
            values[f"{role}:cold:ttft_direct"] = raw_cold["ttft_s"] * 1000
            values[f"{role}:warm:ttft_ours"] = warm.ttft_s * 1000
            values[f"{role}:warm:ttft_direct"] = raw_warm["ttft_s"] * 1000
            values[f"{role}:cold:tps_ours"] = _client_rate(cold.output_tokens, cold)
            values[f"{role}:warm:tps_ours"] = _client_rate(warm.output_tokens, warm)
            values[f"{role}:cold:tps_direct"] = _chunk_rate(raw_cold)
            values[f"{role}:warm:tps_direct"] = _chunk_rate(raw_warm)
        return values

    stats = repeat(ctx.repeat, measure)
    rows = []
    for role in by_role:
        for state in ("cold", "warm"):
            key = f"{role}:{state}"
            rows.append(
                [
                    role,
                    state,
                    fmt(stats[f"{key}:ttft_direct"], " ms", 0),
                    fmt(stats[f"{key}:ttft_ours"], " ms", 0),
                    fmt(stats[f"{key}:tps_direct"], "", 1),
                    fmt(stats[f"{key}:tps_ours"], "", 1),
                ]
            )
    table = show(
        f"3. Latency (embedded, SmolLM2; median (min-max) of {ctx.repeat} runs)",
        ["role", "state", "TTFT direct", "TTFT ai-stack", "tok/s direct", "tok/s ai-stack"],
        rows,
    )
    return {"stats": stats}, table


def _client_rate(tokens: int, result: Any) -> float:
    """Decode speed as a streaming client sees it: tokens after the first, per second."""
    decode = result.wall_s - result.ttft_s
    return (tokens - 1) / decode if decode > 0 else 0.0


def _chunk_rate(timing: dict[str, float]) -> float:
    """Decode speed seen by a streaming client: pieces after the first, per second."""
    return (timing["chunks"] - 1) / timing["decode_s"] if timing["decode_s"] > 0 else 0.0
