"""What fits in a model's context window, and what context a run needs, before any load.

Two questions. Does the task fit at all? A task that cannot fit the roles' largest context is
refused; its context (never the task itself) is cut to fit only with the user's consent. And
what context should each model be loaded with? The largest a role allows (``num_ctx``) is an
upper bound, not a fixed cost: a KV cache sized for 8,192 tokens when a run needs 3,000 is
memory a 16 GB Mac does not have. So each model is loaded with what its longest call in the run
will take — prompt plus reply, rounded up — and the bounds below make that longest call known
in advance from the task, the settings and the prompts' shapes.

Token counts come from the model's tokenizer where the backend has it at hand (the memory
manager's ``count_tokens``), else from an estimate: UTF-8 bytes / 3, which overcounts ordinary
English and code (about 4 and 3.5 bytes per token) and keeps text in scripts that take more
bytes per token on the safe side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ai_stack.backends import ModelSpec
from ai_stack.backends.base import LoadOptions
from ai_stack.config import Settings
from ai_stack.errors import InputLimitError
from ai_stack.modes import MODES, Part
from ai_stack.types import ROLES, Role

PROMPT_OVERHEAD = 400  # tokens of role instructions and chat template around the task
FOLLOW_UP = 300  # tokens of a follow-up instruction: a critique, fix, probe, review, re-ask
CHECK_TOKENS = 140  # tokens one check takes in a fix or review prompt (name, result, detail)
MIN_CONTEXT = 2048  # smaller contexts save little and make the next, longer task reload
CONTEXT_STEP = 1024
TYPICAL_CONTEXT = 4096  # a default run's longest call, rounded: for advice before any task


def typical_context(num_ctx: int, fixed: bool) -> int:
    """The context to judge a model by before any task is known (recommendations, doctor).

    >>> typical_context(8192, False), typical_context(2048, False), typical_context(8192, True)
    (4096, 2048, 8192)
    """
    return num_ctx if fixed else min(num_ctx, TYPICAL_CONTEXT)


def estimate_tokens(text: str | None) -> int:
    """A conservative token count for ``text``.

    >>> estimate_tokens("hello world"), estimate_tokens(None)
    (4, 0)
    """
    return -(-len(text.encode("utf-8")) // 3) if text else 0


@dataclass(frozen=True)
class Fitted:
    """The task and context that will be sent, and what was done to make them fit."""

    task: str
    context: str | None
    note: str | None = None


def fit_prompt(
    task: str, context: str | None, *, num_ctx: int, reply_tokens: int, truncate: bool
) -> Fitted:
    """Check that the task and its context leave room for the reply in a ``num_ctx`` window.

    >>> fit_prompt("t", "c" * 30000, num_ctx=4096, reply_tokens=512, truncate=True).note
    'the context was cut from about 10,000 to 3,183 tokens to fit num_ctx 4096'
    """
    room = num_ctx - reply_tokens - PROMPT_OVERHEAD
    task_tokens, context_tokens = estimate_tokens(task), estimate_tokens(context)
    if task_tokens + context_tokens <= room:
        return Fitted(task, context)
    where = (
        f"about {task_tokens + context_tokens:,} tokens, but a context of {num_ctx:,} tokens "
        f"leaves {max(room, 0):,} after the reply ({reply_tokens:,}) and the instructions"
    )
    if task_tokens > room or context is None or not truncate:
        what = (
            "The task takes"
            if context is None or task_tokens > room
            else "The task and its context take"
        )
        hint = "Shorten it, or raise num_ctx for the roles (e.g. [executor] num_ctx = 16384)"
        if context is not None and task_tokens <= room:
            hint += "; --truncate-context cuts the context to fit"
        raise InputLimitError(f"{what} {where}.", hint=hint + ".")
    keep = max(room - task_tokens, 0) * 3  # bytes, by the same estimate
    cut = context.encode("utf-8")[:keep].decode("utf-8", "ignore")
    note = (
        f"the context was cut from about {context_tokens:,} to {estimate_tokens(cut):,} tokens "
        f"to fit num_ctx {num_ctx}"
    )
    return Fitted(task, cut + "\n[... cut to fit the context window]", note)


def fit_for(settings: Settings, task: str, context: str | None) -> Fitted:
    """:func:`fit_prompt` against the tightest context window of the roles the settings' mode
    calls (a model shared by roles is loaded with the largest, so this is the safe side)."""
    roles = MODES[settings.mode].roles
    tightest = min(roles, key=lambda r: settings.role(r).num_ctx - settings.role(r).max_tokens)
    return fit_prompt(
        task,
        context,
        num_ctx=settings.role(tightest).num_ctx,
        reply_tokens=settings.role(tightest).max_tokens,
        truncate=settings.limits.truncate_context,
    )


@dataclass(frozen=True)
class Need:
    """The longest call a role makes in a run, in tokens: what its model's context must hold."""

    role: Role
    call: str
    prompt: int
    reply: int

    @property
    def total(self) -> int:
        return self.prompt + self.reply


