"""Conversations: the turns so far, as context for the next task, fitted into a token budget.

A conversation is the turns that finished (each task with the answer chosen for it), plus a
summary standing in for the earliest turns once they no longer fit. What is here is pure: which
turns stay whole and which a summary must cover, given token counts; how text is packed into
calls that fit. The controller makes the summaries (model calls); front ends keep a
conversation up to date from the run's events (:meth:`Conversation.observe`); the history
stores it as the runs are recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from ai_stack.types import Event, RunFinished, Summarised, Turn

SUMMARY_TOKENS = 300  # the longest summary the Executor's model may write


@dataclass(frozen=True)
class Summary:
    """A summary of the earliest ``covered`` turns."""

    covered: int
    text: str


@dataclass
class Conversation:
    """The finished turns of one conversation, oldest first, and the summary of the earliest."""

    id: str
    turns: list[Turn] = field(default_factory=list)
    summary: Summary | None = None
    ongoing: bool = False  # more turns will follow in this process (the REPL)
    replacing: str | None = None  # the run of the turn dropped to be run again

    @property
    def growing(self) -> bool:
        """Whether models should be loaded with room for the turns to come, so that a longer
        conversation does not reload them at a larger context turn after turn."""
        return self.ongoing or bool(self.turns)

    @classmethod
    def new(cls) -> Conversation:
        return cls(uuid.uuid4().hex[:12])

    @property
    def next_turn(self) -> int:
        return self.turns[-1].number + 1 if self.turns else 1

    def observe(self, event: Event) -> None:
        """Keep up with a run of this conversation: its summary, then its finished turn (a
        re-run of a turn replaces it and the turns after it)."""
        if isinstance(event, Summarised) and event.subject == "turns":
            self.summary = Summary(event.covered, event.text)
        elif isinstance(event, RunFinished) and event.result.conversation_id == self.id:
            result = event.result
            number = result.turn or self.next_turn
            self.turns = [turn for turn in self.turns if turn.number < number]
            self.turns.append(
                Turn(
                    number=number,
                    task=result.task,
                    answer=result.output,
                    files=result.files,
                    run_id=result.id,
                )
            )
            if self.summary is not None and self.summary.covered >= len(self.turns):
                self.summary = None  # it covered a turn that was re-run
            self.replacing = None

    def drop_last(self) -> Turn | None:
        """Remove and return the last turn (to run it again)."""
        if not self.turns:
            return None
        turn = self.turns.pop()
        self.replacing = turn.run_id
        if self.summary is not None and self.summary.covered > len(self.turns):
            self.summary = None
        return turn


@dataclass(frozen=True)
class ConversationView:
    """What one role's prompt shows of a conversation: the templates' ``conversation``."""

    summary: str | None = None
    turns: tuple[Turn, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.summary or self.turns)

    def limited(self, turns: int | None) -> ConversationView:
        """The view for a role that sees at most ``turns`` of the latest turns (None: all, with
        the summary; 0: nothing)."""
        if turns is None:
            return self
        return ConversationView(None, self.turns[-turns:] if turns else ())


def turn_text(turn: Turn) -> str:
    """A turn as text, for counting its tokens and for summarising it."""
    files = f" (with {', '.join(turn.files)})" if turn.files else ""
    return f"Turn {turn.number}. User{files}: {turn.task}\nAnswer:\n{turn.answer}"


def summary_needed(counts: Sequence[int], budget: int, summarised: int = 0) -> int:
    """How many of the earliest turns a summary must cover so that the rest, kept whole, and
    the summary fit in ``budget`` tokens; ``summarised``: turns an earlier summary already
    covers (kept covered, so the prompt's start stays the same from turn to turn).

    Returns ``len(counts) + 1`` when not even a summary of them all fits.

    >>> summary_needed([100, 100, 100], budget=1000)
    0
    >>> summary_needed([900, 100, 100], budget=1000)  # the oldest goes; 300 kept for a summary
    1
    >>> summary_needed([900, 100, 100], budget=1000, summarised=2)
    2
    >>> summary_needed([500], budget=200)
    2
    """
    covered = summarised
    while covered <= len(counts):
        kept = sum(counts[covered:])
        if kept + (SUMMARY_TOKENS if covered else 0) <= budget:
            return covered
        covered += 1
    return len(counts) + 1


def split_to_fit(text: str, tokens: int, room: int) -> list[str]:
    """``text`` (of ``tokens`` tokens) cut at line ends into parts of at most about ``room``
    tokens each.

    >>> split_to_fit("a\\nb\\nc\\nd", tokens=40, room=20)
    ['a\\nb\\n', 'c\\nd']
    """
    if tokens <= room:
        return [text]
    parts = -(-tokens // max(room, 1))
    size = -(-len(text) // parts)
    pieces, current = [], ""
    for line in text.splitlines(keepends=True):
        while len(line) > size:  # a line longer than a part: cut it
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:size])
            line = line[size:]
        if current and len(current) + len(line) > size:
            pieces.append(current)
            current = ""
        current += line
    if current:
        pieces.append(current)
    return pieces


def pack(pieces: Sequence[tuple[str, int]], room: int) -> list[list[str]]:
    """Group ``(text, tokens)`` pieces, in order, into calls of at most ``room`` tokens each
    (a piece that alone exceeds ``room`` is split first).

    >>> pack([("a", 5), ("b", 5), ("c", 5)], room=10)
    [['a', 'b'], ['c']]
    """
    groups: list[list[str]] = []
    used = room + 1
    for text, tokens in pieces:
        parts = split_to_fit(text, tokens, room)
        for part in parts:
            size = tokens if len(parts) == 1 else -(-tokens // len(parts))
            if used + size > room:
                groups.append([])
                used = 0
            groups[-1].append(part)
            used += size
    return groups


__all__ = [
    "SUMMARY_TOKENS",
    "Conversation",
    "ConversationView",
    "Summary",
    "pack",
    "split_to_fit",
    "summary_needed",
    "turn_text",
]
