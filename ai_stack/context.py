"""What fits in a model's context window, checked before any model loads.

Token counts here are estimates made before any tokenizer is at hand: UTF-8 bytes / 3, which
overcounts ordinary English and code (about 4 and 3.5 bytes per token) and keeps text in scripts
that take more bytes per token on the safe side. A task that cannot fit is refused; its context
(never the task itself) is cut to fit only with the user's consent.
"""

from __future__ import annotations

from dataclasses import dataclass

from ai_stack.config import Settings
from ai_stack.errors import InputLimitError
from ai_stack.types import ROLES_CALLED

PROMPT_OVERHEAD = 400  # tokens of role instructions and chat template around the task


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
        f"about {task_tokens + context_tokens:,} tokens, but a {num_ctx:,}-token context leaves "
        f"{max(room, 0):,} after the reply ({reply_tokens:,}) and the instructions"
    )
    if task_tokens > room or context is None or not truncate:
        what = "The task" if context is None or task_tokens > room else "The task and its context"
        hint = "Shorten it, or raise num_ctx for the roles (e.g. [executor] num_ctx = 16384)"
        if context is not None and task_tokens <= room:
            hint += "; --truncate-context cuts the context to fit"
        raise InputLimitError(f"{what} take {where}.", hint=hint + ".")
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
    roles = ROLES_CALLED[settings.mode]
    tightest = min(roles, key=lambda r: settings.role(r).num_ctx - settings.role(r).max_tokens)
    return fit_prompt(
        task,
        context,
        num_ctx=settings.role(tightest).num_ctx,
        reply_tokens=settings.role(tightest).max_tokens,
        truncate=settings.limits.truncate_context,
    )


__all__ = ["PROMPT_OVERHEAD", "Fitted", "estimate_tokens", "fit_for", "fit_prompt"]