def role_needs(settings: Settings, task_tokens: int, most_checks: int) -> dict[Role, Need]:
    """The longest call of each role the settings' mode calls, for a task (and its context) of
    ``task_tokens``, whose answers get at most ``most_checks`` checks.

    Each call's prompt holds what the mode table says it holds (:mod:`ai_stack.modes`): a
    follow-up continues a conversation, so a fix holds the Executor's prompt, its answer, the
    evidence and the Critic's issues, and a repeated fix the answer again. Each bound takes
    every reply at its ``max_tokens``. Re-asks after an invalid reply are rare and not planned
    for: a call that outgrows its model's context loads a larger one (``RoleRunner``), up to
    ``num_ctx``.

    >>> needs = role_needs(Settings(), task_tokens=100, most_checks=5)
    >>> sorted(needs), needs["executor"].call, needs["executor"].total
    (['executor', 'planner'], 'a program computing the result', 1824)
    >>> needs = role_needs(Settings(review="answer"), task_tokens=100, most_checks=5)
    >>> sorted(needs), needs["executor"].call, needs["executor"].total
    (['critic', 'executor'], 'a fix of the answer', 3592)
    >>> role_needs(Settings(direct=True), 100, 5)["executor"].total
    1012
    """
    mode = MODES[settings.mode]
    reply = {role: settings.role(role).max_tokens for role in ROLES}
    tokens: dict[Part, int] = {
        "task": PROMPT_OVERHEAD + task_tokens,
        "plan": reply["planner"],
        "answer": reply["executor"],
        "evidence": most_checks * CHECK_TOKENS,
        "critique": reply["critic"],
        "approach": reply["planner"],
        "follow-up": FOLLOW_UP,
        "again": reply["executor"],
    }
    needs: dict[Role, Need] = {}
    for call in mode.active(settings):
        prompt = sum(tokens[part] for part in call.holds)
        if call.role not in needs or prompt > needs[call.role].prompt:
            needs[call.role] = Need(call.role, call.does, prompt, reply[call.role])
    return needs


@dataclass(frozen=True)
class ContextChoice:
    """The context one model is loaded with for a run, and why."""

    spec: ModelSpec
    roles: tuple[Role, ...]
    num_ctx: int
    cap: int
    need: Need | None  # None: pinned with fixed_ctx

    def describe(self) -> str:
        who = f"{', '.join(self.roles)} {self.spec}"
        if self.need is None:
            return f"{who}: a context of {self.num_ctx:,} tokens, as pinned (fixed_ctx)"
        need = self.need
        why = (
            f"its longest call, {need.call}, takes about {need.total:,} "
            f"(prompt {need.prompt:,} + reply {need.reply:,})"
        )
        if need.total > self.cap:
            return f"{who}: a context of {self.num_ctx:,} tokens, the most num_ctx allows; {why}"
        return (
            f"{who}: a context of {self.num_ctx:,} tokens; {why}; num_ctx allows up to {self.cap:,}"
        )


def round_context(tokens: int, cap: int) -> int:
    """A context for ``tokens``: a multiple of CONTEXT_STEP, at least MIN_CONTEXT, at most ``cap``.

    >>> round_context(2410, 8192), round_context(300, 8192), round_context(9000, 8192)
    (3072, 2048, 8192)
    """
    rounded = max(MIN_CONTEXT, -(-tokens // CONTEXT_STEP) * CONTEXT_STEP)
    return min(rounded, cap)


def choose_contexts(
    settings: Settings,
    specs: Mapping[Role, ModelSpec],
    caps: Mapping[ModelSpec, LoadOptions],
    task_tokens: Mapping[ModelSpec, int],
    most_checks: int,
) -> dict[ModelSpec, ContextChoice]:
    """The context each model the run calls is loaded with: the largest need among the roles
    it serves, rounded up, within its cap (``caps``: the load options with the largest context
    any of its uses allows); the cap itself when a role pins its context (``fixed_ctx``)."""
    called = MODES[settings.mode].roles
    choices = {}
    for spec in dict.fromkeys(specs[role] for role in called):
        needs = role_needs(settings, task_tokens[spec], most_checks)
        roles = tuple(role for role in called if specs[role] == spec and role in needs)
        if not roles:  # e.g. the Critic with no review rounds
            continue
        cap = caps[spec].num_ctx
        if any(settings.role(role).fixed_ctx for role in roles):
            choices[spec] = ContextChoice(spec, roles, cap, cap, None)
            continue
        need = max((needs[role] for role in roles), key=lambda n: n.total)
        choices[spec] = ContextChoice(spec, roles, round_context(need.total, cap), cap, need)
    return choices


__all__ = [
    "MIN_CONTEXT",
    "PROMPT_OVERHEAD",
    "TYPICAL_CONTEXT",
    "ContextChoice",
    "Fitted",
    "Need",
    "choose_contexts",
    "estimate_tokens",
    "fit_for",
    "fit_prompt",
    "role_needs",
    "round_context",
    "typical_context",
]
