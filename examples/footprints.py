"""What the design card's models need on a 16 GB Apple Silicon Mac, and how close the estimate is.

Usage:  python examples/footprints.py
The tables in docs/memory.md are this script's output (a test keeps them in step). Model facts
(size on disk in the Ollama library's decimal GB, layers, heads, KV heads, embedding length)
are those Ollama reports for the Q4_K_M tags; the estimate is the one the memory manager makes
before every load.
"""

from ai_stack.backends.base import ModelInfo
from ai_stack.config import Settings
from ai_stack.context import PROMPT_OVERHEAD, estimate_tokens, role_needs, round_context
from ai_stack.footprint import cpu_layers, estimate_footprint
from ai_stack.machine import Machine
from ai_stack.memory import default_budget
from ai_stack.units import GIB, MIB, gib

GB = 1000**3
MODELS = {  # name: bytes on disk, layers, attention heads, KV heads, embedding length
    "mistral:7b": (int(4.4 * GB), 32, 32, 8, 4096),
    "qwen2.5:7b": (int(4.7 * GB), 28, 28, 4, 3584),
    "llama3.1:8b": (int(4.9 * GB), 32, 32, 8, 4096),
    "qwen2.5:14b": (8_988_124_069, 48, 40, 8, 5120),
}
SETTINGS = [(2048, "f16"), (4096, "f16"), (8192, "f16"), (4096, "q8_0"), (8192, "q8_0")]
ROLES = {"planner": "mistral:7b", "executor": "qwen2.5:14b"}  # the default team
TASK = "Write a Python function that returns the n-th Fibonacci number, with a docstring."

# Published figures: the server's own estimate as its log prints it (memory.required.full),
# with the parts it names. (name, context, GiB weights, layers, heads, KV heads, embedding,
# published total GiB, source)
PUBLISHED = [
    ("mistral 7B Q4_0", 2048, 3.9, 32, 32, 8, 4096, 4.8, "ollama/ollama#6348"),
    ("qwen2.5-coder 14B Q2_K", 4096, 5.1, 48, 40, 8, 5120, 6.3, "intel/ipex-llm#13277"),
    ("a 72B Q4 (80 layers)", 2048, 39.9, 80, 64, 8, 8192, 43.1, "ollama/ollama#5913"),
]


def info(name: str, size: int, layers: int, heads: int, kv_heads: int, embedding: int) -> ModelInfo:
    return ModelInfo(
        name,
        "ollama",
        size,
        block_count=layers,
        head_count=heads,
        head_count_kv=kv_heads,
        embedding_length=embedding,
    )


mac = Machine.apple(16)
budget, gpu = default_budget(mac), mac.gpu_share_bytes or 0
print(
    f"A 16 GB Apple Silicon Mac: models may take {gib(budget)} (what the system leaves); "
    f"{gib(gpu)} of it runs on the GPU.\n"
)
print(f"{'model':<14}" + "".join(f"{f'{ctx // 1024}k {kv}':>14}" for ctx, kv in SETTINGS))
for name, facts in MODELS.items():
    model = info(name, *facts)
    cells = []
    for ctx, kv in SETTINGS:
        total = estimate_footprint(model, ctx, kv_cache_type=kv).total
        mark = " !" if total > budget else " ~" if total > gpu else ""
        cells.append(f"{gib(total)}{mark}")
    print(f"{name:<14}" + "".join(f"{cell:>14}" for cell in cells))
print("\n~ = over the GPU's share: runs, with some layers on the CPU (slower), and says so")
print("! = over what fits in memory: refused before anything loads")

print(
    f"\nA default run of a short task ({estimate_tokens(TASK) + PROMPT_OVERHEAD} tokens of prompt):"
)
needs = role_needs(Settings(), estimate_tokens(TASK), most_checks=6)
for role, name in ROLES.items():
    model, need = info(name, *MODELS[name]), needs[role]
    num_ctx = round_context(need.total, Settings().role(role).num_ctx)
    footprint = estimate_footprint(model, num_ctx)
    where = (
        f"{cpu_layers(model, footprint, gpu)} layers on the CPU"
        if footprint.total > gpu
        else "all on the GPU"
    )
    print(
        f"  {role:<9}{name:<13}context {num_ctx:,} ({need.call}: about {need.total:,}), "
        f"{gib(footprint.total)}, {where}"
    )

print("\nThe estimate against the server's own published figures:")
print(f"  {'model':<24}{'context':>8}{'published':>11}{'estimate':>10}{'error':>8}  source")
for name, ctx, weights, layers, heads, kv_heads, embedding, total, source in PUBLISHED:
    model = info(name, int(weights * GIB), layers, heads, kv_heads, embedding)
    estimate = estimate_footprint(model, ctx).total / GIB
    error = (estimate - total) / total
    print(f"  {name:<24}{ctx:>8,}{total:>8.1f} GiB{estimate:>6.1f} GiB{error:>+8.1%}  {source}")
reserve = 512 * MIB
print(f"  (each estimate includes Ollama's {reserve // MIB} MiB reserve per model on a GPU)")
