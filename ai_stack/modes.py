"""What each mode runs: one table, and everything else derives from it.

A mode is the list of calls it can make, in the order it makes them. Each :class:`Call` says
which role makes it, what its prompt holds (so each model's context is sized before the run:
:func:`ai_stack.context.role_needs`), how often it can be made (once, in each round of a review,
at each attempt of the repair) and, when it is made only on a condition, the condition. The
controller makes a mode's calls; the batch scheduler orders phases by the table
(:func:`phase_rank`) and predicts loads from it (:meth:`ModeCalls.steps`); the display knows
from it whether the first answer is the one given (:attr:`ModeCalls.streams`).

>>> MODES["direct"].roles, MODES["team"].roles, MODES["answer"].roles
(('executor',), ('planner', 'executor'), ('critic', 'executor'))
>>> from ai_stack.config import Settings
>>> [f"{phase}:{role}" for phase, _, role in MODES["team"].steps(Settings())]
['execute:executor', 'contract:planner', 'compute:executor', 'shape:executor', 'shape:executor', \
'attempt:executor', 'attempt:executor']
>>> no_repair = Settings(max_rounds=0, evidence={"rethink": True})
>>> [f"{phase}:{role}" for phase, _, role in MODES["team"].steps(no_repair)]
['execute:executor', 'contract:planner', 'compute:executor']
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ai_stack.config import Settings
from ai_stack.types import ROLES, Mode, Phase, Role

Step = tuple[Phase, int, Role]  # a call: its phase, its review round or attempt (0: none), its role

Part = Literal[
    "task",  # the role's instructions, the conversation, the files and the task
    "plan",  # the Planner's plan
    "answer",  # the Executor's answer
    "evidence",  # the checks made on it
    "critique",  # the Critic's reply
    "approach",  # the Planner's reply
    "follow-up",  # a follow-up instruction
    "again",  # the Executor's answer once more (a repeated fix)
]
"""What a call's prompt can hold; :mod:`ai_stack.context` knows how many tokens each takes."""

Repeat = Literal["once", "round", "attempt"]
Switch = Literal["", "probes", "rethink"]  # the setting that turns a call on: evidence.<switch>


@dataclass(frozen=True)
class Call:
    """One call a mode can make."""

    phase: Phase
    role: Role
    does: str  # what the call is for, as the context notes say it: "a fix of the answer"
    holds: tuple[Part, ...]  # what its prompt holds, in order
    repeat: Repeat = "once"  # once, in each review round, or at each attempt of the repair
    when: str = ""  # the condition it is made on, in words ("" : always)
    last_round: bool = True  # False: not in a review's last round (nobody would review it)
    switch: Switch = ""  # the evidence setting that turns it on ("": none)
    repair: bool = False  # made only to replace a failing answer: off when no attempt is allowed

    def on(self, settings: Settings) -> bool:
        """Whether the settings let the call be made at all: ``max_rounds`` bounds every
        repeated call (0: none), and a repair's calls with it."""
        if rounds("attempt" if self.repair else self.repeat, settings) == 0:
            return False
        return not self.switch or bool(getattr(settings.evidence, self.switch))


def rounds(repeat: Repeat, settings: Settings) -> int:
    """How many times a call repeated so may be made: a review's rounds are ``max_rounds``,
    and so are a repair's attempts of each kind (:attr:`Settings.repair_attempts`), so one
    flag bounds the extra work of whatever mode runs.

    >>> from ai_stack.config import Settings
    >>> [rounds(r, Settings(max_rounds=1)) for r in ("once", "round", "attempt")]
    [1, 1, 1]
    >>> rounds("attempt", Settings(max_rounds=0))
    0
    """
    if repeat == "round":
        return settings.max_rounds
    if repeat == "attempt":
        return settings.repair_attempts
    return 1


