"""What a model takes in memory once loaded: weights, KV cache, compute buffers and the server's
reserve, by the servers' own formulas (docs/memory.md has the calibration against published
figures), and which KV cache type a server's measured size reveals."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ai_stack.backends.base import ModelInfo
from ai_stack.units import MIB, gib

BATCH = 512  # tokens per compute batch: Ollama's and llama.cpp's default num_batch
SERVER_RESERVE = 512 * MIB  # Ollama's minimum allowance per model on Metal (ollama#4068)
KV_BYTES = {"f16": 2.0, "q8_0": 1.0, "q4_0": 0.5}
KV_EVIDENCE = 256 * MIB  # KV cache types closer than this in a load cannot be told apart


@dataclass(frozen=True, slots=True)
class Footprint:
    """Estimated memory of a loaded model."""

    weights: int
    kv_cache: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead

    def describe(self) -> str:
        return (
            f"{gib(self.total)} (weights {gib(self.weights)} + KV cache {gib(self.kv_cache)} "
            f"+ buffers {gib(self.overhead)})"
        )


def compute_buffer(info: ModelInfo, num_ctx: int) -> int | None:
    """The compute graph's memory for a batch of ``BATCH`` tokens: Ollama's estimate for
    llama-style models, 4 bytes x batch x (1 + 4 x embedding + context x (1 + heads)); None
    when the architecture is unknown.

    It reproduces the server's own figures: mistral 7B at 2,048 tokens logs 164.0 MiB
    (ollama#6348), a Qwen2.5 14B at 4,096 tokens 348.0 MiB (this gives 368 MiB; docs/memory.md).

    >>> info = ModelInfo("mistral:7b", "ollama", 0, embedding_length=4096, head_count=32)
    >>> round(compute_buffer(info, 2048) / MIB, 1)
    164.0
    """
    if not info.embedding_length or not info.head_count:
        return None
    return 4 * BATCH * (1 + 4 * info.embedding_length + num_ctx * (1 + info.head_count))


def estimate_footprint(
    info: ModelInfo, num_ctx: int, *, kv_cache_type: str = "f16", parallel: int = 1
) -> Footprint:
    """Weights + KV cache (Ollama's own formula) + compute buffers + the server's reserve.

    KV per layer = num_ctx * parallel * (key_length + value_length) * kv_heads * bytes; without
    key/value lengths, embedding_length / head_count is the head size. Ollama adds a fixed
    reserve per model on the GPU; an in-process llama.cpp does not.

    >>> info = ModelInfo("qwen2.5:14b", "ollama", 8_988_124_069, block_count=48, head_count=40,
    ...                  head_count_kv=8, embedding_length=5120)
    >>> estimate_footprint(info, 4096).kv_cache // 1024**2   # 192 KiB per token at f16
    768
    >>> gib(estimate_footprint(info, 4096).total)
    '10.0 GiB'
    """
    kv = 0
    if info.block_count and info.head_count_kv:
        head = (info.embedding_length or 0) // (info.head_count or 1)
        key_length = info.key_length or head
        value_length = info.value_length or head
        per_layer = num_ctx * parallel * (key_length + value_length) * info.head_count_kv
        kv = int(per_layer * info.block_count * KV_BYTES.get(kv_cache_type, 2.0))
    else:  # unknown architecture: assume a KV cache of a tenth of the weights
        kv = info.size_bytes // 10
    graph = compute_buffer(info, num_ctx)
    if graph is None:  # unknown architecture: the margin measured before the formula
        overhead = 256 * MIB + info.size_bytes * 3 // 100
    else:
        overhead = graph + (SERVER_RESERVE if info.backend == "ollama" else 0)
    return Footprint(info.size_bytes, kv, overhead)


def cpu_layers(info: ModelInfo, footprint: Footprint, gpu_bytes: int) -> int:
    """How many layers would run on the CPU: the GPU takes whole layers (weights and their KV
    cache) until its share of memory is used.

    >>> from ai_stack.units import GIB
    >>> info = ModelInfo("m", "ollama", 8 * GIB, block_count=40)
    >>> cpu_layers(info, Footprint(8 * GIB, 2 * GIB, GIB), 10 * GIB)   # 1 GiB over, 0.25/layer
    4
    """
    over = footprint.total - gpu_bytes
    if over <= 0:
        return 0
    layers = info.block_count or 1
    per_layer = (footprint.weights + footprint.kv_cache) / layers
    return min(layers, math.ceil(over / per_layer))


def learnt_kv_cache(info: ModelInfo, num_ctx: int, measured: int, configured: str) -> str | None:
    """Which KV cache type a server really uses, where its resident size tells: each type's
    estimate is compared with what the server reports, and a type that matches clearly (within a
    quarter of the gap to the configured one's estimate) is the answer; None when it does not
    tell.

    >>> info = ModelInfo("qwen2.5:14b", "ollama", 8_988_124_069, block_count=48, head_count=40,
    ...                  head_count_kv=8, embedding_length=5120)
    >>> q8 = estimate_footprint(info, 8192, kv_cache_type="q8_0").total
    >>> learnt_kv_cache(info, 8192, q8, "f16"), learnt_kv_cache(info, 8192, q8, "q8_0")
    ('q8_0', None)
    """
    estimates = {
        kind: estimate_footprint(info, num_ctx, kv_cache_type=kind).total for kind in KV_BYTES
    }
    best = min(estimates, key=lambda kind: abs(estimates[kind] - measured))
    gap = abs(estimates[best] - estimates[configured])
    if best == configured or gap < KV_EVIDENCE or abs(estimates[best] - measured) > gap / 4:
        return None
    return best


__all__ = [
    "KV_BYTES",
    "Footprint",
    "compute_buffer",
    "cpu_layers",
    "estimate_footprint",
    "learnt_kv_cache",
]
