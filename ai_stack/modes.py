"""What each mode runs: one table, and everything else derives from it — the calls the
controller makes, the roles a run loads, the batch schedule's prediction, the context each model
needs, and whether the display streams the answer as it is written.

>>> MODES["direct"].roles, MODES["team"].roles
(('executor',), ('planner', 'critic', 'executor'))
>>> [f"{phase}:{role}" for phase, _, role in MODES["team"].steps(rounds=1, probes=True,
...                                                                attempts=2)]
['contract:planner', 'execute:executor', 'compute:executor', 'probe:critic', 'review:critic', \
'fix:executor', 'rethink:planner', 'attempt:executor', 'attempt:executor']
"""

from __future__ import annotations

from dataclasses import dataclass

from ai_stack.types import ROLES, Mode, Phase, Role

Step = tuple[Phase, int, Role]  # a call: its phase, its review round (0: none), its role


@dataclass(frozen=True)
class ModeCalls:
    """The calls of one mode, in the order they are made."""

    name: Mode
    raw: bool = False  # the task as the only message, no template: the model as it is
    contract: bool = False  # the Planner turns the task into its requirements first
    plan: bool = False  # the Planner drafts a plan that the Executor follows
    plan_review: bool = False  # the Critic reviews the plan and the Planner revises it
    answer_review: bool = False  # the answer is checked, judged and fixed
    repair: bool = False  # when fixes stall: the Planner rethinks, fresh answers are tried

    @property
    def planner(self) -> bool:
        return self.contract or self.plan or self.repair

    @property
    def roles(self) -> tuple[Role, ...]:
        """The roles the mode calls (the others are configured but never loaded)."""
        called = {
            "planner": self.planner,
            "critic": self.plan_review or self.answer_review,
            "executor": True,
        }
        return tuple(role for role in ROLES if called[role])

    @property
    def streams(self) -> bool:
        """Whether the first answer is the one given, so it can be shown as it is written."""
        return not self.answer_review

    def steps(self, *, rounds: int, probes: bool, attempts: int) -> list[Step]:
        """Every call of a task whose reviews use all their rounds: an upper bound (approval
        ends a review early, failed checks skip the Critic's answer-review calls, and a repair
        runs only when fixes stall)."""
        steps: list[Step] = []
        if self.contract:
            steps.append(("contract", 0, "planner"))
        if self.plan:
            steps.append(("plan", 0, "planner"))
        if self.plan_review:
            for round_ in range(1, rounds + 1):
                steps.append(("critique", round_, "critic"))
                if round_ < rounds:
                    steps.append(("revise", round_, "planner"))
        steps.append(("execute", 0, "executor"))
        if self.answer_review:
            for round_ in range(1, rounds + 1):  # then a last round re-checks, calling no model
                if self.contract and round_ == 1:  # a result's program, or a code's edge cases
                    steps.append(("compute", round_, "executor"))
                if probes:
                    steps.append(("probe", round_, "critic"))
                steps += [("review", round_, "critic"), ("fix", round_, "executor")]
        if self.repair and attempts:
            steps.append(("rethink", 0, "planner"))
            steps += [("attempt", 0, "executor")] * attempts
        return steps

    def exact(self, rounds: int) -> bool:
        """Whether :meth:`steps` is what a run makes, not only an upper bound."""
        if self.answer_review or self.repair:
            return rounds == 0 and not self.repair
        return not self.plan_review or rounds <= 1


MODES: dict[Mode, ModeCalls] = {
    "raw": ModeCalls("raw", raw=True),
    "direct": ModeCalls("direct"),
    "none": ModeCalls("none", plan=True),
    "plan": ModeCalls("plan", plan=True, plan_review=True),
    "answer": ModeCalls("answer", answer_review=True),
    "both": ModeCalls("both", plan=True, plan_review=True, answer_review=True),
    "team": ModeCalls("team", contract=True, answer_review=True, repair=True),
}
ROLES_CALLED: dict[Mode, tuple[Role, ...]] = {name: mode.roles for name, mode in MODES.items()}
"""The roles each mode calls (the others are configured but never loaded)."""

__all__ = ["MODES", "ROLES_CALLED", "ModeCalls", "Step"]