@dataclass(frozen=True)
class ModeCalls:
    """The calls of one mode, in the order they are made."""

    name: Mode
    calls: tuple[Call, ...]
    raw: bool = False  # the task as the only message, no template: the model as it is

    def makes(self, phase: Phase) -> bool:
        return any(call.phase == phase for call in self.calls)

    def call(self, phase: Phase) -> Call:
        return next(call for call in self.calls if call.phase == phase)

    @property
    def reviews_answer(self) -> bool:
        """Whether the answer is checked and may be replaced (by a fix or a fresh version)."""
        return self.makes("fix") or self.repairs

    @property
    def repairs(self) -> bool:
        """Whether a failing answer is replaced by versions written afresh (the team's
        review), rather than fixed round by round (the answer review)."""
        return self.makes("shape") or self.makes("attempt")

    @property
    def answers_first(self) -> bool:
        """Whether the mode's first call is direct's own (the Executor, the task, no plan, in
        the templates): direct can then be read off it (:func:`ai_stack.evals.runner.paired`)."""
        return self.calls[0] == _EXECUTE and not self.raw

    @property
    def roles(self) -> tuple[Role, ...]:
        """The roles the mode calls (the others are configured but never loaded)."""
        called = {call.role for call in self.calls}
        return tuple(role for role in ROLES if role in called)

    @property
    def streams(self) -> bool:
        """Whether the first answer is the one given, so it can be shown as it is written:
        nothing after it can replace it."""
        after = self.calls[[c.phase for c in self.calls].index("execute") + 1 :]
        return not any(call.role == "executor" for call in after)

    def active(self, settings: Settings) -> tuple[Call, ...]:
        """The calls the settings let the mode make."""
        return tuple(call for call in self.calls if call.on(settings))

    def steps(self, settings: Settings) -> list[Step]:
        """Every call of a task that makes all the calls the settings allow: an upper bound
        (approval ends a review early, a repair ends at the first answer that passes, and calls
        made on a condition are counted as made). A review round's calls come together, in the
        table's order; the tries of a repair one kind after the other."""
        calls = self.active(settings)
        steps: list[Step] = []
        index = 0
        while index < len(calls):
            call = calls[index]
            if call.repeat == "once":
                steps.append((call.phase, 0, call.role))
                index += 1
                continue
            group = [call]  # a review round's calls come together; each try on its own
            while (
                call.repeat == "round"
                and index + len(group) < len(calls)
                and calls[index + len(group)].repeat == "round"
            ):
                group.append(calls[index + len(group)])
            index += len(group)
            count = rounds(call.repeat, settings)
            for number in range(1, count + 1):
                steps += [
                    (member.phase, number, member.role)
                    for member in group
                    if number < count or member.last_round or call.repeat == "attempt"
                ]
        return steps

    def exact(self, settings: Settings) -> bool:
        """Whether :meth:`steps` is what a run makes, not only an upper bound: no call the
        settings allow is made on a condition, and a plan review has one round at most.

        >>> from ai_stack.config import Settings
        >>> MODES["answer"].exact(Settings(max_rounds=0)), MODES["answer"].exact(Settings())
        (True, False)
        """
        calls = self.active(settings)
        if any(call.when for call in calls):
            return False
        return not any(call.phase == "critique" for call in calls) or settings.max_rounds <= 1


_PLAN = Call("plan", "planner", "the plan", ("task",))
_PLAN_REVIEW = (
    Call("critique", "critic", "a critique of the plan", ("task", "plan", "follow-up"), "round"),
    Call(
        "revise",
        "planner",
        "a revision of the plan",
        ("task", "plan", "critique", "follow-up"),
        "round",
        last_round=False,
    ),
)
_ANSWER_REVIEW = (
    Call(
        "probe",
        "critic",
        "edge cases for the answer's function",
        ("task", "answer", "follow-up"),
        "round",
        "the answer is a Python function that passes its checks",
        switch="probes",
    ),
    Call(
        "review",
        "critic",
        "the review of the answer",
        ("task", "answer", "follow-up", "critique", "follow-up", "evidence"),
        "round",
        "results are left for judgement",
    ),
    Call(
        "fix",
        "executor",
        "a fix of the answer",
        ("task", "answer", "follow-up", "evidence", "critique", "again", "follow-up"),
        "round",
        "a check fails or the Critic asks for one",
    ),
)


def _planned(calls: tuple[Call, ...]) -> tuple[Call, ...]:
    """The calls, each also holding the plan (the Executor follows it)."""
    return tuple(
        replace(c, holds=("task", "plan", *c.holds[1:])) if c.role == "executor" else c
        for c in calls
    )


