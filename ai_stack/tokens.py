"""How many tokens a text takes for a model: its tokenizer where the backend has one at hand,
else the rate a server's own counts showed, else a conservative estimate."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ai_stack.backends import ModelSpec
from ai_stack.backends.base import Backend, TokenCounter
from ai_stack.context import estimate_tokens
from ai_stack.errors import AiStackError

TOKEN_MARGIN = 1.1  # over the highest tokens-per-byte rate a server reported for a model
MIN_LEARN_BYTES = 256  # shorter prompts tell more about the chat template than the text


@dataclass
class TokenRates:
    """The tokens-per-byte rate each model's server reported, the highest seen."""

    rates: dict[ModelSpec, float] = field(default_factory=dict)

    def count(self, backend: Backend, spec: ModelSpec, text: str) -> int:
        """Tokens ``text`` takes for ``spec``: by its tokenizer where ``backend`` has one at
        hand; else at the rate the server's own counts showed (:meth:`learn`), with a margin;
        before any count, a conservative estimate."""
        if isinstance(backend, TokenCounter):
            try:
                return backend.count_tokens(spec.name, text)
            except AiStackError:
                pass  # the estimate will do
        rate = self.rates.get(spec)
        if rate is not None:
            return math.ceil(len(text.encode("utf-8")) * rate * TOKEN_MARGIN)
        return estimate_tokens(text)

    def learn(self, backend: Backend, spec: ModelSpec, text: str, tokens: int) -> None:
        """The server counted ``tokens`` for a prompt of ``text``: later counts for ``spec``
        use the highest rate seen (a prompt the server found in its cache reports fewer tokens,
        so the highest is the safe one). Backends with a tokenizer at hand need none of this."""
        size = len(text.encode("utf-8"))
        if tokens <= 0 or size < MIN_LEARN_BYTES or isinstance(backend, TokenCounter):
            return
        self.rates[spec] = max(tokens / size, self.rates.get(spec, 0.0))


__all__ = ["TokenRates"]
