"""Estimated memory footprints of the target machine's role models, against a 16 GB Mac's budget.

Usage:  python examples/footprints.py
The numbers in docs/memory.md come from this script. The model facts (size on disk, layers, KV
heads, head size) are those Ollama reports for the Q4_K_M tags; the estimate is the one the
memory manager uses before every load.
"""

from ai_stack.backends.base import ModelInfo
from ai_stack.machine import GIB, Machine
from ai_stack.memory import default_budget, estimate_footprint, gib

MODELS = [  # name, GiB on disk, layers, attention heads, KV heads, embedding length
    ("mistral:7b", 4.4, 32, 32, 8, 4096),
    ("qwen2.5:7b", 4.7, 28, 28, 4, 3584),
    ("llama3.1:8b", 4.9, 32, 32, 8, 4096),
    ("qwen2.5:14b", 9.0, 48, 40, 8, 5120),
]
SETTINGS = [(4096, "f16"), (8192, "f16"), (4096, "q8_0"), (8192, "q8_0")]

budget = default_budget(Machine.apple(16))
print(f"default budget on a 16 GB Apple Silicon Mac: {gib(budget)}\n")
print(f"{'model':<14}" + "".join(f"{f'{ctx // 1024}k {kv}':>14}" for ctx, kv in SETTINGS))
for name, size, layers, heads, kv_heads, embedding in MODELS:
    info = ModelInfo(name, "ollama", int(size * GIB), block_count=layers, head_count=heads,
                     head_count_kv=kv_heads, embedding_length=embedding)  # fmt: skip
    cells = []
    for ctx, kv in SETTINGS:
        total = estimate_footprint(info, ctx, kv_cache_type=kv).total
        cells.append(f"{gib(total)}{'' if total <= budget else ' !'}")
    print(f"{name:<14}" + "".join(f"{cell:>14}" for cell in cells))
print("\n! = over the budget: refused under the default settings")