_EXECUTE = Call("execute", "executor", "the answer", ("task",))
_TEAM = (
    _EXECUTE,
    Call(
        "contract",
        "planner",
        "what the task asks for",
        ("task",),
        when="the task's words and the answer leave it open",
    ),
    Call(
        "compute",
        "executor",
        "a program computing the result",
        ("task", "answer", "follow-up"),
        when="the task asks for a result, given without a program",
    ),
    Call(
        "shape",
        "executor",
        "an answer in the shape the requirements give",
        ("task", "follow-up"),
        "attempt",
        "a stated requirement fails that a shape can hold",
        repair=True,
    ),
    Call(
        "rethink",
        "planner",
        "another approach",
        ("task", "answer", "evidence", "follow-up"),
        when="the answer's code fails its checks, with room in the budget",
        switch="rethink",
        repair=True,
    ),
    Call(
        "attempt",
        "executor",
        "a fresh answer",
        ("task", "approach", "follow-up"),
        "attempt",
        "the answer fails its checks",
        repair=True,
    ),
)

MODES: dict[Mode, ModeCalls] = {
    "raw": ModeCalls("raw", (_EXECUTE,), raw=True),
    "direct": ModeCalls("direct", (_EXECUTE,)),
    "none": ModeCalls("none", (_PLAN, *_planned((_EXECUTE,)))),
    "plan": ModeCalls("plan", (_PLAN, *_PLAN_REVIEW, *_planned((_EXECUTE,)))),
    "answer": ModeCalls("answer", (_EXECUTE, *_ANSWER_REVIEW)),
    "both": ModeCalls("both", (_PLAN, *_PLAN_REVIEW, *_planned((_EXECUTE, *_ANSWER_REVIEW)))),
    "team": ModeCalls("team", _TEAM),
}
ROLES_CALLED: dict[Mode, tuple[Role, ...]] = {name: mode.roles for name, mode in MODES.items()}
"""The roles each mode calls (the others are configured but never loaded)."""
REVIEWS: tuple[Mode, ...] = tuple(name for name in MODES if name not in ("raw", "direct"))
"""The modes ``--review`` chooses between (``raw`` and ``direct`` are flags of their own)."""

# The phase-major schedule's order: every mode's calls in one order. A review's rounds and a
# repair's attempts keep their calls together (a round's probe, review and fix before the
# next round's).
_BEFORE: tuple[Phase, ...] = ("summarise", "plan")  # then the plan review, round by round
_ANSWER: tuple[Phase, ...] = ("act", "execute", "contract", "compute")
_ROUND: tuple[Phase, ...] = ("probe", "review", "fix")
_REPAIR: tuple[Phase, ...] = ("shape", "rethink", "attempt")
EXECUTE_RANK = 1_000
REPAIR_RANK = 2_000  # after every review round (at most 20)


def phase_rank(phase: Phase, round_: int) -> int:
    """Where a call comes in the phase-major schedule: the plan and its review, the answer and
    what the task asks for, the answer's review round by round, the repair attempt by attempt.

    >>> calls = [("plan", 0), ("critique", 1), ("revise", 1), ("critique", 2), ("execute", 0),
    ...          ("contract", 0), ("compute", 1), ("probe", 1), ("review", 1), ("fix", 1),
    ...          ("probe", 2), ("shape", 1), ("shape", 2), ("rethink", 0), ("attempt", 1),
    ...          ("attempt", 2)]
    >>> ranks = [phase_rank(p, r) for p, r in calls]
    >>> ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    True
    """
    if phase in _BEFORE:
        return 0
    if phase in ("critique", "revise"):
        return 2 * round_ - (phase == "critique")
    if phase in _ANSWER:
        return EXECUTE_RANK + _ANSWER.index(phase)
    if phase in _ROUND:
        return EXECUTE_RANK + len(_ROUND) * max(round_, 1) + _ROUND.index(phase) + len(_ANSWER)
    return REPAIR_RANK + 100 * _REPAIR.index(phase) + round_


__all__ = [
    "MODES",
    "REVIEWS",
    "ROLES_CALLED",
    "Call",
    "ModeCalls",
    "Part",
    "Step",
    "phase_rank",
    "rounds",
]
